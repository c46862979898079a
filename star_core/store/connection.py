"""Opening the database: migrations, and DuckDB's one-writer-per-file rule.

DuckDB lets one process write a file, and refuses other processes (even
read-only ones) while it holds it. A run, the app and `star runs` all share one
file, so no process keeps a connection open: each operation opens one, does its
work in a short transaction and closes it, and retries while another process
holds the file. A lock never reaches the user as a traceback: after
`lock_timeout` seconds it becomes a StoreError that says who holds the file.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import duckdb

from ..errors import StoreError
from .migrations import MIGRATIONS


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


class Connection:
    """Where the database is, and how to open it safely."""

    def __init__(self, path: str | Path, lock_timeout: float = 60.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._migrated = False

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success."""
        with self._open(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the file is created and migrated first if needed)."""
        if not self._migrated and (not self.path.exists() or not self._is_current()):
            with self.write():
                pass
        with self._open(read_only=True) as con:
            yield con

    # -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect(read_only)
        try:
            if not read_only and not self._migrated:
                migrate(con, self.path)
                self._migrated = True
            yield con
        finally:
            con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.02
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise StoreError(f"cannot open database {self.path}: {_first_line(exc)}") from exc
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"database {self.path} is held by another process for over {self.lock_timeout:.0f} s "
                        f"({_first_line(exc)}); try again when it is free"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    def _is_current(self) -> bool:
        with self._open(read_only=True) as con:
            return applied_version(con) == len(MIGRATIONS)


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


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
