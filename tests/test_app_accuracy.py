"""The accuracy page: plotly figures of accuracy, coverage and loss per iteration, several
runs overlaid, and the figures' data."""

from __future__ import annotations

import base64
import json

import numpy as np

from app_helpers import finished_run_db, open_page
from star_core.present import accuracy_figures_data
from star_core.store import Store

PAGE = "pages/accuracy.py"


def values(array) -> list:
    """A plotly trace's x or y: a list, or plotly's typed-array encoding {dtype, bdata}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_no_runs_says_so(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "a.duckdb")
    assert any("No runs yet" in i.value for i in at.info)


def test_charts_show_each_runs_accuracy_by_iteration(tmp_path, tmp_path_factory, monkeypatch, tiny_model):
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "a.duckdb")
    store = Store(db)
    # A second run with the same eval accuracy rows but other numbers, to overlay.
    with store.db.write() as con:
        con.execute("INSERT INTO runs (name, task, model, config, status) SELECT 'copy', task, model, config, 'done' FROM runs WHERE id = 1")
        con.execute("INSERT INTO problems SELECT 2, problem_id, split, difficulty, question, answer, choices FROM problems WHERE run_id = 1")
        con.execute("INSERT INTO iterations (run_id, iteration, phase, kept, steps, train_loss) "
                    "SELECT 2, iteration, phase, kept, steps, 0.5 FROM iterations WHERE run_id = 1")
        con.execute("INSERT INTO attempts (run_id, iteration, problem_id, kind, sample, prompt_id, question_prompt, completion, "
                    "rationale, predicted, correct, used_for_training) SELECT 2, iteration, problem_id, kind, sample, prompt_id, "
                    "question_prompt, completion, rationale, predicted, true, kind <> 'eval' FROM attempts WHERE run_id = 1")

    at = open_page(PAGE, monkeypatch, db)
    assert at.multiselect(key="acc_runs").value == [1, 2]
    assert not at.error
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles[0] == "Held-out accuracy, overall"
    assert any("per difficulty" in t for t in titles) and any("self-generated vs rationalized" in t for t in titles)
    assert any("loss" in t for t in titles)

    overall = specs[0]["data"]
    assert len(overall) == 2  # two runs overlaid
    expected = accuracy_figures_data(store, [1, 2])["accuracy"]
    for trace in overall:
        run = expected[expected.run == trace["name"]]
        assert values(trace["x"]) == list(run.iteration)
        assert [round(y, 6) for y in values(trace["y"])] == [round(y, 6) for y in run.accuracy]
    copy = expected[expected.run_id == 2]
    assert (copy.accuracy == 1.0).all()  # the copy answered everything right
    assert len(at.get("download_button")) == 4  # one CSV per figure

    at.multiselect(key="acc_runs").set_value([1]).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs[0]["data"]) == 1


def test_figure_data_counts_coverage_and_loss(tmp_path, tmp_path_factory, tiny_model):
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "a.duckdb")
    store = Store(db)
    data = accuracy_figures_data(store, [1])
    acc = data["accuracy"]
    assert list(acc.iteration) == [0, 1, 2] and (acc.n == 4).all()
    cov = data["coverage"]
    assert set(cov.source) == {"self-generated", "rationalized"} and set(cov.iteration) == {1, 2}
    kept = store.training_examples(1)
    for (iteration, source), group in cov.groupby(["iteration", "source"]):
        kind = "generated" if source == "self-generated" else "rationalized"
        assert group.questions.iloc[0] == kept[(kept.iteration == iteration) & (kept.kind == kind)].problem_id.nunique()
    assert (cov.train_questions == 8).all()
    loss = data["train_loss"]
    assert list(loss.iteration) == [1, 2]
    assert list(data["accuracy"].columns[:2]) == ["run_id", "iteration"]
    assert data["accuracy"].to_csv(index=False).startswith("run_id,iteration")
