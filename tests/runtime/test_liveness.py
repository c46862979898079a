"""Whether a run's process is alive: the lock it holds on this machine, its heartbeat from anywhere else.

A stored pid is no proof: after a reboot it can be another process's, and after a container restart
the host has a new name. Here the pid is always a live process (this test's own), so only the lock
and the heartbeat can tell the run crashed. Also: a Cancel that races a worker claiming its run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from app_helpers import open_page, texts, wait_for
from star_core.cli.progress import runs_table
from star_core.core.config import RunConfig
from star_core.core.errors import RunStateError
from star_core.core.processes import is_held, spawn_holding
from star_core.core.states import RunStatus
from star_core.engine.heartbeat import beating
from star_core.runtime import jobs
from star_core.store import Store
from star_core.store.runs import STALE_S

HOST = socket.gethostname()


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "l.duckdb").init()


def _left_running(store: Store, run_id: int, host: str, heartbeat_age_s: float, lock_file: bool) -> None:
    """As a process that claimed the run and vanished leaves it: running, with this (live) test process's pid,
    its last heartbeat `heartbeat_age_s` ago and (`lock_file`) the lock file it held."""
    beat = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=heartbeat_age_s)
    with store.db.write() as con:
        con.execute("UPDATE runs SET status = 'running', pid = ?, host = ?, heartbeat_at = ? WHERE id = ?",
                    [os.getpid(), host, beat, run_id])
    if lock_file:
        store.run_lock(run_id).parent.mkdir(parents=True, exist_ok=True)
        store.run_lock(run_id).touch()


def _status_everywhere(store: Store, run_id: int) -> set[str]:
    """The run's status as get_run, the run list and `star runs` show it."""
    listed = store.list_runs().set_index("id").status[run_id]
    row = [line for line in runs_table(store).splitlines()[1:] if line.split()[0] == str(run_id)]
    return {store.get_run(run_id).status, listed, *(w for w in row[0].split() if w in set(RunStatus))}


def test_after_a_reboot_a_pid_now_anothers_does_not_keep_a_run_running(store):
    run_id = store.create_run(RunConfig(name="rebooted"))
    _left_running(store, run_id, HOST, heartbeat_age_s=5, lock_file=True)  # fresh heartbeat, lock held by none
    assert _status_everywhere(store, run_id) == {"crashed"}
    store.claim_run(run_id)  # what `star run --resume` and the Resume button do first
    assert store.get_run(run_id).status == "running"  # held by this process now: its lock proves it
    assert is_held(store.run_lock(run_id)) is True
    store.finish_run(run_id, RunStatus.CANCELLED)
    assert store.get_run(run_id).status == "cancelled" and is_held(store.run_lock(run_id)) is False


def test_star_run_resume_continues_a_run_whose_pid_is_anothers(tmp_path, tiny_model, capsys):
    from tiny import tiny_config
    from star_core.cli.commands import main
    from star_core.engine.prepare import create_run

    db = tmp_path / "resume.duckdb"
    store = Store(db).init()
    run_id = create_run(store, tiny_config(tiny_model))
    _left_running(store, run_id, HOST, heartbeat_age_s=5, lock_file=True)
    code = main(["run", "--db", str(db), "--resume", str(run_id), "--no-queue"])
    assert code == 0, capsys.readouterr().err
    assert store.get_run(run_id).status == "done"


def test_after_a_container_restart_a_stale_heartbeat_is_a_crash(store):
    run_id = store.create_run(RunConfig(name="old container"))
    _left_running(store, run_id, "container-before-restart", heartbeat_age_s=STALE_S + 60, lock_file=True)
    assert _status_everywhere(store, run_id) == {"crashed"}
    store.claim_run(run_id)
    assert store.get_run(run_id).status == "running" and store.get_run(run_id).host == HOST


def test_a_run_on_another_host_with_a_fresh_heartbeat_stays_running_and_is_not_resumed(store):
    run_id = store.create_run(RunConfig(name="elsewhere"))
    _left_running(store, run_id, "another-host", heartbeat_age_s=STALE_S - 60, lock_file=False)
    assert _status_everywhere(store, run_id) == {"running"}
    with pytest.raises(RunStateError, match="already running"):
        store.claim_run(run_id)
    with pytest.raises(RunStateError, match="already running"):
        jobs.resume(store, run_id)


@pytest.mark.parametrize("age, shown", [(5, "running"), (STALE_S + 60, "crashed")])
def test_without_a_lock_file_a_live_pid_counts_only_with_a_fresh_heartbeat(store, age, shown):
    run_id = store.create_run(RunConfig())  # claimed by an older version: no lock file
    _left_running(store, run_id, HOST, heartbeat_age_s=age, lock_file=False)
    assert _status_everywhere(store, run_id) == {shown}


