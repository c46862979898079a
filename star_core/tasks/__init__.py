"""The task registry: a task name in a RunConfig maps to one Task object."""

from __future__ import annotations

from ..errors import ConfigError
from .arithmetic import ArithmeticTask
from .base import Exemplar, Judgement, Problem, Task, Verdict

_TASKS = {"arithmetic": ArithmeticTask}


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]()
    except KeyError:
        raise ConfigError("task", f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}") from None


__all__ = ["Exemplar", "Judgement", "Problem", "Task", "Verdict", "get_task"]
