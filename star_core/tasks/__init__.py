"""The task registry: the one list of tasks, and how a task is built from a config or a task key."""

from __future__ import annotations

from ..core.config import RunConfig
from ..core.errors import ConfigError
from ..core.states import TASK_NAMES, TaskName
from .arithmetic import ArithmeticTask
from .base import Exemplar, Problem, Task, Verdict
from .commonsenseqa import CommonsenseQATask
from .gsm8k import GSM8KTask
from .jsonl import JsonlTask
from .key import TaskKey
from .leak import hint_leak
from .settings import TaskSettings

_TASKS = {TaskName.ARITHMETIC: ArithmeticTask, TaskName.GSM8K: GSM8KTask, TaskName.COMMONSENSEQA: CommonsenseQATask,
          TaskName.JSONL: JsonlTask}
assert set(_TASKS) == set(TaskName), "every TaskName needs its task class here"
# Every RunConfig field that is part of some task's key (the CLI's task flags for `star exemplars`).
KEY_FIELDS = tuple(dict.fromkeys(f for cls in _TASKS.values() for f in getattr(cls, "key_fields", ())))


def _task_class(name: str):
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError("task", f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}") from None


def task_key(config: RunConfig) -> TaskKey:
    """The key of the task a config describes: its name and the settings its behaviour depends on."""
    cls = _task_class(config.task)
    # A setting at the value a task lists in key_defaults is left out: keys stored before it existed still match.
    omitted = getattr(cls, "key_defaults", {})
    values = ((f, str(getattr(config, f))) for f in getattr(cls, "key_fields", ()))
    return TaskKey(config.task, tuple(sorted((f, v) for f, v in values if omitted.get(f) != v)))


def get_task(name: str, config: RunConfig | None = None) -> Task:
    """The task called `name`, set up from `config` (it sees only the config's TaskSettings)."""
    cls = _task_class(name)
    config = config if config is not None else RunConfig(task=name)
    task = cls(TaskSettings.of(config))
    task.key = task_key(config)
    return task


def task_for_key(key: TaskKey | str) -> Task:
    """The task a stored key names (an exemplar set's, a run's): judged exactly as it was when stored."""
    key = TaskKey.parse(key) if isinstance(key, str) else key
    cls = _task_class(key.name)
    allowed = set(getattr(cls, "key_fields", ()))
    values = key.config_values()
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError("task", f"task key {key} sets {', '.join(unknown)}, which the {key.name} task does not depend on")
    return get_task(key.name, RunConfig(task=key.name, **RunConfig.parse_values(values)))


def suggested_settings(name: str) -> dict:
    """RunConfig values a task suggests where the user gave none (e.g. a longer max_new_tokens for GSM8K)."""
    return dict(getattr(_TASKS.get(name), "suggested", {}))


def verifies_steps(name: str) -> bool:
    """Whether a task checks a rationale's steps (and so whether the `verified` filter means more than `answer`)."""
    return bool(getattr(_task_class(name), "can_verify_steps", False))


def chance_accuracy(name: str) -> float | None:
    """Accuracy of guessing, for tasks where it is fixed (CommonsenseQA: 1 in 5)."""
    return getattr(_TASKS.get(name), "chance", None)


__all__ = ["Exemplar", "KEY_FIELDS", "Problem", "TASK_NAMES", "Task", "TaskKey", "TaskName", "TaskSettings", "Verdict", "chance_accuracy",
           "get_task", "hint_leak", "suggested_settings", "task_for_key", "task_key", "verifies_steps"]
