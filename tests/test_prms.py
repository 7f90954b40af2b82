"""PRMs beyond the verifier: rollout, token (Math-Shepherd style), qwen (Qwen2.5-Math-PRM style), judge."""

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from journey.cli import app
from journey.models.base import Policy, Proposal, SamplingConfig
from journey.models.embedded import build_tokenizer
from journey.models.judge import JudgePRM, read_verdict
from journey.models.model_prms import QwenPRM, TokenPRM, load_head_weights
from journey.models.prm import RolloutPRM, StepScore
from journey.models.registry import build_prm
from journey.tasks import get_task
from journey.tasks.arith import solve

runner = CliRunner()
QUESTIONS = ["(23 + 19) * 3 - 41", "2 * 3 + 4 * 5", "50 - (3 + 4) * 2"]
PATHS = [["23 + 19 = 42", "42 * 3 = 126"], ["2 * 3 = 6"], ["3 + 4 = 7", "7 * 2 = 14", "50 - 14 = 36"]]


def test_rollout_prm_scores_right_steps_above_wrong_ones(policy):
    task = get_task("arith")
    prm = RolloutPRM(task, policy, rollouts=6)
    problems = task.generate(12, seed=3)
    right = [[solve(p.question)[0]] for p in problems]
    wrong = []
    for [step] in right:
        lhs, value = step.rsplit(" = ", 1)
        wrong.append([f"{lhs} = {int(value) + 7}"])
    qs, golds = [p.question for p in problems], [p.answer for p in problems]
    good = prm.score(qs, right, golds)
    bad = prm.score(qs, wrong, golds)
    mean = lambda xs: sum(x.score for x in xs) / len(xs)  # noqa: E731
    assert mean(good) > mean(bad) + 0.2
    assert all(0 <= s.score <= 1 and "rollouts from this step" in s.reason for s in good + bad)
    final = prm.score([problems[0].question], [solve(problems[0].question)], [problems[0].answer])
    assert final[0].score == 1.0 and final[0].ok
    with pytest.raises(ValueError, match="needs the ground-truth answers"):
        prm.score(qs, right)


@pytest.fixture(scope="module")
def token_prm_dir(tmp_path_factory):
    from transformers import AutoModelForCausalLM, LlamaConfig

    d = tmp_path_factory.mktemp("token-prm")
    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_token_prm_batched_equals_one_by_one(token_prm_dir):
    batched = TokenPRM(str(token_prm_dir), tag="#", batch_tokens=10_000)
    single = TokenPRM(str(token_prm_dir), tag="#", batch_tokens=1)
    a, b = batched.score(QUESTIONS, PATHS), single.score(QUESTIONS, PATHS)
    assert [x.score for x in a] == pytest.approx([x.score for x in b], abs=1e-5)
    assert all(0 < x.score < 1 for x in a)
    assert batched.render("Q", ["a", "b"]) == "Q a #\nb #"
    with pytest.raises(ValueError, match="does not have 'ки' as one token"):
        TokenPRM(str(token_prm_dir))  # the default Math-Shepherd tag is not in a character vocab


def test_token_prm_loads_a_sentencepiece_tokenizer(tmp_path):
    """Math-Shepherd's hub repo ships a sentencepiece `tokenizer.model` and no tokenizer.json;
    transformers reads it only with sentencepiece and protobuf installed (else it asks for
    tiktoken). A tiny one, trained here offline, in a tiny Llama with Math-Shepherd's tag."""
    import io

    import sentencepiece as spm
    from transformers import AutoModelForCausalLM, LlamaConfig

    model = io.BytesIO()
    text = ["Let me compute 42 * 3 = 126 step by step. ки", "The answer is 5. ки", "Wait, 23 + 19 - 1 is 41."] * 30
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, vocab_size=100,
                                   model_type="bpe", user_defined_symbols=["ки", "+", "-"], minloglevel=2,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    prm = TokenPRM(str(tmp_path), device="cpu")  # the default tag ки and tokens + and -
    assert not (tmp_path / "tokenizer.json").exists() and prm.tag_id == 3
    [score] = prm.score(["2 + 3"], [["The answer is 5."]])
    assert 0 < score.score < 1


