"""The `judge` PRM: an LLM asked whether a step is right and why (the paper used o1-mini so).

The prompt is `judge_prompt.md` beside this file. The judge answers "Verdict: correct|incorrect"
and "Reason: ..."; the verdict gives the score (1 or 0) and the reason is kept, so
derive-longthought can write reflections from it. A reply that cannot be read scores 0.5 with
the reason saying so. Any policy backend can judge (greedy decoding), all steps of a call in one
batched call.

    journey build-tree --prm judge --prm-model Qwen/Qwen2.5-7B-Instruct ...
"""

from __future__ import annotations

import re
from pathlib import Path

from journey.models.policy import Policy, Prefix
from journey.models.prm import PRM, StepScore
from journey.tasks.base import Task

PROMPT = (Path(__file__).parent / "judge_prompt.md").read_text()
VERDICT_RE = re.compile(r"verdict\s*:\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)
REASON_RE = re.compile(r"reason\s*:\s*(.+)", re.IGNORECASE)


def judge_messages(question: str, steps: list[str]) -> list[dict]:
    previous = "\n".join(steps[:-1]) or "(none: this is the first step)"
    return [{"role": "user", "content": PROMPT.format(question=question, previous=previous, step=steps[-1])}]


def read_verdict(reply: str) -> StepScore:
    """'Verdict: incorrect\\nReason: 42 * 3 is 126.' -> StepScore(0.0, False, '42 * 3 is 126.')"""
    verdict, reason = VERDICT_RE.search(reply), REASON_RE.search(reply)
    if verdict is None:
        return StepScore(0.5, False, "The judge's reply could not be read.")
    ok = verdict.group(1).lower() == "correct"
    why = reason.group(1).strip() if reason else ("The judge accepts the step." if ok else "The judge rejects the step.")
    return StepScore(1.0 if ok else 0.0, ok, why)


class JudgePRM(PRM):
    """An LLM judge through any `Policy` (see module docstring)."""

    name = "judge"

    def __init__(self, task: Task, judge: Policy, max_new_tokens: int = 128):
        self.task, self.judge, self.max_new_tokens = task, judge, max_new_tokens

    def score(self, questions, paths, answers=None) -> list[StepScore]:
        prefixes = [Prefix(judge_messages(q, s), [], seed=0) for q, s in zip(questions, paths)]
        replies = self.judge.complete(prefixes, 1, self.max_new_tokens)
        return [read_verdict(r[0].text) for r in replies]
