"""llama.cpp as an engine: journey's `openai` backend against `python -m llama_cpp.server`.

Slow: the real server serving the SmolLM2-135M GGUF on 127.0.0.1, started and stopped (by pid)
here; skipped when llama_cpp does not import (the [llamacpp] extra, or $LLAMA_CPP_PYTHON naming a
Python that has it) or the GGUF is not installed (`journey models pull smollm2-135m`). It checks
the server kind, n samples as n seeded requests, steps stopped at the delimiter, raw log-probs,
one BOS, the context read from the server and checked, and build-tree through the CLI.

Fast: the same backend against replies recorded from that server (tests/llamacpp_server.py).
"""

import json
import math
import time

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.models.base import Prefix, SamplingConfig
from journey.models.openai_policy import SERVER_ENV, OpenAIPolicy
from tests import llamacpp_server as lcs

runner = CliRunner()


# ---------------------------------------------------------------- fast: recorded replies


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    recorded = json.loads(lcs.REPLIES.read_text())
    assert recorded["format"] == "journey.llamacpp-replies/v1"
    srv, url = lcs.serve(recorded["replies"])
    yield lcs.ask(url, lcs.tokenizer_folder(tmp_path_factory.mktemp("tok"))), recorded["replies"]
    srv.shutdown()


def sent(replies: dict) -> list[dict]:
    """The /completions bodies journey sent when they were recorded (the context probe aside)."""
    bodies = [json.loads(k)[2] for k in replies if json.loads(k)[1] == "/v1/completions"]
    return [b for b in bodies if "seed" in b]


def test_llama_cpp_is_told_by_its_models_answer_and_its_context_by_its_refusal(replayed):
    asked, replies = replayed
    models = replies[lcs.key("GET", "/v1/models", None)][1]
    assert [c["owned_by"] for c in models["data"]] == ["me"]
    assert asked["kind"] == "llamacpp" and asked["context"] == lcs.N_CTX


def test_n_samples_are_n_requests_of_one_seeded_s_plus_j_with_llamas_own_fields_off(replayed):
    asked, replies = replayed
    steps = [b for b in sent(replies) if b["max_tokens"] == 32]
    assert sorted(b["seed"] for b in steps) == [7, 8, 8, 9, 9, 10] and {b["n"] for b in steps} == {1}
    for b in steps:
        assert b["stop"] == ["\n"] and b["logprobs"] == 1
        assert (b["top_k"], b["min_p"], b["typical_p"], b["repeat_penalty"]) == (0, 0.0, 1.0, 1.0)
        assert "repetition_penalty" not in b and "add_special_tokens" not in b
    assert [len(row) for row in asked["steps"]] == [3, 3]
    assert all(len({p.text for p in row}) == 3 for row in asked["steps"])  # three samples, not one thrice


def test_a_step_ends_at_the_delimiter_read_from_the_tokens_llama_lists(replayed):
    asked, replies = replayed
    props = [p for row in asked["steps"] for p in row]
    assert all("\n" not in p.text and math.isfinite(p.logprob) and p.logprob <= 0 for p in props)
    assert {p.finish for p in props} <= {"stop", "eos", "length"} and "stop" in {p.finish for p in props}
    for p in props:  # the token that completed the stop string is counted, as vLLM counts it
        assert p.tokens <= 32 and (p.finish != "length" or p.tokens == 32)
    assert asked["whole"][0][0].finish in ("eos", "length")


def test_a_reply_with_fewer_choices_than_asked_is_an_error(replayed):
    asked, _ = replayed
    assert len(asked["naive"]["choices"]) == 1  # llama_cpp.server ignores n
    with pytest.raises(ValueError, match=r"asked for n = 3 completions, the server \(llamacpp\) returned 1"):
        asked["policy"].choices(asked["naive"], 3)


@pytest.mark.parametrize(
    "choice, finish",
    [
        ({"text": "17 + 25 = 42", "finish_reason": "stop", "logprobs": {"tokens": ["17", " + 25 = 42", "\n"]}}, "stop"),
        ({"text": "17 + 25 = 42", "finish_reason": "stop", "logprobs": {"tokens": ["17", " + 25 = 42", "\n3"]}}, "stop"),
        ({"text": "17 + 25 = 42", "finish_reason": "stop", "logprobs": {"tokens": ["17", " + 25 = 42"]}}, "eos"),
        ({"text": "17 + 25", "finish_reason": "length", "logprobs": {"tokens": ["17", " + 25"]}}, "length"),
        ({"text": "17 + 25 = 42", "finish_reason": "stop", "logprobs": None}, "sent no log-probs' tokens"),
    ],
)
def test_llamacpp_finish_is_read_from_its_tokens(choice, finish):
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1")
    policy._server = "llamacpp"
    if finish in ("stop", "eos", "length"):
        assert policy._finish(choice, "\n") == finish
    else:
        with pytest.raises(ValueError, match=finish):
            policy._finish(choice, "\n")


