"""Runs, their problems, iterations and live progress."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..core.config import RunConfig
from ..core.errors import RunStateError
from ..core.processes import alive
from ..core.states import Phase, RunStatus
from ..tasks.base import Problem, choices_from_json, choices_to_json
from ..tasks import TaskKey, task_key


@dataclass(frozen=True)
class RunClock:
    """Where a run stands against its time budget (seconds): what its finished iterations spent, and how long
    the last finished STaR iteration took and fine-tuned (None: none has finished)."""

    spent_s: float
    last_s: float | None
    last_train_s: float | None


@dataclass
class Run:
    id: int
    name: str
    status: str
    config: RunConfig
    error: str | None
    created_at: datetime
    pid: int | None
    host: str | None
    task_key: TaskKey  # what the run's task judges by: exemplar sets must have been validated for the same key


class RunQueries:
    def create_run(self, config: RunConfig) -> int:
        """A pending run, with its task key (what identifies its task's behaviour) beside the config."""
        with self.db.write() as con:
            return con.execute(
                "INSERT INTO runs (name, task, task_key, model, config, status) VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
                [config.name, config.task, str(task_key(config)), config.model, config.to_json()],
            ).fetchone()[0]

    def get_run(self, run_id: int) -> Run:
        with self.db.read() as con:
            row = con.execute(
                "SELECT id, name, status, config, error, created_at, pid, host, task_key FROM runs WHERE id = ?", [run_id]
            ).fetchone()
        if row is None:
            raise RunStateError(f"there is no run {run_id} in {self.db.path}")
        config = RunConfig.from_json(row[3])
        # A row written by hand (or a tool) may lack the key: it follows from the config.
        key = TaskKey.parse(row[8]) if row[8] else task_key(config)
        return Run(row[0], row[1], _live_status(row[2], row[6], row[7]), config, row[4], row[5], row[6], row[7], key)

    def claim_run(self, run_id: int, status: RunStatus = RunStatus.RUNNING, from_queue: bool = False) -> None:
        """Mark a run as running (or queued: waiting for a slot, run_queue.py) in this process, or as pending
        (a worker was launched for it); refuse a done run, or one a live process runs or has queued.

        The check and the update are one write transaction (the file is this
        process's alone while it lasts, and threads of this process write one at
        a time), so of two resumes of one run only one can claim it. A refusal
        writes nothing. `from_queue`: this process queued the run and now has its
        slot; a cancel asked for while it waited is kept, for the run to see.
        """
        with self.db.write() as con:
            row = con.execute("SELECT status, pid, host FROM runs WHERE id = ?", [run_id]).fetchone()
            if row is None:
                raise RunStateError(f"there is no run {run_id} in {self.db.path}")
            imported = con.execute("SELECT format FROM imported_runs WHERE run_id = ?", [run_id]).fetchone()
            if imported:
                raise RunStateError(f"run {run_id} was imported from {imported[0]} files: the engine does not run it; "
                                    "to add new steps, run `star import` on the same files again")
            now = _live_status(*row)
            mine = now == RunStatus.QUEUED and row[1] == os.getpid() and row[2] == socket.gethostname()
            if from_queue and not mine:
                raise RunStateError(f"run {run_id} is {now}, no longer queued by this process (pid {os.getpid()})")
            if now == RunStatus.DONE:
                raise RunStateError(f"run {run_id} is done; nothing to resume")
            if now == RunStatus.RUNNING:
                raise RunStateError(f"run {run_id} is already running (pid {row[1]} on {row[2]})")
            if now == RunStatus.QUEUED and not from_queue:
                raise RunStateError(f"run {run_id} is already queued (pid {row[1]} on {row[2]}); it starts when a slot frees")
            con.execute(
                "UPDATE runs SET status = ?, error = NULL, pid = ?, host = ?, heartbeat_at = now(), "
                f"cancel_requested = {'cancel_requested' if from_queue else 'false'}, finished_at = NULL WHERE id = ?",
                # pending (launched, its worker not started yet) belongs to no process yet
                [status, None if status == RunStatus.PENDING else os.getpid(), socket.gethostname(), run_id],
            )

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.db.write() as con:
            con.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = now(), pid = NULL, cur_phase = NULL WHERE id = ?",
                [status, error, run_id],
            )

    def request_cancel(self, run_id: int) -> None:
        with self.db.write() as con:
            con.execute("UPDATE runs SET cancel_requested = true WHERE id = ?", [run_id])

    def cancel_requested(self, run_id: int) -> bool:
        with self.db.read() as con:
            return bool(con.execute("SELECT cancel_requested FROM runs WHERE id = ?", [run_id]).fetchone()[0])

    def set_progress(self, run_id: int, iteration: int, phase: str, done: int, total: int,
                     tokens_per_s: float | None = None, eta_s: float | None = None, con=None) -> None:
        sql = ("UPDATE runs SET cur_iteration = ?, cur_phase = ?, phase_done = ?, phase_total = ?, "
               "tokens_per_s = ?, eta_s = ?, heartbeat_at = now() WHERE id = ?")
        params = [iteration, phase, done, total, tokens_per_s, eta_s, run_id]
        if con is not None:
            con.execute(sql, params)
            return
        with self.db.write() as c:
            c.execute(sql, params)

    def list_runs(self) -> pd.DataFrame:
        """One row per run: status, progress, iterations done, latest and best eval accuracy."""
        with self.db.read() as con:
            df = con.execute(
                """
                WITH acc AS (
                    SELECT run_id, iteration, accuracy FROM v_accuracy WHERE split = 'eval' AND difficulty IS NULL
                ), summary AS (
                    SELECT run_id, max(iteration) AS last_evaluated,
                           arg_max(accuracy, iteration) AS latest_accuracy, max(accuracy) AS best_accuracy,
                           arg_min(accuracy, iteration) FILTER (WHERE iteration = 0) AS baseline_accuracy
                    FROM acc GROUP BY run_id
                )
                SELECT r.id, r.name, r.task, r.model, r.status, r.pid, r.host, r.created_at, r.finished_at,
                       r.cur_iteration, r.cur_phase, r.phase_done, r.phase_total, r.tokens_per_s, r.eta_s,
                       r.error, r.heartbeat_at,
                       (SELECT count(*) FROM iterations i WHERE i.run_id = r.id AND i.phase = 'done' AND i.iteration > 0) AS iterations_done,
                       s.baseline_accuracy, s.latest_accuracy, s.best_accuracy,
                       json_extract(r.config, '$.iterations')::INTEGER AS iterations_planned
                FROM runs r LEFT JOIN summary s ON s.run_id = r.id
                ORDER BY r.id
                """
            ).df()
        df["status"] = [_live_status(s, p, h) for s, p, h in zip(df["status"], df["pid"], df["host"])]
        return df

    # --- problems -----------------------------------------------------------

    def save_problems(self, run_id: int, problems: list[Problem]) -> None:
        rows = [
            (run_id, p.id, p.split, p.difficulty, p.question, p.answer, choices_to_json(p.choices))
            for p in problems
        ]
        with self.db.write() as con:
            con.execute("DELETE FROM problems WHERE run_id = ?", [run_id])
            con.executemany("INSERT INTO problems VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def load_problems(self, run_id: int) -> list[Problem]:
        with self.db.read() as con:
            rows = con.execute(
                "SELECT problem_id, question, answer, split, difficulty, choices FROM problems WHERE run_id = ? ORDER BY rowid",
                [run_id],
            ).fetchall()
        return [
            Problem(r[0], r[1], r[2], r[3], r[4], choices_from_json(r[5]))
            for r in rows
        ]

    # --- iterations ---------------------------------------------------------

    def iteration_phases(self, run_id: int) -> dict[int, str]:
        with self.db.read() as con:
            return dict(con.execute("SELECT iteration, phase FROM iterations WHERE run_id = ?", [run_id]).fetchall())

    def set_iteration_phase(self, run_id: int, iteration: int, phase: str, **stats) -> None:
        columns = {"kept", "steps", "train_loss", "train_tokens", "train_seconds", "checkpoint"}
        unknown = set(stats) - columns
        if unknown:
            raise ValueError(f"unknown iteration columns: {unknown}")
        with self.db.write() as con:
            con.execute(
                "INSERT INTO iterations (run_id, iteration, phase) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, iteration) DO UPDATE SET phase = excluded.phase",
                [run_id, iteration, phase],
            )
            for name, value in stats.items():
                con.execute(f"UPDATE iterations SET {name} = ? WHERE run_id = ? AND iteration = ?", [value, run_id, iteration])
            if phase == Phase.DONE:
                con.execute("UPDATE iterations SET finished_at = now() WHERE run_id = ? AND iteration = ?", [run_id, iteration])

    def iterations(self, run_id: int) -> pd.DataFrame:
        with self.db.read() as con:
            return con.execute("SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration", [run_id]).df()

    def iteration_checkpoint(self, run_id: int, iteration: int) -> Path | None:
        """The folder iteration's fine-tuning saved (None: not fine-tuned, or nothing was kept)."""
        with self.db.read() as con:
            row = con.execute("SELECT checkpoint FROM iterations WHERE run_id = ? AND iteration = ?",
                              [run_id, iteration]).fetchone()
        return Path(row[0]) if row and row[0] else None

    def run_clock(self, run_id: int, before: int) -> RunClock:
        """How long iterations 0..before-1 took together (each from its start to its end, so the time between a
        crash and its resume counts only inside an iteration), and how long the last finished STaR iteration
        among them took, and its fine-tuning."""
        with self.db.read() as con:
            spent, last, last_train = con.execute(
                "SELECT sum(epoch(finished_at) - epoch(started_at)), "
                "       arg_max(epoch(finished_at) - epoch(started_at), iteration) FILTER (WHERE iteration >= 1), "
                "       arg_max(coalesce(train_seconds, 0), iteration) FILTER (WHERE iteration >= 1) "
                "FROM iterations WHERE run_id = ? AND iteration < ? AND finished_at IS NOT NULL",
                [run_id, before]).fetchone()
        if last is None:
            return RunClock(float(spent or 0.0), None, None)
        return RunClock(float(spent), float(last), float(last_train))

    def eval_accuracies(self, run_id: int, before: int) -> list[float]:
        """Overall eval accuracy of each iteration below `before` that has one, in iteration order."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT accuracy FROM v_accuracy WHERE run_id = ? AND split = 'eval' AND difficulty IS NULL "
                "AND iteration < ? ORDER BY iteration", [run_id, before]).fetchall()
        return [float(r[0]) for r in rows]

    def train_accuracy_by_difficulty(self, run_id: int, before: int) -> list[dict[int, float]]:
        """Per training iteration below `before` (from 1, those with attempts, in order): difficulty -> the share
        of its questions whose first sample was right."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT iteration, difficulty, accuracy FROM v_accuracy WHERE run_id = ? AND split = 'train' "
                "AND difficulty IS NOT NULL AND iteration >= 1 AND iteration < ? ORDER BY iteration, difficulty",
                [run_id, before]).fetchall()
        by_iteration: dict[int, dict[int, float]] = {}
        for iteration, difficulty, accuracy in rows:
            by_iteration.setdefault(iteration, {})[int(difficulty)] = float(accuracy)
        return list(by_iteration.values())

    def accuracy(self, run_id: int | None = None) -> pd.DataFrame:
        with self.db.read() as con:
            where = "WHERE run_id = ?" if run_id is not None else ""
            return con.execute(
                f"SELECT * FROM v_accuracy {where} ORDER BY run_id, split, iteration, difficulty NULLS FIRST",
                [run_id] if run_id is not None else [],
            ).df()


def _live_status(status: str, pid, host) -> str:
    """'running' (or 'queued') only while the worker process is alive; a killed one shows as crashed."""
    if status not in (RunStatus.RUNNING, RunStatus.QUEUED) or pid is None or pd.isna(pid):
        return status
    if host == socket.gethostname() and not alive(int(pid)):
        return RunStatus.CRASHED.value
    return status
