"""What each framework writes, read into one shape: a row per completion (docs/import.md has the mapping).

The row shape (ROW_COLUMNS): the training step, the attempt kind (generated for training rollouts, eval for
validation and evaluation), the prompt text, the question (the prompt unless the file names one), the
completion, the gold answer (None where the file has none), the reward, the file's own verdict (None where it
has none), the answer the framework extracted, the advantage, and the value of the --correct column.

The *_rows functions are pure (records in, rows out) and raise ImportInputError naming the file, line and
column at fault; the readers list a format's files and feed them in batches.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow.parquet as pq

from ...core.errors import ImportInputError
from ...core.states import AttemptKind, ImportFormat
from .rules import CorrectRule, as_number

ROW_COLUMNS = ["step", "kind", "prompt", "question", "completion", "gold", "reward", "file_correct", "predicted",
               "advantage", "rule_value"]

# Columns a TRL completions table may carry that are not rewards: the gold answer and question a reward
# function logged beside each completion (log_extra), as the examples name them.
TRL_FIXED = ("step", "prompt", "completion", "advantage")
GOLD_NAMES = ("answer", "gold", "gold_answer", "solution", "ground_truth", "target", "gts")
QUESTION_NAMES = ("question", "problem")
VERL_KEYS = ("input", "output", "score", "step")
_TRL_FILE = re.compile(r"completions_(\d+)\.parquet$")
_VERL_FILE = re.compile(r"(\d+)\.jsonl$")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    rel: str  # as imported_files records it: relative to the source folder
    rows: int  # rows (lines) in it now, a line cut short included


@dataclass(frozen=True)
class Chunk:
    rows: pd.DataFrame  # ROW_COLUMNS
    read_to: int  # whole rows of the file read once this chunk is stored
    skipped: str | None = None  # what of the file was left out, in words


def text_of(value) -> str:
    """A prompt or completion as text: a chat (list of messages) joins its messages' contents."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        content = value.get("content", "")
        return content if isinstance(content, str) else text_of(content)
    if isinstance(value, (list, tuple)):
        return "\n\n".join(text_of(v) for v in value if v is not None)
    return str(value)


def _gold_text(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, (list, tuple)):  # Inspect's target may be several accepted answers
        return " | ".join(str(v) for v in value) if value else None
    return str(value)


def _rule_values(values: list, rule: CorrectRule | None, where: list[str]) -> list[float | None]:
    """The --correct column as numbers; ImportInputError naming the row whose value is not one."""
    if rule is None:
        return [None] * len(values)
    out = []
    for value, place in zip(values, where):
        number = as_number(value)
        if number is None and value is not None:
            raise ImportInputError(f"{place}: column {rule.column!r} holds {value!r}, not a number --correct can compare")
        out.append(number)
    return out


def _frame(columns: dict) -> pd.DataFrame:
    return pd.DataFrame({c: columns[c] for c in ROW_COLUMNS})


# --- verl -------------------------------------------------------------------------------------------------------

