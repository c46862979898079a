"""`star experiment` and `star exemplars compare` end an unexpected error as `star run` does (one line and the
command that continues, no traceback), and `star app` says so when it listens beyond this machine."""

from __future__ import annotations

import sys

import pytest

import star_core.cli.commands as cli
import star_core.engine.exemplars as ex
import star_core.engine.loop as loop
from exemplar_compare_seed import MINUS_ONE
from star_core.engine.exemplars import default_exemplar_path
from star_core.store import Store
from star_core.tasks import get_task


def _fail(*args, **kwargs):
    raise RuntimeError("the disk went away\nsecond line of detail")


def _error_and_continue(err: str, continue_with: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "RuntimeError: the disk went away" in errors[0] and "second line" not in err, err
    assert lines[-1].endswith(continue_with), err


def test_star_experiment_ends_an_unexpected_error_in_one_line_and_how_to_continue(tmp_path, tiny_model, capsys,
                                                                                     monkeypatch):
    monkeypatch.setattr(loop, "execute_run", _fail)
    db = str(tmp_path / "exp.duckdb")
    flags = ["--model", tiny_model, "--train-size", "4", "--eval-size", "2", "--iterations", "1", "--device", "cpu"]
    assert cli.main(["experiment", "paper", "--db", db, *flags]) == 1
    err = capsys.readouterr().err
    experiment_id = next(iter(Store(db).list_experiments().id))
    _error_and_continue(err, f"star experiment paper --db {db} --resume {experiment_id}")


def test_star_exemplars_compare_ends_an_unexpected_error_in_one_line_and_how_to_continue(tmp_path, tiny_model,
                                                                                         capsys, monkeypatch):
    db = str(tmp_path / "cmp.duckdb")
    store = Store(db).init()
    task = get_task("arithmetic")
    lines = default_exemplar_path(task).read_text().splitlines()[:-1]
    store.create_exemplar_set(MINUS_ONE, task.key, ex.parse_jsonl("\n".join(lines), task))
    monkeypatch.setattr(loop, "execute_run", _fail)
    assert cli.main(["exemplars", "compare", "arithmetic-default", MINUS_ONE, "--db", db, "--model", tiny_model,
                     "--eval-size", "2", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    run_a, run_b = sorted(Store(db).list_runs().id)
    _error_and_continue(err, f"star run --db {db} --resume {run_a} && star run --db {db} --resume {run_b} && "
                             f"star compare --db {db} {run_a}@0 {run_b}@0")


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LocalHost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.20", False),
    ("10.0.0.1", False), ("myhost.example", False), ("128.0.0.1", False),
])
def test_which_addresses_keep_the_app_on_this_machine(address, loopback):
    assert cli.is_loopback(address) is loopback


@pytest.mark.parametrize("address, warned", [("0.0.0.0", True), ("127.0.0.1", False), ("::1", False)])
def test_star_app_warns_when_it_listens_beyond_this_machine(address, warned, tmp_path, capsys, monkeypatch):
    from streamlit.web import cli as stcli

    launched = []
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # star app replaces it for streamlit; restored after
    monkeypatch.setenv("STAR_DB", "")
    monkeypatch.setattr(stcli, "main", lambda: launched.append(list(sys.argv)) or 0)
    assert cli.main(["app", "--db", str(tmp_path / "a.duckdb"), "--address", address]) == 0
    err = capsys.readouterr().err
    assert launched and launched[0][launched[0].index("--server.address") + 1] == address
    lines = [line for line in err.splitlines() if line.strip()]
    if warned:
        assert len(lines) == 1 and lines[0].startswith("warning: ") and address in lines[0], err
        assert "no login" in lines[0]
    else:
        assert lines == [], err
