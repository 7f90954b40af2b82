"""stages/train.py: TRL SFT and DPO on the embedded model, derive-longthought's files trained on, masked
wrong steps, bad input, and checkpoints that only a finished run replaces."""

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

from journey.models.base import Prefix, SamplingConfig
from journey.models.embedded import EMBEDDED_PATH
from journey.models.transformers_policy import TransformersPolicy
from journey.tasks import get_task
from tests.helpers import hand_tree, run, write_rows, write_sft_rows

MSG = [{"role": "user", "content": "2 + 3 * 4"}]


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
    assert not sft_ckpt.with_name(".ckpt.partial").exists()
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
        ("nope", '{"messages": []}\n', "--stage must be one of sft, dpo, prm, "),  # the list goes on (tcg, ...)
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
    partial = tmp_path / ".ckpt.partial"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (partial / "trainer").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not out.exists()



# ---------------------------------------------------------------- the old checkpoint kept; rows of the wrong types


def test_failed_train_keeps_the_old_checkpoint_and_no_partial(tmp_path, monkeypatch):
    from journey.stages import train as train_mod
    from journey.stages.train import TrainConfig, run_train

    data = write_sft_rows(tmp_path / "d.jsonl")
    out = tmp_path / "ck"
    out.mkdir()
    (out / "config.json").write_text("{}")  # the old checkpoint
    (tmp_path / ".ck.partial").mkdir()  # left by a killed run
    (tmp_path / ".ck.partial" / "junk").write_text("x")

    def broken(cfg, rows, folder):
        assert not (folder / "junk").exists()  # the stale partial was removed first
        (folder / "half").write_text("x")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train_mod, "train_into", broken)
    with pytest.raises(RuntimeError):
        run_train(TrainConfig("sft", [data], out, max_steps=1, overwrite=True))
    assert (out / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "d.jsonl"]


def test_train_overwrite_replaces_only_when_the_new_one_is_saved(tmp_path):
    data = write_sft_rows(tmp_path / "d.jsonl")
    out = tmp_path / "ck"
    out.mkdir()
    (out / "marker").write_text("old")
    args = ["train", "--stage", "sft", "--data", data, "--out", out, "--max-steps", 1, "--batch-size", 2]
    refused = run(*args)
    assert refused.exit_code == 1 and "already exists" in refused.output
    refused = run(*args, "--overwrite")  # a folder of other files is never replaced
    assert refused.exit_code == 1 and "the folder holds other files" in refused.output
    (out / "config.json").write_text("{}")  # an earlier checkpoint is
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and not (out / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "d.jsonl"]


U = {"role": "user", "content": "1 + 2"}


A = {"role": "assistant", "content": "The answer is 3."}


BAD_TRAIN_ROWS = [
    ("sft", {"messages": [U, {"role": "assistant", "content": 5}]}, ":1: 'messages' message 1 must be"),
    ("sft", {"messages": [{"role": "robot", "content": "x"}, A]}, ":1: 'messages' message 0 must be"),
    ("sft", {"messages": "hello"}, ":1: 'messages' must be a non-empty list of messages"),
    ("sft", {"messages": [U, A], "mask_spans": [[0, 999]]}, ":1: 'mask_spans' must be [start, end]"),
    ("sft", {"messages": [U, A], "mask_spans": "all"}, ":1: 'mask_spans' must be [start, end]"),
    ("dpo", {"prompt": [U], "chosen": "x", "rejected": [A]}, ":1: 'chosen' must be a non-empty list"),
    ("dpo", {"prompt": "q", "chosen": "", "rejected": "r"}, ":1: 'chosen' and 'rejected' must not be empty"),
    ("dpo", {"prompt": [U], "chosen": [A], "rejected": [{"role": "assistant"}]}, ":1: 'rejected' message 0 must be"),
]


@pytest.mark.parametrize("stage, row, message", BAD_TRAIN_ROWS)
def test_train_rows_of_the_wrong_types_are_refused(tmp_path, stage, row, message):
    data = write_rows(tmp_path / "d.jsonl", [row])
    result = run("train", "--stage", stage, "--data", data, "--out", tmp_path / "ck")
    assert result.exit_code == 1 and f"d.jsonl{message}" in result.output, result.output
    assert not (tmp_path / "ck").exists()


def test_dpo_rows_of_two_formats_are_refused(tmp_path):
    data = write_rows(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                             {"prompt": [U], "chosen": [A], "rejected": [A]}])
    result = run("train", "--stage", "dpo", "--data", data, "--out", tmp_path / "ck")
    assert result.exit_code == 1 and "use one format" in result.output and "d.jsonl:2" in result.output