def verl_rows(records: list, file: str, first_line: int, rule: CorrectRule | None) -> pd.DataFrame:
    """verl's dump lines (trainer.rollout_data_dir / validation_data_dir): validation lines carry `reward`."""
    for offset, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ImportInputError(f"{file}:{first_line + offset}: not a JSON object")
        missing = [k for k in VERL_KEYS if k not in rec]
        if missing:
            raise ImportInputError(f"{file}:{first_line + offset}: no {missing[0]!r} key: not a verl generations dump "
                                   f"(verl writes {', '.join(VERL_KEYS[:2])}, gts, score, step per line)")
        if rule is not None and rule.column not in rec:
            raise ImportInputError(f"{file}:{first_line + offset}: no {rule.column!r} key for --correct "
                                   f"(the line has {', '.join(rec)})")
    steps = []
    for offset, rec in enumerate(records):
        try:
            steps.append(int(rec["step"]))
        except (TypeError, ValueError):
            raise ImportInputError(f"{file}:{first_line + offset}: 'step' is {rec['step']!r}, not a whole number") from None
    prompts = [text_of(r["input"]) for r in records]
    rewards = [as_number(r.get("reward", r["score"])) for r in records]
    file_correct = [(as_number(r["acc"]) or 0.0) > 0 if "acc" in r and r["acc"] is not None
                    else (None if as_number(r["score"]) is None else as_number(r["score"]) > 0) for r in records]
    where = [f"{file}:{first_line + i}" for i in range(len(records))] if rule else []
    return _frame({
        "step": steps, "kind": [AttemptKind.EVAL.value if "reward" in r else AttemptKind.GENERATED.value for r in records],
        "prompt": prompts, "question": prompts, "completion": [text_of(r["output"]) for r in records],
        "gold": [_gold_text(r.get("gts")) for r in records], "reward": rewards, "file_correct": file_correct,
        "predicted": [None if r.get("pred") is None else str(r["pred"]) for r in records],
        "advantage": [None] * len(records),
        "rule_value": _rule_values([r.get(rule.column) for r in records] if rule else [None] * len(records), rule, where),
    })


# --- TRL --------------------------------------------------------------------------------------------------------

def trl_reward_columns(columns: list[str]) -> list[str]:
    """The reward functions' columns of a completions table: all but the fixed ones, the gold and the question."""
    return [c for c in columns if c not in TRL_FIXED and c not in GOLD_NAMES and c not in QUESTION_NAMES]


def check_trl_columns(columns: list[str], file: str, rule: CorrectRule | None) -> None:
    missing = [c for c in ("step", "prompt", "completion") if c not in columns]
    if missing:
        raise ImportInputError(f"{file}: no {missing[0]!r} column: not a TRL completions table "
                               f"(GRPOTrainer with log_completions=True writes step, prompt, completion, one column "
                               f"per reward function, advantage); its columns are {', '.join(columns)}")
    if rule is not None and rule.column not in columns:
        raise ImportInputError(f"{file}: no column {rule.column!r} for --correct; its columns are {', '.join(columns)}")


def trl_rows(frame: pd.DataFrame, file: str, first_row: int, rule: CorrectRule | None) -> pd.DataFrame:
    """A TRL completions table (completions/completions_{step:05d}.parquet); `step` may be text (older TRL)."""
    columns = list(frame.columns)
    check_trl_columns(columns, file, rule)
    try:
        steps = pd.to_numeric(frame["step"], errors="raise").astype("int64").tolist()
    except (TypeError, ValueError):
        bad = next(i for i, s in enumerate(frame["step"]) if not str(s).strip().lstrip("-").isdigit())
        raise ImportInputError(f"{file}: row {first_row + bad + 1}, column 'step': {frame['step'].iloc[bad]!r} is not "
                               "a whole number") from None
    rewards = trl_reward_columns(columns)
    numeric = []
    for name in rewards:
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.notna().any() or frame[name].isna().all():
            numeric.append(values)
    total = sum(numeric).tolist() if numeric else [None] * len(frame)
    gold_column = next((c for c in GOLD_NAMES if c in columns), None)
    question_column = next((c for c in QUESTION_NAMES if c in columns), None)
    prompts = [text_of(p) for p in frame["prompt"].tolist()]
    where = [f"{file}: row {first_row + i + 1}" for i in range(len(frame))] if rule else []
    return _frame({
        "step": steps, "kind": [AttemptKind.GENERATED.value] * len(frame), "prompt": prompts,
        "question": [text_of(q) for q in frame[question_column].tolist()] if question_column else prompts,
        "completion": [text_of(c) for c in frame["completion"].tolist()],
        "gold": [_gold_text(g) for g in frame[gold_column].tolist()] if gold_column else [None] * len(frame),
        "reward": [None if pd.isna(t) else float(t) for t in total] if numeric else total,
        "file_correct": [None] * len(frame), "predicted": [None] * len(frame),
        "advantage": pd.to_numeric(frame["advantage"], errors="coerce").tolist() if "advantage" in columns
        else [None] * len(frame),
        "rule_value": _rule_values(frame[rule.column].tolist() if rule else [None] * len(frame), rule, where),
    })


