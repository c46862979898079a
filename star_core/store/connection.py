"""Opening the database: migrations, DuckDB's one-writer-per-file rule, and threads.

DuckDB lets one process write a file, and refuses other processes (even
read-only ones) while it holds it. A run, the app and `star runs` all share one
file, so no process keeps a connection open: each operation opens one, does its
work in a short transaction and closes it, and retries while another process
holds the file.

Inside one process DuckDB shares one open database per file between all its
connections, and refuses a read-only connection while a read-write one is open
(and the reverse): "Can't open a connection to same database file with a
different configuration". The app serves every browser tab from one process, so
a per-file gate in this module lets any number of threads read at once, or one
thread write; never both. Writers are served one at a time, which also keeps two
threads from committing the same new row at once (DuckDB would refuse the second
commit with a unique-key error).

Waiting is never an error while it lasts: after `WAIT_NOTICE_S` the `on_wait`
callback is told once per operation (the default logs it). With a
`lock_timeout` in seconds (pages, `star runs`) a wait that lasts longer becomes a
StoreError saying who holds the file; with None (a run's worker) it waits as long
as it takes, so a reader never makes a run fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from ..core.errors import StoreError
from .migrations import MIGRATIONS

log = logging.getLogger("star_core.store")

# How long an operation waits quietly before saying that it waits (brief waits are normal).
WAIT_NOTICE_S = 1.0

# The longest sleep between two looks at a busy file (short, so the notice and the deadline are on time).
_POLL_S = 0.25

OnWait = Callable[[str], None]


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def _is_mode_clash(exc: Exception) -> bool:
    # Another connection of this process (outside this module's gate, e.g. a script's own
    # duckdb.connect) has the file open in the other mode; it goes away when that one closes.
    return "different configuration than existing connections" in str(exc)


class _Gate:
    """Per file and process: any number of reading threads, or one writing thread.

    Threads are served in the order they arrive, readers that arrive together
    together, so neither a page that reads in a loop nor a stream of label
    saves keeps the other waiting. A thread already inside an operation on this
    file may open nested ones (see Connection._open).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._queue: list[tuple[object, bool]] = []  # (ticket, wants to write), in arrival order
        self._held = threading.local()

    def held(self) -> str | None:
        """'read' or 'write' if this thread is inside an operation on the file, else None."""
        return getattr(self._held, "mode", None)

    def _may_enter(self, ticket: object, write: bool) -> bool:
        if self._writing:
            return False
        if write:
            return self._readers == 0 and self._queue[0][0] is ticket
        for other, other_writes in self._queue:  # a reader goes unless a writer arrived before it
            if other is ticket:
                return True
            if other_writes:
                return False
        return False

    def acquire(self, write: bool, wait: "_Wait") -> None:
        ticket = object()
        with self._cond:
            self._queue.append((ticket, write))
            try:
                while not self._may_enter(ticket, write):
                    self._cond.wait(timeout=_POLL_S)
                    wait.tick("in use by another thread of this process")
            finally:
                self._queue.remove((ticket, write))
                self._cond.notify_all()  # whoever queued behind this one may go now (or if it gave up)
            if write:
                self._writing = True
            else:
                self._readers += 1
        self._held.mode = "write" if write else "read"

    def release(self, write: bool) -> None:
        self._held.mode = None
        with self._cond:
            if write:
                self._writing = False
            else:
                self._readers -= 1
            self._cond.notify_all()


_gates: dict[str, _Gate] = {}
_gates_lock = threading.Lock()


def _gate_for(path: Path) -> _Gate:
    key = os.path.realpath(path)
    with _gates_lock:
        return _gates.setdefault(key, _Gate())


class _Wait:
    """One operation's wait: its deadline, and whether the user was told it waits."""

    def __init__(self, path: Path, timeout: float | None, on_wait: OnWait):
        self.path, self.timeout, self.on_wait = path, timeout, on_wait
        self.started = time.monotonic()
        self.told = False

    def tick(self, why: str) -> None:
        """Called while still waiting: say so once, and give up past the deadline."""
        waited = time.monotonic() - self.started
        if self.timeout is not None and waited > self.timeout:
            raise StoreError(f"database {self.path} is {why} for over {self.timeout:.0f} s; try again when it is free")
        if not self.told and waited >= WAIT_NOTICE_S:
            self.told = True
            self.on_wait(f"waiting for the database {self.path}: it is {why}")


def _log_wait(message: str) -> None:
    log.warning(message)


