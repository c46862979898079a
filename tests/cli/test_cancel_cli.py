"""`star cancel --db F RUN`: what the app's Cancel button does, from a shell, with one line for a run
that cannot be cancelled."""

from __future__ import annotations

import pytest

from app_helpers import one_error_line, wait_for
from tiny import TRAINS_UNTIL_STOPPED, tiny_config
from star_core.engine.prepare import create_run
from star_core.runtime import jobs
from star_core.engine import run_queue
from star_core.cli.commands import main
from star_core.core.config import RunConfig
from star_core.core.processes import alive
from star_core.core.states import RunStatus
from star_core.store import Store


def star_cancel(capsys, db, run_id) -> tuple[int, str, str]:
    code = main(["cancel", "--db", str(db), str(run_id)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "c.duckdb"
    Store(path).init()
    return path


def test_an_unknown_run_or_database_is_one_line(db, tmp_path, capsys):
    code, out, err = star_cancel(capsys, db, 7)
    assert (code, out) == (2, "")
    one_error_line(err, "there is no run 7")
    code, _, err = star_cancel(capsys, tmp_path / "none.duckdb", 1)
    assert code == 2
    one_error_line(err, "none.duckdb does not exist")


@pytest.mark.parametrize("status, said", [(RunStatus.DONE, "is already done"),
                                          (RunStatus.CANCELLED, "is already cancelled"),
                                          (RunStatus.FAILED, "has failed")])
def test_a_finished_run_is_one_line_and_stays_as_it_was(db, capsys, status, said):
    store = Store(db)
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)
    store.finish_run(run_id, status, "as it ended")
    code, out, err = star_cancel(capsys, db, run_id)
    assert (code, out) == (2, "")
    one_error_line(err, f"run {run_id} {said}; nothing to cancel")
    assert (store.get_run(run_id).status, store.get_run(run_id).error) == (status, "as it ended")
    assert not store.cancel_requested(run_id)


def test_a_run_never_started_is_one_line(db, capsys):
    run_id = Store(db).create_run(RunConfig())
    code, _, err = star_cancel(capsys, db, run_id)
    assert code == 2
    one_error_line(err, f"run {run_id} has not been started")


def test_a_worker_still_starting_is_stopped(db, capsys):
    store = Store(db)
    run_id = store.create_run(RunConfig())
    store.run_folder(run_id).mkdir(parents=True)
    pid = jobs.spawn_worker("timeit", ["-n", "1", "-r", "1", "import time; time.sleep(60)"],
                            store.run_folder(run_id), f"run {run_id}")  # a worker that has not claimed its run yet
    code, out, _ = star_cancel(capsys, db, run_id)
    assert code == 0 and f"run {run_id} cancelled before its worker started" in out
    wait_for(lambda: not alive(pid), timeout=20, what="the worker to end")
    assert store.get_run(run_id).status == RunStatus.CANCELLED


@pytest.mark.slow
def test_a_queued_worker_leaves_the_queue(db, capsys, tiny_model):
    store = Store(db)
    run_id = create_run(store, tiny_config(tiny_model))
    holder = run_queue._try_hold(run_queue.slots_folder() / "cpu-0.lock")  # another run has the CPU
    try:
        jobs.launch(store, run_id)
        wait_for(lambda: store.get_run(run_id).status == RunStatus.QUEUED, what="the run to queue")
        code, out, err = star_cancel(capsys, db, run_id)
        assert code == 0, err
        assert f"run {run_id}: cancel requested; it leaves the queue" in out and f"--resume {run_id}" in out
        wait_for(lambda: store.get_run(run_id).status == RunStatus.CANCELLED, timeout=30, what="the cancel")
    finally:
        holder.release(unlink=False)
    assert store.get_run(run_id).error == "cancelled while queued" and store.attempt_count() == 0
    code, _, err = star_cancel(capsys, db, run_id)  # a second time: nothing left to cancel
    assert code == 2
    one_error_line(err, "is already cancelled")


@pytest.mark.slow
def test_a_running_worker_stops_and_can_be_resumed(db, capsys, tiny_model):
    store = Store(db)
    run_id = create_run(store, tiny_config(tiny_model, **TRAINS_UNTIL_STOPPED))
    jobs.launch(store, run_id)
    wait_for(lambda: store.get_run(run_id).status == RunStatus.RUNNING, what="the run to start")
    worker = store.get_run(run_id).pid
    code, out, err = star_cancel(capsys, db, run_id)
    assert code == 0, err
    assert f"run {run_id}: cancel requested; it stops after its current batch or step" in out
    wait_for(lambda: store.get_run(run_id).status == RunStatus.CANCELLED, timeout=120, what="the run to stop")
    wait_for(lambda: not alive(worker), timeout=30, what="the worker to end")
    assert f"run {run_id} cancelled" in jobs.log_tail(store, run_id)
    assert store.get_run(run_id).status == RunStatus.CANCELLED  # resumable: not failed, not crashed
