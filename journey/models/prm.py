"""Process reward models: score the last step of many (question, steps) paths in one call.

`PRM.score(questions, paths, answers)` returns, for each path, a `StepScore`: a score in [0, 1],
a verdict (`ok`) and a reason ("42 * 3 is 126, not 116."). `journey.models.registry.build_prm`
picks one by name: `verifier` and `rollout` (here), `token` and `qwen` (model PRMs,
`journey.models.model_prms`), `judge` (an LLM asked for a verdict and a reason,
`journey.models.judge`). This module imports none of those (they import it). Only the verifier's
and the judge's reasons explain a mistake; see `registry.PRM_EXPLAINS`.

The `verifier` PRM is the task's exact step check, taken along the whole path: a step is
right (score 1) only if it and every step above it are right, because a step built on a slip
cannot lead to the right answer. That is the path-level correctness a Math-Shepherd rollout
PRM estimates, computed exactly.

    from journey.models.registry import build_prm
    prm = build_prm("verifier", task)
    prm.score(["2 + 3 * 4"], [["3 * 4 = 12"]])   # [StepScore(score=1.0, ok=True, ...)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from journey.models.base import PRM, Policy, Prefix, StepScore
from journey.tasks.base import Task


class VerifierPRM(PRM):
    """The task's exact step verifier, applied to the whole path (see module docstring)."""

    name = "verifier"

    def __init__(self, task: Task):
        if task.verify_steps("", []) is None:
            raise ValueError(
                f"--prm verifier needs a task with an exact step check; task {task.name!r} has none"
            )
        self.task = task

    def score(self, questions: list[str], paths: list[list[str]],
              answers: list[str] | None = None, ended: list[bool] | None = None) -> list[StepScore]:
        assert len(questions) == len(paths), "one question per path"
        return [self._score_one(q, steps) for q, steps in zip(questions, paths)]

    def _score_one(self, question: str, steps: list[str]) -> StepScore:
        checks = self.task.verify_steps(question, steps)
        last = checks[-1]
        earlier = next((c for c in checks[:-1] if not c.ok), None)
        if earlier is not None:
            return StepScore(0.0, False, f"It builds on an earlier mistake: {earlier.reason}")
        return StepScore(1.0 if last.ok else 0.0, last.ok, last.reason)


class RolloutPRM(PRM):
    """Math-Shepherd-style: the fraction of m policy rollouts from the step that reach the right
    answer. Needs only the ground truth, so it works for any task. A final-answer step, or one
    that ended at the model's EOS (`ended`), is never rolled out: it scores 1 if its answer is
    right, else 0. All rollouts of a call go to the
    policy at once (one `complete` call per budget); each path's rollouts are seeded from its text.

    A rollout may write every step left: its budget is (depth - steps so far) x the policy's
    max_step_tokens (`rollout_budget`), or `max_new_tokens` when given. A rollout cut off at its
    budget has no final answer and counts as wrong; `last_rollouts` says how many were.
    """

    name = "rollout"

    def __init__(self, task: Task, policy: Policy, rollouts: int = 4, max_new_tokens: int | None = None,
                 depth: int | None = None):
        if rollouts < 1:
            raise ValueError(f"--rollouts must be >= 1, got {rollouts}")
        self.task, self.policy, self.m = task, policy, rollouts
        self.max_new_tokens, self.depth = max_new_tokens, depth

    def score(self, questions: list[str], paths: list[list[str]],
              answers: list[str] | None = None, ended: list[bool] | None = None) -> list[StepScore]:
        if answers is None:
            raise ValueError("the rollout PRM needs the ground-truth answers")
        ended = ended or [False] * len(paths)
        todo = [i for i, steps in enumerate(paths) if not (ended[i] or self.task.is_terminal(steps[-1]))]
        budget = rollout_budget(self.policy, self.depth, self.max_new_tokens, DEFAULT_ROLLOUT_TOKENS)
        rolled = dict(zip(todo, rollouts_from(self.task, self.policy, questions, paths, todo, self.m, budget)))
        self.last_rollouts = [rollout_counts(rolled.get(i, [])) for i in range(len(paths))]
        out = []
        for i, (steps, gold) in enumerate(zip(paths, answers)):
            if i not in rolled:
                ok = self.task.check_answer(self.task.extract_answer(steps[-1]), gold)
                out.append(StepScore(float(ok), ok, "The final answer is right." if ok else "The final answer is wrong."))
                continue
            head = self.task.join_steps(steps) + self.task.step_delimiter
            right = sum(self.task.check_answer(self.task.extract_answer(head + r.text), gold) for r in rolled[i])
            score = right / self.m
            out.append(StepScore(score, score >= 0.5,
                                 f"{right} of {self.m} rollouts from this step reach the right answer."))
        return out


DEFAULT_ROLLOUT_TOKENS = 256  # a rollout's budget when neither a depth nor a budget is known


def rollout_budget(policy: Policy, depth: int | None, fixed: int | None, fallback: int) -> Callable[[list[str]], int]:
    """A path's rollout budget in tokens: `fixed` when given; else every step left to `depth`
    at the policy's max_step_tokens (at least one step's worth); else `fallback`.

    depth 8, max_step_tokens 256, a path of 3 steps -> 5 * 256 = 1280
    """
    if fixed is not None:
        return lambda steps: fixed
    if depth is None:
        return lambda steps: fallback
    per_step = policy.sampling.max_step_tokens
    return lambda steps: max(1, depth - len(steps)) * per_step


def rollout_counts(outs: list) -> tuple[int, int]:
    """(rollouts, those cut off at their budget) of one path's rollouts."""
    return len(outs), sum(o.finish == "length" for o in outs)


def rollouts_from(task: Task, policy: Policy, questions: list[str], paths: list[list[str]], todo: list[int],
                  m: int, max_new_tokens: int | Callable[[list[str]], int]) -> list:
    """m continuations of each path `todo` names, each path's seeded from its text (`text_seed`)
    so they repeat across runs; [] when `todo` is empty. `max_new_tokens` is a number or a
    path's budget (`rollout_budget`): one `complete` call per budget, in `todo`'s order."""
    budget = max_new_tokens if callable(max_new_tokens) else (lambda steps: max_new_tokens)
    groups: dict[int, list[int]] = {}  # budget -> positions in todo
    for k, i in enumerate(todo):
        groups.setdefault(budget(paths[i]), []).append(k)
    out: list = [None] * len(todo)
    for tokens, ks in groups.items():
        prefixes = [Prefix(task.messages(questions[todo[k]]), paths[todo[k]],
                           seed=text_seed(questions[todo[k]], paths[todo[k]])) for k in ks]
        for k, outs in zip(ks, policy.complete(prefixes, m, tokens)):
            out[k] = outs
    return out


def text_seed(question: str, steps: list[str]) -> int:
    """A 31-bit seed from a path's text, so a path's rollouts repeat across runs."""
    digest = hashlib.sha256("\x00".join([question, *steps]).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1
