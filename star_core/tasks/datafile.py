"""Reading a dataset file (JSONL or CSV) into problems, line by line, with errors that name the line.

A task gives a `parse(row) -> Problem` function that raises RowError for a bad
row; this module turns that into DatasetError('<file>:<line>: <why>') before
anything is stored, or skips the row and counts it when the user asked
(RunConfig.skip_bad_lines). It also carves the deterministic train/eval split.
"""

from __future__ import annotations


import csv
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import ConfigError, DatasetError
from .base import Problem
from .settings import TaskSettings



class RowError(ValueError):
    """One row of a dataset file is unusable (the message says why)."""


@dataclass
class LoadReport:
    path: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.path}: {self.rows} rows loaded"
        first = "; ".join(f"line {n}: {why}" for n, why in self.skipped[:3])
        return f"{self.path}: {self.rows} rows loaded, {len(self.skipped)} bad rows skipped ({first}{'; ...' if len(self.skipped) > 3 else ''})"


def read_rows(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    """(line number, row) for every record; a row that cannot be read is a RowError in its place."""
    if not path.exists():
        raise DatasetError(f"data file {path} does not exist")
    if path.is_dir():
        raise DatasetError(f"data path {path} is a folder; pass the .jsonl or .csv file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            yield from _csv_rows(path, "\t" if suffix == ".tsv" else ",")
        else:
            yield from _jsonl_rows(path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from exc


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield number, row if isinstance(row, dict) else RowError(f"a JSON {type(row).__name__}, not an object")


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict | RowError]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter, strict=True)
        if not reader.fieldnames:
            raise DatasetError(f"{path}: the CSV file has no header line")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, RowError(f"not valid CSV ({exc})")
                return  # the reader cannot resynchronise after a broken quote
            if None in row:
                yield start, RowError(f"{len(reader.fieldnames) + len(row[None])} cells for {len(reader.fieldnames)} columns")
            elif any(v is None for v in row.values()):
                yield start, RowError(f"fewer cells than the {len(reader.fieldnames)} columns")
            else:
                yield start, row


def load_file(path: str | Path, parse: Callable[[dict, int], Problem], skip_bad: bool) -> tuple[list[Problem], LoadReport]:
    """Every row of a file parsed to a problem; the first bad row raises (or every bad row is skipped)."""
    path = Path(path).expanduser()
    report = LoadReport(str(path))
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, row in read_rows(path):
        try:
            if isinstance(row, RowError):
                raise row
            problem = parse(row, number)
            if problem.id in seen:
                raise RowError(f"id {problem.id!r} repeats line {seen[problem.id]}")
        except RowError as exc:
            if not skip_bad:
                raise DatasetError(f"{path}:{number}: {exc} (pass --skip-bad-lines to skip bad rows)") from None
            report.skipped.append((number, str(exc)))
            continue
        seen[problem.id] = number
        problems.append(problem)
    report.rows = len(problems)
    if not problems:
        raise DatasetError(f"{path}: no usable rows" + (f" ({len(report.skipped)} bad rows skipped)" if report.skipped else ""))
    return problems, report


def split(problems: list[Problem], settings: TaskSettings) -> list[Problem]:
    """A deterministic eval and train sample (disjoint) drawn with the seed: eval rows first, then train."""
    wanted = settings.train_size + settings.eval_size
    if wanted > len(problems):
        raise ConfigError(
            "train_size", f"train_size + eval_size = {wanted} exceeds the {len(problems)} usable rows of the data; ask for fewer"
        )
    order = list(range(len(problems)))
    random.Random(settings.seed).shuffle(order)
    chosen = [problems[i] for i in order[:wanted]]
    return [replace(p, split="eval") for p in chosen[: settings.eval_size]] + [
        replace(p, split="train") for p in chosen[settings.eval_size :]
    ]


def field_value(row: dict, path: str):
    """A row's value at a field path: 'q', or 'question.stem' into nested objects (a flat key wins)."""
    if path in row:
        return row[path]
    value = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise RowError(f"missing field {path!r}")
    return value


def text_value(row: dict, path: str, what: str) -> str:
    value = field_value(row, path)
    if isinstance(value, (dict, list)) or value is None:
        raise RowError(f"field {path!r} ({what}) is {type(value).__name__}, not text")
    text = str(value).strip()
    if not text:
        raise RowError(f"field {path!r} ({what}) is empty")
    return text


def parse_choices(value) -> tuple[tuple[str, str], ...]:
    """Choices as (label, text) pairs from the shapes datasets use.

    A list of texts (labelled A, B, ...), a list of {label, text} objects, a
    {label: [...], text: [...]} object (the Hugging Face layout), a {label: text}
    object, or in a CSV cell a JSON list/object or texts separated by '|'.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise RowError(f"choices are not valid JSON ({exc.msg})") from None
        else:
            value = [t.strip() for t in stripped.split("|")]
    if isinstance(value, dict) and set(value) >= {"label", "text"} and isinstance(value["label"], list):
        if not isinstance(value["text"], list) or len(value["text"]) != len(value["label"]):
            raise RowError("choices: 'label' and 'text' lists differ in length")
        pairs = list(zip(value["label"], value["text"]))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(c, dict) for c in value):
        try:
            pairs = [(c["label"], c["text"]) for c in value]
        except KeyError as exc:
            raise RowError(f"a choice lacks {exc.args[0]!r}") from None
    elif isinstance(value, list):
        if len(value) > 26:
            raise RowError(f"{len(value)} choices; at most 26 can be lettered")
        pairs = [(chr(ord("A") + i), c) for i, c in enumerate(value)]
    else:
        raise RowError(f"choices are a {type(value).__name__}, not a list")
    out = tuple((str(label).strip(), str(text).strip()) for label, text in pairs)
    if len(out) < 2:
        raise RowError("fewer than 2 choices")
    labels = [label for label, _ in out]
    if any(not label or not label.isalnum() or len(label) > 2 for label in labels):
        raise RowError(f"choice labels must be 1-2 letters or digits, got {labels}")
    if len({label.upper() for label in labels}) != len(labels):
        raise RowError(f"choice labels repeat: {labels}")
    if any(not text for _, text in out):
        raise RowError("a choice has no text")
    return out


def gold_label(answer: str, choices: tuple[tuple[str, str], ...]) -> str:
    """The label a gold answer names (its label, '(B)', or its exact text); RowError for anything else."""
    from .answers import normalise_text

    key = answer.strip().strip("()").strip()
    for label, _ in choices:
        if key.upper() == label.upper():
            return label
    hits = [label for label, text in choices if normalise_text(text) == normalise_text(answer)]
    if len(hits) == 1:
        return hits[0]
    raise RowError(f"answer {answer!r} is not one of the choice labels {', '.join(l for l, _ in choices)} nor one choice's text")


def load_problems(task: str, settings: TaskSettings, parse_row, hub_id: str, hub_subset: str | None,
                  example: str) -> tuple[list[Problem], LoadReport | None]:
    """A dataset task's problems, split by the seed: from --data, else from the hub; and the file's load report."""
    if settings.data:
        problems, report = load_file(settings.data, parse_row, settings.skip_bad_lines)
    else:
        problems, report = load_from_hub(task, hub_id, hub_subset, parse_row, settings.skip_bad_lines, example), None
    return split(problems, settings), report


def load_from_hub(task: str, hub_id: str, subset: str | None, parse_row, skip_bad: bool, example: str) -> list[Problem]:
    """A task's training split from the Hugging Face hub (needs the `datasets` extra and a network).

    Offline, or without `datasets`, the message says which local file to pass with --data instead.
    """
    try:
        from datasets import load_dataset
    except ImportError:
        raise _hub_unavailable(task, hub_id, None, example) from None
    try:
        rows = load_dataset(hub_id, subset, split="train")
    except Exception as exc:  # offline, or the hub refused
        raise _hub_unavailable(task, hub_id, exc, example) from None
    problems = []
    for number, row in enumerate(rows, start=1):
        try:
            problems.append(parse_row(dict(row), number))
        except RowError as exc:
            if not skip_bad:
                raise DatasetError(f"{hub_id} row {number}: {exc}") from None
    return problems


def _hub_unavailable(task: str, hub_id: str, exc: Exception | None, example: str) -> DatasetError:
    why = "the 'datasets' package is not installed (pip install 'star-studio[datasets]')" if exc is None else f"{type(exc).__name__}: {exc}"
    return DatasetError(
        f"task {task} needs its data: pass a local file with --data (e.g. --data {example}); "
        f"loading {hub_id} from the Hugging Face hub failed: {str(why)[:300]}"
    )
