"""A worker is known by its held pid file, not by a pid: a pid file left by a dead worker names
whatever process has that number now, and that process is never signalled nor taken for the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from app_helpers import wait_for
from star_core.runtime import jobs
from star_core.core.config import RunConfig
from star_core.core.errors import RunStateError
from star_core.core.processes import alive, live_holder
from star_core.core.states import RunStatus
from star_core.store import Store

# A stand-in worker: a Python process that sleeps (spawn_worker starts `python -m MODULE ARGS`).
SLEEPER = ("timeit", ["-n", "1", "-r", "1", "import time; time.sleep(60)"])


@pytest.fixture
def pending(tmp_path):
    store = Store(tmp_path / "w.duckdb").init()
    run_id = store.create_run(RunConfig())
    store.run_folder(run_id).mkdir(parents=True)
    return store, run_id


@pytest.fixture
def unrelated():
    """A live process that is not a worker: it has the pid a dead worker's file names (pid reuse)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_a_stale_pid_file_naming_a_live_process_is_not_signalled(pending, unrelated):
    store, run_id = pending
    (store.run_folder(run_id) / jobs.PID_NAME).write_text(str(unrelated.pid))  # the dead worker's pid, reused
    assert alive(unrelated.pid)  # by pid alone it would look like the worker
    assert jobs.live_worker(store.run_folder(run_id)) is None
    assert not jobs.worker_starting(store, run_id) and jobs.worker_died_early(store, run_id)
    with pytest.raises(RunStateError, match=f"run {run_id} is not running: its worker ended before it started"):
        jobs.cancel(store, run_id)
    time.sleep(0.3)
    assert unrelated.poll() is None  # not signalled
    assert store.get_run(run_id).status == RunStatus.PENDING  # nothing recorded either


def test_a_stale_experiment_pid_file_is_no_live_worker(tmp_path, unrelated):
    store = Store(tmp_path / "e.duckdb").init()
    where = jobs.experiment_folder(store, 1)
    where.mkdir(parents=True)
    (where / jobs.PID_NAME).write_text(str(unrelated.pid))
    assert not jobs.experiment_worker_alive(store, 1)


def test_a_launched_worker_holds_its_pid_file_from_the_start_and_cancel_stops_it(pending):
    store, run_id = pending
    pid = jobs.spawn_worker(*SLEEPER, store.run_folder(run_id), f"run {run_id}")
    assert jobs.live_worker(store.run_folder(run_id)) == pid  # no moment where it runs but is not known
    assert jobs.worker_starting(store, run_id) and not jobs.worker_died_early(store, run_id)
    assert jobs.cancel(store, run_id) == RunStatus.PENDING
    wait_for(lambda: not alive(pid), timeout=20, what="the worker to end on SIGTERM")
    run = store.get_run(run_id)
    assert (run.status, run.error) == (RunStatus.CANCELLED, "cancelled before the worker started")
    assert jobs.live_worker(store.run_folder(run_id)) is None


def test_a_killed_worker_leaves_a_pid_file_nobody_holds(pending):
    store, run_id = pending
    pid = jobs.spawn_worker(*SLEEPER, store.run_folder(run_id), f"run {run_id}")
    os.kill(pid, signal.SIGKILL)  # nothing of its own runs: the kernel drops the lock
    wait_for(lambda: jobs.live_worker(store.run_folder(run_id)) is None, timeout=20, what="the lock to go")
    assert jobs.worker_died_early(store, run_id) and not jobs.worker_starting(store, run_id)


def test_a_held_file_is_believed_only_while_held(tmp_path):
    from star_core.core.processes import spawn_holding

    pid_file = tmp_path / "worker.pid"
    child = spawn_holding(pid_file, [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert live_holder(pid_file) == child.pid == int(pid_file.read_text())
        assert [p.name for p in tmp_path.iterdir()] == ["worker.pid"]  # no partial file left beside it
    finally:
        child.stdin.close()
        child.wait(20)
    assert live_holder(pid_file) is None and pid_file.read_text() == str(child.pid)
    assert live_holder(tmp_path / "missing.pid") is None
