"""One way to prepare a run, for the CLI and the app alike.

What a user gave (the flags of `star run`, or the form fields they changed) becomes
a validated RunConfig: a named preset's values (presets.py) apply to the fields the user
did not set, a task's suggested settings (gsm8k's longer rationales) to those neither
set, and every invalid field is reported with its own message, so both front ends can
point at the field at fault. Order: given > preset > task suggestion > default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..core.config import RunConfig, field_help
from ..core.embedded import EMBEDDED_MODELS
from ..core.errors import ConfigError, DatasetError, ModelLoadError
from ..core.presets import preset_values
from ..store.exemplar_sets import ExemplarSetError
from ..tasks import get_task, suggested_settings
from .exemplars import resolve_run_set


class InvalidSettings(ConfigError):
    """One or more settings are invalid; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        field, message = next(iter(errors.items()))
        super().__init__(field, message)


@dataclass(frozen=True)
class PreparedRun:
    config: RunConfig
    suggested: dict  # the task's suggestions that were applied (field -> value)


def shown_defaults(task: str, preset: str | None = None) -> dict:
    """Every field's value before the user changes anything: the preset's, the task's suggestion, or the default."""
    values = {name: meta["default"] for name, meta in field_help().items()}
    values.update(suggested_settings(task))
    values.update(preset_values(preset) if preset else {})
    values["task"] = task
    return values


def prepare_run(given: dict, preset: str | None = None) -> PreparedRun:
    """A validated RunConfig from the settings a user gave (the rest: the preset, task suggestions, then defaults)."""
    errors = field_errors(given)
    if errors:
        raise InvalidSettings(errors)
    chosen = preset_values(preset) if preset else {}
    task = given.get("task", chosen.get("task", RunConfig.__dataclass_fields__["task"].default))
    suggested = {k: v for k, v in suggested_settings(task).items() if k not in given and k not in chosen}
    try:
        config = RunConfig(**{**suggested, **chosen, **given})
    except ConfigError as exc:  # a rule between fields, e.g. max_difficulty below min_difficulty
        raise InvalidSettings({exc.field: exc.message}) from exc
    return PreparedRun(with_absolute_paths(config), suggested)


def with_absolute_paths(config: RunConfig) -> RunConfig:
    """`config` with a model or data path that exists here made absolute: the worker runs from another folder
    (the project root), where a relative `models/smol` would read as a hub id. Embedded names, hub ids and
    paths that do not exist stay as typed (the checks then name them as given)."""
    changed = {}
    if config.model not in EMBEDDED_MODELS and Path(config.model).expanduser().exists():
        changed["model"] = _absolute(config.model)
    if config.data and Path(config.data).expanduser().exists():
        changed["data"] = _absolute(config.data)
    return replace(config, **changed) if changed else config


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))  # symlinks kept as the user named them


def field_errors(values: dict) -> dict[str, str]:
    """Each invalid field's message, every field tried alone (RunConfig itself stops at the first)."""
    known = {f.name for f in fields(RunConfig)}
    errors = {name: "is not a run setting" for name in values if name not in known}
    for name, value in values.items():
        if name in errors:
            continue
        try:
            RunConfig(**{name: value})
        except ConfigError as exc:
            if exc.field == name:
                errors[name] = exc.message
    return errors


def create_run(store, config: RunConfig, reporter=None) -> int:
    """Store a new run (pending: nothing runs it yet), the exemplar set version it uses and its problems, in one
    transaction; return its id. Model and data paths are stored absolute (with_absolute_paths).

    Everything a run needs is checked first (task, model spec, data file, exemplar set), so that
    a bad setting stores nothing: not a run, not even the task's default exemplar set. A failure
    is a ConfigError naming the field at fault: a model that cannot be found is a 'model' error,
    a bad data file a 'data' error, an unusable exemplar set an 'exemplars' one.
    """
    from ..model.loading import check_model_spec  # imports torch: only when a run is created

    config = with_absolute_paths(config)  # also for callers that built the config themselves
    try:
        task = get_task(config.task, config)
        check_model_spec(config.model)
        problems = task.problems(config)
        report = getattr(task, "report", None)
        if report is not None and reporter is not None:
            reporter.message(report.summary())
        exemplar_set = resolve_run_set(store, task, config.exemplars)  # NAME, NAME@VERSION, or '' = the task's default
        # One transaction: a crash leaves the whole run or nothing (not a run prompted with another set).
        return store.create_run_with_problems(config, exemplar_set.id, problems)
    except ModelLoadError as exc:
        raise ConfigError("model", str(exc)) from exc
    except DatasetError as exc:
        raise ConfigError("data", str(exc)) from exc
    except ExemplarSetError as exc:
        raise ConfigError("exemplars", str(exc)) from exc
