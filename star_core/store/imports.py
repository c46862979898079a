"""Imported runs: runs whose attempts another framework generated (`star import`, docs/import.md).

An imported run is an ordinary run to every page (status done, its steps as iterations); what is its own is kept
beside it: where it came from (imported_runs), how far each file is in (imported_files), and the reward the other
framework gave each attempt (attempt_rewards). One file is stored in one transaction, in batches: a file is in
whole or not at all, and a re-import reads each file from its first row not yet stored.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Iterator

import duckdb
import pandas as pd
import pyarrow as pa

from ..core.config import RunConfig
from ..core.states import RunStatus
from ..tasks import task_key
from .attempts import _ARROW_SCHEMA, insert_attempts
from .queries import Queries

# An imported attempt has no few-shot prefix of ours: they all point at the empty one.
NO_PREFIX = ""

# What the importer hands over per batch: the attempts' own columns, then the reward (NULL: none).
IMPORT_SCHEMA = pa.schema([*_ARROW_SCHEMA, ("used_for_training", pa.bool_()), ("reward", pa.float64())])
PROBLEM_SCHEMA = pa.schema([("problem_id", pa.string()), ("split", pa.string()), ("question", pa.string()),
                            ("answer", pa.string())])
_ATTEMPT_COLUMNS = ", ".join([*_ARROW_SCHEMA.names, "used_for_training"])


@dataclass(frozen=True)
class ImportedRun:
    run_id: int
    format: str
    source: str
    framework: str
    framework_version: str | None
    correct_rule: str


@dataclass(frozen=True)
class NewImportedRun:
    """A run to create in the transaction of the first file that has rows (so a failed import leaves no run)."""

    config: RunConfig
    format: str
    source: str
    framework: str
    framework_version: str | None
    correct_rule: str


class ImportWriter:
    """Stores one file's batches inside the transaction `ImportQueries.importing` holds."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run: NewImportedRun | int):
        self.con = con
        self._new = run if isinstance(run, NewImportedRun) else None
        self.run_id: int | None = None if self._new else int(run)
        self._prompt_id: int | None = None

    def ensure_run(self) -> int:
        if self.run_id is None:
            new = self._new
            self.run_id = self.con.execute(
                "INSERT INTO runs (name, task, task_key, model, config, status, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, now()) RETURNING id",
                [new.config.name, new.config.task, str(task_key(new.config)), new.config.model, new.config.to_json(),
                 RunStatus.DONE.value]).fetchall()[0][0]
            self.con.execute("INSERT INTO imported_runs (run_id, format, source, framework, framework_version, correct_rule) "
                             "VALUES (?, ?, ?, ?, ?, ?)", [self.run_id, new.format, new.source, new.framework,
                                                            new.framework_version, new.correct_rule])
        return self.run_id

    def prompt_id(self) -> int:
        if self._prompt_id is None:
            digest = hashlib.sha256(NO_PREFIX.encode()).hexdigest()
            self.con.execute("INSERT INTO prompts (sha256, text) VALUES (?, ?) ON CONFLICT DO NOTHING", [digest, NO_PREFIX])
            self._prompt_id = self.con.execute("SELECT id FROM prompts WHERE sha256 = ?", [digest]).fetchall()[0][0]
        return self._prompt_id

    def sample_counts(self, iteration: int) -> dict[tuple[str, str], int]:
        """(kind, problem id) -> samples stored at an iteration (a resumed file numbers its samples after them)."""
        if self.run_id is None:
            return {}
        rows = self.con.execute("SELECT kind, problem_id, count(*) FROM attempts WHERE run_id = ? AND iteration = ? "
                                "GROUP BY kind, problem_id", [self.run_id, iteration]).fetchall()
        return {(k, p): int(n) for k, p, n in rows}

    def add(self, problems: pa.Table, attempts: pa.Table) -> None:
        """New problems (a problem already stored is kept as it is), the attempts, their iterations and rewards."""
        run_id = self.ensure_run()
        con = self.con
        con.register("import_problems", problems)
        con.execute("INSERT INTO problems (run_id, problem_id, split, question, answer) "
                    "SELECT DISTINCT ON (problem_id) ?, problem_id, split, question, answer FROM import_problems "
                    "ON CONFLICT DO NOTHING", [run_id])
        con.register("import_attempts", attempts)
        # The one insert path (attempts.py), so the tables derived from attempts stay current.
        insert_attempts(con, f"SELECT {_ATTEMPT_COLUMNS} FROM import_attempts")
        # (run, iteration, kind, problem, sample) is unique: the rewards find their attempts by it.
        con.execute("INSERT INTO attempt_rewards SELECT a.id, b.reward FROM attempts a "
                    "JOIN import_attempts b USING (run_id, iteration, kind, problem_id, sample) "
                    "WHERE a.run_id = ? AND b.reward IS NOT NULL", [run_id])
        con.execute("INSERT INTO iterations (run_id, iteration, phase, finished_at) "
                    "SELECT DISTINCT ?, iteration, 'done', now() FROM import_attempts ON CONFLICT DO NOTHING", [run_id])
        for name in ("import_problems", "import_attempts"):
            con.unregister(name)

    def finish_file(self, path: str, rows_done: int, skipped: str | None) -> None:
        """Record how far the file is in, and bring the run's iteration count and kept counts up to date."""
        run_id = self.ensure_run()
        self.con.execute(
            "INSERT INTO imported_files (run_id, path, rows_done, skipped) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (run_id, path) DO UPDATE SET rows_done = excluded.rows_done, skipped = excluded.skipped, "
            "imported_at = now()", [run_id, path, rows_done, skipped])
        self.con.execute(
            "UPDATE iterations SET kept = k.kept FROM (SELECT iteration, count(*) FILTER (WHERE used_for_training) AS kept "
            "FROM attempts WHERE run_id = ? GROUP BY iteration) k "
            "WHERE iterations.run_id = ? AND iterations.iteration = k.iteration", [run_id, run_id])
        last = self.con.execute("SELECT max(iteration) FROM iterations WHERE run_id = ?", [run_id]).fetchall()[0][0]
        config = RunConfig.from_json(self.con.execute("SELECT config FROM runs WHERE id = ?", [run_id]).fetchall()[0][0])
        if last is not None and config.iterations != last:
            config.iterations = int(last)
            self.con.execute("UPDATE runs SET config = ? WHERE id = ?", [config.to_json(), run_id])


