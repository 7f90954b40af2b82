"""`journey train --stage prm`: a process reward model from derive-longthought's PRM rows.

    journey train --stage prm --objective pointwise --data data/prm_steps.jsonl --out ckpt/prm
    journey train --stage prm --objective pairwise --data data/prm_pairs.jsonl --out ckpt/prm-bt

- **pointwise** (o1-Coder's point-wise PRM, Math-Shepherd's soft labels): rows of
  prm_steps.jsonl (`prompt`, `steps`, `labels`); binary cross-entropy with logits on the head's
  logit at every step end, against the step's label (0/1, or a soft value in [0, 1]).
- **pairwise** (Bradley–Terry): rows of prm_pairs.jsonl (`prompt`, `steps`, `chosen`,
  `rejected`); loss −log σ(r_chosen − r_rejected), r = the logit at the end of the last step of
  prefix + chosen (or rejected).

The model is `AutoModelForTokenClassification(num_labels=1)` on the starting checkpoint's body
(see `journey.models.trained_prm`). We train it with transformers' `Trainer` and a loss of our
own rather than TRL's `RewardTrainer`: TRL 1.16 has no PRM trainer any more, and its
RewardTrainer scores only a sequence's end through a sequence-classification head, while the
point-wise objective needs a label at every step end in one forward pass. One head for both
objectives means one way to read scores (`--prm trained`), whichever objective made them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from journey.config import TrainConfig
from journey.models.embedded import resolve_model
from journey.models.trained_prm import encode, write_card
from journey.runtime.io import DataError

OBJECTIVES = ("pointwise", "pairwise")
PRM_KEYS = {"pointwise": ("prompt", "steps", "labels"), "pairwise": ("prompt", "steps", "chosen", "rejected")}


def check_prm_row(row: dict, objective: str, where: str) -> dict:
    """A PRM row for `objective`, checked (DataError naming file:line and what is wrong)."""
    missing = [k for k in PRM_KEYS[objective] if k not in row]
    if missing:
        hint = ""
        if objective == "pointwise" and "chosen" in row:
            hint = " (this is a pairs row: use --objective pairwise)"
        elif objective == "pairwise" and "labels" in row:
            hint = " (this is a steps row: use --objective pointwise)"
        raise DataError(f"{where}: a {objective} PRM row needs {', '.join(map(repr, missing))}{hint}")
    if not isinstance(row["prompt"], list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                      for m in row["prompt"]):
        raise DataError(f"{where}: 'prompt' must be a list of chat messages")
    steps = row["steps"]
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise DataError(f"{where}: 'steps' must be a list of strings")
    if objective == "pointwise":
        labels = row["labels"]
        if not (isinstance(labels, list) and len(labels) == len(steps) and steps and all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1
                for x in labels)):
            raise DataError(f"{where}: 'labels' must be one number in [0, 1] per step ({len(steps)} steps)")
    else:
        for k in ("chosen", "rejected"):
            if not isinstance(row[k], str) or not row[k].strip():
                raise DataError(f"{where}: {k!r} must be a non-empty string (a step)")
    delimiter = row.get("step_delimiter", "\n")
    if not isinstance(delimiter, str) or not delimiter:
        raise DataError(f"{where}: 'step_delimiter' must be a non-empty string")
    return row


def featurize(tok, rows: list[dict], objective: str, max_length: int, delimiter: str) -> list[dict]:
    """Token ids and step-end positions of every row (with labels, or the two sides of a pair)."""
    out = []
    for row in rows:
        if objective == "pointwise":
            ids, ends = encode(tok, row["prompt"], row["steps"], delimiter, max_length)
            labels = [float(x) for x in row["labels"]][len(row["labels"]) - len(ends):]
            out.append({"input_ids": ids, "ends": ends, "labels": labels})
        else:
            c_ids, c_ends = encode(tok, row["prompt"], [*row["steps"], row["chosen"]], delimiter, max_length)
            r_ids, r_ends = encode(tok, row["prompt"], [*row["steps"], row["rejected"]], delimiter, max_length)
            out.append({"chosen_ids": c_ids, "chosen_end": c_ends[-1],
                        "rejected_ids": r_ids, "rejected_end": r_ends[-1]})
    return out


def pad(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids right-padded with `value`, and the attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
    return ids, mask


class Collator:
    """Batches of featurized rows: pointwise -> ids, mask, (B, T) labels and label mask;
    pairwise -> the chosen rows then the rejected rows, and each row's last step end."""

    def __init__(self, objective: str, pad_id: int):
        self.objective, self.pad_id = objective, pad_id

    def __call__(self, rows: list[dict]) -> dict:
        if self.objective == "pointwise":
            ids, mask = pad([r["input_ids"] for r in rows], self.pad_id)
            labels = torch.zeros(ids.shape)
            label_mask = torch.zeros(ids.shape)
            for b, r in enumerate(rows):
                for e, y in zip(r["ends"], r["labels"]):
                    labels[b, e], label_mask[b, e] = y, 1.0
            return {"input_ids": ids, "attention_mask": mask, "step_labels": labels, "step_mask": label_mask}
        ids, mask = pad([r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows], self.pad_id)
        ends = torch.tensor([r["chosen_end"] for r in rows] + [r["rejected_end"] for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "ends": ends}


def make_trainer_class():
    from transformers import Trainer

    class PRMTrainer(Trainer):
        """transformers' Trainer with the point-wise or pair-wise PRM loss (module docstring)."""

        objective = "pointwise"

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[..., 0]
            if self.objective == "pointwise":  # logits (B, T); labels only at step ends
                mask = inputs["step_mask"]
                per = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits.float(), inputs["step_labels"], reduction="none")
                loss = (per * mask).sum() / mask.sum().clamp(min=1.0)
            else:  # rows 0..B-1 chosen, B..2B-1 rejected
                r = logits.float().gather(1, inputs["ends"].unsqueeze(1)).squeeze(1)
                half = r.shape[0] // 2
                loss = -torch.nn.functional.logsigmoid(r[:half] - r[half:]).mean()
            return (loss, {"logits": logits}) if return_outputs else loss

    return PRMTrainer


