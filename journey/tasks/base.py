"""The `Task` interface: one problem domain (prompting, steps, answers, step checks).

A task knows how to write the policy prompt for a question, where one reasoning step ends
(`step_delimiter`), whether a step is a final answer, how to extract and check that answer,
and — when the domain allows — how to verify one step exactly, with a reason a reflection
can quote. Search, long-thought derivation and eval only talk to tasks through this class.

    from journey.tasks import get_task
    task = get_task("arith")
    problems = task.generate(n=10, seed=0)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field


@dataclass
class Problem:
    """One row of `problems.jsonl`: `{"id", "question", "answer", ...extra}`."""

    id: str
    question: str
    answer: str
    meta: dict = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)  # where it was read, for messages

    def to_row(self) -> dict:
        row = asdict(self)
        meta = row.pop("meta")
        row.pop("line")
        return {**row, **meta}


@dataclass(frozen=True)
class StepCheck:
    """The verdict on one step: `ok` and a short sentence saying why (usable in a reflection)."""

    ok: bool
    reason: str


class Task(ABC):
    """One problem domain. Subclasses are registered by name in `journey.tasks.TASKS`."""

    name: str
    step_delimiter: str = "\n"
    # The PRM build-tree uses when --prm is not given (a name in `journey.models.registry.PRMS`):
    # the exact step check where the task has one, else rollouts to the ground truth.
    own_prm: str = "rollout"

    @abstractmethod
    def generate(self, n: int, seed: int) -> list[Problem]:
        """`n` problems, the same for the same seed."""

    def messages(self, question: str) -> list[dict]:
        """The chat messages that ask the policy to solve `question`."""
        return [{"role": "user", "content": question}]

    @abstractmethod
    def is_terminal(self, step: str) -> bool:
        """Whether `step` states a final answer."""

    @abstractmethod
    def extract_answer(self, text: str) -> str | None:
        """The final answer stated in `text` (a step or a whole solution), or None."""

    @abstractmethod
    def check_answer(self, predicted: str | None, gold: str) -> bool:
        """Whether `predicted` matches the ground-truth answer `gold`."""

    def well_formed(self, step: str) -> bool:
        """Whether `step` is written in the domain's format, right or wrong (arith: a reduction
        "a op b = c" or "The answer is N."; "The aiswer is 20." is not). A step that is not is a
        format error, never a trial's mistake in a journey (`journey.longthought.paths`). Default:
        every step is (free-text domains; their final steps still need an extractable answer)."""
        return True

    def verify_steps(self, question: str, steps: list[str]) -> list[StepCheck] | None:
        """An exact local check of every step, or None when the domain has no exact check."""
        return None

    def verify_step(self, question: str, previous: list[str], step: str) -> StepCheck | None:
        """The exact check of `step` after `previous`, or None when the domain has none."""
        checks = self.verify_steps(question, [*previous, step])
        return None if checks is None else checks[-1]

    def states(self, question: str, steps: list[str]) -> list[str] | None:
        """What is left to solve after each prefix of `steps`, as text, the question first
        (len(steps) + 1 entries), or None when the domain cannot restate a state. A backtrack
        can name the state it resumes from, and a mechanism eval can check that it exists."""
        return None

    def corrupt_step(self, question: str, previous: list[str], step: str, rng) -> str | None:
        """A plausible wrong version of the correct `step` after `previous` (for injected-error
        evals), or None when the domain has no corrupter."""
        return None

    def solution(self, question: str) -> list[str]:
        """A reference solution as a list of steps (used to train and to test)."""
        raise NotImplementedError(f"task {self.name!r} has no reference solver")

    def join_steps(self, steps: list[str]) -> str:
        """A whole solution: the steps joined by the delimiter."""
        return self.step_delimiter.join(steps)

    def check_answers(self, predicted: list[str | None], golds: list[str]) -> list[bool]:
        """`check_answer` for many answers at once (search checks a lockstep level's final
        steps in one call; the code task runs their programs in parallel)."""
        return [bool(self.check_answer(p, g)) for p, g in zip(predicted, golds)]

    def terminal_value(self, predicted: str | None, gold: str, correct: bool) -> float:
        """A final step's value for search (MCTS): 1 or 0 by `correct`; the code task gives
        o1-Coder's reward a * compiles + (1 - a) * pass_rate."""
        return 1.0 if correct else 0.0
