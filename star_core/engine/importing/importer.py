"""`star import`: another framework's generations become a run (docs/import.md).

Steps become iterations, each distinct prompt text one problem (shared by every step that asks it), several
completions of a prompt at one step its samples. Right or wrong comes from the --correct column, else from the
task's own answer check against the file's gold answer (--task), else from the format's own verdict; with a task
that checks steps, every completion gets our step verdict too.

Every file is checked (its columns, the --correct column) before anything is stored; then each file is stored in
one transaction, in batches, from its first row not yet stored: importing the same files again adds nothing, a
new step's file adds only that step, and a file cut mid-line gives its whole lines and says what it left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ...core.config import RunConfig
from ...core.errors import ImportInputError
from ...core.states import IMPORT_FORMATS, AttemptKind, ImportFormat
from ...store import Store
from ...store.imports import IMPORT_SCHEMA, PROBLEM_SCHEMA, NewImportedRun
from ...tasks import Problem, Task, TaskKey, task_for_key
from ..judge import judge
from .formats import READERS, SourceFile, trl_reward_columns
from .rules import CorrectRule, parse_correct_rule

# Rows per batch: a few MB of text, and one Arrow insert each (docs/measurements.md has the rate).
BATCH_ROWS = 50_000
Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass
class ImportOutcome:
    run_id: int | None  # None: nothing was stored and there was no run yet
    new_run: bool
    files: int  # files with rows added
    rows: int  # attempts added
    skipped: list[str] = field(default_factory=list)  # what was left out, one line each


def import_run(store: Store, format: str, path: str | Path, name: str | None = None, task: str | None = None,
               correct: str | None = None, on_progress: Progress | None = None,
               batch_rows: int = BATCH_ROWS) -> ImportOutcome:
    try:
        fmt = ImportFormat(format)
    except ValueError:
        raise ImportInputError(f"unknown format {format!r}; known formats: {', '.join(IMPORT_FORMATS)}") from None
    root = Path(path).expanduser()
    if not root.exists():
        raise ImportInputError(f"{root}: no such file or folder")
    root = root.resolve()
    rule = parse_correct_rule(correct) if correct else None
    judge_task = task_for_key(TaskKey.parse(task)) if task else None
    reader = READERS[fmt]()
    files = reader.files(root)
    for source in files:  # every file checked before anything is stored
        reader.check(source, rule)
    if fmt == ImportFormat.TRL_GRPO and rule is None and judge_task is None:
        _one_reward(files[0])
    how = _rule_text(fmt, rule, judge_task)

    run_id = store.imported_run_of(fmt.value, str(root))
    if run_id is not None:
        earlier = store.imported_run(run_id)
        if earlier.correct_rule != how:
            raise ImportInputError(f"run {run_id} holds an earlier import of {root}, judged by {earlier.correct_rule}; "
                                   f"import again with the same --task/--correct (this one: {how})")
    done = store.imported_rows(run_id) if run_id is not None else {}
    todo = [s for s in files if s.rows > done.get(s.rel, 0)]
    total = sum(s.rows - done.get(s.rel, 0) for s in todo)
    outcome = ImportOutcome(run_id, run_id is None, 0, 0)
    if not todo:
        return outcome
    new = None if run_id is not None else NewImportedRun(
        _config(name or f"{fmt.value} {root.name}", judge_task, reader.model(files)), fmt.value, str(root),
        reader.framework, reader.version(files), how)
    progress = 0
    for source in todo:
        added, skipped, read_to = 0, None, done.get(source.rel, 0)
        with store.importing(run_id if run_id is not None else new) as writer:
            counts: dict[int, dict] = {}
            for chunk in reader.chunks(source, read_to, rule, batch_rows):
                if len(chunk.rows):
                    problems, attempts = _tables(chunk.rows, writer, counts, fmt, rule, judge_task)
                    writer.add(problems, attempts)
                    added += len(chunk.rows)
                skipped = chunk.skipped or skipped
                progress += chunk.read_to - read_to
                read_to = chunk.read_to
                if on_progress:
                    on_progress(progress, total)
            writer.finish_file(source.rel, read_to, skipped)
            run_id = writer.run_id
        outcome.run_id = run_id
        outcome.rows += added
        outcome.files += 1 if added else 0
        if skipped:
            outcome.skipped.append(skipped)
    return outcome


def upload_folder(store: Store, name: str, files: list[tuple[str, bytes]]) -> Path:
    """Where the app keeps uploaded files to import, beside the database: <db stem>-imports/<name>/. The same name
    is the same folder, so uploading a new step's file under it adds that step to the same run."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "upload"
    folder = store.path.parent / f"{store.path.stem}-imports" / safe
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in files:
        (folder / Path(filename).name).write_bytes(data)
    return folder


def _one_reward(source: SourceFile) -> None:
    """TRL has no verdict of its own: without --correct or --task, its one reward function's reward > 0 says right."""
    rewards = trl_reward_columns(pq.ParquetFile(source.path).schema_arrow.names)
    if len(rewards) != 1:
        raise ImportInputError(f"{source.path}: {len(rewards)} reward columns ({', '.join(rewards) or 'none'}): say which "
                               "one means right with --correct COLUMN>THRESHOLD, or give --task to check the answers")


def _config(name: str, task: Task | None, model: str) -> RunConfig:
    """The run's settings: the task it is judged by (without one, answers compare as text), zero iterations so far."""
    if task is None:
        return RunConfig(name=name, task="jsonl", answer_type="exact", model=model, iterations=0)
    return RunConfig(name=name, task=task.key.name, model=model, iterations=0,
                     **RunConfig.parse_values(task.key.config_values()))


