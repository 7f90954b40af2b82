"""Policy backends: `openai` against a real local server answering as vLLM, SGLang or a hosted
OpenAI-style API, end to end through build-tree; one BOS, explicit sampling fields and greedy
n > 1 on every server; `vllm`'s output reading and its error without vLLM."""

import json
import shutil
import threading

import pytest
from typer.testing import CliRunner

from journey.cli import app
from journey.models.base import Prefix, Proposal, SamplingConfig
from journey.models.embedded import EMBEDDED_PATH
from journey.models.openai_policy import OpenAIPolicy, tokens_ending_before
from journey.models.transformers_policy import TransformersPolicy
from tests.helpers import QUESTION, make_bos_model
from tests.openai_server import SHAPES, make_server

runner = CliRunner()


def serve(model: str, shape: str):
    srv = make_server(model, port=0, shape=shape)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"


@pytest.fixture(scope="module", params=SHAPES)
def server(request):
    srv, url = serve("embedded", request.param)
    yield srv, url, request.param
    srv.shutdown()


@pytest.fixture(scope="module")
def generation_config_model(tmp_path_factory):
    """The embedded policy with a generation_config that asks for top_k, min_p and a repetition
    penalty (Qwen2.5-Math ships such a file): servers and transformers would apply them."""
    d = tmp_path_factory.mktemp("gen-config") / "policy"
    shutil.copytree(EMBEDDED_PATH, d)
    config = json.loads((d / "generation_config.json").read_text())
    config |= {"repetition_penalty": 1.3, "top_k": 5, "min_p": 0.1}
    (d / "generation_config.json").write_text(json.dumps(config))
    return str(d)


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory):
    return make_bos_model(tmp_path_factory.mktemp("bos-model"))


def content(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["problem"]["id"]: [(n["parent"], n["text"], n["verdict"], n["pruned"], n["count"], n["finish"])
                                 for n in r["nodes"]] for r in rows}


@pytest.fixture(scope="module")
def transformers_trees(tmp_path_factory):
    d = tmp_path_factory.mktemp("trees")
    problems, out = d / "p.jsonl", d / "transformers.jsonl"
    assert runner.invoke(app, ["problems", "--n", 3, "--seed", 13, "--out", str(problems)]).exit_code == 0
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out), "--depth", "5",
                                 "-w", "3"])
    assert result.exit_code == 0, result.output
    return problems, content(out)


def test_openai_backend_builds_the_same_trees_on_every_server(server, transformers_trees, tmp_path, monkeypatch):
    srv, url, shape = server
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    problems, expected = transformers_trees
    out = tmp_path / f"{shape}.jsonl"
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out),
                                 "--backend", "openai", "--depth", "5", "-w", "3"])
    assert result.exit_code == 0, result.output
    got = content(out)
    if shape == "sglang":  # w requests of one sample, seeded s + j: other draws, as many of them
        assert {r["body"]["n"] for r in srv.requests} == {1}
        assert sum(len(nodes) for nodes in got.values()) >= 0.5 * sum(len(nodes) for nodes in expected.values())
    else:
        assert got == expected
    # Steps end at the delimiter on every server: trees grow past depth 1.
    assert max(len({n[0] for n in nodes}) for nodes in got.values()) > 2
    if shape == "openai":
        assert all("stop" not in r["body"] for r in srv.requests)  # it would not say it stopped there


