"""Policy backends: `openai` against a real local server end to end through build-tree; `vllm`'s error."""

import json
import threading

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.models.openai_policy import OpenAIPolicy
from journey.models.policy import Prefix, Proposal, SamplingConfig
from tests.openai_server import make_server

runner = CliRunner()


@pytest.fixture(scope="module")
def server():
    srv = make_server("embedded", port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def content(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["problem"]["id"]: [(n["parent"], n["text"], n["verdict"], n["pruned"], n["count"], n["finish"])
                                 for n in r["nodes"]] for r in rows}


def test_openai_backend_builds_the_same_trees(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    problems = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["problems", "--n", 4, "--seed", 13, "--out", str(problems)]).exit_code == 0
    outs = {}
    for backend in ("openai", "transformers"):
        outs[backend] = tmp_path / f"{backend}.jsonl"
        result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(outs[backend]),
                                     "--backend", backend, "--depth", "6"])
        assert result.exit_code == 0, result.output
    assert content(outs["openai"]) == content(outs["transformers"])


def test_eval_through_the_openai_backend(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 6, "--seed", 3, "--out", str(problems)])
    metrics = {}
    for backend in ("openai", "transformers"):
        out = tmp_path / f"{backend}.json"
        result = runner.invoke(app, ["eval", "--model", "embedded", "--problems", str(problems), "-k", "2",
                                     "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        metrics[backend] = {k: v for k, v in json.loads(out.read_text()).items() if k not in ("provenance",)}
    assert metrics["openai"] == metrics["transformers"]


def test_openai_policy_reports_costs_and_finish(server):
    policy = OpenAIPolicy("embedded", base_url=server, sampling=SamplingConfig(temperature=0.7))
    [props] = policy.propose([Prefix([{"role": "user", "content": "(23 + 19) * 3 - 41"}], [], seed=5)], n=3)
    assert len(props) == 3 and all(p.finish == "stop" and p.tokens > 0 and p.logprob < 0 for p in props)
    [[whole]] = policy.complete([Prefix([{"role": "user", "content": "(2 + 3) * 4 - 5"}], [], seed=1)], 1, 200)
    assert whole.finish == "eos" and "The answer is" in whole.text


def test_openai_unreachable_server_is_a_clear_error():
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1", retries=1, timeout=2)
    with pytest.raises(ValueError, match="cannot reach the server"):
        policy.propose([Prefix([{"role": "user", "content": "1 + 1"}])], n=1)


def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path):
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 2, "--out", str(problems)])
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(tmp_path / "t.jsonl"),
                                 "--backend", "vllm"])
    assert result.exit_code == 1 and "--backend vllm needs vLLM" in result.output
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize(
    "choice, stop, finish",
    [
        ({"finish_reason": "length"}, ["\n"], "length"),
        ({"finish_reason": "stop", "stop_reason": "\n"}, ["\n"], "stop"),  # vLLM: the delimiter
        ({"finish_reason": "stop", "stop_reason": None}, ["\n"], "eos"),  # vLLM: EOS
        ({"finish_reason": "stop", "stop_reason": 151643}, ["\n"], "eos"),  # vLLM: a stop token id
        ({"finish_reason": "stop", "matched_stop": "\n"}, ["\n"], "stop"),  # SGLang: the delimiter
        ({"finish_reason": "stop", "matched_stop": 151643}, ["\n"], "eos"),  # SGLang: the EOS id
        ({"finish_reason": "stop"}, None, "eos"),  # a whole completion: stop can only be EOS
        ({"finish_reason": "stop"}, ["\n"], "does not say whether a completion ended"),
        ({"finish_reason": "abort", "stop_reason": None}, ["\n"], "finish_reason 'abort'"),
        ({"finish_reason": "content_filter"}, None, "finish_reason 'content_filter'"),
    ],
)
def test_openai_finish_is_read_never_guessed(choice, stop, finish):
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1")
    choice = {"text": "2 + 3 = 5", "logprobs": {"token_logprobs": [-0.5, -0.25]}, **choice}
    if finish in ("length", "stop", "eos"):
        assert policy._to_proposal(choice, stop) == Proposal("2 + 3 = 5", 2, -0.75, finish)
    else:
        with pytest.raises(ValueError, match=finish):
            policy._to_proposal(choice, stop)


@pytest.mark.parametrize(
    "reason, stop_reason, text, finish",
    [("length", None, "2 + 3", "length"), ("stop", "\n", "2 + 3 = 5", "stop"),
     ("stop", None, "2 + 3 = 5\n", "eos"), ("abort", None, "2 +", "finish_reason 'abort'")],
)
def test_vllm_finish_is_read_never_guessed(reason, stop_reason, text, finish):
    from types import SimpleNamespace

    from journey.models.vllm_policy import VLLMPolicy

    out = SimpleNamespace(text=text + ("\n" if stop_reason == "\n" else ""), finish_reason=reason,
                          stop_reason=stop_reason, token_ids=[1, 2, 3], cumulative_logprob=-1.5)
    policy = VLLMPolicy.__new__(VLLMPolicy)  # no engine: only the output reading is tested
    if finish in ("length", "stop", "eos"):
        assert policy._to_proposal(out, ["\n"]) == Proposal(text, 3, -1.5, finish)
    else:
        with pytest.raises(ValueError, match=finish):
            policy._to_proposal(out, ["\n"])
