"""A task key: what identifies a task's behaviour, as one value.

A task's prompts and answer checks depend on its name and, for some tasks, on
settings (the jsonl task compares answers by its `answer_type`). The key holds
exactly those: two runs with the same key prompt and judge alike, so an exemplar
set validated for one key is valid for every run with that key. Settings that
only choose *which* problems a run gets (data file, field map, sizes, digit
range, seed) are not part of it: they live in the run's config, and an
exemplar set written for 1-3 digit addition serves a 1-5 digit run too.

Text form, as stored in the database and shown to users:

    arithmetic
    jsonl:answer_type=choice
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError


@dataclass(frozen=True, order=True)
class TaskKey:
    name: str
    settings: tuple[tuple[str, str], ...] = ()  # (RunConfig field, value as text), sorted by field

    def __str__(self) -> str:
        if not self.settings:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.settings)

    @classmethod
    def parse(cls, text: str) -> "TaskKey":
        name, _, rest = text.strip().partition(":")
        if not name:
            raise ConfigError("task", f"{text!r} is not a task key (e.g. arithmetic or jsonl:answer_type=choice)")
        settings = []
        for pair in filter(None, rest.split(",")):
            field, sep, value = pair.partition("=")
            if not sep or not field:
                raise ConfigError("task", f"{text!r} is not a task key: {pair!r} is not FIELD=VALUE")
            settings.append((field, value))
        return cls(name, tuple(sorted(settings)))

    @classmethod
    def of(cls, key: "TaskKey | str") -> "TaskKey":
        """A key from its text form, or the key itself."""
        return cls.parse(key) if isinstance(key, str) else key

    def config_values(self) -> dict[str, str]:
        """The RunConfig values this key sets, besides the task name."""
        return dict(self.settings)

    def describe(self) -> str:
        """For messages: 'jsonl (answer_type choice)'."""
        if not self.settings:
            return self.name
        return f"{self.name} ({', '.join(f'{k} {v}' for k, v in self.settings)})"
