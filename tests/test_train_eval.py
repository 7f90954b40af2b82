"""train (TRL SFT and DPO on the embedded model), eval metrics, and sample-pairs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from journey.cli import app
from journey.models.base import Prefix, Proposal, SamplingConfig
from journey.models.embedded import EMBEDDED_PATH
from journey.models.transformers_policy import TransformersPolicy
from journey.runtime.metrics import majority_vote, mean_and_se, pass_at_k
from journey.stages.evaluate import draw_pairs, score
from journey.tasks import get_task
from journey.tasks.base import Problem

runner = CliRunner()
MSG = [{"role": "user", "content": "2 + 3 * 4"}]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n=8):
    task = get_task("arith")
    return [{"messages": task.messages(p.question) + [{"role": "assistant", "content": "\n".join(task.solution(p.question))}],
             "id": p.id, "kind": "shortcut"} for p in task.generate(n, seed=5)]


def dpo_rows(n=8):
    return [{"prompt": r["messages"][:1], "chosen": r["messages"][1:],
             "rejected": [{"role": "assistant", "content": "1 + 1 = 3\nThe answer is 3."}], "id": r["id"]}
            for r in sft_rows(n)]


def weights_changed(ckpt: Path, base: Path = EMBEDDED_PATH) -> bool:
    a, b = load_file(base / "model.safetensors"), load_file(ckpt / "model.safetensors")
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def sft_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("sft")
    data = write_rows(d / "sft.jsonl", sft_rows())
    result = run("train", "--stage", "sft", "--data", data, "--out", d / "ckpt", "--max-steps", 3,
                 "--batch-size", 4, "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    return d / "ckpt"


def test_sft_changes_weights_and_reloads(sft_ckpt):
    assert weights_changed(sft_ckpt)
    record = json.loads((sft_ckpt / "train.json").read_text())
    assert record["steps"] == 3 and len(record["loss_curve"]) == 3 and (sft_ckpt / "loss.png").stat().st_size > 0
    assert not sft_ckpt.with_name("ckpt.partial").exists()
    policy = TransformersPolicy(sft_ckpt, sampling=SamplingConfig(temperature=0))
    [[out]] = policy.complete([Prefix(MSG)], n=1, max_new_tokens=40)
    assert out.tokens > 0


def test_dpo_changes_weights(sft_ckpt, tmp_path):
    data = write_rows(tmp_path / "dpo.jsonl", dpo_rows())
    out = tmp_path / "dpo"
    result = run("train", "--stage", "dpo", "--data", data, "--model", sft_ckpt, "--out", out,
                 "--max-steps", 2, "--batch-size", 4, "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    assert weights_changed(out, sft_ckpt)
    assert json.loads((out / "train.json").read_text())["config"]["stage"] == "dpo"


def test_trl_accepts_derive_longthought_files(tmp_path):
    """derive-longthought's own files go into TRL's trainers unchanged (one step each)."""
    from tests.test_longthought import hand_tree

    trees = write_rows(tmp_path / "trees.jsonl", [hand_tree().to_json()])
    assert run("derive-longthought", "--trees", trees, "--out-dir", tmp_path / "d", "--trial-prob", 1).exit_code == 0
    for stage, name in (("sft", "sft_journey.jsonl"), ("sft", "sft_shortcut.jsonl"), ("dpo", "dpo_pairs.jsonl")):
        out = tmp_path / name.replace(".jsonl", "")
        result = run("train", "--stage", stage, "--data", tmp_path / "d" / name, "--out", out,
                     "--max-steps", 1, "--lr", "1e-3")
        assert result.exit_code == 0, result.output
        assert weights_changed(out)


def test_mask_wrong_steps_leaves_the_mistakes_out_of_the_loss(tmp_path):
    from transformers import AutoTokenizer

    from journey.stages.train import tokenize_masked

    tok = AutoTokenizer.from_pretrained(EMBEDDED_PATH)
    content = "2 + 3 = 6\nWait, 2 + 3 is 5, not 6.\nBack to the start.\n2 + 3 = 5\nThe answer is 5."
    row = {"prompt": [{"role": "user", "content": "2 + 3"}], "completion": [{"role": "assistant", "content": content}],
           "mask_spans": [[0, 9]]}
    enc = tokenize_masked(tok, row, 512)
    kept = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100]
    assert tok.decode(kept) == content[9:] + "<|end|>"
    assert tok.decode(enc["input_ids"]) == "<|user|>2 + 3<|end|><|assistant|>" + content + "<|end|>"
    # And through the CLI, on derive-longthought's own rows.
    data = write_rows(tmp_path / "j.jsonl", [{"messages": row["prompt"] + row["completion"], "mask_spans": [[0, 9]]}])
    out = tmp_path / "masked"
    result = run("train", "--stage", "sft", "--data", data, "--out", out, "--max-steps", 1, "--lr", "1e-3",
                 "--mask-wrong-steps")
    assert result.exit_code == 0, result.output
    assert weights_changed(out)


@pytest.mark.parametrize(
    "stage, content, message",
    [
        ("sft", '{"prompt": "x"}\n', "sft.jsonl:1: a sft row needs 'messages'"),
        ("sft", '{"messages": [{"role": "user", "content": "x"}]}\n', "sft.jsonl:1: 'messages' must end with an assistant message"),
        ("dpo", '{"prompt": [], "chosen": []}\n', "sft.jsonl:1: a dpo row needs 'rejected'"),
        ("sft", "\n", "sft.jsonl: no rows in the file"),
        ("rl", '{"messages": []}\n', "--stage must be one of sft, dpo, prm, got 'rl'"),
    ],
)
def test_train_bad_input(tmp_path, stage, content, message):
    data = tmp_path / "sft.jsonl"
    data.write_text(content)
    out = tmp_path / "out"
    result = run("train", "--stage", stage, "--data", data, "--out", out)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


def test_train_missing_model(tmp_path):
    data = write_rows(tmp_path / "sft.jsonl", sft_rows(2))
    result = run("train", "--stage", "sft", "--data", data, "--out", tmp_path / "o", "--model", tmp_path / "nope")
    assert result.exit_code == 1 and "no such model directory" in result.output


def test_interrupted_training_leaves_no_finished_folder(tmp_path):
    data = write_rows(tmp_path / "sft.jsonl", sft_rows(16))
    out = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "journey.cli", "train", "--stage", "sft", "--data", str(data),
           "--out", str(out), "--max-steps", "100000", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    partial = tmp_path / "ckpt.partial"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (partial / "trainer").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not out.exists()


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("n, c, k, want", [(4, 1, 2, 0.5), (5, 0, 3, 0.0), (3, 3, 1, 1.0), (10, 3, 1, 0.3),
                                           (4, 2, 4, 1.0), (6, 2, 2, 1 - 6 / 15)])
def test_pass_at_k_hand_worked(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_and_se():
    assert majority_vote(["3", None, "4", "3"]) == "3"
    assert majority_vote(["4", "3"]) == "4" and majority_vote([None]) is None
    assert mean_and_se([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, (1 / 3) ** 0.5 / 2))


def G(text, tokens=10):
    return Proposal(text, tokens, -1.0, "eos")


def test_score_on_hand_built_generations():
    task = get_task("arith")
    problems = [Problem("a", "1 + 2", "3"), Problem("b", "2 * 3", "6")]
    greedy = [G("1 + 2 = 3\nThe answer is 3.", 20), G("2 * 3 = 5\nWait, 2 * 3 is 6, not 5.\nThe answer is 6.", 40)]
    samples = [[G("The answer is 3."), G("The answer is 4."), G("The answer is 4."), G("x")],
               [G("The answer is 6."), G("The answer is 6."), G("The answer is 7."), G("The answer is 6.")]]
    m, records = score(task, problems, greedy, samples)
    assert m["accuracy"] == 1.0 and m["accuracy_se"] == 0.0
    assert m["maj@4"] == 0.5  # a: majority 4 (wrong); b: majority 6 (right)
    assert m["pass@1"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert m["pass@4"] == 1.0
    assert m["mean_tokens"] == 30.0
    assert m["reflection_words_per_answer"]["Wait"] == 0.5
    assert records[1]["answer"] == "6" and records[0]["sample_answers"][3] is None


def test_draw_pairs_pairs_right_with_wrong():
    import random

    task = get_task("arith")
    p = Problem("a", "1 + 2", "3")
    texts = ["The answer is 3.", "The answer is 3.", "1 + 2 = 3\nThe answer is 3.", "The answer is 4.", "oops"]
    right = [task.check_answer(task.extract_answer(t), p.answer) for t in texts]
    pairs = draw_pairs(task, p, texts, right, pairs=5, rng=random.Random(0))
    assert len(pairs) == 1  # two distinct right texts; one real wrong answer ("oops" states none)
    assert all(r["rejected"][0]["content"] == "The answer is 4." for r in pairs)
    for row in pairs:
        assert task.check_answer(task.extract_answer(row["chosen"][0]["content"]), "3")
        assert not task.check_answer(task.extract_answer(row["rejected"][0]["content"]), "3")


def test_eval_and_sample_pairs_cli(tmp_path):
    problems = tmp_path / "p.jsonl"
    assert run("problems", "--n", 12, "--seed", 4, "--out", problems).exit_code == 0
    metrics = tmp_path / "metrics.json"
    result = run("eval", "--model", "embedded", "--problems", problems, "-k", 3, "--out", metrics)
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    assert m["problems"] == 12 and 0 <= m["accuracy"] <= 1 and "maj@3" in m and m["pass@3"] >= m["pass@1"]
    assert len((tmp_path / "metrics.generations.jsonl").read_text().splitlines()) == 12
    pairs = tmp_path / "pairs.jsonl"
    result = run("sample-pairs", "--model", "embedded", "--problems", problems, "--samples", 8, "--out", pairs)
    assert result.exit_code == 0, result.output
    task = get_task("arith")
    golds = {json.loads(line)["id"]: json.loads(line)["answer"] for line in problems.read_text().splitlines()}
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows
    for r in rows:
        assert task.check_answer(task.extract_answer(r["chosen"][0]["content"]), golds[r["id"]])
        assert not task.check_answer(task.extract_answer(r["rejected"][0]["content"]), golds[r["id"]])


def test_eval_bad_input(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "question": "1"}\n')
    result = run("eval", "--model", "embedded", "--problems", problems, "--out", tmp_path / "m.json")
    assert result.exit_code == 1 and "p.jsonl:1: missing 'answer'" in result.output
    result = run("eval", "--model", tmp_path / "none", "--problems", problems, "--out", tmp_path / "m.json")
    assert result.exit_code == 1
    assert not (tmp_path / "m.json").exists()
