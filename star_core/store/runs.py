"""Runs, their problems, iterations and live progress."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..core.config import RunConfig
from ..core.errors import ConfigError, RunStateError, StoreError
from ..core.processes import alive, is_held, try_hold
from ..core.states import Phase, RunStatus
from ..tasks.base import Problem, choices_from_json, choices_to_json
from ..tasks import TaskKey, task_key
from .attempts import refresh_outcomes
from .exemplar_sets import use_exemplar_set
from .queries import Queries

# The process that owns a run (queued or running) writes its heartbeat this often (engine/heartbeat.py).
HEARTBEAT_S = 30.0
# A run of another host whose heartbeat is older than this reads as crashed: 20 missed beats, so that a clock
# a few minutes off, or writes held up by a reader keeping the file open, do not make a live run look dead.
STALE_S = 600.0
LOCK_NAME = "run.lock"  # in the run's folder, held by the process that owns the run (claim_run to finish_run)

# heartbeat_at is UTC, so that hosts in different time zones that share a database read its age alike.
UTC_NOW = "(now() AT TIME ZONE 'UTC')"


def heartbeat_age(column: str = "heartbeat_at") -> str:
    """SQL for the seconds since a run's heartbeat (or, with column progress_at, since its last progress)."""
    return f"(epoch({UTC_NOW}) - epoch({column}))"



# Lock files of the runs this process owns, by real path: descriptor (closing it drops the lock).
_owned: dict[str, int] = {}
_owned_mutex = threading.Lock()  # one claim at a time in this process, so two threads never both take a run


@dataclass(frozen=True)
class RunClock:
    """Where a run stands against its time budget (seconds): what its finished iterations spent, and how long
    the last finished STaR iteration took and fine-tuned (None: none has finished)."""

    spent_s: float
    last_s: float | None
    last_train_s: float | None


@dataclass(frozen=True)
class EvaluatedIteration:
    """An iteration whose evaluation finished: its eval score and the checkpoint folder it recorded (None: it
    generated with the base model, iteration 0 or one that kept nothing; a recorded folder may since be deleted)."""

    iteration: int
    correct: int
    n: int
    checkpoint: Path | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


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


