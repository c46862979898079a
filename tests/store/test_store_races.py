"""The store under concurrency: threads of one process, two resumes of one run, a reader in another process."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter

import duckdb
import pytest

from star_core.core.config import RunConfig
from star_core.core.errors import RunStateError, StoreError
from star_core.store import QueueFilter, Store

SPAWN = multiprocessing.get_context("spawn")


def _in_threads(count: int, work) -> list[BaseException]:
    """Run work(i) in `count` threads started together; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_threads_reading_and_writing_at_once_get_no_error_and_lose_no_write(seeded):
    store, run_id = seeded
    ids = store.audit_queue(QueueFilter(order="oldest"))
    seconds = 3.0
    done = Counter()
    labels_saved: dict[int, set] = {}

    def work(i: int) -> None:
        end, n = time.monotonic() + seconds, 0
        saved = labels_saved.setdefault(i, set())
        while time.monotonic() < end:
            n += 1
            if i in (0, 1):  # labellers: a new label each time (note differs), and reads of what they wrote
                attempt_id = ids[(i * 7 + n) % len(ids)]
                audit_id = store.save_audit(attempt_id, "sound" if n % 2 else "flawed", [f"t{n % 3}"], f"{i}-{n}", f"w{i}")
                saved.add(audit_id)
                assert store.audit_item(attempt_id).attempt_id == attempt_id
            elif i == 2:  # a run's progress
                store.set_progress(run_id, iteration=1, phase="generate", done=n, total=10**6)
            elif i == 3:  # the runs page
                assert len(store.list_runs()) == 1
            elif i == 4:  # the audit page
                assert store.audit_queue(QueueFilter(order="disagreement"))
                store.audit_tags()
                store.audited_among(ids)
            else:  # the browse page and the exemplars page
                assert store.attempts_of(run_id, 1, "generated")
                store.list_exemplar_sets()
            done[i] += 1

    errors = _in_threads(6, work)
    assert errors == []
    assert all(done[i] > 0 for i in range(6)), done
    with store.db.read() as con:
        stored = {r[0] for r in con.execute("SELECT id FROM audits").fetchall()}
        progress = con.execute("SELECT phase_done FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    written = set().union(*labels_saved.values())
    assert None not in written and len(written) == done[0] + done[1]  # every save made a row
    assert written == stored  # ... and every one is in the file
    assert progress == done[2]  # the last progress write is the one stored


def test_two_threads_adding_the_same_new_tag_both_succeed(seeded):
    store, _ = seeded
    for round_ in range(10):
        tag = f"new tag {round_}"
        assert _in_threads(2, lambda i: store.add_audit_tag(tag)) == []
        assert store.audit_tags().count(tag) == 1


def test_two_labels_with_the_same_new_tag_at_once_are_both_stored(seeded):
    store, _ = seeded
    ids = store.audit_queue(QueueFilter(order="oldest"))[:2]
    assert _in_threads(2, lambda i: store.save_audit(ids[i], "sound", ["brand new"], "", "ada")) == []
    assert store.audited_among(ids) == set(ids)
    assert store.audit_tags().count("brand new") == 1


def test_a_connection_of_other_code_in_the_other_mode_is_waited_for(tmp_path):
    # Code outside the store (a script's own duckdb.connect) holding the file read-only in this
    # process: the store's write waits until it closes instead of failing on the mode clash.
    store = Store(tmp_path / "s.duckdb").init()
    con = duckdb.connect(str(store.path), read_only=True)
    closer = threading.Timer(1.0, con.close)
    closer.start()
    run_id = store.create_run(RunConfig(name="after the reader"))
    closer.join()
    assert store.get_run(run_id).name == "after the reader"


def test_a_write_inside_a_read_is_refused_instead_of_deadlocking(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    with store.db.read():
        with pytest.raises(RuntimeError, match="inside a read"):
            store.create_run(RunConfig())
    with store.db.write() as con:  # a read nested in a write works (it sees what was committed before)
        con.execute("INSERT INTO audit_tags (name) VALUES ('nested')")
        assert "nested" not in store.audit_tags()
    assert "nested" in store.audit_tags()


# --- claiming a run ------------------------------------------------------------------


def _stored_run(store: Store, run_id: int) -> tuple:
    with store.db.read() as con:
        return con.execute("SELECT status, pid, host, error, finished_at, heartbeat_at, cancel_requested "
                           "FROM runs WHERE id = ?", [run_id]).fetchone()


def test_two_threads_resuming_one_run_only_one_claims_it(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    for _ in range(5):
        run_id = store.create_run(RunConfig())
        errors = _in_threads(2, lambda i: store.claim_run(run_id))
        assert len(errors) == 1 and isinstance(errors[0], RunStateError), errors
        assert "already running" in str(errors[0])
        assert store.get_run(run_id).status == "running"


def _claim(path: str, run_id: int, waiting, go, results, leave) -> None:
    from star_core.core.errors import RunStateError
    from star_core.store import Store

    store = Store(path)
    waiting.put("waiting")
    if not go.wait(60):
        results.put("never told to go")
        return
    try:
        store.claim_run(run_id)
        results.put("claimed")
    except RunStateError as exc:
        results.put(f"refused: {exc}")
    leave.wait(60)  # stay alive: a claim by a process that is gone would not count


def test_two_processes_resuming_one_run_only_one_claims_it(tmp_path):
    path = tmp_path / "s.duckdb"
    store = Store(path).init()
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)
    store.finish_run(run_id, "cancelled")
    go, leave, results, waiting = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_claim, args=(str(path), run_id, waiting, go, results, leave)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        assert [waiting.get(timeout=60) for _ in procs] == ["waiting"] * 2  # both imported, each at its start line
        go.set()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        run = store.get_run(run_id)
        assert outcomes[0] == "claimed" and outcomes[1].startswith(f"refused: run {run_id} is already running")
        assert run.status == "running" and run.pid in {p.pid for p in procs}
    finally:
        leave.set()
        for p in procs:
            p.join(30)


def test_a_done_run_is_not_claimed_and_nothing_is_written(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    store.claim_run(run_id)
    store.finish_run(run_id, "done")
    before = _stored_run(store, run_id)
    with pytest.raises(RunStateError, match=f"run {run_id} is done; nothing to resume"):
        store.claim_run(run_id)
    assert _stored_run(store, run_id) == before


def test_a_crashed_run_can_be_claimed_again(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    dead = SPAWN.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    with store.db.write() as con:  # as a killed worker leaves it
        con.execute("UPDATE runs SET status = 'running', pid = ?, host = ? WHERE id = ?",
                    [dead.pid, __import__("socket").gethostname(), run_id])
    assert store.get_run(run_id).status == "crashed"
    store.claim_run(run_id)
    assert store.get_run(run_id).pid == __import__("os").getpid()


def test_an_unknown_run_is_not_claimed(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    with pytest.raises(RunStateError, match="there is no run 7"):
        store.claim_run(7)
    assert store.list_runs().empty


# --- a reader in another process -----------------------------------------------------


def _read_and_hold(path: str, ready, release) -> None:
    import duckdb as _duckdb

    con = _duckdb.connect(path, read_only=True)
    con.execute("SELECT count(*) FROM runs").fetchall()
    ready.set()
    release.wait(120)  # until the test has seen the other side wait
    con.close()


def test_a_run_writing_while_another_process_reads_waits_and_loses_nothing(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).init()
    heard: list[str] = []
    ready, release = SPAWN.Event(), SPAWN.Event()

    def waits(message: str) -> None:
        heard.append(message)
        release.set()  # the write is waiting for the reader: now let it go

    worker = Store.patient(path, on_wait=waits)  # what a run's worker uses
    reader = SPAWN.Process(target=_read_and_hold, args=(str(path), ready, release))
    reader.start()
    try:
        assert ready.wait(60)
        run_id = worker.create_run(RunConfig(name="written while read"))
        worker.set_progress(run_id, iteration=1, phase="generate", done=5, total=10)
    finally:
        release.set()
        reader.join(30)
    assert len(heard) == 1 and "waiting for the database" in heard[0] and "held by another process" in heard[0]
    runs = worker.list_runs()
    assert runs.name.tolist() == ["written while read"] and runs.phase_done.tolist() == [5]


def test_an_interactive_wait_is_bounded_and_says_so(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).init()
    heard: list[str] = []
    ready, release = SPAWN.Event(), SPAWN.Event()
    reader = SPAWN.Process(target=_read_and_hold, args=(str(path), ready, release))
    reader.start()
    try:
        assert ready.wait(60)
        with pytest.raises(StoreError, match=r"held by another process \(pid \d+, .*\) for over 2 s"):
            Store(path, lock_timeout=2.0, on_wait=heard.append).create_run(RunConfig())
    finally:
        release.set()
        reader.join(30)
    assert len(heard) == 1
    assert Store(path).list_runs().empty  # the refused write left nothing behind


def _write_and_hold(path: str, ready, release) -> None:
    import duckdb as _duckdb

    con = _duckdb.connect(path)  # read-write: every other process waits, readers too
    ready.set()
    release.wait(120)  # until the page has said that it waits
    con.close()


class _ReleaseWhenWaiting(logging.Handler):
    """Lets the holder go once the app logs that a page waits for the file (pages/_ui.py's on_wait)."""

    def __init__(self, let_go):
        super().__init__(logging.INFO)
        self.let_go = let_go  # not `release`: Handler has a method of that name

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for the database" in record.getMessage():
            self.let_go.set()


def test_a_page_waiting_for_the_database_says_so_and_then_shows_it(tmp_path, monkeypatch):
    from app_helpers import assert_no_error, open_page

    path = tmp_path / "s.duckdb"
    Store(path).init().create_run(RunConfig(name="behind the lock"))
    open_page(None, monkeypatch, path)  # the app's store for this file exists (created and migrated)
    ready, release = SPAWN.Event(), SPAWN.Event()
    logger = logging.getLogger("star_core.store")
    handler = _ReleaseWhenWaiting(release)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    holder = SPAWN.Process(target=_write_and_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        at = open_page(None, monkeypatch, path)  # the overview, reading while the other process writes
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        release.set()
        holder.join(30)
    assert [t.value for t in at.toast if "Waiting for the database" in t.value]
    assert_no_error(at)
    assert "behind the lock" in " ".join(str(o) for s in at.selectbox for o in s.options)


# --- the shipped exemplar set --------------------------------------------------------


def _default_set_versions(store: Store) -> list[int]:
    sets = store.list_exemplar_sets()
    return sorted(sets[sets.name == "arithmetic-default"].version)


def test_threads_registering_the_shipped_set_at_once_leave_one_version(tmp_path):
    # Two app reruns creating runs at once (a double click, one tab per run) register the task's default set together.
    from star_core.engine import exemplars
    from star_core.tasks import get_task

    path = tmp_path / "s.duckdb"
    Store(path).init()
    task = get_task("arithmetic")
    ids: list[int] = []
    assert _in_threads(8, lambda i: ids.append(exemplars.default_set_id(Store(path), task))) == []
    store = Store(path)
    assert _default_set_versions(store) == [1]
    assert len(set(ids)) == 1 and len(ids) == 8
    assert [it.exemplar for it in store.exemplar_set(ids[0]).items] == exemplars.load_exemplars(task)


def _register_default_set(path: str, waiting, go, results) -> None:
    from star_core.engine import exemplars
    from star_core.store import Store
    from star_core.tasks import get_task

    store, task = Store(path), get_task("arithmetic")
    waiting.put("waiting")
    if go.wait(60):
        results.put(exemplars.default_set_id(store, task))


def test_processes_registering_the_shipped_set_at_once_leave_one_version(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).init()
    go, results, waiting = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_register_default_set, args=(str(path), waiting, go, results)) for _ in range(3)]
    for p in procs:
        p.start()
    try:
        assert [waiting.get(timeout=60) for _ in procs] == ["waiting"] * 3  # all imported, each at its start line
        go.set()
        ids = {results.get(timeout=60) for _ in procs}
    finally:
        for p in procs:
            p.join(30)
    assert len(ids) == 1 and _default_set_versions(Store(path)) == [1]


def test_a_changed_shipped_file_is_a_new_version_and_an_unchanged_one_is_not(tmp_path, monkeypatch):
    from star_core.engine import exemplars
    from star_core.tasks import get_task

    store, task = Store(tmp_path / "s.duckdb").init(), get_task("arithmetic")
    first = exemplars.default_set_id(store, task)
    assert exemplars.default_set_id(store, task) == first
    shipped = exemplars.load_exemplars(task)
    monkeypatch.setattr(exemplars, "load_exemplars", lambda task, path=None: shipped[:-1])  # a release changed the file
    second = exemplars.default_set_id(store, task)
    assert second != first and _default_set_versions(store) == [1, 2]
    assert exemplars.default_set_id(store, task) == second
