"""The DuckDB store: every SQL statement of the project lives in this package.

`Store` combines the query groups (runs, attempts, and those the app adds) over
one `Connection`, which handles migrations and the one-writer-per-file rule.
Researchers can query the same file directly through the views `v_attempts`,
`v_accuracy` and `v_experiment_runs` (see README).
"""

from __future__ import annotations

from pathlib import Path

from .attempts import AttemptQueries, AttemptRow
from .audits import AuditItem, AuditQueries, QueueFilter
from .browse import AttemptFilter, BrowseQueries
from .compare import ComparisonError, CompareQueries, EvalPairing
from .connection import Connection, OnWait
from .exemplar_sets import ExemplarItem, ExemplarSet, ExemplarSetQueries
from .experiments import Experiment, ExperimentQueries, KeptStepQueries
from .imports import ImportedRun, ImportQueries
from .runs import EvaluatedIteration, Run, RunQueries
from .training import TrainStepQueries
from .trajectories import TrajectoryQueries


class Store(RunQueries, AttemptQueries, BrowseQueries, AuditQueries, ExemplarSetQueries, CompareQueries,
            TrajectoryQueries, TrainStepQueries, ExperimentQueries, KeptStepQueries, ImportQueries):
    def __init__(self, path: str | Path, lock_timeout: float | None = 60.0, on_wait: OnWait | None = None):
        """`lock_timeout`: seconds an operation waits for a busy file before a StoreError (None: as long as it
        takes, for a run's worker); `on_wait(message)` hears once per operation that it waits."""
        self.db = Connection(path, lock_timeout=lock_timeout, on_wait=on_wait)

    @classmethod
    def patient(cls, path: str | Path, on_wait: OnWait) -> "Store":
        """For a process that writes what a run computes: it never gives up on the database. A reader holding
        the file (the app, `duckdb -readonly`) only makes it wait, told once to `on_wait`, never fail a run."""
        return cls(path, lock_timeout=None, on_wait=on_wait)

    @property
    def path(self) -> Path:
        return self.db.path

    def run_folder(self, run_id: int) -> Path:
        """Where a run keeps its checkpoints and worker log: beside the database, <db stem>-runs/run-<id>/."""
        return self.path.parent / f"{self.path.stem}-runs" / f"run-{run_id}"

    def init(self) -> "Store":
        """Create or migrate the file now (and fail now if it is not usable)."""
        with self.db.write():
            pass
        return self


__all__ = ["AttemptFilter", "AttemptRow", "AuditItem", "ComparisonError", "EvalPairing", "EvaluatedIteration",
           "ExemplarItem", "ExemplarSet", "Experiment", "ImportedRun", "QueueFilter", "Run", "Store"]
