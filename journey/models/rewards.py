"""o1-Coder's RL reward (its step 5): an outcome reward R and process rewards r_j, combined by φ.

    φ(R, r_1..m) = α(t)·R + (1 − α(t))·(1/m)·Σ_{j=1..m} γ^j·r_j

R comes from the task (arith/math: 1 for a right final answer, else 0; code: o1-Coder's
a·compiles + (1 − a)·pass_rate, the program run in the sandbox), r_j is a PRM's score of step j
given the steps before it, and α(t) moves over training from `start` to `end` (o1-Coder: early
weight on the outcome, later on the process) by a schedule of the progress t = step / steps:

    constant: α = start
    linear:   α = start + (end − start)·t
    log:      α = start + (end − start)·ln(1 + (e − 1)·t)     (moves fast early, 0 -> 1 as t does)

    phi(1.0, [1.0, 0.0], alpha=0.5, gamma=1.0)   # 0.5·1 + 0.5·(1 + 0)/2 = 0.75
    alpha_at("linear", 1.0, 0.5, 0.5)            # 0.75

`RLReward` is the reward function `journey train --stage rl` hands TRL's GRPOTrainer: it splits
each completion into the task's steps, scores every prefix with one batched PRM call, checks
every final answer with one batched task call, and returns φ per completion (or R alone with
`reward="outcome"`, the process term alone with `reward="process"`). The means it computed (α,
R, the process term, the share of answers extracted) go to TRL's log through `log_metric`, so
the run's reward curve is in the trainer's log history (and in its checkpoints, for a resumed
run), and are kept in `last`. Pure apart from the task and PRM it is given; it loads no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from journey.models.base import PRM
from journey.tasks.base import Task

ALPHA_SCHEDULES = ("constant", "linear", "log")
REWARDS = ("phi", "outcome", "process")
MAX_STEPS_SCORED = 64  # a completion's steps past this are not scored (a runaway list of lines)


def alpha_at(schedule: str, start: float, end: float, progress: float) -> float:
    """α(t) of `schedule` at training progress t in [0, 1] (clipped): see the module docstring.

    ("linear", 1.0, 0.0, 0.25) -> 0.75; ("log", 1.0, 0.0, 1.0) -> 0.0; ("constant", 0.3, 0.9, 0.7) -> 0.3
    """
    t = min(1.0, max(0.0, progress))
    if schedule == "constant":
        return start
    if schedule == "linear":
        return start + (end - start) * t
    if schedule == "log":
        return start + (end - start) * math.log1p((math.e - 1) * t)
    raise ValueError(f"--alpha-schedule must be one of {', '.join(ALPHA_SCHEDULES)}, got {schedule!r}")


def process_term(process: list[float], gamma: float) -> float:
    """(1/m)·Σ_{j=1..m} γ^j·r_j; 0 for no steps. ([1, 0.5], γ 0.5) -> (0.5·1 + 0.25·0.5)/2 = 0.3125"""
    if not process:
        return 0.0
    return sum(gamma ** j * r for j, r in enumerate(process, start=1)) / len(process)


def phi(outcome: float, process: list[float], alpha: float, gamma: float) -> float:
    """o1-Coder's aggregate φ(R, r_1..m) = α·R + (1 − α)·process_term(r, γ)."""
    return alpha * outcome + (1 - alpha) * process_term(process, gamma)


def split_steps(text: str, delimiter: str) -> list[str]:
    """A completion's steps: the pieces between delimiters that hold more than whitespace.

    ("1 + 2 = 3\\n\\nThe answer is 3.\\n", "\\n") -> ["1 + 2 = 3", "The answer is 3."]
    """
    return [s.strip() for s in text.split(delimiter) if s.strip()]


@dataclass
class RLReward:
    """φ per completion, for TRL's GRPOTrainer (`reward_funcs=[RLReward(...)]`).

    TRL calls it with the prompts, the completions (conversational: a list holding one assistant
    message) and the dataset's other columns; ours are `question` and `answer` (the gold).
    `trainer_state` gives the step for α(t).
    """

    task: Task
    prm: PRM | None  # None: reward "outcome" needs no PRM
    reward: str = "phi"
    schedule: str = "linear"
    alpha_start: float = 1.0
    alpha_end: float = 0.5
    gamma: float = 1.0
    last: dict = field(default_factory=dict)  # the means of the latest call

    def __post_init__(self):
        if self.reward not in REWARDS:
            raise ValueError(f"--reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")
        if self.reward != "outcome" and self.prm is None:
            raise ValueError(f"--reward {self.reward} needs a PRM")

    @property
    def __name__(self) -> str:  # TRL names the reward's log keys after it (rewards/phi/mean)
        return self.reward

    def alpha(self, progress: float) -> float:
        """The outcome's weight now: 1 for reward outcome, 0 for process, else the schedule's."""
        if self.reward == "outcome":
            return 1.0
        if self.reward == "process":
            return 0.0
        return alpha_at(self.schedule, self.alpha_start, self.alpha_end, progress)

    def outcomes(self, texts: list[str], golds: list[str]) -> tuple[list[float], list[bool]]:
        """R per completion (one batched task call) and whether an answer was extracted."""
        answers = [self.task.extract_answer(t) for t in texts]
        correct = self.task.check_answers(answers, golds)
        values = [float(self.task.terminal_value(a, g, c)) for a, g, c in zip(answers, golds, correct)]
        return values, [a is not None for a in answers]

    def process(self, questions: list[str], texts: list[str], golds: list[str]) -> list[list[float]]:
        """r_1..r_m per completion: every prefix of its steps scored in one PRM call."""
        steps = [split_steps(t, self.task.step_delimiter)[:MAX_STEPS_SCORED] for t in texts]
        owners = [i for i, s in enumerate(steps) for _ in s]
        paths = [s[: j + 1] for s in steps for j in range(len(s))]
        scores = self.prm.score([questions[i] for i in owners], paths, [golds[i] for i in owners]) if paths else []
        out: list[list[float]] = [[] for _ in texts]
        for i, sc in zip(owners, scores):
            out[i].append(float(sc.score))
        return out

    def __call__(self, prompts, completions, question, answer, trainer_state=None, log_metric=None,
                 **_) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        max_steps = getattr(trainer_state, "max_steps", 0) or 0
        progress = trainer_state.global_step / max_steps if max_steps else 0.0
        a = self.alpha(progress)
        outcome, extracted = self.outcomes(texts, list(answer))
        process = (self.process(list(question), texts, list(answer)) if a < 1 else [[] for _ in texts])
        rewards = [phi(r, p, a, self.gamma) for r, p in zip(outcome, process)]
        n = len(texts)
        self.last = {"alpha": a, "outcome": sum(outcome) / n, "answers_extracted": sum(extracted) / n}
        if a < 1:
            self.last["process"] = sum(process_term(p, self.gamma) for p in process) / n
        for name, value in self.last.items():
            if log_metric is not None:
                log_metric(f"rl/{name}", value)
        return rewards
