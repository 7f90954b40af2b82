"""Problem domains. `TASKS` maps a name to a task class; `get_task(name)` builds one."""

from journey.tasks.arith import ArithTask
from journey.tasks.base import Problem, StepCheck, Task
from journey.tasks.code import CodeTask
from journey.tasks.math import MathTask

TASKS: dict[str, type[Task]] = {"arith": ArithTask, "math": MathTask, "code": CodeTask}


def get_task(name: str) -> Task:
    """The task called `name` (ValueError naming the known ones otherwise)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


__all__ = ["TASKS", "Problem", "StepCheck", "Task", "get_task"]