# --- Inspect ----------------------------------------------------------------------------------------------------

def inspect_rows(samples: list, file: str, step: int, rule: CorrectRule | None) -> pd.DataFrame:
    """Inspect eval log samples: input, target, output.completion, scores {scorer: {value, answer}}, epoch."""
    prompts, completions, gold, rewards, verdicts, predicted, rule_values = [], [], [], [], [], [], []
    for sample in samples:
        place = f"{file}: sample {sample.get('id')!r} epoch {sample.get('epoch')}" if isinstance(sample, dict) else file
        if not isinstance(sample, dict) or "input" not in sample or "scores" not in sample:
            raise ImportInputError(f"{place}: a sample without 'input' or 'scores': not an Inspect eval log sample")
        scores = sample.get("scores") or {}
        first = next(iter(scores.values()), {}) if scores else {}
        if rule is not None:
            if rule.column not in scores:
                raise ImportInputError(f"{place}: no scorer {rule.column!r} for --correct; its scorers are "
                                       f"{', '.join(scores) or 'none'}")
            rule_values.append(_rule_values([scores[rule.column].get("value")], rule, [place])[0])
        else:
            rule_values.append(None)
        value = as_number(first.get("value")) if first else None
        prompts.append(text_of(sample["input"]))
        completions.append(text_of(((sample.get("output") or {}).get("completion"))))
        gold.append(_gold_text(sample.get("target")))
        rewards.append(value)
        verdicts.append(None if value is None else value >= 1.0)
        predicted.append(None if first.get("answer") is None else str(first["answer"]))
    n = len(samples)
    return _frame({"step": [step] * n, "kind": [AttemptKind.EVAL.value] * n, "prompt": prompts, "question": prompts,
                   "completion": completions, "gold": gold, "reward": rewards, "file_correct": verdicts,
                   "predicted": predicted, "advantage": [None] * n, "rule_value": rule_values})


# --- readers ----------------------------------------------------------------------------------------------------

def _relative(path: Path, root: Path) -> str:
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def _step_files(root: Path, pattern: re.Pattern, glob: str, what: str) -> list[Path]:
    found = [root] if root.is_file() else [p for p in root.rglob(glob) if p.is_file()]
    files = [p for p in found if pattern.search(p.name)]
    if not files:
        if root.is_file():
            raise ImportInputError(f"{root}: not a {what}")
        raise ImportInputError(f"{root}: no {what} in this folder")
    return sorted(files, key=lambda p: (int(pattern.search(p.name)[1]), p.as_posix()))