def new_head_model(auto_class, path: str):
    """The starting checkpoint with a fresh one-logit head. transformers reports the head as
    "MISSING" from the checkpoint; that is the point here, so the report is silenced."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return auto_class.from_pretrained(path, num_labels=1)
    finally:
        hf_logging.set_verbosity(level)


def build_prm_trainer(cfg: TrainConfig, rows: list[dict], output_dir: Path, callbacks: list):
    """The PRM model (a token-classification head on the starting model) and its Trainer."""
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer, TrainingArguments

    delimiters = {r.get("step_delimiter", "\n") for r in rows}
    if len(delimiters) > 1:
        raise DataError(f"--data: rows end steps with different delimiters {sorted(map(repr, delimiters))}")
    delimiter = delimiters.pop()
    from transformers import set_seed

    path = resolve_model(cfg.model)
    tok = AutoTokenizer.from_pretrained(path)
    set_seed(cfg.seed)  # the new head's weights come from it: a rerun trains the same PRM
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = new_head_model(AutoModelForTokenClassification, path)
    model.config.pad_token_id = tok.pad_token_id
    on_gpu = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, seed=cfg.seed, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(), disable_tqdm=True,
        remove_unused_columns=False, **cfg.extra)
    features = featurize(tok, rows, cfg.objective, cfg.max_length, delimiter)
    trainer_class = make_trainer_class()
    trainer_class.objective = cfg.objective
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(features),
                            data_collator=Collator(cfg.objective, tok.pad_token_id),
                            processing_class=tok, callbacks=callbacks)
    return trainer, delimiter


def save_prm(trainer, folder: Path, delimiter: str, cfg: TrainConfig) -> None:
    trainer.model.save_pretrained(folder)
    trainer.processing_class.save_pretrained(folder)
    write_card(folder, delimiter, cfg.objective, cfg.model)
