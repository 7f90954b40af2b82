"""Problem domains. `TASKS` maps a name to a task class; `get_task(name)` builds one."""

from journey.tasks.arith import ArithTask
from journey.tasks.base import Problem, StepCheck, Task
from journey.tasks.code import CodeTask
from journey.tasks.math import MathTask

TASKS: dict[str, type[Task]] = {"arith": ArithTask, "math": MathTask, "code": CodeTask}


def check_task(name) -> None:
    """ValueError naming the known tasks unless `name` is one."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")


def get_task(name: str, code=None, answers: tuple[str, ...] | None = None) -> Task:
    """The task called `name` (ValueError naming the known ones otherwise). `code`, a
    `journey.config.CodeConfig`, sets up the code task (reward alpha, sandbox); `answers`, the
    math task's answer formats in order (`--answer-formats`); other tasks ignore them."""
    check_task(name)
    if name == "code" and code is not None:
        return CodeTask(code)
    if name == "math" and answers is not None:
        return MathTask(answers)
    return TASKS[name]()


def task_of(cfg) -> Task:
    """The task a stage config names, with its code options (`--code-alpha`,
    `--unsafe-no-sandbox`) and answer formats where the stage has them (`journey.config.CodeOptions`,
    `AnswerOptions`)."""
    return get_task(cfg.task, cfg.code_config() if hasattr(cfg, "code_config") else None,
                    cfg.answer_order() if hasattr(cfg, "answer_order") else None)


__all__ = ["TASKS", "Problem", "StepCheck", "Task", "check_task", "get_task", "task_of"]