class ImportQueries(Queries):
    @contextlib.contextmanager
    def importing(self, run: NewImportedRun | int) -> Iterator[ImportWriter]:
        """One transaction for one file: everything it stores, or nothing if it raises."""
        with self.db.write() as con:
            yield ImportWriter(con, run)

    def imported_run(self, run_id: int) -> ImportedRun | None:
        with self.db.read() as con:
            row = con.execute("SELECT run_id, format, source, framework, framework_version, correct_rule "
                              "FROM imported_runs WHERE run_id = ?", [run_id]).fetchone()
        return ImportedRun(*row) if row else None

    def imported_run_of(self, format: str, source: str) -> int | None:
        """The run an earlier import of the same source in the same format made (a re-import adds to it)."""
        with self.db.read() as con:
            row = con.execute("SELECT max(run_id) FROM imported_runs WHERE format = ? AND source = ?",
                              [format, source]).fetchone()
        return row[0] if row and row[0] is not None else None

    def imported_rows(self, run_id: int) -> dict[str, int]:
        """File path (relative to the source) -> its rows already stored."""
        with self.db.read() as con:
            return dict(con.execute("SELECT path, rows_done FROM imported_files WHERE run_id = ?", [run_id]).fetchall())

    def imported_runs(self) -> pd.DataFrame:
        with self.db.read() as con:
            return con.execute("SELECT * FROM v_imported_runs ORDER BY run_id").df()

    def imported_steps(self, run_ids: list[int]) -> pd.DataFrame:
        """Per imported run, iteration (step) and kind: completions, how many were right (every sample, not only
        the first), and the mean reward the other framework gave (NaN where it gave none)."""
        ids = [int(r) for r in run_ids]
        if not ids:
            return pd.DataFrame(columns=["run_id", "iteration", "kind", "completions", "right", "accuracy", "reward"])
        with self.db.read() as con:
            return con.execute(
                f"""
                SELECT a.run_id, a.iteration, a.kind, count(*) AS completions, count(*) FILTER (WHERE a.correct) AS "right",
                       count(*) FILTER (WHERE a.correct) / count(*) AS accuracy, avg(r.reward) AS reward
                FROM attempts a LEFT JOIN attempt_rewards r ON r.attempt_id = a.id
                WHERE a.run_id IN (SELECT run_id FROM imported_runs WHERE run_id IN ({', '.join('?' * len(ids))}))
                GROUP BY a.run_id, a.iteration, a.kind ORDER BY a.run_id, a.iteration, a.kind
                """, ids).df()
