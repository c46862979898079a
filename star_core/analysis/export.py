"""Export a run's kept rationales as a fine-tuning dataset."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO, Callable

import pandas as pd

from ..core.errors import ExportError, StarError
from ..store import Store
from ..tasks import get_task
from ..tasks.base import Problem, choices_from_json, cut_at_stop

FORMATS = ("jsonl", "parquet")


def export_kept(store: Store, run_id: int, out: Path, fmt: str) -> int:
    """Write prompt/completion rows (TRL's format) of every kept rationale; returns the row count.

    The prompt is the question as the model is asked it, without the hint and
    without the shared few-shot prefix; the completion is what the model wrote.
    A file appears whole or not at all: a write that fails (a full disk, a
    folder that cannot be written) leaves no partial file and an older file of
    that name as it was. '-' writes to standard output; a FIFO or a character
    device is written through (write_file).
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise StarError(f"unknown export format {fmt!r}; use jsonl or parquet")
    if fmt == "parquet":
        refuse_binary_on_terminal(out)  # before the database is read
    if not is_stdout(out) and out.is_dir():
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


def label_format(out: Path | str, fmt: str | None) -> str:
    """The format asked for, else the one the file's name ends in (jsonl for standard output)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; use jsonl or parquet")
        return fmt
    suffix = Path(str(out)).suffix.lower().lstrip(".")
    if is_stdout(out) or suffix in ("jsonl", "json"):
        return "jsonl"
    if suffix in ("parquet", "pq"):
        return "parquet"
    raise ExportError(f"cannot tell the format from {out}: name it .jsonl or .parquet, or give --format")


def export_labels(store: Store, out: Path, fmt: str | None = None, run_id: int | None = None) -> int:
    """Write one row per (attempt, auditor): question, rationale, answer, gold, rating, tags, note, auditor,
    adjudicated (an adjudication is its adjudicator's row, marked), with the attempt's ids; returns the row count.

    Plain columns only (text, integers, booleans, a list of text for tags, the time as ISO text), so that
    HF datasets loads the file as written, like the kept rationales."""
    out = Path(out)
    fmt = label_format(out, fmt)
    if not is_stdout(out) and out.is_dir():
        raise ExportError(f"{out} is a folder; give the file to write, e.g. {out / f'labels.{fmt}'}")
    rows = store.label_export_rows(run_id)
    if rows.empty:
        where = f" of run {run_id}" if run_id is not None else ""
        raise ExportError(f"there are no audit labels{where} in {store.path} yet (label rationales on the Audit page)")
    rows["tags"] = [list(t) for t in rows["tags"]]
    rows["answer"] = rows["answer"].astype(object).where(rows["answer"].notna(), None)
    write_whole(rows, out, fmt)
    return len(rows)


def write_whole(rows: pd.DataFrame, out: Path, fmt: str) -> None:
    """Write `rows` to `out` as jsonl or parquet (write_file: '-' is standard output)."""
    if fmt == "jsonl":
        write_file(out, lambda f: rows.to_json(f, orient="records", lines=True, force_ascii=False))
    else:
        refuse_binary_on_terminal(out)
        write_file(out, lambda f: rows.to_parquet(f, index=False))


def refuse_binary_on_terminal(out: Path | str) -> None:
    """Parquet to standard output is written as bytes (for a pipe or a redirect), but not onto a terminal:
    binary there is unreadable and can leave the terminal in a bad state (gzip refuses it too)."""
    if is_stdout(out) and sys.stdout.isatty():
        raise ExportError("parquet is binary: redirect standard output to a file or a pipe, or give --out FILE")


def write_text(out: Path, text: str) -> None:
    """Write a text file (write_file: '-' is standard output)."""
    if not is_stdout(out) and out.is_dir():
        raise ExportError(f"{out} is a folder; give the file to write")
    data = text.encode("utf-8")
    write_file(out, lambda f: f.write(data))


def is_stdout(out: Path | str) -> bool:
    """'-' names standard output, as for most command-line tools (./- is a file of that name)."""
    return str(out) == "-"


def write_file(out: Path, write: Callable[[BinaryIO], object]) -> None:
    """Have `write` write the whole content to a binary file, put where `out` says.

    '-' is standard output. A regular file (new or existing, or the file a symlink points to: the
    link stays) is written to a temporary file beside it and renamed over it once complete, so it
    appears whole or not at all. A character device or a FIFO is written through: renaming over it
    would replace the device node or the pipe with a regular file.
    """
    if is_stdout(out):
        _write_through_stdout(_render(write))
        return
    target = _real_target(out)
    kind = _kind(target, out)
    if kind == "regular":
        _write_atomically(target, out, write)
        return
    data = _render(write)
    try:
        # No O_CREAT: the node is there (stat said so just now); O_TRUNC means nothing to a device or a FIFO.
        fd = os.open(target, os.O_WRONLY)
    except OSError as exc:
        raise ExportError(f"cannot open {out} ({kind}) for writing: {_reason(exc)}") from exc
    try:
        _write_all(fd, data, f"{out} ({kind})")
    finally:
        os.close(fd)


def _real_target(out: Path) -> Path:
    """The file `out` names, through any symlinks (a dangling link: the file it would create)."""
    if not out.is_symlink():
        return out
    try:
        return Path(os.path.realpath(out, strict=True))
    except FileNotFoundError:
        return Path(os.path.realpath(out))
    except OSError as exc:  # e.g. a link loop
        raise ExportError(f"cannot follow the link {out}: {_reason(exc)}") from exc


def _kind(target: Path, out: Path) -> str:
    """'regular' for a new or regular file; 'character device' or 'FIFO' for what is written through;
    anything else (a folder, a block device, a socket) is refused."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a new file (its folder, if a file is in the way, says so)
        return "regular"
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {_reason(exc)}") from exc
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        raise ExportError(f"{out} is a folder; give the file to write")
    # A block device is a disk: rows written over it destroy what is on it, never what an export means.
    what = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
    raise ExportError(f"{out} is {what}; give a file, a FIFO, a character device or - (standard output)")


def _write_atomically(target: Path, out: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a temporary file beside `target`, renamed over it once complete (`out`: the name the user gave)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {target.parent} for {out}: {_reason(exc)}") from exc
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as f:
            write(f)
        os.replace(part, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise ExportError(f"cannot write {out}: {_reason(exc)}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def _render(write: Callable[[BinaryIO], object]) -> memoryview:
    """The whole content, in memory: a stream cannot be rewound, so an error while rendering must come
    before its first byte, and a parquet writer need not be able to seek."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getbuffer()


def _write_through_stdout(data: memoryview) -> None:
    try:
        sys.stdout.flush()  # what was printed before stays before the rows
        stream = sys.stdout.buffer
        fd = _fileno(stream)
        if fd is None:  # an in-memory stream (a test's capture)
            stream.write(data)
            stream.flush()
            return
        stream.flush()
    except OSError as exc:
        raise ExportError(f"cannot write standard output: {_reason(exc)}") from exc
    # Straight to the descriptor: a failed write leaves nothing in Python's buffer to fail again at exit.
    _write_all(fd, data, "standard output")


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None


def _write_all(fd: int, data: memoryview, name: str) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:  # ENOSPC from /dev/full, EPIPE from a reader that left
        raise ExportError(f"cannot write {name}: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
