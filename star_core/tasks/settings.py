"""The run settings a task reads, and nothing else.

A task gets its problems and formats from these ten values, so it cannot come to depend on how a
run decodes or fine-tunes; the ones that change what the task *is* are also in its key (key.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..core.config import parse_data_map


@dataclass(frozen=True)
class TaskSettings:
    data: str
    data_map: str
    answer_type: str
    arithmetic_format: str
    skip_bad_lines: bool
    train_size: int
    eval_size: int
    min_difficulty: int
    max_difficulty: int
    seed: int

    @classmethod
    def of(cls, config) -> TaskSettings:
        """The task settings of a RunConfig (or of a TaskSettings: the same values)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    def field_map(self) -> dict[str, str]:
        """data_map as {role: field path}, with question and answer defaulting to fields of the same name."""
        return {"question": "question", "answer": "answer", **parse_data_map(self.data_map)}
