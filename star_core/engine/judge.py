"""Judging a completion: what answer it gives, whether that is right, whether its steps hold.

The verdict is what the store keeps beside the raw completion, and what the
filter (filtering.py) later decides on. Pure: a task, a problem and a text in,
a verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.states import AttemptKind
from ..tasks import Problem, Task, hint_leak
from ..tasks.base import rationale_of


@dataclass(frozen=True)
class Judged:
    rationale: str
    predicted: str | None
    correct: bool
    verified: bool | None  # None where the task cannot check steps
    verify_reason: str
    hint_leak: bool | None  # rationalized attempts only: the rationale restates its hint


def judge(task: Task, problem: Problem, kind: AttemptKind, completion: str) -> Judged:
    rationale = rationale_of(completion)
    predicted = task.extract_answer(completion)
    verdict = task.verify_steps(completion, problem) if task.can_verify_steps else None
    leak = None
    if kind == AttemptKind.RATIONALIZED:
        leak = hint_leak(rationale, task.answer_pattern(problem)) is not None
    return Judged(
        rationale=rationale, predicted=predicted, correct=task.is_correct(predicted, problem),
        verified=verdict.ok if verdict else None, verify_reason=verdict.reason if verdict else "", hint_leak=leak,
    )
