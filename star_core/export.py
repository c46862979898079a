"""Export a run's kept rationales as a fine-tuning dataset."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import ExportError, StarError
from .store import Store
from .tasks import get_task
from .tasks.base import Problem, choices_from_json, cut_at_stop

FORMATS = ("jsonl", "parquet")


def export_kept(store: Store, run_id: int, out: Path, fmt: str) -> int:
    """Write prompt/completion rows (TRL's format) of every kept rationale; returns the row count.

    The prompt is the question as the model is asked it, without the hint and
    without the shared few-shot prefix; the completion is what the model wrote.
    The file appears whole or not at all: a write that fails (a full disk, a
    folder that cannot be written) leaves no partial file and an older file of
    that name as it was.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise StarError(f"unknown export format {fmt!r}; use jsonl or parquet")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give the file to write, e.g. {out / f'run-{run_id}.{fmt}'}")
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
    write_whole(rows, out, fmt)
    return len(rows)


def write_whole(rows: pd.DataFrame, out: Path, fmt: str) -> None:
    """Write `rows` to `out` as jsonl or parquet, whole or not at all (write_file)."""
    if fmt == "jsonl":
        write_file(out, lambda part: rows.to_json(part, orient="records", lines=True, force_ascii=False))
    else:
        write_file(out, lambda part: rows.to_parquet(part, index=False))


def write_text(out: Path, text: str) -> None:
    """Write a text file whole or not at all (write_file)."""
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give the file to write")
    write_file(out, lambda part: part.write_text(text, encoding="utf-8"))


def write_file(out: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `out`, renamed over `out` once complete."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {out.parent} for {out}: {_reason(exc)}") from exc
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        write(part)
        os.replace(part, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise ExportError(f"cannot write {out}: {_reason(exc)}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
