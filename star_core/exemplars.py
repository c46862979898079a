"""Few-shot exemplar files: (question, rationale, answer) lines, checked before use.

The default set of each task is `data/exemplars/<task>.jsonl`, written by us.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DatasetError
from .tasks.base import Exemplar, Problem, Task

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def default_exemplar_path(task_name: str) -> Path:
    return DATA_DIR / "exemplars" / f"{task_name}.jsonl"


def load_exemplars(task: Task, path: Path | None = None) -> list[Exemplar]:
    """Read an exemplar file; every line must parse and pass the task's checks."""
    path = path or default_exemplar_path(getattr(task, "exemplar_file", task.name))  # jsonl: one file per answer type
    if not path.exists():
        raise DatasetError(f"exemplar file {path} does not exist")
    exemplars = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            ex = Exemplar(
                question=str(raw["question"]),
                rationale=str(raw["rationale"]),
                answer=str(raw["answer"]),
                choices=tuple(tuple(c) for c in raw.get("choices", ())),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: not an exemplar line with question, rationale and answer ({exc})") from exc
        problem_ = check_exemplar(task, ex)
        if problem_:
            raise DatasetError(f"{path}:{number}: {problem_}")
        exemplars.append(ex)
    if not exemplars:
        raise DatasetError(f"exemplar file {path} has no exemplars")
    return exemplars


def check_exemplar(task: Task, ex: Exemplar) -> str | None:
    """Why an exemplar is unfit for the prompt, or None when it passes the task's checks."""
    problem = Problem(id="exemplar", question=ex.question, answer=ex.answer, split="exemplar", choices=ex.choices)
    completion = task.format_completion(ex.rationale, ex.answer)
    predicted = task.extract_answer(completion)
    if not task.is_correct(predicted, problem):
        return f"its answer {ex.answer!r} does not pass the {task.name} answer check (read back as {predicted!r})"
    if task.can_verify_steps:
        verdict = task.verify_steps(completion, problem)
        if verdict.ok is False:
            return f"its rationale fails the step check: {verdict.reason}"
    return None
