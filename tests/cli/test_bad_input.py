"""Bad input gives one clear line and changes nothing: a damaged database, a folder that cannot be
written, an export to a folder, a read-only folder or a full disk, resuming a finished run."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from audit_seed import seed
from tiny import TINY_FLAGS, star, tiny_config
from star_core.core.config import RunConfig
from star_core.core.errors import ExportError, StoreError
from star_core.analysis.export import export_kept
from star_core.store import QueueFilter, Store

def one_clear_line(err: str, *phrases: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_state(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


@contextlib.contextmanager
def unwritable(folder: Path):
    """Make a folder refuse new files for the duration: immutable for root (whom modes do not stop), read-only otherwise."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i: cannot make a folder unwritable")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)


# --- a database truncated to half its size --------------------------------------------


@pytest.fixture
def truncated(tmp_path) -> Path:
    db = tmp_path / "half.duckdb"
    store, run_id = seed(db)
    store.set_progress(run_id, iteration=1, phase="generate", done=3, total=12)  # as a cancelled run leaves it
    store.finish_run(run_id, "cancelled")
    os.truncate(db, db.stat().st_size // 2)
    return db


@pytest.mark.parametrize("command", [
    ["runs"],
    ["export", "--run", "1", "--out", "kept.jsonl"],
    ["run", "--resume", "1"],
])
def test_a_truncated_database_is_one_clear_line_and_left_as_it_was(truncated, capsys, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = digest(truncated)
    code, out, err = star(capsys, command[0], "--db", str(truncated), *command[1:])
    assert code == 2 and out == ""
    one_clear_line(err, str(truncated), "truncated or damaged", "restore it from a copy")
    assert digest(truncated) == before
    assert not (tmp_path / "kept.jsonl").exists()


def test_a_new_run_in_a_truncated_database_is_refused_and_stores_nothing(truncated, capsys, tiny_model):
    before = digest(truncated)
    code, _, err = star(capsys, "run", "--db", str(truncated), "--model", tiny_model, *TINY_FLAGS)
    assert code == 2
    one_clear_line(err, "truncated or damaged")
    assert digest(truncated) == before


def test_store_calls_on_a_truncated_database_raise_store_errors(truncated):
    store = Store(truncated)
    for call in (store.list_runs, lambda: store.get_run(1), lambda: store.create_run(RunConfig(name="x"))):
        with pytest.raises(StoreError, match="truncated or damaged"):
            call()


# --- a database in a folder that cannot be written -------------------------------------


def test_a_database_in_a_folder_that_cannot_be_written_reads_but_refuses_writes_clearly(tmp_path, capsys, tiny_model):
    folder = tmp_path / "shared"
    folder.mkdir()
    store, _ = seed(folder / "s.duckdb")
    attempt_id = store.audit_queue(QueueFilter(order="oldest"))[0]
    before = folder_state(folder)
    with unwritable(folder):
        code, out, err = star(capsys, "runs", "--db", str(folder / "s.duckdb"))
        assert code == 0 and "seeded" in out  # reading needs no new file
        with pytest.raises(StoreError, match=r"cannot write database .*s\.duckdb.*make the folder .*shared writable"):
            Store(folder / "s.duckdb").save_audit(attempt_id, "sound", ["new tag"], "", "ada")
        code, _, err = star(capsys, "run", "--db", str(folder / "s.duckdb"), "--model", tiny_model, *TINY_FLAGS)
        assert code == 2
        one_clear_line(err, "cannot write database", ".wal", "writable")
        assert folder_state(folder) == before
    assert Store(folder / "s.duckdb").audited_among([attempt_id]) == set()
    assert len(Store(folder / "s.duckdb").list_runs()) == 1


# --- export to a folder, a read-only folder, a full disk -------------------------------


def test_export_to_a_folder_names_it_and_writes_nothing(kept_db, tmp_path, capsys):
    target = tmp_path / "exports"
    target.mkdir()
    code, _, err = star(capsys, "export", "--db", str(kept_db), "--run", "1", "--out", str(target))
    assert code == 2
    one_clear_line(err, f"{target} is a folder", "run-1.jsonl")
    assert list(target.iterdir()) == []


def test_export_to_a_folder_that_cannot_be_written_names_the_file_and_leaves_the_old_one(kept_db, tmp_path, capsys):
    target = tmp_path / "exports"
    target.mkdir()
    old = target / "kept.jsonl"
    old.write_text("yesterday's export\n")
    with unwritable(target):
        code, _, err = star(capsys, "export", "--db", str(kept_db), "--run", "1", "--out", str(old))
        assert code == 2
        one_clear_line(err, f"cannot write {old}")
    assert old.read_text() == "yesterday's export\n"
    assert [p.name for p in target.iterdir()] == ["kept.jsonl"]


def test_export_below_a_file_says_the_folder_cannot_be_made(kept_db, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    code, _, err = star(capsys, "export", "--db", str(kept_db), "--run", "1", "--out", str(tmp_path / "a-file" / "k.jsonl"))
    assert code == 2
    one_clear_line(err, "cannot create the folder", "a-file")


@pytest.mark.parametrize("fmt, writer", [("jsonl", "to_json"), ("parquet", "to_parquet")])
def test_a_full_disk_during_export_leaves_no_partial_file(kept_db, tmp_path, monkeypatch, fmt, writer):
    target = tmp_path / "exports"
    target.mkdir()
    old = target / f"kept.{fmt}"
    old.write_bytes(b"the previous export")
    written = []

    def fills_the_disk(self, f, *args, **kwargs):
        f.write(b'{"prompt": "Question: 12 + 35')  # part of the file makes it to disk, then the disk is full
        f.flush()
        written.append(Path(f.name))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, writer, fills_the_disk)
    with pytest.raises(ExportError, match=f"cannot write {old}: No space left on device"):
        export_kept(Store(kept_db), 1, old, fmt)
    assert written and not written[0].exists()  # the partial file was removed
    assert [p.name for p in target.iterdir()] == [old.name] and old.read_bytes() == b"the previous export"


def test_export_still_writes_a_whole_file(kept_db, tmp_path):
    out = tmp_path / "new" / "kept.jsonl"
    count = export_kept(Store(kept_db), 1, out, "jsonl")
    assert count == len(out.read_text().splitlines()) > 0
    assert [p.name for p in out.parent.iterdir()] == ["kept.jsonl"]


# --- resuming a finished run ------------------------------------------------------------


def test_resuming_a_done_run_says_so_and_changes_nothing(tmp_path, capsys, tiny_model):
    db = tmp_path / "s.duckdb"
    store = Store(db).init()
    run_id = store.create_run(tiny_config(tiny_model))
    store.claim_run(run_id)
    store.finish_run(run_id, "done")
    with store.db.read() as con:
        before = con.execute("SELECT * FROM runs").fetchall()
    code, _, err = star(capsys, "run", "--db", str(db), "--resume", str(run_id))
    assert code == 2
    one_clear_line(err, f"run {run_id} is done; nothing to resume")
    with store.db.read() as con:
        assert con.execute("SELECT * FROM runs").fetchall() == before