def _rule_text(fmt: ImportFormat, rule: CorrectRule | None, task: Task | None) -> str:
    if rule is not None:
        return f"the column {rule}"
    if task is not None:
        return f"the {task.key.describe()} task's answer check against the file's gold answer"
    return {ImportFormat.VERL: "verl's acc (else score > 0)", ImportFormat.INSPECT: "the first scorer's value (C = right)",
            ImportFormat.TRL_GRPO: "the reward > 0 (one reward function)"}[fmt]


def problem_id(split: str, prompt: str) -> str:
    """The same prompt text is the same problem at every step (and in another import of it)."""
    return f"{split}-{hashlib.sha1(prompt.encode()).hexdigest()[:16]}"


def _tables(rows: pd.DataFrame, writer, counts: dict, fmt: ImportFormat, rule: CorrectRule | None,
            task: Task | None) -> tuple[pa.Table, pa.Table]:
    n = len(rows)
    run_id = writer.ensure_run()
    splits = ["eval" if k == AttemptKind.EVAL else "train" for k in rows["kind"]]
    ids_of: dict[tuple[str, str], str] = {}
    pids = [ids_of.get((s, p)) or ids_of.setdefault((s, p), problem_id(s, p)) for s, p in zip(splits, rows["prompt"])]
    gold = _texts(rows["gold"])
    if task is not None and any(g is None for g in gold):
        raise ImportInputError(f"the {fmt.value} files have no gold answer for --task to check against "
                               f"(TRL: log it with log_extra as 'answer'; verl: gts); name --correct COLUMN>THRESHOLD instead")
    questions = [_question_of(q, task) for q in rows["question"]]

    # Samples: the completions of one prompt at one step, numbered after those already stored.
    samples = []
    for step, kind, pid in zip(rows["step"].tolist(), rows["kind"].tolist(), pids):
        seen = counts.get(step)
        if seen is None:
            seen = counts[step] = writer.sample_counts(step)
        key = (kind, pid)
        samples.append(seen.get(key, 0))
        seen[key] = samples[-1] + 1

    completions = rows["completion"].tolist()
    if task is not None:
        judged = [judge(task, Problem(pid, q, g, s), AttemptKind(k), c)
                  for pid, q, g, s, k, c in zip(pids, questions, gold, splits, rows["kind"], completions)]
        rationale = [j.rationale for j in judged]
        predicted = [j.predicted for j in judged]
        correct = [j.correct for j in judged]
        verified = [j.verified for j in judged]
        reason = [j.verify_reason for j in judged]
    else:
        rationale = [c.strip() for c in completions]
        predicted = _texts(rows["predicted"])
        correct = _file_verdicts(rows, fmt)
        verified, reason = [None] * n, [""] * n
    if rule is not None:
        correct = [v is not None and rule.holds(v) for v in rows["rule_value"].tolist()]
    # GRPO trains on every rollout; those it reinforced (advantage > 0) are what STaR would call kept.
    advantage = rows["advantage"].tolist()
    kept = [(a > 0 if a is not None and a == a else bool(c)) and k == AttemptKind.GENERATED
            for a, c, k in zip(advantage, correct, rows["kind"])]
    rewards = [None if r is None or r != r else float(r) for r in rows["reward"].tolist()]
    none = [None] * n
    attempts = pa.Table.from_arrays([
        pa.array([run_id] * n, pa.int64()), pa.array(rows["step"].tolist(), pa.int64()), pa.array(pids, pa.string()),
        pa.array(rows["kind"].tolist(), pa.string()), pa.array(samples, pa.int64()),
        pa.array([writer.prompt_id()] * n, pa.int64()), pa.array(rows["prompt"].tolist(), pa.string()),
        pa.array(none, pa.string()), pa.array(completions, pa.string()), pa.array(rationale, pa.string()),
        pa.array(predicted, pa.string()), pa.array([bool(c) for c in correct], pa.bool_()), pa.array(verified, pa.bool_()),
        pa.array(reason, pa.string()), pa.array(none, pa.int64()), pa.array(none, pa.int64()),
        pa.array(none, pa.float64()), pa.array(none, pa.bool_()),
        # given_text, given_steps, steps: no partial hint in another framework's rollouts
        pa.array(none, pa.string()), pa.array(none, pa.int64()), pa.array(none, pa.int64()), pa.array(kept, pa.bool_()),
        pa.array(rewards, pa.float64()),
    ], schema=IMPORT_SCHEMA)
    problems = pa.Table.from_arrays([
        pa.array(pids, pa.string()), pa.array(splits, pa.string()), pa.array(questions, pa.string()),
        pa.array([g if g is not None else "" for g in gold], pa.string()),
    ], schema=PROBLEM_SCHEMA)
    return problems, attempts


def _texts(column: pd.Series) -> list[str | None]:
    """A text column as str or None (pandas keeps a missing text as NaN)."""
    return [v if isinstance(v, str) else None for v in column.tolist()]


def _file_verdicts(rows: pd.DataFrame, fmt: ImportFormat) -> list[bool]:
    verdicts = rows["file_correct"].tolist()
    if fmt == ImportFormat.TRL_GRPO:  # TRL has no verdict of its own: one reward function's reward > 0
        return [r is not None and r == r and r > 0 for r in rows["reward"].tolist()]
    return [v is True or v == True for v in verdicts]  # noqa: E712 - None and NaN (no verdict) are not right


def _question_of(text: str, task: Task | None) -> str:
    """The question a task checks: our own prompt format's last 'Question: ... = ?' / '...\\nAnswer:' where the prompt
    is in it (few-shot exemplars before it), else the whole text."""
    if task is None or "Question:" not in text:
        return text
    question = text.rsplit("Question:", 1)[1]
    question = question.rsplit("Answer:", 1)[0] if "Answer:" in question else question
    question = question.strip()
    return question[:-3].strip() if question.endswith("= ?") else question
