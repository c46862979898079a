"""The machine's run queue: slots held with flock, first come first served, a dead holder frees its
slot, a queued run can be cancelled, and --no-queue runs share the cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest

from app_helpers import wait_for
from tiny import TRAINS_UNTIL_STOPPED, tiny_config
from star_core.engine.prepare import create_run
from star_core.runtime import jobs
from star_core.engine import run_queue
from star_core.core.config import RunConfig
from star_core.core.errors import RunStateError
from star_core.core.states import RunStatus
from star_core.store import Store

CPU = ("cpu", ["cpu-0"])


@pytest.mark.parametrize("cores, workers, threads", [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 3, 5), (16, 0, 16), (1, 4, 1)])
def test_each_model_process_gets_its_share_of_the_cores(cores, workers, threads):
    assert run_queue.threads_for(cores, workers) == threads


def test_slots_per_device(monkeypatch):
    assert run_queue.slot_names("cuda", None, 2) == ["cuda-0", "cuda-1"]  # any free GPU
    assert run_queue.slot_names("cuda", 1, 2) == ["cuda-1"]  # the GPU asked for
    assert run_queue.slot_names("cpu", None, 0) == ["cpu-0"]  # one for the whole CPU
    monkeypatch.setenv("STAR_CPU_SLOTS", "2")
    assert run_queue.slot_names("cpu", None, 0) == ["cpu-0", "cpu-1"]
    monkeypatch.setenv("STAR_CPU_SLOTS", "none")
    with pytest.raises(RunStateError, match="STAR_CPU_SLOTS must be a whole number"):
        run_queue.slot_names("cpu", None, 0)
    assert [run_queue.family_of(n) for n in ("cpu-0", "cuda-12")] == ["cpu", "cuda"]
    assert [run_queue.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]


# --- in one process: waiters are threads, the slot's holder is the test ---------------------------------


def _waiter(store, run_id, folder, results, slots=CPU):
    def body():
        results[run_id] = run_queue.wait_for_slot(store, run_id, slots, folder=folder, poll_s=0.05)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def _counting_polls(store) -> Counter:
    """Count each waiter's looks at the queue (every round of wait_for_slot first asks whether it was cancelled)."""
    polls: Counter = Counter()
    real = store.cancel_requested

    def counted(run_id):
        polls[run_id] += 1
        return real(run_id)

    store.cancel_requested = counted
    return polls


def _each_looked_again(polls: Counter, *run_ids) -> None:
    """Wait until each waiter has gone round at least once more (tried the slots) since now."""
    seen = {r: polls[r] for r in run_ids}
    wait_for(lambda: all(polls[r] >= seen[r] + 2 for r in run_ids), timeout=20, what="the waiters to look again")