def test_the_runs_page_offers_resume_for_a_run_whose_pid_is_anothers(tmp_path, monkeypatch):
    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    run_id = store.create_run(RunConfig(name="rebooted"))
    _left_running(store, run_id, HOST, heartbeat_age_s=5, lock_file=True)
    at = open_page("pages/runs.py", monkeypatch, db, query={"run": str(run_id)})
    assert not at.exception
    assert [e.value for e in at.error if "died without recording why" not in e.value] == []  # no guard's error
    assert "crashed" in texts(at) and "died without recording why" in texts(at)
    assert at.button(key=f"resume_{run_id}").label == "Resume"


def test_a_live_owner_holds_its_run_until_it_is_killed(store):
    run_id = store.create_run(RunConfig())
    owner = subprocess.Popen([sys.executable, "-c", (  # a process that claims the run and keeps it
        "import sys, time\n"
        "from star_core.store import Store\n"
        f"Store({str(store.path)!r}).claim_run({run_id})\n"
        "print('claimed', flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "claimed", "the owner never claimed the run"
        assert _status_everywhere(store, run_id) == {"running"}
        with pytest.raises(RunStateError, match="already running"):
            store.claim_run(run_id)
        owner.kill()  # kill -9: it records nothing
        owner.wait(30)
        assert _status_everywhere(store, run_id) == {"crashed"}  # at once: the kernel dropped its lock
    finally:
        owner.kill()
        owner.wait()


def _age(store: Store, run_id: int) -> float:
    return float(store.list_runs().set_index("id").heartbeat_age_s[run_id])


def test_the_heartbeat_is_written_while_the_run_is_its_processs_own(store):
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)
    with store.db.write() as con:
        con.execute("UPDATE runs SET heartbeat_at = heartbeat_at - INTERVAL 1 HOUR WHERE id = ?", [run_id])
    assert _age(store, run_id) > 3000
    with beating(store, run_id, interval_s=0.05):
        wait_for(lambda: _age(store, run_id) < 60, timeout=20, what="a heartbeat")
    assert not store.cancel_requested(run_id)


def test_an_owner_whose_run_was_taken_over_stops_and_overwrites_nothing(store):
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)
    with store.db.write() as con:  # resumed on another host after this one's heartbeat went stale
        con.execute("UPDATE runs SET host = 'another-host', pid = 4242 WHERE id = ?", [run_id])
    assert not store.beat(run_id)  # its heartbeat no longer writes
    assert store.cancel_requested(run_id)  # so its loop stops after the current batch
    store.finish_run(run_id, RunStatus.CANCELLED)
    run = store.get_run(run_id)
    assert (run.host, run.pid) == ("another-host", 4242) and run.error is None
    with store.db.read() as con:
        assert con.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0] == "running"


# --- Cancel while the worker claims the run ------------------------------------------------------


@contextlib.contextmanager
def _starting_worker(store: Store, run_id: int):
    """A worker launched for the run that has not claimed it yet (it sleeps), holding its pid file; gone after."""
    store.claim_run(run_id, status=RunStatus.PENDING)  # as jobs.launch leaves it
    store.run_folder(run_id).mkdir(parents=True, exist_ok=True)
    worker = spawn_holding(store.run_folder(run_id) / jobs.PID_NAME,
                           [sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield worker
    finally:
        worker.kill()
        worker.wait()


def test_cancel_of_a_worker_that_claims_its_run_meanwhile_is_a_normal_cancel(store, monkeypatch):
    run_id = store.create_run(RunConfig())
    real = jobs.signal_holder

    def claimed_first(pid_file, sig):
        # Between cancel's read (pending) and its signal, the worker claims the run, as claim_run writes it.
        with store.db.write() as con:
            con.execute("UPDATE runs SET status = 'running', pid = ?, host = ? WHERE id = ?", [worker.pid, HOST, run_id])
        return real(pid_file, sig)

    monkeypatch.setattr(jobs, "signal_holder", claimed_first)
    with _starting_worker(store, run_id) as worker:
        assert jobs.cancel(store, run_id) == RunStatus.CANCELLED
        assert worker.wait(20) == -signal.SIGTERM
    run = store.get_run(run_id)
    assert (run.status, run.error, run.pid) == ("cancelled", None, None)  # not "before the worker started"


def test_cancel_of_a_worker_still_starting_says_so(store):
    run_id = store.create_run(RunConfig())
    with _starting_worker(store, run_id) as worker:
        assert jobs.cancel(store, run_id) == RunStatus.PENDING
        assert worker.wait(20) == -signal.SIGTERM
    run = store.get_run(run_id)
    assert (run.status, run.error) == ("cancelled", "cancelled before the worker started")


def test_a_late_cancel_record_leaves_a_run_another_process_claimed_alone(store):
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)  # claimed by a process that is not the stopped worker (this one)
    assert store.cancel_unclaimed(run_id, worker_pid=os.getpid() + 1, error="cancelled before the worker started") \
        is False
    assert store.get_run(run_id).status == "running"