def test_a_bad_server_kind_is_named(monkeypatch):
    monkeypatch.setenv(SERVER_ENV, "llama")
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match=r"\$JOURNEY_OPENAI_SERVER must be one of vllm, sglang, llamacpp, other, got 'llama'"):
        policy.server()


# ---------------------------------------------------------------- slow: the real server


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    python, gguf = lcs.llamacpp_python(), lcs.smollm2_gguf()
    if python is None:
        pytest.skip("llama_cpp does not import (pip install 'journey[llamacpp]', or set $LLAMA_CPP_PYTHON)")
    if gguf is None:
        pytest.skip("no SmolLM2 GGUF (journey models pull smollm2-135m)")
    proc, url = lcs.start(python, gguf, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield url, gguf
    finally:
        lcs.stop(proc)


@pytest.mark.slow
def test_journey_drives_a_real_llamacpp_server(llama):
    url, gguf = llama
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_step_tokens=32)
    policy = OpenAIPolicy(str(gguf), delimiter="\n", base_url=url, sampling=sampling)
    assert policy.server() == "llamacpp" and policy.context_length == lcs.N_CTX
    prefixes = [Prefix(lcs.QUESTION, [], seed=101), Prefix(lcs.QUESTION_2, [], seed=202)]
    began = time.time()
    steps = policy.propose(prefixes, 3)
    seconds = time.time() - began
    print(f"\n6 steps, {sum(p.tokens for row in steps for p in row)} tokens in {seconds:.1f} s")
    assert [len(row) for row in steps] == [3, 3]
    assert all(len({p.text for p in row}) == 3 for row in steps)
    assert policy.propose(prefixes, 3) == steps  # seeded: the same samples again
    props = [p for row in steps for p in row]
    assert all("\n" not in p.text and math.isfinite(p.logprob) and p.logprob <= 0 for p in props)
    assert "stop" in {p.finish for p in props}

    long = Prefix([{"role": "user", "content": "1 + 1 " * 1500}])
    with pytest.raises(ValueError) as err:
        policy.check_fits([long], 64, ["problems.jsonl:1"], "a step")
    assert str(err.value).startswith("problems.jsonl:1: the prompt is ") and "\n" not in str(err.value)
    assert str(err.value).endswith("the model's context is 2,048 tokens")


@pytest.mark.slow
def test_llamacpp_adds_no_second_bos_and_reports_raw_logprobs(llama):
    url, gguf = llama
    policy = OpenAIPolicy(str(gguf), delimiter="\n", base_url=url)
    policy.server()
    tops = []
    for temperature in (0.2, 2.0):  # raw log-probs do not depend on the temperature
        policy.sampling = SamplingConfig(temperature=temperature)
        body = policy.request_body(Prefix(lcs.QUESTION, [], seed=3), 1, 4, "\n")
        reply = policy._request("/completions", body)
        local = policy.tokenizer(body["prompt"], add_special_tokens=False)["input_ids"]
        assert reply["usage"]["prompt_tokens"] == len(local)  # the template's tokens; no BOS added
        tops.append(max(reply["choices"][0]["logprobs"]["top_logprobs"][0].values()))
    # Equal but for float noise (-0.3773 and -0.3739 seen: the second request re-evaluates the last
    # prompt token of the cached first); after temperature they would be far apart (0.2: near 0).
    assert math.isclose(tops[0], tops[1], abs_tol=0.02) and tops[0] < -0.1


@pytest.mark.slow
def test_build_tree_on_llamacpp_through_the_cli(llama, tmp_path, monkeypatch):
    url, gguf = llama
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    problems, out = tmp_path / "p.jsonl", tmp_path / "trees.jsonl"
    assert runner.invoke(app, ["problems", "--task", "arith", "--n", 2, "--seed", 3, "--out", str(problems)]).exit_code == 0
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out), "--backend", "openai",
                                 "--model", str(gguf), "--depth", 2, "-w", 3, "--max-step-tokens", 24])
    assert result.exit_code == 0, result.output
    trees = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(trees) == 2
    for tree in trees:
        roots = [n for n in tree["nodes"] if n["parent"] == 0]
        assert sum(n["count"] for n in roots) == 3  # w samples of the root, identical ones merged