class VerlReader:
    framework = "verl"

    def files(self, root: Path) -> list[SourceFile]:
        files = _step_files(root, _VERL_FILE, "*.jsonl", "verl step file ({step}.jsonl, from trainer.rollout_data_dir "
                            "or trainer.validation_data_dir)")
        return [SourceFile(p, _relative(p, root), _count_lines(p)) for p in files]

    def check(self, source: SourceFile, rule: CorrectRule | None) -> None:
        with open(source.path, "rb") as f:
            first = f.readline()
        if not first.strip():
            return
        try:
            record = json.loads(first)
        except ValueError:
            raise ImportInputError(f"{source.path}:1: not a JSON line: not a verl generations dump") from None
        verl_rows([record], str(source.path), 1, rule)

    def version(self, files: list[SourceFile]) -> str | None:
        return None  # verl's dumps do not say

    def model(self, files: list[SourceFile]) -> str:
        return "unknown (verl dumps do not name it)"

    def chunks(self, source: SourceFile, start: int, rule: CorrectRule | None, batch_rows: int) -> Iterator[Chunk]:
        records: list = []
        first_line = start + 1
        line_no = 0
        skipped = None
        with open(source.path, "rb") as f:
            for line_no, line in enumerate(f, start=1):
                if line_no <= start:
                    continue
                if not line.endswith(b"\n"):  # the last line, still being written if it does not parse
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        skipped = (f"{source.path}:{line_no}: the last line is cut short (no line end; the trainer "
                                   "may still be writing it): not imported, a re-import takes it once it is whole")
                        line_no -= 1
                    break
                if not line.strip():
                    records.append(None)
                else:
                    try:
                        records.append(json.loads(line))
                    except ValueError as exc:
                        raise ImportInputError(f"{source.path}:{line_no}: not a JSON line ({exc})") from None
                if len(records) >= batch_rows:
                    yield Chunk(self._rows(records, source, first_line, rule), line_no)
                    records, first_line = [], line_no + 1
        yield Chunk(self._rows(records, source, first_line, rule), max(line_no, start), skipped)

    @staticmethod
    def _rows(records: list, source: SourceFile, first_line: int, rule) -> pd.DataFrame:
        # A blank line is no row (a file some tool re-wrote may have one); the numbering of the others stays.
        kept = [(i, r) for i, r in enumerate(records) if r is not None]
        if len(kept) == len(records):
            return verl_rows(records, str(source.path), first_line, rule)
        parts = [verl_rows([r], str(source.path), first_line + i, rule) for i, r in kept]
        return pd.concat(parts, ignore_index=True) if parts else _frame({c: [] for c in ROW_COLUMNS})


class TrlReader:
    framework = "TRL"

    def files(self, root: Path) -> list[SourceFile]:
        files = _step_files(root, _TRL_FILE, "*.parquet", "TRL completions table (completions/completions_{step:05d}"
                            ".parquet, from GRPOTrainer with log_completions=True)")
        return [SourceFile(p, _relative(p, root), self._meta(p).num_rows) for p in files]

    @staticmethod
    def _meta(path: Path):
        try:
            return pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow raises several kinds for a file that is not (or not yet all) parquet
            raise ImportInputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None

    def check(self, source: SourceFile, rule: CorrectRule | None) -> None:
        check_trl_columns(pq.ParquetFile(source.path).schema_arrow.names, str(source.path), rule)

    def version(self, files: list[SourceFile]) -> str | None:
        return None  # the table says nothing of the TRL that wrote it

    def model(self, files: list[SourceFile]) -> str:
        return "unknown (TRL's completions table does not name it)"

    def chunks(self, source: SourceFile, start: int, rule: CorrectRule | None, batch_rows: int) -> Iterator[Chunk]:
        done = 0
        for batch in pq.ParquetFile(source.path).iter_batches(batch_size=batch_rows):
            frame = batch.to_pandas()
            if done + len(frame) > start:
                frame = frame.iloc[max(0, start - done):].reset_index(drop=True)
                first = max(done, start)
                done += batch.num_rows
                yield Chunk(trl_rows(frame, str(source.path), first, rule), done)
            else:
                done += batch.num_rows


