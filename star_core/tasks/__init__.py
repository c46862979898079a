"""The task registry: a task name in a RunConfig maps to one Task object."""

from __future__ import annotations

from ..config import RunConfig
from ..errors import ConfigError
from .arithmetic import ArithmeticTask
from .base import Exemplar, Judgement, Problem, Task, Verdict
from .commonsenseqa import CommonsenseQATask
from .gsm8k import GSM8KTask
from .jsonl import JsonlTask
from .leak import hint_leak

_TASKS = {"arithmetic": ArithmeticTask, "gsm8k": GSM8KTask, "commonsenseqa": CommonsenseQATask, "jsonl": JsonlTask}


def get_task(name: str, config: RunConfig | None = None) -> Task:
    """The task called `name`; tasks whose answer check depends on the run (jsonl) read it from `config`."""
    try:
        cls = _TASKS[name]
    except KeyError:
        raise ConfigError("task", f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}") from None
    return cls(config)


def suggested_settings(name: str) -> dict:
    """RunConfig values a task suggests where the user gave none (e.g. a longer max_new_tokens for GSM8K)."""
    return dict(getattr(_TASKS.get(name), "suggested", {}))


def chance_accuracy(name: str) -> float | None:
    """Accuracy of guessing, for tasks where it is fixed (CommonsenseQA: 1 in 5)."""
    return getattr(_TASKS.get(name), "chance", None)


__all__ = ["Exemplar", "Judgement", "Problem", "Task", "Verdict", "chance_accuracy", "get_task", "hint_leak", "suggested_settings"]
