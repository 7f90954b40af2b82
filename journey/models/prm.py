"""Process reward models: score the last step of many (question, steps) paths in one call.

`PRM.score(questions, paths)` returns, for each path, a `StepScore`: a score in [0, 1], a
verdict (`ok`) and a reason a reflection can quote ("42 * 3 is 126, not 116."). Model PRMs,
rollout PRMs and LLM judges fit the same signature; `PRMS` maps a name to a builder.

The `verifier` PRM is the task's exact step check, taken along the whole path: a step is
right (score 1) only if it and every step above it are right, because a step built on a slip
cannot lead to the right answer. That is the path-level correctness a Math-Shepherd rollout
PRM estimates, computed exactly.

    from journey.models.prm import build_prm
    prm = build_prm("verifier", task)
    prm.score(["2 + 3 * 4"], [["3 * 4 = 12"]])   # [StepScore(score=1.0, ok=True, ...)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from journey.tasks.base import Task


@dataclass(frozen=True)
class StepScore:
    """A PRM's judgement of one step."""

    score: float  # in [0, 1]; higher is better
    ok: bool  # the verdict: is this step right?
    reason: str


class PRM(ABC):
    """Scores the last step of each path, given its question and the steps above it."""

    name: str

    @abstractmethod
    def score(self, questions: list[str], paths: list[list[str]]) -> list[StepScore]:
        """One `StepScore` per (question, path) pair, for the path's last step."""


class VerifierPRM(PRM):
    """The task's exact step verifier, applied to the whole path (see module docstring)."""

    name = "verifier"

    def __init__(self, task: Task):
        if task.verify_steps("", []) is None:
            raise ValueError(
                f"--prm verifier needs a task with an exact step check; task {task.name!r} has none"
            )
        self.task = task

    def score(self, questions: list[str], paths: list[list[str]]) -> list[StepScore]:
        assert len(questions) == len(paths), "one question per path"
        return [self._score_one(q, steps) for q, steps in zip(questions, paths)]

    def _score_one(self, question: str, steps: list[str]) -> StepScore:
        checks = self.task.verify_steps(question, steps)
        last = checks[-1]
        earlier = next((c for c in checks[:-1] if not c.ok), None)
        if earlier is not None:
            return StepScore(0.0, False, f"It builds on an earlier mistake: {earlier.reason}")
        return StepScore(1.0 if last.ok else 0.0, last.ok, last.reason)


PRMS = {"verifier": VerifierPRM}


def build_prm(name: str, task: Task) -> PRM:
    """The PRM called `name` for `task` (ValueError naming the known PRMs otherwise)."""
    if name not in PRMS:
        raise ValueError(f"unknown PRM {name!r}; known PRMs: {', '.join(sorted(PRMS))}")
    return PRMS[name](task)