class RunQueries(Queries):
    def create_run(self, config: RunConfig) -> int:
        """A pending run, with its task key (what identifies its task's behaviour) beside the config."""
        with self.db.write() as con:
            return _insert_run(con, config)

    def create_run_with_problems(self, config: RunConfig, exemplar_set_id: int, problems: list[Problem]) -> int:
        """A pending run, the exemplar set version it is prompted with (frozen from now on) and its problems, in
        one transaction: a failure part-way stores none of them."""
        with self.db.write() as con:
            run_id = _insert_run(con, config)
            use_exemplar_set(con, run_id, exemplar_set_id)
            _insert_problems(con, run_id, problems)
        return run_id

    def get_run(self, run_id: int) -> Run:
        with self.db.read() as con:
            row = con.execute(
                f"SELECT id, name, status, config, error, created_at, pid, host, task_key, {heartbeat_age()} FROM runs "
                "WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise RunStateError(f"there is no run {run_id} in {self.db.path}")
        try:
            config = RunConfig.from_json(row[3])  # stored settings of an older version are upgraded
        except ConfigError as exc:  # a run's stored settings, not a flag the user gave
            raise StoreError(f"run {run_id}'s stored settings in {self.db.path} cannot be read: {exc}") from exc
        # A row written by hand (or a tool) may lack the key: it follows from the config.
        key = TaskKey.parse(row[8]) if row[8] else task_key(config)
        status = self.live_status(run_id, row[2], row[6], row[7], row[9])
        return Run(row[0], row[1], status, config, row[4], row[5], row[6], row[7], key)

    def claim_run(self, run_id: int, status: RunStatus = RunStatus.RUNNING, from_queue: bool = False) -> None:
        """Mark a run as running (or queued: waiting for a slot, run_queue.py) in this process, or as pending
        (a worker was launched for it); refuse a done run, or one a live process runs or has queued.

        The check and the update are one write transaction (the file is this
        process's alone while it lasts, and threads of this process claim one at
        a time), so of two resumes of one run only one can claim it. A refusal
        writes nothing. Running or queued, this process holds the run's lock file
        from before the claim is written until finish_run: the proof that the run's
        process is alive (live_status). `from_queue`: this process queued the run
        and now has its slot; a cancel asked for while it waited is kept, for the
        run to see.
        """
        with _owned_mutex:
            took = status != RunStatus.PENDING and self._take_run_lock(run_id)
            try:
                with self.db.write() as con:
                    row = con.execute(f"SELECT status, pid, host, {heartbeat_age()} FROM runs WHERE id = ?",
                                      [run_id]).fetchone()
                    if row is None:
                        raise RunStateError(f"there is no run {run_id} in {self.db.path}")
                    imported = con.execute("SELECT format FROM imported_runs WHERE run_id = ?", [run_id]).fetchone()
                    if imported:
                        raise RunStateError(f"run {run_id} was imported from {imported[0]} files: the engine does not "
                                            "run it; to add new steps, run `star import` on the same files again")
                    # Holding the run's lock now, this process knows whether the row's process holds it: only if
                    # that is this process itself (no other process of this machine can, while it is ours).
                    ours = status != RunStatus.PENDING
                    held = (not took and row[1] == os.getpid()) if ours else None
                    now = _live_status(*row, self.run_lock(run_id), held=held)
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
                        f"UPDATE runs SET status = ?, error = NULL, pid = ?, host = ?, heartbeat_at = {UTC_NOW}, "
                        f"progress_at = {UTC_NOW}, cancel_requested = {'cancel_requested' if from_queue else 'false'}, finished_at = NULL WHERE id = ?",
                        # pending (launched, its worker not started yet) belongs to no process yet
                        [status, None if status == RunStatus.PENDING else os.getpid(), socket.gethostname(), run_id],
                    )
            except BaseException:
                if took:
                    self._release_run_lock(run_id)
                raise

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Record how a run ended. The process that owns the run writes only while the run is still its own (not
        taken over by a resume elsewhere after its heartbeat went stale), then lets go of the run's lock."""
        mine = self._owns(run_id)
        with self.db.write() as con:
            con.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = now(), pid = NULL, cur_phase = NULL WHERE id = ?"
                + (" AND pid = ? AND host = ?" if mine else ""),
                [status, error, run_id] + ([os.getpid(), socket.gethostname()] if mine else []),
            )
        if mine:
            with _owned_mutex:
                self._release_run_lock(run_id)

    def cancel_unclaimed(self, run_id: int, worker_pid: int, error: str) -> bool:
        """After stopping the worker launched for a run: record the run as cancelled. True if it was still pending
        (the worker had not claimed it; `error` says so); False if the worker had claimed it meanwhile: then it is
        recorded as any cancelled run is, if the stopped worker still has it. One transaction."""
        with self.db.write() as con:
            if con.execute(
                "UPDATE runs SET status = 'cancelled', error = ?, finished_at = now(), pid = NULL, cur_phase = NULL "
                "WHERE id = ? AND status = 'pending' RETURNING id", [error, run_id]).fetchone():
                return True
            con.execute(
                "UPDATE runs SET status = 'cancelled', error = NULL, finished_at = now(), pid = NULL, cur_phase = NULL "
                "WHERE id = ? AND status IN ('queued', 'running') AND pid = ?", [run_id, worker_pid])
            return False

    def beat(self, run_id: int) -> bool:
        """Write the heartbeat of a run this process owns; False (nothing written) if the run is not its own."""
        with self.db.write() as con:
            return con.execute(
                f"UPDATE runs SET heartbeat_at = {UTC_NOW} WHERE id = ? AND status IN ('queued', 'running') "
                "AND pid = ? AND host = ? RETURNING id", [run_id, os.getpid(), socket.gethostname()]).fetchone() is not None

    # --- who owns a run -------------------------------------------------------

    def run_lock(self, run_id: int) -> Path:
        """The file the process that owns the run holds locked: in the run's folder, beside the database."""
        return self.run_folder(run_id) / LOCK_NAME

    def live_status(self, run_id: int, status: str, pid, host, heartbeat_age_s) -> str:
        """The stored status, with 'running' or 'queued' read as 'crashed' once the run's process is gone."""
        return _live_status(status, pid, host, heartbeat_age_s, self.run_lock(run_id))

    def _owns(self, run_id: int) -> bool:
        """Whether this process holds the run's lock (claimed it, queued or running, and has not finished it)."""
        return os.path.realpath(self.run_lock(run_id)) in _owned

    def _take_run_lock(self, run_id: int) -> bool:
        """Hold the run's lock for this process (under _owned_mutex); False if it already does. A live process
        of this machine that holds it owns the run: refused."""
        path = self.run_lock(run_id)
        if os.path.realpath(path) in _owned:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = try_hold(path)
        except OSError as exc:
            raise RunStateError(f"cannot hold run {run_id}'s lock file {path}: {exc.strerror or exc}; the run's "
                                "folder beside the database must be writable") from exc
        if fd is None:
            raise RunStateError(f"run {run_id} is already running or queued in another process on this machine "
                                f"(it holds {path})")
        _owned[os.path.realpath(path)] = fd
        return True

    def _release_run_lock(self, run_id: int) -> None:
        fd = _owned.pop(os.path.realpath(self.run_lock(run_id)), None)
        if fd is not None:
            os.close(fd)

    def request_cancel(self, run_id: int) -> None:
        with self.db.write() as con:
            con.execute("UPDATE runs SET cancel_requested = true WHERE id = ?", [run_id])

    def cancel_requested(self, run_id: int) -> bool:
        """Whether the run should stop: a cancel was asked, or (for the process that owns it) the run is no longer
        its own, resumed elsewhere after its heartbeat went stale."""
        with self.db.read() as con:
            asked, pid, host = con.execute("SELECT cancel_requested, pid, host FROM runs WHERE id = ?", [run_id]).fetchone()
        taken_over = self._owns(run_id) and (pid != os.getpid() or host != socket.gethostname())
        return bool(asked) or taken_over

    def set_progress(self, run_id: int, iteration: int, phase: str, done: int, total: int,
                     tokens_per_s: float | None = None, eta_s: float | None = None, con=None) -> None:
        sql = ("UPDATE runs SET cur_iteration = ?, cur_phase = ?, phase_done = ?, phase_total = ?, "
               f"tokens_per_s = ?, eta_s = ?, progress_at = {UTC_NOW} WHERE id = ?")
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
                f"""
                WITH acc AS (
                    -- v_accuracy's overall eval rows, from the derived counts (store/attempts.py keeps them current)
                    SELECT run_id, iteration, sum(correct) / sum(n) AS accuracy FROM iteration_accuracy
                    WHERE split = 'eval' GROUP BY run_id, iteration
                ), summary AS (
                    SELECT run_id, max(iteration) AS last_evaluated,
                           arg_max(accuracy, iteration) AS latest_accuracy, max(accuracy) AS best_accuracy,
                           arg_min(accuracy, iteration) FILTER (WHERE iteration = 0) AS baseline_accuracy
                    FROM acc GROUP BY run_id
                )
                SELECT r.id, r.name, r.task, r.model, r.status, r.pid, r.host, r.created_at, r.finished_at,
                       r.cur_iteration, r.cur_phase, r.phase_done, r.phase_total, r.tokens_per_s, r.eta_s,
                       r.error, r.heartbeat_at, {heartbeat_age()} AS heartbeat_age_s,
                       {heartbeat_age("r.progress_at")} AS progress_age_s,
                       (SELECT count(*) FROM iterations i WHERE i.run_id = r.id AND i.phase = 'done' AND i.iteration > 0) AS iterations_done,
                       s.baseline_accuracy, s.latest_accuracy, s.best_accuracy,
                       json_extract(r.config, '$.iterations')::INTEGER AS iterations_planned
                FROM runs r LEFT JOIN summary s ON s.run_id = r.id
                ORDER BY r.id
                """
            ).df()
        df["status"] = [self.live_status(i, s, p, h, a) for i, s, p, h, a in
                        zip(df["id"], df["status"], df["pid"], df["host"], df["heartbeat_age_s"])]
        return df

    # --- problems -----------------------------------------------------------

    def save_problems(self, run_id: int, problems: list[Problem]) -> None:
        with self.db.write() as con:
            con.execute("DELETE FROM problems WHERE run_id = ?", [run_id])
            _insert_problems(con, run_id, problems)
            # A question's split and difficulty feed the derived accuracy: recompute the run's.
            refresh_outcomes(con, "SELECT DISTINCT run_id, iteration FROM attempts WHERE run_id = ?", [run_id])

    def load_problems(self, run_id: int) -> list[Problem]:
        with self.db.read() as con:
            rows = con.execute(
                "SELECT problem_id, question, answer, split, difficulty, choices, solution FROM problems WHERE run_id = ? "
                "ORDER BY rowid",
                [run_id],
            ).fetchall()
        return [
            Problem(r[0], r[1], r[2], r[3], r[4], choices_from_json(r[5]), r[6] or "")
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

    def finished_iterations(self, run_id: int) -> list[EvaluatedIteration]:
        """The iterations whose evaluation finished (phase done), in order, with overall eval score and checkpoint.

        An iteration still evaluating is left out: its accuracy so far counts only part of the questions."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT i.iteration, a.correct, a.n, i.checkpoint FROM iterations i JOIN v_accuracy a "
                "ON a.run_id = i.run_id AND a.iteration = i.iteration AND a.split = 'eval' AND a.difficulty IS NULL "
                "WHERE i.run_id = ? AND i.phase = ? ORDER BY i.iteration", [run_id, Phase.DONE.value]).fetchall()
        return [EvaluatedIteration(int(it), int(correct), int(n), Path(ckpt) if ckpt else None)
                for it, correct, n, ckpt in rows]

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


def _insert_run(con, config: RunConfig) -> int:
    return con.execute(
        "INSERT INTO runs (name, task, task_key, model, config, status) VALUES (?, ?, ?, ?, ?, 'pending') RETURNING id",
        [config.name, config.task, str(task_key(config)), config.model, config.to_json()],
    ).fetchone()[0]


def _insert_problems(con, run_id: int, problems: list[Problem]) -> None:
    rows = [(run_id, p.id, p.split, p.difficulty, p.question, p.answer, choices_to_json(p.choices), p.solution or None)
            for p in problems]
    if rows:
        con.executemany("INSERT INTO problems (run_id, problem_id, split, difficulty, question, answer, choices, "
                        "solution) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _live_status(status: str, pid, host, heartbeat_age_s, lock: Path, held: bool | None = None) -> str:
    """'running' (or 'queued') only while the process that claimed the run is alive; a gone one shows as crashed.

    On this machine that process holds the run's lock file from its claim to its end, and the kernel drops
    the lock however it ends: a file nobody holds is a dead process's, whichever process has its pid now
    (after a reboot). Without the file (claimed by an older version, or its folder removed), a dead pid or a
    stale heartbeat says crashed. On another host (or on this one under a new name, after a container
    restart) the heartbeat is the only evidence: older than STALE_S, the run is taken for crashed.
    `held`: whether the run's process holds the lock, where the caller knows (it holds the lock itself).
    """
    if status not in (RunStatus.RUNNING, RunStatus.QUEUED):
        return status
    if host == socket.gethostname():
        held = is_held(lock) if held is None else held
        if held is not None:
            return status if held else RunStatus.CRASHED.value
        if pid is not None and not pd.isna(pid) and not alive(int(pid)):
            return RunStatus.CRASHED.value
    fresh = heartbeat_age_s is not None and not pd.isna(heartbeat_age_s) and heartbeat_age_s < STALE_S
    return status if fresh else RunStatus.CRASHED.value
