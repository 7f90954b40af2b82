"""`journey train --stage tcg`: train a test-case generator (o1-Coder's TCG, step 1 of its loop).

    journey problems --task code --n 2000 --seed 7 --out code_train.jsonl
    journey train --stage tcg --data code_train.jsonl --model embedded-code --out ckpt/tcg \
        --lr 1e-3 --dpo-lr 1e-4 --max-steps 200
    journey gen-tests --mode outputs --problems held_out.jsonl --model ckpt/tcg --out tests.jsonl --n 2

The data are code problems with given tests and a reference `solution` (what `journey problems
--task code` writes). The prompt is the problem and the reference (`tcg_output_messages`); the
answer is the given tests, one a line, inputs with their expected outputs (`render_tests`).
Phase 1, SFT on the given tests. Phase 2, DPO from the SFT model on the same prompts: chosen = the
given tests, rejected = the same tests with their expected outputs shuffled across them
(`shuffled_outputs`, o1-Coder's construction): right inputs, right format, outputs that belong to
another input, so the preference falls on the one thing SFT learns worst, the output of the input.
A problem whose tests all share one output has no rejected side and is left out of DPO (counted).

Both phases are `journey.stages.train.train_into` (TRL's SFTTrainer and DPOTrainer, called, not
copied), with the flags of `train`: `--lr` is the SFT phase's, `--dpo-lr` the DPO phase's,
`--epochs`, `--max-steps`, `--batch-size`, `--beta` apply as for `train`. OUT/ holds the TCG (the
DPO checkpoint) and OUT/sft/ the SFT one, each with its train.json and loss.png; OUT/train.json
records both phases. The folder is made as `train` makes its folder (`run_train`: one run per OUT,
trained in OUT.partial/ and renamed only when both phases are saved; a killed run is started over).
This module imports nothing of `train` (it calls back `train_into`), so the two stay acyclic.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path

from journey.config import TrainConfig
from journey.runtime.io import DataError, write_text_atomic
from journey.stages.tcg import problems_with_reference
from journey.tasks.code import render_tests, tcg_output_messages


def load_tcg_problems(files: list[Path]) -> list[dict]:
    """The code problems of every `--data` file, each with tests and a reference solution."""
    return [p for path in files for p in problems_with_reference(path, "--data")]


def shuffled_outputs(tests: list[dict], rng: random.Random, tries: int = 20) -> list[dict] | None:
    """The tests with their expected outputs shuffled across them (o1-Coder's rejected tests).
    Of up to `tries` seeded shuffles, the first that changes every test's output, else the one
    that changes most; None when no shuffle changes any (one test, or every output the same).

    [1 -> 4, 2 -> 7] -> [1 -> 7, 2 -> 4] (the only shuffle that changes them); [1 -> 5, 2 -> 5] -> None
    """
    outputs = [t["output"] for t in tests]
    keys = [json.dumps(o, sort_keys=True) for o in outputs]  # 1 and 1.0 differ, as same_output has it
    best, changed_best = None, 0
    for _ in range(tries):
        order = list(range(len(tests)))
        rng.shuffle(order)
        changed = sum(keys[j] != k for j, k in zip(order, keys))
        if changed > changed_best:
            best, changed_best = order, changed
        if changed == len(tests):
            break
    if best is None:
        return None
    return [{"input": t["input"], "output": outputs[j]} for t, j in zip(tests, best)]


def tcg_rows(problems: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(SFT rows, DPO rows) in the shapes `train_into` takes: SFT prompt-completion rows with the
    given tests as the completion; DPO rows with them chosen and `shuffled_outputs` rejected."""
    rng, sft, dpo = random.Random(seed), [], []
    for p in problems:
        prompt = tcg_output_messages(p.get("question", ""), p["solution"])
        chosen = [{"role": "assistant", "content": render_tests(p["tests"])}]
        sft.append({"prompt": prompt, "completion": chosen, "mask_spans": []})
        wrong = shuffled_outputs(p["tests"], rng)
        if wrong is not None:
            dpo.append({"prompt": prompt, "chosen": chosen,
                        "rejected": [{"role": "assistant", "content": render_tests(wrong)}]})
    return sft, dpo


def phase(record: dict) -> dict:
    """What train.json keeps of one phase's own record."""
    keys = ("rows", "steps", "train_loss", "seconds", "loss_curve")
    return {k: record[k] for k in keys} | {"lr": record["config"]["lr"]}


def train_tcg_into(cfg: TrainConfig, problems: list[dict], folder: Path, train_into) -> dict:
    """SFT into `folder`/sft, then DPO from it into `folder` (both by `train_into(cfg, rows,
    folder)`, the `train` stage's); train.json in `folder` records both phases."""
    sft_rows, dpo_rows = tcg_rows(problems, cfg.seed)
    if not dpo_rows:
        raise DataError(f"--data {cfg.data[0]}: no problem has two tests with different outputs, so DPO has "
                        "no rejected side (shuffled outputs); give problems with several tests")
    sft = train_into(replace(cfg, stage="sft", dpo_lr=None), sft_rows, folder / "sft")
    dpo = train_into(replace(cfg, stage="dpo", model=str(folder / "sft"), lr=cfg.dpo_lr, dpo_lr=None),
                     dpo_rows, folder)
    record = {
        **dpo,
        "command": "train --stage tcg",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items() if k != "data"},
        "base_model": cfg.model,
        "rows": len(problems),
        "steps": sft["steps"] + dpo["steps"],
        "seconds": round(sft["seconds"] + dpo["seconds"], 1),
        "tcg": {"problems": len(problems), "sft_rows": len(sft_rows), "dpo_pairs": len(dpo_rows),
                "no_rejected_side": len(problems) - len(dpo_rows)},
        "phases": {"sft": phase(sft), "dpo": phase(dpo)},  # loss_curve above: the DPO phase's
    }
    write_text_atomic(folder / "train.json", json.dumps(record, indent=2, default=str) + "\n")
    return record
