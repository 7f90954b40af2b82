"""The `trained` PRM: a checkpoint made by `journey train --stage prm`, read at step ends.

    journey train --stage prm --objective pointwise --data data/prm_steps.jsonl --out ckpt/prm
    journey build-tree --prm trained --prm-model ckpt/prm ...

The model is a causal LM body with a one-logit token-classification head
(`AutoModelForTokenClassification`, num_labels=1), started from a policy checkpoint. Its input is
the policy's own prompt: the chat template's user turn, then the assistant's steps, each
followed by the task's step delimiter. A step's score is sigmoid(logit) at the last token of
the delimiter that ends it — the point where the step is complete and nothing after it is
seen. Point-wise training puts a binary (or soft) cross-entropy on every step end of a path;
pair-wise training puts Bradley–Terry on the logits at the last step end of two sibling paths.
Both write the same kind of checkpoint, and `prm.json` beside the weights says how to read it:

    {"format": "journey.prm/v1", "head": "token_classification", "step_delimiter": "\\n",
     "score": "sigmoid(logit) at the last token of each step's delimiter", "objective": ...}

Scores are batched like every PRM: one forward pass per `batch_size` paths. The verdict is
score >= 0.5; the reason is empty (a number explains nothing; reflections then show a doubt).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from journey.models.embedded import resolve_model
from journey.models.prm import PRM, StepScore
from journey.tasks.base import Task

PRM_FORMAT = "journey.prm/v1"
PRM_CARD = "prm.json"


def encode(tok, prompt: list[dict], steps: list[str], delimiter: str,
           max_length: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and steps, and the index of each step's end token.

    The end of step i is the token holding the last character of the delimiter after it. If the
    text is longer than `max_length`, tokens are dropped from the left (the prompt's start), so
    the last steps keep their ends; a step that no longer starts inside the window loses its end
    (a score must see the whole step).
    """
    text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    spans = []  # (first char, last char) of each step with its delimiter
    for step in steps:
        spans.append((len(text), len(text) + len(step) + len(delimiter) - 1))
        text += step + delimiter
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]

    def token_at(c: int) -> int:  # the token holding character c
        return next((t for t, (a, b) in enumerate(offsets) if a <= c < b), len(ids) - 1)

    steps_at = [(token_at(a), token_at(b)) for a, b in spans]
    cut = len(ids) - max_length if max_length and len(ids) > max_length else 0
    return ids[cut:], [e - cut for s, e in steps_at if s >= cut]


def write_card(folder: Path, delimiter: str, objective: str, base_model: str) -> None:
    """`prm.json`: how to read this checkpoint's scores."""
    card = {"format": PRM_FORMAT, "head": "token_classification", "num_labels": 1,
            "step_delimiter": delimiter, "objective": objective, "base_model": base_model,
            "score": "sigmoid(logit) at the last token of each step's delimiter"}
    (Path(folder) / PRM_CARD).write_text(json.dumps(card, indent=2) + "\n")


def read_card(path: str | Path) -> dict:
    """The checkpoint's `prm.json`, checked; ValueError naming --prm-model otherwise."""
    card_path = Path(resolve_model(str(path))) / PRM_CARD
    if not card_path.is_file():
        raise ValueError(f"--prm-model {path}: no {PRM_CARD} there (not made by `journey train --stage prm`)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{card_path}: not valid JSON") from None
    if not isinstance(card, dict) or card.get("format") != PRM_FORMAT:
        raise ValueError(f"{card_path}: expected format {PRM_FORMAT!r}")
    return card


class TrainedPRM(PRM):
    """A `journey train --stage prm` checkpoint (see module docstring)."""

    name = "trained"

    def __init__(self, model: str, task: Task, batch_size: int = 32, device: str | None = None,
                 max_length: int = 2048):
        from transformers import AutoModelForTokenClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars speak for the run
        card = read_card(model)
        if card["step_delimiter"] != task.step_delimiter:
            raise ValueError(f"--prm-model {model} reads steps ended by {card['step_delimiter']!r}; "
                             f"task {task.name!r} ends them with {task.step_delimiter!r}")
        path = resolve_model(model)
        self.task, self.batch_size, self.max_length = task, batch_size, max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForTokenClassification.from_pretrained(path).to(self.device).eval()

    @torch.inference_mode()
    def step_logits(self, questions: list[str], paths: list[list[str]]) -> list[list[float]]:
        """The logit at every step end of every path (batched, right-padded)."""
        encoded = [encode(self.tok, self.task.messages(q), s, self.task.step_delimiter, self.max_length)
                   for q, s in zip(questions, paths)]
        out: list[list[float]] = []
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        for i in range(0, len(encoded), self.batch_size):
            chunk = encoded[i : i + self.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (row, _) in enumerate(chunk):
                ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logits = logits[..., 0].float().cpu()  # (B, T)
            out += [[logits[r, e].item() for e in ends] for r, (_, ends) in enumerate(chunk)]
        return out

    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        scores = []
        for logits in self.step_logits(questions, paths):
            p = torch.sigmoid(torch.tensor(logits[-1])).item() if logits else 0.0
            scores.append(StepScore(p, p >= 0.5, ""))
        return scores