def test_waiters_take_a_freed_slot_first_come_first_served(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    folder.mkdir()
    a, b = store.create_run(RunConfig(name="a")), store.create_run(RunConfig(name="b"))
    holder = run_queue._try_hold(folder / "cpu-0.lock")  # a run holding the CPU
    results: dict = {}
    polls = _counting_polls(store)
    ta = _waiter(store, a, folder, results)
    wait_for(lambda: run_queue.position(store, a, folder) == 1, timeout=20, what="a to queue")
    tb = _waiter(store, b, folder, results)
    wait_for(lambda: run_queue.position(store, b, folder) == 2, timeout=20, what="b to queue behind a")
    assert [store.get_run(r).status for r in (a, b)] == ["queued", "queued"]
    runs = store.list_runs()
    assert run_queue.status_labels(store, runs, folder) == ["queued (1st)", "queued (2nd)"]  # as the run lists show them
    _each_looked_again(polls, a, b)
    assert not results  # nobody gets a held slot

    holder.release(unlink=False)
    ta.join(20)
    assert results[a].name == "cpu-0" and b not in results  # the older waiter first
    assert run_queue.position(store, a, folder) is None and run_queue.position(store, b, folder) == 1
    store.claim_run(a, from_queue=True)
    assert store.get_run(a).status == "running"

    results[a].release()
    tb.join(20)
    assert results[b].name == "cpu-0" and run_queue.positions(store, folder) == {}


def test_the_queue_is_per_device_first_come_first_served_on_each(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    folder.mkdir()
    gpu0, gpu1 = ("cuda", ["cuda-0"]), ("cuda", ["cuda-1"])
    a, b, c = (store.create_run(RunConfig(name=n)) for n in "abc")
    busy = run_queue._try_hold(folder / "cuda-0.lock")  # a run holding cuda:0
    results: dict = {}
    polls = _counting_polls(store)
    ta = _waiter(store, a, folder, results, gpu0)
    wait_for(lambda: run_queue.position(store, a, folder) == 1, timeout=20, what="a to queue for cuda:0")
    tb = _waiter(store, b, folder, results, gpu0)
    wait_for(lambda: run_queue.position(store, b, folder) == 2, timeout=20, what="b to queue behind a")
    tc = _waiter(store, c, folder, results, gpu1)  # pinned to cuda:1, which is free: it starts at once
    tc.join(20)
    assert c in results and results[c].name == "cuda-1", "a run for a free GPU waited behind another GPU's queue"
    _each_looked_again(polls, a, b)
    assert set(results) == {c} and run_queue.positions(store, folder) == {a: 1, b: 2}

    busy.release(unlink=False)  # cuda:0 frees: its older waiter first
    ta.join(20)
    assert results[a].name == "cuda-0" and b not in results and run_queue.positions(store, folder) == {b: 1}
    results[a].release()
    tb.join(20)
    assert results[b].name == "cuda-0"
    results[b].release()
    results[c].release()


def test_an_older_run_for_any_gpu_goes_before_a_newer_one_pinned_to_the_gpu_that_frees(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    folder.mkdir()
    held = [run_queue._try_hold(folder / f"cuda-{i}.lock") for i in (0, 1)]  # both GPUs busy
    anyone, pinned = store.create_run(RunConfig(name="any")), store.create_run(RunConfig(name="pinned"))
    results: dict = {}
    polls = _counting_polls(store)
    t_any = _waiter(store, anyone, folder, results, ("cuda", ["cuda-0", "cuda-1"]))
    wait_for(lambda: run_queue.position(store, anyone, folder) == 1, timeout=20, what="the any-GPU run to queue")
    t_pinned = _waiter(store, pinned, folder, results, ("cuda", ["cuda-1"]))
    wait_for(lambda: run_queue.position(store, pinned, folder) == 2, timeout=20, what="the pinned run to queue")
    held[1].release(unlink=False)
    t_any.join(20)
    assert results[anyone].name == "cuda-1" and pinned not in results
    _each_looked_again(polls, pinned)
    assert pinned not in results
    results[anyone].release()
    t_pinned.join(20)
    assert results[pinned].name == "cuda-1"
    results[pinned].release()
    held[0].release(unlink=False)


def test_a_cancelled_waiter_leaves_the_queue_without_a_slot(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    folder.mkdir()
    a = store.create_run(RunConfig())
    holder = run_queue._try_hold(folder / "cpu-0.lock")
    results: dict = {}
    thread = _waiter(store, a, folder, results)
    wait_for(lambda: run_queue.position(store, a, folder) == 1, timeout=20, what="a to queue")
    jobs.cancel(store, a)  # what the Cancel button and `jobs.cancel` do for a queued run
    thread.join(20)
    assert results == {a: None} and run_queue.position(store, a, folder) is None
    holder.release(unlink=False)


def test_a_killed_holder_frees_its_slot(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(folder / 'cpu-0.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_queue.running_model_processes("cpu", folder) == 1
        a = store.create_run(RunConfig())
        results: dict = {}
        thread = _waiter(store, a, folder, results)
        wait_for(lambda: run_queue.position(store, a, folder) == 1, timeout=20, what="a to queue")
        os.kill(holder.pid, signal.SIGKILL)  # it never releases anything itself
        thread.join(20)
        assert results[a].name == "cpu-0"
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_waiters_ticket_is_not_in_the_way(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    (folder / "queue").mkdir(parents=True)
    # A waiter killed while queued leaves its ticket file behind, held by nobody.
    (folder / "queue" / f"cpu_{1:020d}_999999_7.ticket").write_text('{"db": "x", "run_id": 7}')
    a = store.create_run(RunConfig())
    slot = run_queue.wait_for_slot(store, a, CPU, folder=folder, poll_s=0.05)
    assert slot is not None and slot.name == "cpu-0"
    assert list((folder / "queue").iterdir()) == []
    slot.release()


def test_claims_respect_a_queued_run(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id, status=RunStatus.QUEUED)
    with pytest.raises(RunStateError, match="already queued"):
        store.claim_run(run_id)  # a second resume while it waits
    with pytest.raises(RunStateError, match="already queued"):
        jobs.launch(store, run_id)
    store.request_cancel(run_id)
    store.claim_run(run_id, from_queue=True)  # it got its slot: the cancel asked meanwhile is kept
    assert store.get_run(run_id).status == "running" and store.cancel_requested(run_id)
    with pytest.raises(RunStateError, match="no longer queued by this process"):
        store.claim_run(run_id, from_queue=True)


def test_unqueued_runs_are_counted_for_the_share_of_the_cores(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    folder = tmp_path / "slots"
    run_id = store.create_run(RunConfig())
    slot = run_queue.wait_for_slot(store, run_id, CPU, folder=folder)
    others = [run_queue.unqueued(store, run_id, CPU, folder=folder) for _ in range(2)]
    assert run_queue.running_model_processes("cpu", folder) == 3
    assert run_queue.running_model_processes("cuda", folder) == 0
    for other in others:
        other.release()
    assert run_queue.running_model_processes("cpu", folder) == 1
    assert not list(folder.glob("unqueued_*"))  # a registration goes with its run
    slot.release()
    assert run_queue.running_model_processes("cpu", folder) == 0


# --- workers on a tiny model ---------------------------------------------------------------------------


def _log(store, run_id) -> str:
    return jobs.log_path(store, run_id).read_text() if jobs.log_path(store, run_id).exists() else ""


@pytest.mark.slow
def test_a_second_worker_waits_queued_then_runs_when_the_first_is_killed(tmp_path, tiny_model):
    store = Store(tmp_path / "w.duckdb").init()
    long = create_run(store, tiny_config(tiny_model, name="long", **TRAINS_UNTIL_STOPPED))
    short = create_run(store, tiny_config(tiny_model, name="short"))
    jobs.launch(store, long)
    wait_for(lambda: store.get_run(long).status == "running", what="the first run to take the slot")
    jobs.launch(store, short)
    wait_for(lambda: store.get_run(short).status == "queued", what="the second run to queue")
    assert run_queue.position(store, short) == 1 and store.get_run(long).status == "running"
    assert "waiting for a free cpu slot" in _log(store, short) and "iteration 0" not in _log(store, short)

    os.kill(store.get_run(long).pid, signal.SIGKILL)  # a crash: the kernel frees its slot
    wait_for(lambda: store.get_run(short).status in ("done", "failed"), what="the second run to finish")
    assert store.get_run(short).status == "done", _log(store, short)
    assert store.get_run(long).status == "crashed"


@pytest.mark.slow
def test_a_queued_worker_can_be_cancelled_before_it_loads_a_model(tmp_path, tiny_model):
    store = Store(tmp_path / "w.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model))
    holder = run_queue._try_hold(run_queue.slots_folder() / "cpu-0.lock")  # another run has the CPU
    try:
        jobs.launch(store, run_id)
        wait_for(lambda: store.get_run(run_id).status == "queued", what="the run to queue")
        jobs.cancel(store, run_id)
        wait_for(lambda: store.get_run(run_id).status == "cancelled", timeout=30, what="the cancel")
    finally:
        holder.release(unlink=False)
    run = store.get_run(run_id)
    assert run.error == "cancelled while queued" and run_queue.position(store, run_id) is None
    assert "iteration 0" not in _log(store, run_id) and store.attempt_count() == 0
    jobs.resume(store, run_id, queue=False)  # now at once, without the queue
    wait_for(lambda: store.get_run(run_id).status in ("done", "failed"), what="the resumed run")
    assert store.get_run(run_id).status == "done", _log(store, run_id)


# --- the Runs page -------------------------------------------------------------------------------------


def test_the_runs_page_shows_a_queued_run_with_its_place_and_cancels_it(tmp_path, monkeypatch):
    from app_helpers import assert_no_error, open_page, texts

    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    first, second = store.create_run(RunConfig(name="first")), store.create_run(RunConfig(name="second"))
    folder = run_queue.slots_folder()
    (folder / "queue").mkdir(parents=True, exist_ok=True)
    store.claim_run(first)  # running in this (live) process, holding the CPU's slot
    slot = run_queue._try_hold(folder / "cpu-0.lock")
    slot.write(run_queue._holder_info(store, first))
    store.claim_run(second, status=RunStatus.QUEUED)  # waiting behind it, as a worker would
    ticket, _ = run_queue._new_ticket(folder, "cpu", store, second, ["cpu-0"])
    try:
        at = open_page("pages/runs.py", monkeypatch, db, query={"run": str(second)})
        page = texts(at).replace("\\", "")  # as shown: without the Markdown escapes
        assert "queued" in page and "1st in the queue" in page
        assert "Waiting for a free slot on this machine" in page and f"run {first} of r.duckdb running" in page
        cancel = at.button(key=f"cancel_{second}")
        assert cancel.label == "Cancel" and not cancel.disabled
        cancel.click().run()
        assert_no_error(at)
        assert store.cancel_requested(second)  # the waiting worker sees it within a second and ends as cancelled
        assert "Leaving the queue" in texts(at) and at.button(key=f"cancel_{second}").disabled
        assert any(f"Run {second} leaves the queue" in t.value for t in at.toast)
    finally:
        ticket.release(unlink=True)
        slot.release(unlink=False)


def test_a_queue_folder_that_cannot_be_used_is_one_clear_error_and_changes_nothing(tmp_path):
    store = Store(tmp_path / "q.duckdb").init()
    run_id = store.create_run(RunConfig())
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(RunStateError, match="cannot use the run queue's folder .*STAR_SLOTS"):
        run_queue.wait_for_slot(store, run_id, CPU, folder=blocked / "slots")
    assert store.get_run(run_id).status == "pending"


@pytest.mark.slow  # a whole `star run` beside a held slot: ~8 s
def test_star_run_no_queue_starts_at_once_with_its_share_of_the_cores(tmp_path, tiny_model, capsys):
    import torch

    from star_core.cli.commands import main

    db = tmp_path / "n.duckdb"
    holder = run_queue._try_hold(run_queue.slots_folder() / "cpu-0.lock")  # another run has the CPU's slot
    threads = torch.get_num_threads()
    try:
        code = main(["run", "--db", str(db), "--no-queue", "--model", tiny_model, "--train-size", "4", "--eval-size", "2",
                     "--max-new-tokens", "8", "--min-steps", "2", "--device", "cpu"])
        assert code == 0, capsys.readouterr().err
        assert torch.get_num_threads() == run_queue.threads_for(run_queue.cores(), 2)  # it and the slot's holder
    finally:
        torch.set_num_threads(threads)
        holder.release(unlink=False)
    assert Store(db).get_run(1).status == "done"
    err = capsys.readouterr().err
    assert "--no-queue:" in err and "waiting for a free" not in err
