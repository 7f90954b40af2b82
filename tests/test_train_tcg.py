"""stages/train_tcg.py: the trained test-case generator's data (the given tests chosen, their
outputs shuffled across tests rejected, worked by hand) and a few-step `train --stage tcg` on a
tiny model (SFT, then DPO from it) that changes the weights and writes train.json."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from journey.stages.train_tcg import shuffled_outputs, tcg_rows
from journey.tasks.code import CodeTask
from tests.helpers import run, write_rows


def t(x, y):
    return {"input": [x], "output": y}


@pytest.mark.parametrize("tests,allowed", [
    ([t(1, 4), t(2, 7)], [[7, 4]]),  # the only shuffle that changes both
    ([t(1, "a"), t(2, "b"), t(3, "c")], [["b", "c", "a"], ["c", "a", "b"]]),  # the two derangements
    ([t(1, 1), t(2, 1), t(3, 2)], [[1, 2, 1], [2, 1, 1]]),  # no derangement: the best changes two
    ([t(1, 1), t(2, 1.0)], [[1.0, 1]]),  # an int and a float are different outputs
    ([t(1, 5), t(2, 5)], None),  # every output the same: no rejected side
    ([t(1, 5)], None),
])
def test_shuffled_outputs_hand_worked(tests, allowed):
    for seed in range(5):
        got = shuffled_outputs(tests, random.Random(seed))
        if allowed is None:
            assert got is None
            continue
        assert [g["input"] for g in got] == [x["input"] for x in tests]  # inputs stay in place
        assert [g["output"] for g in got] in allowed


def test_tcg_rows_hand_worked():
    p = {"id": "p", "question": "Write f(x): return the sum.", "solution": "def f(x):\n    return sum(x)",
         "tests": [t([1, 2], 3), t([], 0)]}
    same = {**p, "id": "q", "tests": [t([0], 0), t([], 0)]}
    sft, dpo = tcg_rows([p, same], seed=0)
    prompt = [{"role": "user", "content": "Tests for: Write f(x): return the sum.\n"
                                          "```python\ndef f(x):\n    return sum(x)\n```"}]
    assert sft[0] == {"prompt": prompt, "completion": [{"role": "assistant", "content": "[[1, 2]] -> 3\n[[]] -> 0"}],
                      "mask_spans": []}
    assert len(sft) == 2 and len(dpo) == 1  # q's outputs are all 0: SFT only
    assert dpo[0] == {"prompt": prompt, "chosen": sft[0]["completion"],
                      "rejected": [{"role": "assistant", "content": "[[1, 2]] -> 0\n[[]] -> 3"}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama with the embedded tokenizer, and code problems to train it on."""
    from transformers import AutoModelForCausalLM

    from journey.models.embedded import build_config, build_tokenizer

    d = tmp_path_factory.mktemp("tcg")
    tok = build_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(build_config(tok, hidden_size=32, layers=1, heads=2)).save_pretrained(d / "base")
    tok.save_pretrained(d / "base")
    data = write_rows(d / "code.jsonl", [p.to_row() for p in CodeTask().generate(6, seed=3)])
    return d, data


def weights(folder) -> dict:
    return load_file(folder / "model.safetensors")


def changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_train_tcg_few_steps(tiny):
    d, data = tiny
    out = d / "ckpt"
    r = run("train", "--stage", "tcg", "--data", data, "--model", d / "base", "--out", out, "--max-steps", 2,
            "--batch-size", 2, "--lr", "1e-2", "--dpo-lr", "1e-2", "--max-length", 512)
    assert r.exit_code == 0, r.output
    base, sft, tcg = weights(d / "base"), weights(out / "sft"), weights(out)
    assert changed(base, sft) and changed(sft, tcg)  # SFT moved the base, DPO moved the SFT model
    record = json.loads((out / "train.json").read_text())
    assert record["command"] == "train --stage tcg" and record["base_model"] == str(d / "base")
    assert record["tcg"] == {"problems": 6, "sft_rows": 6, "dpo_pairs": 6, "no_rejected_side": 0}
    assert record["phases"]["sft"]["steps"] == record["phases"]["dpo"]["steps"] == 2 and record["steps"] == 4
    assert record["phases"]["sft"]["lr"] == record["phases"]["dpo"]["lr"] == 1e-2
    assert json.loads((out / "sft" / "train.json").read_text())["command"] == "train --stage sft"
    assert (out / "loss.png").is_file() and not out.with_name("ckpt.partial").exists()


@pytest.mark.parametrize("rows,flags,message", [
    ([{"id": "a", "entry_point": "f", "tests": [t(1, 1), t(2, 2)]}], [], "has no reference 'solution'"),
    ([{"id": "a", "entry_point": "f", "solution": "def f(x):\n    return 0", "tests": [t(1, 0), t(2, 0)]}], [],
     "no problem has two tests with different outputs"),
])
def test_train_tcg_bad_data(tiny, rows, flags, message):
    d, _ = tiny
    data = write_rows(d / "bad.jsonl", rows)
    r = run("train", "--stage", "tcg", "--data", data, "--model", d / "base", "--out", d / "bad-out", "--max-steps", 1,
            *flags)
    assert r.exit_code == 1 and message in r.output and "--data" in r.output, r.output
    assert not (d / "bad-out").exists() and not (d / "bad-out.partial").exists()


def test_dpo_lr_is_for_tcg_only(tiny):
    d, data = tiny
    r = run("train", "--stage", "sft", "--data", data, "--out", d / "x", "--dpo-lr", "1e-4")
    assert r.exit_code == 1 and "--dpo-lr is for --stage tcg" in r.output