class Connection:
    """Where the database is, and how to open it safely.

    `lock_timeout`: seconds an operation may wait for the file before it fails with a
    StoreError; None waits as long as needed (a run must never fail because
    someone reads). `on_wait(message)` is called once per operation that waits
    longer than WAIT_NOTICE_S.
    """

    def __init__(self, path: str | Path, lock_timeout: float | None = 60.0, on_wait: OnWait | None = None):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait or _log_wait
        self._migrated = False
        self._gate = _gate_for(self.path)

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success."""
        with self._open(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                # After a file-level failure the rollback can fail too; the first error is the one to report.
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the file is created and migrated first if needed)."""
        if not self._migrated and self._gate.held() is None and (not self.path.exists() or not self._is_current()):
            with self.write():
                pass
        with self._open(read_only=True) as con:
            yield con

    # -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        held = self._gate.held()
        if held == "read" and not read_only:
            raise RuntimeError(f"a write to {self.path} inside a read of it would wait for itself; read first, then write")
        wait = _Wait(self.path, self.lock_timeout, self.on_wait)
        entered = held is None
        if entered:
            self._gate.acquire(write=not read_only, wait=wait)
        try:
            # Nested in this thread's write, a read shares its read-write database (a
            # read-only connection would clash with it).
            con = self._connect(read_only=read_only and held != "write", wait=wait)
            try:
                if not read_only and not self._migrated:
                    migrate(con, self.path)
                    _check_readable(con)
                    self._migrated = True
                yield con
            except duckdb.Error as exc:
                mapped = _store_error(self.path, exc)
                if mapped is None:
                    raise
                raise mapped from exc
            finally:
                con.close()
        finally:
            if entered:
                self._gate.release(write=not read_only)

    def _connect(self, read_only: bool, wait: _Wait) -> duckdb.DuckDBPyConnection:
        delay = 0.02
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of database {self.path}: {exc.strerror or exc}") from exc
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if not (_is_lock_error(exc) or _is_mode_clash(exc)):
                    raise (_store_error(self.path, exc, "open") or
                           StoreError(f"cannot open database {self.path}: {_first_line(exc)}")) from exc
                wait.tick(_lock_holder(exc) if _is_lock_error(exc) else "open in another mode by other code of this process")
                time.sleep(delay)
                delay = min(delay * 1.5, _POLL_S)

    def _is_current(self) -> bool:
        with self._open(read_only=True) as con:
            return applied_version(con) == len(MIGRATIONS)


def _store_error(path: Path, exc: duckdb.Error, verb: str = "use") -> StoreError | None:
    """The StoreError a file-level DuckDB failure means for the user; None for any other error."""
    text = str(exc)
    first = _first_line(exc)
    if "Could not read enough bytes" in text or "Corrupt database file" in text:
        return StoreError(f"database {path} is truncated or damaged ({first}); restore it from a copy, or open another file")
    if "Cannot open file" in text and ("not permitted" in text or "denied" in text or "Read-only" in text):
        return StoreError(
            f"cannot write database {path}: {first}. DuckDB writes the file and a .wal file beside it: "
            f"make the folder {path.parent} writable, or copy the database to a folder that is"
        )
    if isinstance(exc, (duckdb.IOException, duckdb.SerializationException, duckdb.FatalException, duckdb.PermissionException)):
        return StoreError(f"cannot {verb} database {path}: {first}")
    return None


def _check_readable(con: duckdb.DuckDBPyConnection) -> None:
    """Read the small tables whole before this process first writes: in a truncated or damaged
    file (the runs table, rewritten by every progress update, sits near its end) this fails
    before anything is added to it."""
    for table in _SMALL_TABLES:
        con.execute(f"SELECT * FROM {table}").fetchall()


_SMALL_TABLES = ("schema_migrations", "runs", "iterations", "exemplar_sets", "audit_tags")


def applied_version(con: duckdb.DuckDBPyConnection) -> int:
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "schema_migrations" not in tables:
        return -1 if tables else 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Apply the migrations this database lacks, each in its own transaction."""
    version = applied_version(con)
    if version < 0:
        raise StoreError(f"{path} is a DuckDB database, but not a STaR Studio one (it has other tables); pass a new file")
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{path} has schema version {version}, newer than this STaR Studio knows ({len(MIGRATIONS)}); upgrade star-studio"
        )
    if version == 0:
        con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            migration(con)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [number, migration.__name__])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _lock_holder(exc: Exception) -> str:
    """'held by another process (pid N, PROGRAM)', from DuckDB's lock error."""
    found = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", str(exc))
    if not found:
        return f"held by another process ({_first_line(exc)})"
    return f"held by another process (pid {found.group(2)}, {Path(found.group(1)).name})"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