def hub_snapshot(cache, repo_id: str, files: dict) -> None:
    """Lay `files` (name -> source path or text) out as the Hugging Face cache holds a download."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        (snap / name).write_bytes(src.read_bytes() if hasattr(src, "read_bytes") else src.encode())


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache in tmp_path (what `huggingface_hub` reads hub ids from)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def shard(weights: dict, keys_per_shard: list[list[str]], folder) -> None:
    """Write `weights` as a sharded checkpoint with its model.safetensors.index.json."""
    names = [f"model-{i + 1:05d}-of-{len(keys_per_shard):05d}.safetensors" for i in range(len(keys_per_shard))]
    for name, keys in zip(names, keys_per_shard):
        save_file({k: weights[k] for k in keys}, str(folder / name))
    index = {"metadata": {}, "weight_map": {k: name for name, keys in zip(names, keys_per_shard) for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_qwen_prm_from_a_hub_id_with_a_sharded_checkpoint(qwen_prm_dir, hub_cache):
    """`--prm-model Qwen/Qwen2.5-Math-PRM-7B`: a hub id, resolved to its snapshot folder; the
    head read from the shard that holds it."""
    from safetensors.torch import load_file

    weights = load_file(str(qwen_prm_dir / "model.safetensors"))
    body = sorted(k for k in weights if k.startswith("model."))
    staging = hub_cache.parent / "staging"
    staging.mkdir()
    shard(weights, [body[:5], body[5:] + [k for k in weights if k.startswith("score.")]], staging)
    files = {p.name: p for p in staging.iterdir()}
    files |= {p.name: p for p in qwen_prm_dir.iterdir() if p.name != "model.safetensors"}
    hub_snapshot(hub_cache, "acme/tiny-qwen-prm", files)
    from_hub = QwenPRM("acme/tiny-qwen-prm", device="cpu")
    local = QwenPRM(str(qwen_prm_dir), device="cpu")
    assert [x.score for x in from_hub.score(QUESTIONS, PATHS)] == pytest.approx(
        [x.score for x in local.score(QUESTIONS, PATHS)], abs=1e-6)


def test_a_hub_id_that_is_not_there_is_a_clear_error(hub_cache):
    with pytest.raises(ValueError, match="--prm-model acme/no-such-prm: not a local folder, and not on the hub"):
        QwenPRM("acme/no-such-prm")


def test_the_head_is_read_from_its_shard_only(qwen_prm_dir, tmp_path):
    """A 7B PRM's body shards are ~4 GB each: only the shard the index names for score.* is
    opened (here the body shard is not even a safetensors file), and only score.* read from it."""
    from safetensors.torch import load_file

    weights = load_file(str(qwen_prm_dir / "model.safetensors"))
    body = sorted(k for k in weights if k.startswith("model."))
    shard(weights, [body[:-1], [body[-1]] + [k for k in weights if k.startswith("score.")]], tmp_path)
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"not a safetensors file")
    head = load_head_weights(tmp_path)
    assert sorted(head) == ["score.0.bias", "score.0.weight", "score.2.bias", "score.2.weight"]
    assert all(torch.equal(head[k], weights[k]) for k in head)


def test_qwen_prm_batched_equals_one_by_one(qwen_prm_dir):
    batched = QwenPRM(str(qwen_prm_dir), batch_tokens=10_000)
    single = QwenPRM(str(qwen_prm_dir), batch_tokens=1)
    a, b = batched.score(QUESTIONS, PATHS), single.score(QUESTIONS, PATHS)
    assert [x.score for x in a] == pytest.approx([x.score for x in b], abs=1e-5)
    assert all(0 < x.score < 1 for x in a)
    assert len({round(x.score, 6) for x in a}) > 1  # the head's weights were really loaded
    assert batched.render("Q", ["a", "b"]).count("<extra_0>") == 2


def test_qwen_prm_refuses_a_tokenizer_without_the_step_token(qwen_prm_dir):
    with pytest.raises(ValueError, match="the tokenizer has no '<extra_9>' token"):
        QwenPRM(str(qwen_prm_dir), step_token="<extra_9>")  # else every score is read at <unk>


def test_qwen_prm_refuses_a_checkpoint_without_a_head(token_prm_dir):
    with pytest.raises(ValueError, match="no score.\\* head weights"):
        QwenPRM(str(token_prm_dir))


@pytest.mark.parametrize(
    "reply, score, ok, reason",
    [
        ("Verdict: correct\nReason: 2 + 3 is 5.", 1.0, True, "2 + 3 is 5."),
        ("verdict: **incorrect**\nreason: 42 * 3 is 126, not 116.", 0.0, False, "42 * 3 is 126, not 116."),
        ("Verdict: incorrect", 0.0, False, ""),  # no reason: none is made up for a reflection
        ("I think it is fine", 0.5, False, ""),
    ],
)
def test_read_verdict(reply, score, ok, reason):
    s = read_verdict(reply)
    assert (s.score, s.ok, s.reason) == (score, ok, reason)


def test_judge_prm_runs_on_any_policy(policy):
    prm = JudgePRM(get_task("arith"), policy, max_new_tokens=40)
    scores = prm.score(QUESTIONS, PATHS)
    assert len(scores) == 3 and all(s.score in (0.0, 0.5, 1.0) for s in scores)


class RecordingPolicy(Policy):
    """Replies 'Verdict: correct' and records the temperature each call ran at."""

    delimiter = "\n"

    def __init__(self):
        self.sampling, self.temperatures = SamplingConfig(temperature=1.0), []

    def propose(self, prefixes, n):
        raise NotImplementedError

    def complete(self, prefixes, n, max_new_tokens):
        self.temperatures.append(self.sampling.temperature)
        return [[Proposal("Verdict: correct\nReason: 2 + 3 is 5.", 9, -1.0, "eos")] for _ in prefixes]


def test_judge_is_greedy_even_on_the_trees_sampling_policy():
    policy = RecordingPolicy()
    scores = JudgePRM(get_task("arith"), policy).score(["2 + 3"], [["2 + 3 = 5"]])
    assert scores == [StepScore(1.0, True, "2 + 3 is 5.")]
    assert policy.temperatures == [0.0] and policy.sampling.temperature == 1.0  # restored after


def test_build_prm_errors():
    task = get_task("arith")
    with pytest.raises(ValueError, match="--prm token needs --prm-model"):
        build_prm("token", task)
    with pytest.raises(ValueError, match="unknown PRM 'x'"):
        build_prm("x", task)


def test_build_tree_with_rollout_prm(tmp_path):
    problems = tmp_path / "p.jsonl"
    runner.invoke(app, ["problems", "--n", 2, "--seed", 2, "--out", str(problems)])
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["build-tree", "--problems", str(problems), "--out", str(out),
                                 "--prm", "rollout", "--rollouts", "2", "--depth", "4", "-w", "2", "-K", "1",
                                 "--rollout-tokens", "12"])  # too short for most: some are cut off
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    nodes = [n for row in rows for n in row["nodes"][1:]]
    assert nodes and all(n["verdict"] == "invalid" or "rollouts" in n["reason"] or "final answer" in n["reason"]
                         for n in nodes)
    n, cut = (sum(r["costs"].get(k, 0) for r in rows) for k in ("rollouts", "rollouts_cut_off"))
    assert 0 < cut <= n
    flat = " ".join(result.output.replace("│", " ").split())
    assert "rollouts cut off at their budget" in flat and f"{cut} of {n} (--rollout-tokens 12)" in flat


class BudgetPolicy(Policy):
    """Records each `complete` call's budget; a rollout ends ('eos') within 10 tokens, else is cut."""

    delimiter = "\n"

    def __init__(self, max_step_tokens: int):
        self.sampling, self.budgets = SamplingConfig(max_step_tokens=max_step_tokens), []

    def propose(self, prefixes, n):
        raise NotImplementedError

    def complete(self, prefixes, n, max_new_tokens):
        self.budgets.append((len(prefixes), max_new_tokens))
        cut = max_new_tokens < 10
        return [[Proposal("7", min(10, max_new_tokens), -1.0, "length" if cut else "eos")] * n for _ in prefixes]


