"""The `judge` PRM: an LLM asked whether a step is right and why (the paper used o1-mini so).

The prompt is `judge_prompt.md` beside this file. The judge answers "Verdict: correct|incorrect"
and "Reason: ..."; the verdict gives the score (1 or 0) and the reason is kept, so
derive-longthought can write reflections from it. A reason is only ever the judge's own words:
a reply without one keeps an empty reason (a reflection then doubts the step instead of saying
"the judge rejects it"), and a reply that cannot be read scores 0.5, not ok, with an empty
reason; how many replies could not be read is logged. Any policy backend can judge, all steps
of a call in one batched call, always greedy: a judge that is the tree's own (sampling) policy
is switched to temperature 0 for the call, so a verdict never depends on a draw.

    journey build-tree --prm judge --prm-model Qwen/Qwen2.5-7B-Instruct ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from journey.models.base import Policy, Prefix
from journey.models.prm import PRM, StepScore
from journey.tasks.base import Task

log = logging.getLogger(__name__)
PROMPT = (Path(__file__).parent / "judge_prompt.md").read_text()
VERDICT_RE = re.compile(r"verdict\s*:\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)
REASON_RE = re.compile(r"reason\s*:\s*(.+)", re.IGNORECASE)


def judge_messages(question: str, steps: list[str]) -> list[dict]:
    previous = "\n".join(steps[:-1]) or "(none: this is the first step)"
    return [{"role": "user", "content": PROMPT.format(question=question, previous=previous, step=steps[-1])}]


def read_verdict(reply: str) -> StepScore:
    """'Verdict: incorrect\\nReason: 42 * 3 is 126.' -> StepScore(0.0, False, '42 * 3 is 126.')

    No reason in the reply -> reason ''; no verdict -> StepScore(0.5, False, '').
    """
    verdict, reason = VERDICT_RE.search(reply), REASON_RE.search(reply)
    if verdict is None:
        return StepScore(0.5, False, "")
    ok = verdict.group(1).lower() == "correct"
    return StepScore(1.0 if ok else 0.0, ok, reason.group(1).strip() if reason else "")


@contextmanager
def greedy(policy: Policy) -> Iterator[Policy]:
    """`policy` with its sampling temperature set to 0 inside the block, restored after."""
    saved = policy.sampling
    policy.sampling = replace(saved, temperature=0.0)
    try:
        yield policy
    finally:
        policy.sampling = saved


class JudgePRM(PRM):
    """An LLM judge through any `Policy` (see module docstring)."""

    name = "judge"

    def __init__(self, task: Task, judge: Policy, max_new_tokens: int = 128):
        self.task, self.judge, self.max_new_tokens = task, judge, max_new_tokens

    def score(self, questions, paths, answers=None, ended=None) -> list[StepScore]:
        prefixes = [Prefix(judge_messages(q, s), [], seed=0) for q, s in zip(questions, paths)]
        with greedy(self.judge) as judge:
            replies = judge.complete(prefixes, 1, self.max_new_tokens)
        unread = sum(VERDICT_RE.search(r[0].text) is None for r in replies)
        if unread:
            log.warning("%d of %d judge replies could not be read (scored 0.5, not ok)", unread, len(replies))
        return [read_verdict(r[0].text) for r in replies]
