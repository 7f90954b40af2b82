"""The `tests` PRM (`--prm tests`, code task only): programs by their tests, plan steps by the
programs written from them (o1-Coder's terminal reward, v = a * compiles + (1 - a) * pass_rate).

A final step (the program) scores its reward, is right when every test passes, and its reason
quotes the first failing test ("f([3, 1]) should be 4, but it returned 2."); a plan step gets m
policy rollouts to a program (one `complete` call for all) and scores their mean reward, right
when one of them passes every test; a wrong plan step's reason quotes the best rollout's failing
test. Every program runs in the sandbox (`journey.tasks.sandbox`), as `journey run-tests` runs them.

    from journey.models.registry import build_prm
    prm = build_prm("tests", code_task, policy, rollouts=4)
"""

from __future__ import annotations

from journey.models.base import PRM, Policy, StepScore
from journey.models.prm import rollout_budget, rollout_counts, rollouts_from
from journey.tasks.code import CodeTask, Grade


class TestsPRM(PRM):
    """The code task's PRM: programs by their tests, plan steps by rollouts' programs."""

    name = "tests"
    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, task: CodeTask, policy: Policy, rollouts: int = 4, max_new_tokens: int | None = None,
                 depth: int | None = None):
        if not isinstance(task, CodeTask):
            raise ValueError(f"--prm tests is for --task code, not {task.name!r}")
        if rollouts < 1:
            raise ValueError(f"--rollouts must be >= 1, got {rollouts}")
        self.task, self.policy, self.m = task, policy, rollouts
        self.max_new_tokens, self.depth = max_new_tokens, depth  # the budget, as RolloutPRM's

    def score(self, questions: list[str], paths: list[list[str]],
              answers: list[str] | None = None, ended: list[bool] | None = None) -> list[StepScore]:
        if answers is None:
            raise ValueError("the tests PRM needs each problem's tests (its answer)")
        ended = ended or [False] * len(paths)
        final = [i for i, steps in enumerate(paths) if ended[i] or self.task.is_terminal(steps[-1])]
        plans = [i for i in range(len(paths)) if i not in set(final)]
        budget = rollout_budget(self.policy, self.depth, self.max_new_tokens, 320)
        rolled = rollouts_from(self.task, self.policy, questions, paths, plans, self.m, budget)
        counts = dict(zip(plans, map(rollout_counts, rolled)))
        self.last_rollouts = [counts.get(i, (0, 0)) for i in range(len(paths))]
        # every program to grade, in one sandbox batch: finals, then m per plan step
        programs = [self.task.extract_answer(paths[i][-1]) for i in final]
        golds = [answers[i] for i in final]
        for i, outs in zip(plans, rolled):
            programs += [self.task.extract_answer(o.text) for o in outs]
            golds += [answers[i]] * len(outs)
        grades = self.task.grade_answers(programs, golds)
        out: dict[int, StepScore] = {}
        for k, i in enumerate(final):
            g = grades[k]
            out[i] = StepScore(g.reward, g.correct, g.reason())
        at = len(final)
        for i, outs in zip(plans, rolled):
            gs, at = grades[at: at + len(outs)], at + len(outs)
            out[i] = plan_score(gs)
        return [out[i] for i in range(len(paths))]


def plan_score(grades: list[Grade]) -> StepScore:
    """A plan step by the programs written from it: mean reward; right if one passes all tests."""
    mean = sum(g.reward for g in grades) / len(grades)
    passing = sum(g.correct for g in grades)
    if passing:
        return StepScore(mean, True, f"{passing} of {len(grades)} programs written from this plan pass every test.")
    best = max(grades, key=lambda g: g.reward)
    reason = best.reason()
    return StepScore(mean, False, "Following this plan, " + (reason[0].lower() + reason[1:]
                                                             if reason.startswith("The ") else reason))
