"""Runs and experiments in background worker processes: start, cancel, resume, and what a worker left behind.

The app never runs the loop in its own process (a model and a fine-tuning job would
freeze it, and one crash would take the app down). It launches

    python -m star_core.runtime.worker run RUN_ID --db PATH

detached from the app, with stdout and stderr going to ``worker.log`` in the run's
folder (an experiment's worker, ``worker experiment EXPERIMENT_ID``, logs beside the
runs' folders and runs its arms one after another). The worker first waits for a slot of this machine (run_queue.py; 'queued'),
unless launched with ``--no-queue``. The worker claims the run in the store (pid and host), holding the run's
lock file and writing its heartbeat until it ends, so the store tells a live run from a dead one
(runs.py `_live_status`) whoever started it: the app or `star run` on the command line. Between launch and claim the run is 'pending';
``worker.pid`` in the run folder lets the app tell a worker still starting from one
that died before it could claim the run. The worker holds that file locked for its
whole life (processes.spawn_holding), so the pid in it is believed, and signalled,
only while it is the worker's: never a stale pid that another process has by now.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import ExperimentError, RunStateError, StarError
from ..core.processes import live_holder, signal_holder, spawn_holding
from ..core.states import RunStatus
from ..engine.prepare import create_run
from ..store import Store

LOG_NAME = "worker.log"
PID_NAME = "worker.pid"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER = "star_core.runtime.worker"
STOP_WAIT_S = 10.0  # how long a cancel waits for a signalled worker to end (it dies at once: no SIGTERM handler)


def log_path(store: Store, run_id: int) -> Path:
    return store.run_folder(run_id) / LOG_NAME


class WorkerStartError(RunStateError):
    """A new run is stored, but its worker could not be started: the run stays pending, and Start retries."""

    def __init__(self, run_id: int, message: str):
        self.run_id = run_id
        super().__init__(message)


def start(store: Store, config: RunConfig, queue: bool = True) -> int:
    """Store a new run and launch its worker; return the run's id.

    One call, so that a caller cut short between the two (a page whose script a second click
    reruns) cannot leave a stored run that no worker will ever pick up. If the worker cannot
    be started the run stays pending without one: WorkerStartError names it.
    """
    run_id = create_run(store, config)
    try:
        launch(store, run_id, queue=queue)
    except (OSError, StarError) as exc:
        raise WorkerStartError(run_id, f"run {run_id} is stored, but its worker did not start ({exc}); "
                                       "fix the cause and press Start on the run to try again") from exc
    return run_id


def launch(store: Store, run_id: int, queue: bool = True) -> int:
    """Start (or resume) a run in a detached worker process; return its pid.

    With `queue` the worker waits for a slot of this machine (run_queue.py) before it loads
    a model, shown as 'queued'; without, it starts at once with its share of the cores.
    """
    run = store.get_run(run_id)
    if run.status == RunStatus.RUNNING:
        raise RunStateError(f"run {run_id} is already running (pid {run.pid} on {run.host})")
    if run.status == RunStatus.QUEUED:
        raise RunStateError(f"run {run_id} is already queued (pid {run.pid} on {run.host}); it starts when a slot frees")
    if worker_starting(store, run_id):
        raise RunStateError(f"run {run_id} is already starting in another worker")
    # Pending from now until the worker claims it, so that every view shows it starting at once (a resumed
    # run would otherwise look cancelled or failed, with a Resume button, while its worker loads).
    store.claim_run(run_id, status=RunStatus.PENDING)
    folder = store.run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    args = ["run", str(run_id), "--db", str(store.path.resolve())] + ([] if queue else ["--no-queue"])
    return spawn_worker(WORKER, args, folder, f"run {run_id}")


def launch_experiment(store: Store, experiment_id: int) -> int:
    """Run (or resume) an experiment's arms (or an exemplar comparison's two runs) in a detached worker; return
    its pid. Each arm is an ordinary run claimed by that worker, so the Runs page follows it like any other."""
    store.get_experiment(experiment_id)  # exists
    if experiment_worker_alive(store, experiment_id):
        raise ExperimentError(f"experiment {experiment_id} is already running in a worker")
    folder = experiment_folder(store, experiment_id)
    folder.mkdir(parents=True, exist_ok=True)
    args = ["experiment", str(experiment_id), "--db", str(store.path.resolve())]
    return spawn_worker(WORKER, args, folder, f"experiment {experiment_id}")


def experiment_folder(store: Store, experiment_id: int) -> Path:
    """Where an experiment's worker keeps its log and pid file: beside the runs' folders."""
    return store.path.parent / f"{store.path.stem}-runs" / f"experiment-{experiment_id}"


def experiment_worker_alive(store: Store, experiment_id: int) -> bool:
    """Whether the experiment's worker still lives (its locked pid file, not a pid that may be reused)."""
    return live_worker(experiment_folder(store, experiment_id)) is not None


