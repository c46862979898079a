"""Where `star export --out` writes: '-' is standard output; a FIFO or a character device is written
through, never replaced by a regular file; a symlink keeps pointing where it did; a regular file is
replaced whole (a temporary file renamed over it)."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from app_helpers import one_error_line
from star_core.cli.commands import main
from star_core.runtime.jobs import PROJECT_ROOT

KEPT = 12  # right-and-verified rationales in audit_seed's run 1


def export(db: Path, out: str, *extra: str) -> int:
    return main(["export", "--db", str(db), "--run", "1", "--out", out, *extra])


def rows_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# --- standard output -------------------------------------------------------------------------


def test_dash_writes_the_rows_to_stdout_and_the_note_to_stderr(kept_db, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert export(kept_db, "-") == 0
    out = capsys.readouterr()
    rows = rows_of(out.out)  # nothing but the rows: the pipe can feed another tool
    assert len(rows) == KEPT and {"prompt", "completion"} <= set(rows[0])
    assert "wrote 12 kept rationales of run 1 to standard output" in out.err
    assert not (tmp_path / "-").exists()  # no file named '-'


def test_parquet_to_stdout_is_the_parquet_bytes(kept_db, capsysbinary):
    assert export(kept_db, "-", "--format", "parquet") == 0
    rows = pd.read_parquet(io.BytesIO(capsysbinary.readouterr().out))
    assert len(rows) == KEPT and list(rows.columns[:2]) == ["prompt", "completion"]


def test_parquet_is_not_written_onto_a_terminal(kept_db, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert export(kept_db, "-", "--format", "parquet") == 2
    out = capsys.readouterr()
    assert out.out == ""
    one_error_line(out.err, "parquet is binary", "--out FILE")


def test_a_reader_that_left_is_one_line_and_no_traceback(kept_db):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: the write gets EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "star_core.cli", "export", "--db", str(kept_db), "--run", "1",
                               "--out", "-"], stdout=write, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                              timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 2
    one_error_line(done.stderr, "cannot write standard output", "Broken pipe")


# --- FIFOs and character devices: written through, never replaced -------------------------------


def test_a_fifo_is_written_through_to_its_reader(kept_db, tmp_path, capsys):
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert export(kept_db, str(fifo)) == 0
    reader.join(30)
    assert len(rows_of(got[0].decode())) == KEPT
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO, not a regular file put in its place
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_device_is_one_line_and_the_device_stays(kept_db, capsys):
    before = os.lstat("/dev/full")
    assert export(kept_db, "/dev/full") == 2
    one_error_line(capsys.readouterr().err, "cannot write /dev/full (character device)", "No space left on device")
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_a_character_device_that_takes_the_rows_stays_a_device(kept_db, capsys):
    before = os.lstat("/dev/null")
    assert export(kept_db, "/dev/null") == 0
    assert "wrote 12 kept rationales of run 1 to /dev/null" in capsys.readouterr().out
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_socket_is_refused_with_one_line(kept_db, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short relative name: a socket's path has a small length limit
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("rows.sock")
        assert export(kept_db, "rows.sock") == 2
    one_error_line(capsys.readouterr().err, "rows.sock is a socket", "- (standard output)")
    assert stat.S_ISSOCK(os.lstat(tmp_path / "rows.sock").st_mode)


# --- symlinks and regular files ---------------------------------------------------------------------


def test_a_symlink_stays_and_its_file_gets_the_rows(kept_db, tmp_path, capsys):
    real = tmp_path / "data" / "kept.jsonl"
    real.parent.mkdir()
    real.write_text("yesterday's export\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(Path("data") / "kept.jsonl")
    assert export(kept_db, str(link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(Path("data") / "kept.jsonl")
    assert len(rows_of(real.read_text())) == KEPT
    assert [p.name for p in real.parent.iterdir()] == ["kept.jsonl"]  # the temporary file went beside the real one


def test_a_dangling_symlink_creates_the_file_it_points_to(kept_db, tmp_path):
    link = tmp_path / "latest.jsonl"
    link.symlink_to(tmp_path / "new.jsonl")
    assert export(kept_db, str(link)) == 0
    assert link.is_symlink() and len(rows_of((tmp_path / "new.jsonl").read_text())) == KEPT


def test_a_symlink_loop_is_one_line(kept_db, tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert export(kept_db, str(tmp_path / "a")) == 2
    one_error_line(capsys.readouterr().err, "cannot follow the link", "Too many levels of symbolic links")


def test_a_regular_file_is_replaced_whole_by_a_renamed_temporary_file(kept_db, tmp_path):
    out = tmp_path / "kept.jsonl"
    out.write_text("yesterday's export\n")
    old_inode = out.stat().st_ino
    held = open(out, "rb")  # a reader of the old file keeps reading the old content
    try:
        assert export(kept_db, str(out)) == 0
        assert held.read() == b"yesterday's export\n"
    finally:
        held.close()
    assert out.stat().st_ino != old_inode and stat.S_ISREG(out.lstat().st_mode)
    assert len(rows_of(out.read_text())) == KEPT
    assert not list(tmp_path.glob(".kept.jsonl.*.part"))


def test_exemplar_sets_export_to_stdout_too(tmp_path, capsys):
    import star_core.engine.exemplars as ex

    db, source = tmp_path / "s.duckdb", PROJECT_ROOT / "data" / "exemplars" / "jsonl-choice.jsonl"
    assert main(["exemplars", "import", str(source), "--name", "mine", "--db", str(db),
                 "--task", "jsonl", "--answer-type", "choice"]) == 0
    capsys.readouterr()
    assert main(["exemplars", "export", "mine@1", "--out", "-", "--db", str(db)]) == 0
    out = capsys.readouterr()
    assert ex.parse_jsonl(out.out) == ex.parse_jsonl(source.read_text())
    assert "to standard output" in out.err
