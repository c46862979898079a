"""An experiment's arms (or an exemplar comparison's two runs) in a background worker process, for the app.

    python -m star_core.runtime.experiments_worker EXPERIMENT_ID --db PATH

runs (or resumes) the arms in order (experiments.run_experiment), logging to
``<db stem>-runs/experiment-<id>/worker.log``. Each arm is an ordinary run claimed by this
process, so the Runs page follows it live like any other; ``worker.pid`` beside the log
tells the app whether the experiment's worker is still alive.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import ExperimentError, StarError
from .jobs import LOG_NAME, LogReporter, live_worker, spawn_worker
from ..store import Store



def folder(store: Store, experiment_id: int) -> Path:
    """Where an experiment's worker keeps its log: beside the runs' folders."""
    return store.path.parent / f"{store.path.stem}-runs" / f"experiment-{experiment_id}"


def worker_alive(store: Store, experiment_id: int) -> bool:
    """Whether the experiment's worker still lives (its locked pid file, not a pid that may be reused)."""
    return live_worker(folder(store, experiment_id)) is not None


def launch(store: Store, experiment_id: int) -> int:
    """Run (or resume) an experiment's arms in a detached worker; return its pid."""
    store.get_experiment(experiment_id)  # exists
    if worker_alive(store, experiment_id):
        raise ExperimentError(f"experiment {experiment_id} is already running in a worker")
    where = folder(store, experiment_id)
    where.mkdir(parents=True, exist_ok=True)
    return spawn_worker("star_core.runtime.experiments_worker", [str(experiment_id), "--db", str(store.path.resolve())],
                        where, f"experiment {experiment_id}")


def log_tail(store: Store, experiment_id: int, lines: int = 30) -> str:
    path = folder(store, experiment_id) / LOG_NAME
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m star_core.runtime.experiments_worker",
                                     description="Run (or resume) the arms of one stored experiment.")
    parser.add_argument("experiment_id", type=int)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)

    from ..engine import exemplar_compare
    from ..engine.experiments import format_table, experiment_table, run_experiment
    from ..engine.loop import Cancelled
    from ..core.states import ExperimentKind

    reporter = LogReporter()
    store = Store(args.db, lock_timeout=None, on_wait=reporter.message)  # a run never gives up on the database
    on_arm = lambda label, run_id: reporter.message(f"arm '{label}': run {run_id}")  # noqa: E731
    try:
        if store.get_experiment(args.experiment_id).config.get("kind") == ExperimentKind.EXEMPLARS:
            exemplar_compare.run(store, args.experiment_id, reporter, on_arm=on_arm)
            found = exemplar_compare.result(store, args.experiment_id).comparison
            print(f"exemplar comparison {args.experiment_id} done: B - A {found.overall.difference:+.1%} "
                  f"(p = {found.overall.p_value:.3f})", flush=True)
            return 0
        run_experiment(store, args.experiment_id, reporter, on_arm=on_arm)
    except Cancelled:
        print(f"experiment {args.experiment_id}: an arm was cancelled; resume the experiment to continue", flush=True)
        return 1
    except StarError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    table = experiment_table(store.experiment_summary(args.experiment_id), store.experiment_accuracy(args.experiment_id))
    print(f"experiment {args.experiment_id} done\n{format_table(table)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