def spawn_worker(module: str, args: list[str], folder: Path, what: str) -> int:
    """Start `python -m module args` detached, logging to folder/worker.log; return the pid.

    folder/worker.pid holds the pid, locked by the worker while it lives (live_worker)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(folder / LOG_NAME, "a") as log:
        log.write(f"\n--- {datetime.now():%Y-%m-%d %H:%M:%S} worker launched for {what}\n")
        log.flush()
        process = spawn_holding(
            folder / PID_NAME, [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(PROJECT_ROOT), env=env,
            start_new_session=True,  # survives the app's restart; Ctrl-C in the app's terminal does not reach it
        )
    # Reap the worker when it exits, so that a finished one is not a zombie that looks alive.
    threading.Thread(target=process.wait, name=f"reap-{what.replace(' ', '-')}", daemon=True).start()
    return process.pid


def resume(store: Store, run_id: int, queue: bool = True) -> int:
    """Continue a cancelled, failed or crashed run where it stopped."""
    run = store.get_run(run_id)
    if run.status == RunStatus.DONE:
        raise RunStateError(f"run {run_id} is done; there is nothing to resume")
    return launch(store, run_id, queue=queue)


def cancel(store: Store, run_id: int) -> RunStatus:
    """Ask a run to stop after its current batch or step (it can be resumed later); return the status
    it had: running or queued (asked to stop), pending (its worker was still starting, and is stopped),
    or cancelled (its worker claimed the run just before it was stopped: recorded as any cancelled run).

    A queued run leaves the queue: its worker sees the request within a second and ends
    as cancelled without loading a model.
    """
    run = store.get_run(run_id)
    if run.status in (RunStatus.RUNNING, RunStatus.QUEUED):
        store.request_cancel(run_id)
        return RunStatus(run.status)
    # Not claimed yet: a cancel flag would be cleared by the claim, so stop the worker itself (only if it
    # is still the one launched: signal_holder signals no stale pid).
    pid_file = _pid_file(store, run_id)
    worker = signal_holder(pid_file, signal.SIGTERM) if run.status == RunStatus.PENDING else None
    if worker is not None:
        _wait_until_released(pid_file)
        # It may have claimed the run since it was read as pending: "before it started" only if it had not.
        if store.cancel_unclaimed(run_id, worker, "cancelled before the worker started"):
            return RunStatus.PENDING
        return RunStatus.CANCELLED
    raise RunStateError(_not_cancellable(store, run_id, run.status))


def _wait_until_released(pid_file: Path, timeout_s: float = STOP_WAIT_S) -> None:
    """Wait for a signalled worker to end (its pid file no longer held), so that it writes nothing after us."""
    deadline = time.monotonic() + timeout_s
    while live_holder(pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def _not_cancellable(store: Store, run_id: int, status: str) -> str:
    if status == RunStatus.PENDING:
        if worker_died_early(store, run_id):
            return (f"run {run_id} is not running: its worker ended before it started the run (see "
                    f"{log_path(store, run_id)}); nothing to cancel")
        return f"run {run_id} has not been started; nothing to cancel"
    state = {RunStatus.FAILED: "has failed", RunStatus.CRASHED: "has crashed (its process is gone)"}.get(
        status, f"is already {status}")
    return f"run {run_id} {state}; nothing to cancel"


def worker_starting(store: Store, run_id: int) -> bool:
    """Whether a worker launched for a pending run is still alive (loading, before it claims the run)."""
    return live_worker(store.run_folder(run_id)) is not None and store.get_run(run_id).status == RunStatus.PENDING


def worker_died_early(store: Store, run_id: int) -> bool:
    """A worker was launched for this pending run and is gone without claiming it."""
    return (_launched_pid(store, run_id) is not None and live_worker(store.run_folder(run_id)) is None
            and store.get_run(run_id).status == RunStatus.PENDING)


def never_launched(store: Store, run_id: int) -> bool:
    """A pending run no worker was ever launched for (no worker.pid): its start was cut short or failed,
    or it comes from an older database. Only Start runs it."""
    return _launched_pid(store, run_id) is None and store.get_run(run_id).status == RunStatus.PENDING


def log_tail(store: Store, run_id: int | None = None, lines: int = 40, *, experiment_id: int | None = None) -> str:
    """The end of a run's worker log, or with `experiment_id` an experiment's ('' if it has none, e.g. a run
    started with `star run`)."""
    folder = store.run_folder(run_id) if experiment_id is None else experiment_folder(store, experiment_id)
    path = folder / LOG_NAME
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64_000))
        text = f.read().decode("utf-8", "replace")
    # tqdm-style carriage returns: keep what a terminal would show.
    shown = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(shown[-lines:])


# --- process bookkeeping ----------------------------------------------------------

def _pid_file(store: Store, run_id: int) -> Path:
    return store.run_folder(run_id) / PID_NAME


def _launched_pid(store: Store, run_id: int) -> int | None:
    """The pid spawn_worker wrote for the run, alive or long gone: whether a worker was ever launched.
    Never signal it, nor take it for alive: live_worker says whether it is still the worker's."""
    try:
        return int(_pid_file(store, run_id).read_text().strip())
    except (OSError, ValueError):
        return None


def live_worker(folder: Path) -> int | None:
    """The pid of the worker spawn_worker started in `folder` while it lives; None if none was started or it
    has ended (its pid file is then not held, whichever process has that pid now)."""
    return live_holder(folder / PID_NAME)
