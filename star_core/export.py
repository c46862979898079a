"""Export a run's kept rationales as a fine-tuning dataset."""

from __future__ import annotations

from pathlib import Path

from .errors import StarError
from .store import Store
from .tasks import get_task
from .tasks.base import Problem, choices_from_json, cut_at_stop


def export_kept(store: Store, run_id: int, out: Path, fmt: str) -> int:
    """Write prompt/completion rows (TRL's format) of every kept rationale; returns the row count.

    The prompt is the question as the model is asked it, without the hint and
    without the shared few-shot prefix; the completion is what the model wrote.
    """
    run = store.get_run(run_id)
    task = get_task(run.config.task, run.config)
    rows = store.training_examples(run_id)
    if rows.empty:
        raise StarError(f"run {run_id} has no kept rationales yet (they are chosen before each iteration's fine-tuning)")
    rows["prompt"] = [
        task.format_question(Problem(pid, q, a, "train", choices=choices_from_json(ch)))
        for pid, q, a, ch in zip(rows.problem_id, rows.question, rows.gold_answer, rows.choices)
    ]
    rows["completion"] = [cut_at_stop(c) for c in rows.completion]
    rows = rows[["prompt", "completion", "run_id", "iteration", "problem_id", "kind", "attempt_id", "gold_answer"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        rows.to_json(out, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        rows.to_parquet(out, index=False)
    else:
        raise StarError(f"unknown export format {fmt!r}; use jsonl or parquet")
    return len(rows)