def test_eval_through_the_openai_backend(tmp_path, monkeypatch):
    srv, url = serve("embedded", "vllm")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 6, "--seed", 3, "--out", str(problems)])
    metrics = {}
    for backend in ("openai", "transformers"):
        out = tmp_path / f"{backend}.json"
        result = runner.invoke(app, ["eval", "--model", "embedded", "--problems", str(problems), "-k", "2",
                                     "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        metrics[backend] = {k: v for k, v in json.loads(out.read_text()).items() if k not in ("provenance",)}
    srv.shutdown()
    assert metrics["openai"] == metrics["transformers"]


def test_openai_policy_reports_costs_and_finish(server):
    srv, url, shape = server
    policy = OpenAIPolicy("embedded", base_url=url, sampling=SamplingConfig(temperature=0.7))
    [props] = policy.propose([Prefix(QUESTION, [], seed=5)], n=3)
    assert len(props) == 3 and all(p.finish == "stop" and p.tokens > 0 and p.logprob < 0 for p in props)
    [[whole]] = policy.complete([Prefix([{"role": "user", "content": "(2 + 3) * 4 - 5"}], [], seed=1)], 1, 200)
    assert whole.finish == "eos" and "The answer is" in whole.text
    assert policy.server() == ("other" if shape == "openai" else shape)
    assert policy.context_length == (None if shape == "openai" else 4096)  # max_model_len from /models


def test_greedy_with_n_above_1_is_one_sample_copied(server):
    srv, url, shape = server
    greedy = SamplingConfig(temperature=0.0)
    client = OpenAIPolicy("embedded", base_url=url, sampling=greedy)
    [props] = client.propose([Prefix(QUESTION, [], seed=5)], n=3)
    assert srv.requests[-1]["body"]["n"] == 1  # vLLM answers n > 1 at temperature 0 with HTTP 400
    local = TransformersPolicy("embedded", sampling=greedy)
    [[one]] = local.propose([Prefix(QUESTION, [], seed=5)], n=1)
    assert [p.text for p in props] == [one.text] * 3 and props[0].tokens == one.tokens


def test_sampling_fields_are_sent_not_left_to_generation_config(generation_config_model, tmp_path):
    """vLLM fills unset top_k, min_p and repetition_penalty from generation_config (this server
    refuses to sample with them); transformers applies its repetition_penalty. Neither may."""
    prefixes = [Prefix(QUESTION, [], seed=s) for s in (1, 2)]
    sampling = SamplingConfig(temperature=1.0, top_p=0.95)
    drawn = lambda props: [[(p.text, p.tokens, p.finish) for p in row] for row in props]  # noqa: E731
    plain = drawn(TransformersPolicy("embedded", sampling=sampling).propose(prefixes, 3))
    assert drawn(TransformersPolicy(generation_config_model, sampling=sampling).propose(prefixes, 3)) == plain
    for shape in ("vllm", "sglang"):
        srv, url = serve(generation_config_model, shape)
        client = OpenAIPolicy(generation_config_model, base_url=url, sampling=sampling)
        assert drawn(client.propose(prefixes, 3)) == (plain if shape == "vllm" else sglang_draws(prefixes, 3, sampling))
        srv.shutdown()


def sglang_draws(prefixes, n, sampling, max_new_tokens=None):
    """What journey draws on SGLang: sample j of a prefix seeded s is one sample seeded s + j."""
    local = TransformersPolicy("embedded", sampling=sampling)
    one = (lambda x: local.propose([x], 1)) if max_new_tokens is None else (  # noqa: E731
        lambda x: local.complete([x], 1, max_new_tokens))
    return [[(p.text, p.tokens, p.finish) for j in range(n)
             for [p] in one(Prefix(x.messages, x.steps, seed=x.seed + j))] for x in prefixes]


def test_sglang_gets_w_requests_of_one_sample_seeded_s_plus_j():
    """SGLang draws every copy of an n > 1 request from the one seed (the stand-in does too), so
    w candidates would be one. journey sends w requests with n = 1 and seeds s, s + 1, ...: w
    different samples, each repeatable, as vLLM draws them inside."""
    srv, url = serve("embedded", "sglang")
    sampling = SamplingConfig(temperature=1.0)
    client = OpenAIPolicy("embedded", base_url=url, sampling=sampling)
    hard = [{"role": "user", "content": "(87 * 49 - 1234) * 17 + 998"}]  # the model is unsure here
    prefixes = [Prefix(hard, [], seed=11), Prefix(hard, [], seed=40)]
    props = client.complete(prefixes, 4, 80)
    bodies = [r["body"] for r in srv.requests]
    assert sorted((b["n"], b["seed"]) for b in bodies) == [(1, 11 + j) for j in range(4)] + [(1, 40 + j) for j in range(4)]
    assert [[(p.text, p.tokens, p.finish) for p in row] for row in props] == sglang_draws(prefixes, 4, sampling, 80)
    assert all(len({p.text for p in row}) > 1 for row in props)  # not one sample four times
    # The defect it avoids: one request with n = 4 gets four copies of one sample.
    naive = client._request("/completions", client.request_body(prefixes[0], 4, 80, None))
    assert len(naive["choices"]) == 4 and len({c["text"] for c in naive["choices"]}) == 1
    srv.shutdown()


@pytest.mark.parametrize("shape", SHAPES)
def test_a_prompt_holding_the_templates_bos_gets_no_second_one(bos_model, shape):
    model, bos = bos_model
    srv, url = serve(model, shape)
    client = OpenAIPolicy(model, base_url=url, sampling=SamplingConfig(max_step_tokens=4))
    assert client.render(Prefix(QUESTION)).startswith("<s>")
    client.propose([Prefix(QUESTION, ["2 + 3 = 5"], seed=0)], n=2)
    ids = srv.requests[-1]["prompt_ids"]
    assert ids[0] == bos and ids[1] != bos
    local = TransformersPolicy(model)
    assert ids == local.tokenizer(local.render(Prefix(QUESTION, ["2 + 3 = 5"])), add_special_tokens=False)["input_ids"]
    srv.shutdown()


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


LOGPROBS = {"token_logprobs": [-0.5, -0.25], "tokens": ["2 + 3", " = 5"], "text_offset": [0, 5]}


@pytest.mark.parametrize(
    "dialect, choice, stop, expected",
    [
        ("vllm", {"finish_reason": "length"}, "\n", "length"),
        ("vllm", {"finish_reason": "stop", "stop_reason": "\n"}, "\n", "stop"),  # the delimiter
        ("vllm", {"finish_reason": "stop", "stop_reason": None}, "\n", "eos"),  # EOS
        ("vllm", {"finish_reason": "stop", "stop_reason": 151643}, "\n", "eos"),  # a stop token id
        ("sglang", {"finish_reason": "stop", "matched_stop": "\n"}, "\n", "stop"),  # the delimiter
        ("sglang", {"finish_reason": "stop", "matched_stop": 151643}, "\n", "eos"),  # the EOS id
        ("vllm", {"finish_reason": "stop"}, None, "eos"),  # a whole completion: stop can only be EOS
        ("other", {"finish_reason": "stop"}, "\n", "eos"),  # no stop was sent: the text has no delimiter
        ("other", {"finish_reason": "length"}, "\n", "length"),
        ("vllm", {"finish_reason": "stop"}, "\n", "no stop_reason in its reply"),
        ("sglang", {"finish_reason": "stop", "stop_reason": "\n"}, "\n", "no matched_stop in its reply"),
        ("vllm", {"finish_reason": "abort", "stop_reason": None}, "\n", "finish_reason 'abort'"),
        ("other", {"finish_reason": "content_filter"}, None, "finish_reason 'content_filter'"),
    ],
)
def test_openai_finish_is_read_never_guessed(dialect, choice, stop, expected):
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1")
    policy._server = dialect  # what GET /models would have found
    choice = {"text": "2 + 3 = 5", "logprobs": LOGPROBS, **choice}
    if expected in ("length", "stop", "eos"):
        assert policy._to_proposal(choice, stop) == Proposal("2 + 3 = 5", 2, -0.75, expected)
    else:
        with pytest.raises(ValueError, match=expected):
            policy._to_proposal(choice, stop)


def test_a_hosted_apis_completion_is_cut_at_the_first_delimiter():
    """No stop is sent to a server that would not say it stopped there: the text is cut here,
    and only the tokens up to the delimiter (the one holding it included) are counted."""
    policy = OpenAIPolicy("embedded", base_url="http://127.0.0.1:9/v1")
    policy._server = "other"
    lp = {"token_logprobs": [-0.5, -0.25, -1.0, -2.0], "tokens": ["2 + 3", " = 5\n", "7", " * 2"],
          "text_offset": [40, 45, 50, 51]}  # offsets counted from the prompt's start
    choice = {"text": "2 + 3 = 5\n7 * 2", "finish_reason": "length", "logprobs": lp}
    assert policy._to_proposal(choice, "\n") == Proposal("2 + 3 = 5", 2, -0.75, "stop")
    assert policy._to_proposal(choice, None) == Proposal("2 + 3 = 5\n7 * 2", 4, -3.75, "length")


@pytest.mark.parametrize(
    "logprobs, end, count",
    [
        ({"text_offset": [10, 11, 13]}, 2, 2),  # offsets from the prompt's start: made relative
        ({"text_offset": [0, 1, 3]}, 3, 2),
        ({"text_offset": [0, 1, 3]}, 4, 3),
        ({"tokens": ["ab", "c", "de"]}, 3, 2),  # no offsets: the token strings' lengths
        ({"token_logprobs": [-1.0, -2.0]}, 1, 2),  # nothing to place them by: all
    ],
)
def test_tokens_ending_before(logprobs, end, count):
    assert tokens_ending_before(logprobs, end) == count


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


# ---------------------------------------------------------------- the transformers backend's sampler


@pytest.mark.parametrize(
    "probs, u, top_p, chosen, sure",
    [
        # nucleus {7, 3} (mass 0.8 reaches 0.7); 0.7 x 0.8 = 0.56 falls past 0.5: the second
        ([0.5, 0.3, 0.15, 0.05], 0.7, 0.7, 3, True),
        ([0.5, 0.3, 0.15, 0.05], 0.5, 0.7, 7, True),
        ([0.4, 0.4, 0.2], 0.1, 0.5, 7, False),  # a tie inside the nucleus: which comes first is the sort's
        ([0.5, 0.3, 0.2], 0.9, 0.99, 1, False),  # the nucleus is every candidate: more may lie past them
        ([0.6, 0.2, 0.2], 0.1, 0.5, 7, True),  # ties past the nucleus do not matter
    ],
)
def test_nucleus_pick_by_hand(probs, u, top_p, chosen, sure):
    import torch

    from journey.models.transformers_policy import nucleus_pick

    ids = torch.tensor([[7, 3, 1, 9][: len(probs)]])
    choice, holds = nucleus_pick(torch.tensor([probs]), ids, torch.tensor([u], dtype=torch.float64), top_p)
    assert choice.item() == chosen and holds.item() == sure


def test_sampling_from_candidates_picks_what_sorting_the_whole_vocabulary_picks():
    """Random rows, tied ones and flat ones among them, at several temperatures and top_p: the
    same token whether a row's nucleus is found among the top candidates or by a full sort."""
    import torch

    from journey.models.transformers_policy import SeededSampler

    class WholeSort(SeededSampler):
        candidates = 1  # no nucleus fits in one candidate: every row sorts its whole vocabulary

    torch.manual_seed(0)
    for trial in range(24):
        logits = torch.randn(16, [50, 1000, 49152][trial % 3]) * [0.1, 1, 5, 20][trial % 4]
        if trial % 5 == 0:
            logits = (logits * 2).round() / 2  # many ties
        if trial % 7 == 0:
            logits[:, : logits.shape[1] // 2] = 0.0  # half the vocabulary level
        seeds = list(range(16 * trial, 16 * trial + 16))
        for temperature, top_p in [(0.7, 0.95), (1.0, 0.9), (0.7, 1.0), (0.3, 0.5)]:
            fast = SeededSampler(seeds, temperature, top_p)(torch.zeros(16, 1), logits)
            whole = WholeSort(seeds, temperature, top_p)(torch.zeros(16, 1), logits)
            assert torch.equal(fast.argmax(-1), whole.argmax(-1)), (trial, temperature, top_p)


def test_a_stop_strings_criteria_are_built_once(policy):
    assert policy.stop_criteria("\n") is policy.stop_criteria("\n")
    assert policy.stop_criteria(None) is None