@pytest.mark.parametrize("depth, fixed, budgets", [
    (5, None, [(2, 3 * 16), (1, 4 * 16)]),  # the steps left to depth 5, 16 tokens each: one call per budget
    (2, None, [(3, 16)]),  # at or past the depth: still one step's worth
    (None, None, [(3, 256)]),  # no depth known: the old fixed budget
    (5, 8, [(3, 8)]),  # --rollout-tokens 8: every rollout cut off
])
def test_rollout_budget_is_the_steps_left_times_the_step_budget(depth, fixed, budgets):
    policy = BudgetPolicy(max_step_tokens=16)
    prm = RolloutPRM(get_task("arith"), policy, rollouts=2, max_new_tokens=fixed, depth=depth)
    paths = [["2 * 3 = 6"], ["23 + 19 = 42", "42 * 3 = 126"], ["3 + 4 = 7", "7 * 2 = 14"]]
    prm.score(QUESTIONS, paths, ["85", "26", "36"])
    assert sorted(policy.budgets) == sorted(budgets)
    assert prm.last_rollouts == [(2, 2 if fixed else 0)] * 3



# ---------------------------------------------------------------- issue 24: batches by tokens, dtype, read positions


def largest_forward(module, calls: list) -> None:
    """Record (rows, tokens) of every forward of `module` into `calls`."""
    def record(mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append(tuple(ids.shape))
    module.register_forward_pre_hook(record, with_kwargs=True)


@pytest.mark.parametrize("kind", ["token", "qwen"])
def test_model_prms_batch_by_tokens_not_rows(kind, token_prm_dir, qwen_prm_dir):
    """Every forward holds at most --prm-batch-tokens tokens (rows x the longest, padding
    included), and batching changes no score."""
    questions, paths = QUESTIONS * 4, [p[: 1 + i % 3] for i, p in enumerate(PATHS * 4)]
    make = (lambda b: TokenPRM(str(token_prm_dir), tag="#", batch_tokens=b)) if kind == "token" else (  # noqa: E731
        lambda b: QwenPRM(str(qwen_prm_dir), batch_tokens=b))
    prm, calls = make(120), []
    largest_forward(prm.model.base_model if kind == "token" else prm.body, calls)
    scores = prm.score(questions, paths)
    assert len(calls) > 1 and max(rows * tokens for rows, tokens in calls) <= 120
    assert sum(rows for rows, _ in calls) == len(paths)
    assert [s.score for s in scores] == pytest.approx([s.score for s in make(10**6).score(questions, paths)], abs=1e-5)


def test_the_judge_batches_by_prompt_and_reply_tokens():
    """The judge's generate holds at most --prm-batch-tokens tokens: rows x (longest prompt +
    max_new_tokens); verdicts are those of an unbatched judge."""
    from journey.models.transformers_policy import TransformersPolicy

    judge = TransformersPolicy("embedded", sampling=SamplingConfig(temperature=0.0), batch_tokens=900)
    generate, calls = judge.model.generate, []

    def counted(**kw):
        calls.append((kw["input_ids"].shape[0], kw["input_ids"].shape[1] + kw["max_new_tokens"]))
        return generate(**kw)

    judge.model.generate = counted
    scores = JudgePRM(get_task("arith"), judge, max_new_tokens=20).score(QUESTIONS * 2, PATHS * 2)
    assert len(calls) > 1 and max(rows * tokens for rows, tokens in calls) <= 900
    whole = TransformersPolicy("embedded", sampling=SamplingConfig(temperature=0.0))
    assert scores == JudgePRM(get_task("arith"), whole, max_new_tokens=20).score(QUESTIONS * 2, PATHS * 2)


def test_batch_bytes_by_hand():
    """Qwen2.5-7B at bf16, 16,384 tokens: (3584*4 + 18944*3 + 2*28*4*128) * 2 * 16384 bytes."""
    from types import SimpleNamespace

    from journey.models.transformers_policy import batch_bytes

    qwen7b = SimpleNamespace(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                             num_attention_heads=28, num_key_value_heads=4, head_dim=128)
    assert batch_bytes(qwen7b, 16384, 2, cache=True) == 99840 * 2 * 16384
    assert batch_bytes(qwen7b, 16384, 2) == (3584 * 4 + 18944 * 3) * 2 * 16384


def test_check_room_counts_the_batch(token_prm_dir, monkeypatch):
    """The same PRM fits with a small batch and is refused with a huge one."""
    from journey.models.base import GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)  # nothing moves to a GPU here
    TokenPRM(str(token_prm_dir), tag="#", batch_tokens=16384, device="cuda:0")
    with pytest.raises(ValueError, match=r"needs about \d+\.\d GiB on cuda:0, but only 3\.0"):
        TokenPRM(str(token_prm_dir), tag="#", batch_tokens=10**8, device="cuda:0")


