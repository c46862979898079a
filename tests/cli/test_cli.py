"""The `star` command: help, bad input as clear messages, runs, export."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pandas as pd
import pytest

from star_core.core.config import RunConfig
from star_core.store import Store
from tiny import TINY_FLAGS, star, tiny_config

def test_help_lists_every_command_and_every_run_setting():
    top = subprocess.run([sys.executable, "-m", "star_core.cli", "--help"], capture_output=True, text=True)
    assert top.returncode == 0
    for command in ("run", "runs", "export", "app"):
        assert command in top.stdout
    run = subprocess.run([sys.executable, "-m", "star_core.cli", "run", "--help"], capture_output=True, text=True).stdout
    for f in fields(RunConfig):
        assert "--" + f.name.replace("_", "-") in run, f.name
    assert "--resume" in run and "--db" in run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "poetry"], "invalid choice: 'poetry'"),
        (["--train-size", "-5"], "invalid --train-size: must be at least 1, got -5"),
        (["--temperature", "nan"], "invalid --temperature: must be a finite number"),
        (["--min-difficulty", "3", "--max-difficulty", "2"], "invalid --max-difficulty: must be at least min_difficulty (3)"),
        (["--model", "/nowhere/model"], "neither an embedded model"),
        (["--model", "/nowhere/model.gguf"], "model file '/nowhere/model.gguf' does not exist"),
    ],
)
def test_bad_run_settings_give_one_clear_message(tmp_path, capsys, args, message):
    db = tmp_path / "s.duckdb"
    try:
        code, _, err = star(capsys, "run", "--db", str(db), *args)
    except SystemExit as exit_:  # argparse's own choice check
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_a_missing_model_folder_fails_before_anything_runs_and_keeps_the_database(tmp_path, capsys, tiny_model):
    db = tmp_path / "s.duckdb"
    code, _, err = star(capsys, "run", "--db", str(db), "--model", tiny_model, *TINY_FLAGS)
    assert code == 0, err
    before = Store(db).list_runs()
    code, _, err = star(capsys, "run", "--db", str(db), "--model", str(tmp_path), *TINY_FLAGS)
    assert code == 2 and "has no config.json" in err
    after = Store(db).list_runs()
    assert after.id.tolist() == before.id.tolist() and after.status.tolist()[0] == "done"


def test_a_corrupt_database_file_is_reported_and_left_untouched(tmp_path, capsys):
    db = tmp_path / "broken.duckdb"
    db.write_bytes(b"\x00garbage" * 1000)
    before = db.read_bytes()
    for args in (["run", "--db", str(db)], ["runs", "--db", str(db)]):
        code, _, err = star(capsys, *args)
        assert code == 2 and "cannot open database" in err and "Traceback" not in err
    assert db.read_bytes() == before


def test_runs_on_a_missing_database_says_how_to_start(tmp_path, capsys):
    code, _, err = star(capsys, "runs", "--db", str(tmp_path / "none.duckdb"))
    assert code == 2 and "star run --db" in err


def test_resuming_an_unknown_run_names_it(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    Store(db).init()
    code, _, err = star(capsys, "run", "--db", str(db), "--resume", "42")
    assert code == 2 and "there is no run 42" in err


def test_run_prints_the_accuracy_table_then_runs_and_export_work(tmp_path, capsys, tiny_model):
    db = tmp_path / "s.duckdb"
    code, out, err = star(capsys, "run", "--db", str(db), "--model", tiny_model, "--name", "tiny", *TINY_FLAGS)
    assert code == 0
    assert "eval accuracy by iteration" in out and "difficulty 1" in out
    assert "iter 1 generate" in err and "iter 1 evaluate" in err  # the progress bars

    code, out, _ = star(capsys, "runs", "--db", str(db))
    assert code == 0 and "tiny" in out and "done" in out and "1/1" in out

    # A random model keeps nothing, so export says why there is nothing to write.
    code, _, err = star(capsys, "export", "--db", str(db), "--run", "1", "--out", str(tmp_path / "k.jsonl"))
    assert code == 2 and "no kept rationales" in err


def test_export_writes_prompt_completion_rows_without_the_hint(tmp_path, capsys, tiny_model, monkeypatch):
    from star_core.engine.loop import execute_run
    from star_core.engine.prepare import create_run
    from star_core.tasks.arithmetic import ArithmeticTask

    monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, predicted, problem: True)
    db = tmp_path / "s.duckdb"
    store = Store(db).init()
    run_id = create_run(store, tiny_config(tiny_model, filter="answer"))
    execute_run(store, run_id)
    out = tmp_path / "kept.jsonl"
    code, printed, _ = star(capsys, "export", "--db", str(db), "--run", str(run_id), "--out", str(out))
    assert code == 0 and "wrote 8 kept rationales" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    assert all(r["prompt"].startswith("Question: ") and r["prompt"].endswith("Answer:") for r in rows)
    assert all("(The answer is" not in r["prompt"] for r in rows)
    parquet = tmp_path / "kept.parquet"
    assert star(capsys, "export", "--db", str(db), "--run", str(run_id), "--format", "parquet", "--out", str(parquet))[0] == 0
    assert pd.read_parquet(parquet).prompt.tolist() == [r["prompt"] for r in rows]
