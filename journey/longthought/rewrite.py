"""Optional rewrite of journey drafts by an LLM (the paper's GPT-4o step), with our published prompt.

The prompt lives beside this file (`rewrite_prompt.md`); the paper never published theirs. It
asks the model to keep every step, wrong ones and reflections included, and to end with the
draft's answer. A rewrite whose final answer no longer checks against the ground truth is
discarded in favour of the draft, and counted. Any `Policy` backend can rewrite. Each draft's
seed is hashed from the run seed and its text (`rewrite_seed`), not its place in the list: vLLM
draws sample j of a request seeded s from s + j, so consecutive seeds would share streams.

    journey derive-longthought --trees trees.jsonl --out-dir data --rewrite-model PATH
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from journey.models.base import Policy, Prefix
from journey.tasks.base import Task

PROMPT = (Path(__file__).parent / "rewrite_prompt.md").read_text()


def rewrite_prompt(question: str, draft: str) -> list[dict]:
    """The chat messages asking for a rewrite of `draft`."""
    return [{"role": "user", "content": PROMPT.format(question=question, draft=draft)}]


def rewrite_seed(seed: int, question: str, draft: str) -> int:
    """A 31-bit seed for rewriting `draft`, from the run seed and the texts (stable across runs,
    the same wherever the draft sits in a batch)."""
    digest = hashlib.sha256("\x00".join([str(seed), question, draft]).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def rewrite_drafts(
    policy: Policy, task: Task, items: list[tuple[str, str, str]], max_new_tokens: int, seed: int = 0
) -> tuple[list[str], int]:
    """Rewrite (question, draft, gold answer) items; returns the texts kept and how many drafts
    were kept because the rewrite's answer did not check (or it came back empty/cut off)."""
    prefixes = [Prefix(rewrite_prompt(q, d), [], seed=rewrite_seed(seed, q, d)) for q, d, _ in items]
    outs = policy.complete(prefixes, n=1, max_new_tokens=max_new_tokens)
    texts, fallbacks = [], 0
    for (_, draft, gold), [out] in zip(items, outs):
        ok = out.finish != "length" and out.text.strip() and task.check_answer(
            task.extract_answer(out.text), gold)
        texts.append(out.text.strip() if ok else draft)
        fallbacks += not ok
    return texts, fallbacks