def test_prms_load_in_their_trained_dtype(tmp_path):
    """On a GPU: the checkpoint's 16-bit dtype, else bf16 (never a float32 config's float32);
    on the CPU float32."""
    from transformers import LlamaConfig

    from journey.models.transformers_policy import load_dtype

    for name, expected in (("float32", torch.bfloat16), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        folder = tmp_path / name
        LlamaConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, dtype=name).save_pretrained(folder)
        assert load_dtype(str(folder), "cuda:0") == expected
        assert load_dtype(str(folder), "cpu") == torch.float32


def test_token_prm_reads_logits_at_the_tag_only(token_prm_dir):
    """The LM head runs on one row per path (B, h), not (B, T, h); the score is the full model's."""
    prm, shapes = TokenPRM(str(token_prm_dir), tag="#", batch_tokens=10_000), []
    prm.model.get_output_embeddings().register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape)))
    [score] = prm.score(QUESTIONS[:1], PATHS[:1])
    assert shapes == [(1, prm.model.config.vocab_size)]
    batch = prm.tok([prm.render(QUESTIONS[0], PATHS[0])], return_tensors="pt")
    logits = prm.model(**batch).logits[0, (batch["input_ids"][0] == prm.tag_id).nonzero()[-1].item()]
    assert score.score == pytest.approx(torch.softmax(logits[prm.good_bad].float(), -1)[0].item(), abs=1e-6)