class InspectReader:
    framework = "Inspect AI"

    def files(self, root: Path) -> list[SourceFile]:
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in (".eval", ".json"))
        if not found:
            raise ImportInputError(f"{root}: no Inspect eval log (.eval or .json) in this folder")
        self.steps = {p: i for i, p in enumerate(found)}
        return [SourceFile(p, _relative(p, root), len(self._samples(p))) for p in found]

    def check(self, source: SourceFile, rule: CorrectRule | None) -> None:
        samples = self._samples(source.path)
        inspect_rows(samples[:1], str(source.path), 0, rule)

    def version(self, files: list[SourceFile]) -> str | None:
        versions = sorted({v for f in files if (v := (self._header(f.path).get("packages") or {}).get("inspect_ai"))})
        return ", ".join(versions) or None

    def model(self, files: list[SourceFile]) -> str:
        models = sorted({m for f in files if (m := self._header(f.path).get("model"))})
        return ", ".join(models) or "unknown"

    def chunks(self, source: SourceFile, start: int, rule: CorrectRule | None, batch_rows: int) -> Iterator[Chunk]:
        # A log is one evaluation: its step is its place among the logs imported (0 for the first).
        samples = self._samples(source.path)
        step = getattr(self, "steps", {}).get(source.path, 0)
        for begin in range(start, len(samples), batch_rows):
            part = samples[begin:begin + batch_rows]
            yield Chunk(inspect_rows(part, str(source.path), step, rule), begin + len(part))

    # An .eval log is a zip: header.json (the eval's task, model, packages) and samples/{id}_epoch_{n}.json.
    def _header(self, path: Path) -> dict:
        if path.suffix == ".json":
            return self._json(path).get("eval") or {}
        with self._zip(path) as z:
            try:
                return (json.loads(_member(path, z, "header.json")).get("eval")) or {}
            except KeyError:
                names = z.namelist()
                start = next((n for n in names if n.endswith("_journal/start.json")), None)
                return json.loads(_member(path, z, start)).get("eval", {}) if start else {}

    def _samples(self, path: Path) -> list[dict]:
        if path.suffix == ".json":
            log = self._json(path)
            if "eval" not in log:
                raise ImportInputError(f"{path}: no 'eval' header: not an Inspect eval log")
            samples = log.get("samples") or []
        else:
            with self._zip(path) as z:
                names = [n for n in z.namelist() if n.startswith("samples/") and n.endswith(".json")]
                samples = []
                for name in names:
                    try:
                        samples.append(json.loads(_member(path, z, name)))
                    except ValueError:
                        raise ImportInputError(f"{path}: {name} is not JSON") from None
        return sorted(samples, key=lambda s: (s.get("epoch") or 0, str(s.get("id"))) if isinstance(s, dict) else (0, ""))

    @staticmethod
    def _zip(path: Path) -> zipfile.ZipFile:
        try:
            z = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError):
            raise ImportInputError(f"{path}: not an Inspect .eval log (not a zip archive; cut short, or another "
                                   "framework's file)") from None
        if "header.json" not in z.namelist() and not any(n.startswith("samples/") for n in z.namelist()):
            z.close()
            raise ImportInputError(f"{path}: a zip archive without header.json or samples/: not an Inspect .eval log")
        return z

    @staticmethod
    def _json(path: Path) -> dict:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImportInputError(f"{path}: not JSON ({exc}): not an Inspect eval log") from None
        if not isinstance(data, dict):
            raise ImportInputError(f"{path}: not an Inspect eval log (a JSON object with eval and samples)")
        return data


READERS = {ImportFormat.TRL_GRPO: TrlReader, ImportFormat.VERL: VerlReader, ImportFormat.INSPECT: InspectReader}
assert set(READERS) == set(ImportFormat), "every ImportFormat needs its reader here"


# Inspect writes its .eval members zstd-compressed (zip method 93), which Python's zipfile reads only from 3.14.
_ZIP_ZSTANDARD = 93


def _member(path: Path, z: zipfile.ZipFile, name: str) -> bytes:
    """A zip member's bytes, zstd members included (with the zstandard package: the `import` extra)."""
    info = z.getinfo(name)
    if info.compress_type != _ZIP_ZSTANDARD:
        return z.read(name)
    try:
        import zstandard
    except ImportError:
        raise ImportInputError(f"{path}: this Inspect log is zstd-compressed; reading it needs the zstandard package "
                               "(pip install 'star-studio[import]')") from None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
        f.seek(start)
        data = f.read(info.compress_size)
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
        return reader.read()


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
