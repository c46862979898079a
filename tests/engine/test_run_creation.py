"""Creating a run: paths stored absolute (the worker runs from another folder), and one transaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import star_core.store.runs as store_runs
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run, prepare_run
from star_core.store import Store

from tiny import tiny_config


def _data_file(folder: Path) -> Path:
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps({"question": f"{i} + 1 = ?", "answer": str(i + 1)}) + "\n" for i in range(16)))
    return path


def test_relative_model_and_data_paths_are_stored_absolute_and_run_from_another_folder(tmp_path, tiny_model,
                                                                                        monkeypatch):
    typed_in = tmp_path / "typed-in"
    (typed_in / "models").mkdir(parents=True)
    os.symlink(tiny_model, typed_in / "models" / "tiny")
    data = _data_file(typed_in)
    store = Store(tmp_path / "runs.duckdb").init()
    monkeypatch.chdir(typed_in)  # where the user typed the paths
    tiny = {k: v for k, v in vars(tiny_config("x")).items() if k in ("train_size", "eval_size", "iterations",
            "max_new_tokens", "min_steps", "epochs", "gen_batch_size", "batch_size", "device")}
    config = prepare_run({**tiny, "task": "jsonl", "model": "models/tiny", "data": "sums.jsonl"}).config
    assert (config.model, config.data) == (str(typed_in / "models" / "tiny"), str(data))
    run_id = create_run(store, config)
    stored = store.get_run(run_id).config
    assert (stored.model, stored.data) == (str(typed_in / "models" / "tiny"), str(data))
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the worker (and a later --resume) runs from another folder
    execute_run(store, run_id, queue=False)
    assert store.get_run(run_id).status == "done", store.get_run(run_id).error


def test_create_run_stores_a_hand_built_config_with_absolute_paths(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(Path(tiny_model).parent)
    store = Store(tmp_path / "runs.duckdb").init()
    run_id = create_run(store, tiny_config(Path(tiny_model).name))
    assert store.get_run(run_id).config.model == tiny_model


@pytest.mark.parametrize("model", ["smollm2-135m", "owner/not-here", "no/such/folder.gguf"])
def test_embedded_names_hub_ids_and_missing_paths_stay_as_typed(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert prepare_run({"model": model, "data": "missing.jsonl", "task": "jsonl"}).config.model == model
    assert prepare_run({"model": model, "data": "missing.jsonl", "task": "jsonl"}).config.data == "missing.jsonl"


def test_a_failed_problems_write_leaves_nothing_of_the_run(tmp_path, tiny_model, monkeypatch):
    store = Store(tmp_path / "runs.duckdb").init()

    def fail(con, run_id, problems):
        raise OSError("disk full while writing problems")

    monkeypatch.setattr(store_runs, "_insert_problems", fail)
    with pytest.raises(OSError, match="disk full"):
        create_run(store, tiny_config(tiny_model, name="lost"))
    assert store.list_runs().empty
    with store.db.read() as con:
        assert con.execute("SELECT count(*) FROM problems").fetchone()[0] == 0
    assert not store.list_exemplar_sets().frozen.any()  # the default set it would have used is not held by a run
    monkeypatch.undo()
    run_id = create_run(store, tiny_config(tiny_model, name="after"))  # and the next one is whole
    assert len(store.load_problems(run_id)) == 12 and store.run_exemplar_set_id(run_id) is not None
