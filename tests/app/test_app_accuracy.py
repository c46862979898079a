"""The accuracy page: plotly figures of accuracy, coverage and loss per iteration, several
runs overlaid, and the figures' data."""

from __future__ import annotations

import base64
import json

import numpy as np

from app_helpers import assert_no_error, finished_run_db, open_page
import star_core.engine.exemplars as ex
from star_core.analysis.present import accuracy_figures_data
from star_core.store import ExemplarItem, Store
from star_core.store.attempts import insert_attempts, refresh_outcomes

PAGE = "pages/accuracy.py"


def values(array) -> list:
    """A plotly trace's x or y: a list, or plotly's typed-array encoding {dtype, bdata}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_no_runs_says_so(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "a.duckdb")
    assert any("No runs yet" in i.value for i in at.info)


def copy_run(store: Store) -> int:
    """A new run with run 1's problems, iterations and attempts, every answer marked right (other numbers to overlay)."""
    with store.db.write() as con:
        new = con.execute("INSERT INTO runs (name, task, model, config, status) "
                          "SELECT 'copy', task, model, config, 'done' FROM runs WHERE id = 1 RETURNING id").fetchone()[0]
        con.execute("INSERT INTO problems SELECT ?, problem_id, split, difficulty, question, answer, choices, solution FROM problems WHERE run_id = 1", [new])
        con.execute("INSERT INTO iterations (run_id, iteration, phase, kept, steps, train_loss) "
                    "SELECT ?, iteration, phase, kept, steps, 0.5 FROM iterations WHERE run_id = 1", [new])
        insert_attempts(con, "SELECT ?::INTEGER AS run_id, iteration, problem_id, kind, sample, prompt_id, question_prompt, "
                             "completion, rationale, predicted, true AS correct, kind <> 'eval' AS used_for_training "
                             "FROM attempts WHERE run_id = 1", [new])
    return new


def test_charts_show_each_runs_accuracy_by_iteration(tmp_path, tmp_path_factory, monkeypatch, tiny_model):
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "a.duckdb")
    store = Store(db)
    copy_run(store)

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
        assert [round(x) for x in values(trace["x"])] == list(run.iteration)  # drawn a little apart per run
        assert [round(y, 6) for y in values(trace["y"])] == [round(y, 6) for y in run.accuracy]
    assert values(overall[0]["x"])[0] != values(overall[1]["x"])[0]  # so their error bars do not overlap
    assert all(t["error_y"]["array"] is not None for t in overall)
    copy = expected[expected.run_id == 2]
    assert (copy.accuracy == 1.0).all()  # the copy answered everything right
    assert len(at.get("download_button")) == 4  # one CSV per figure

    at.multiselect(key="acc_runs").set_value([1]).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs[0]["data"]) == 1


def test_runs_grouped_by_exemplar_set(tmp_path, tmp_path_factory, monkeypatch, tiny_model):
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "a.duckdb")
    store = Store(db)
    assert (copy_run(store), copy_run(store)) == (2, 3)  # two more runs, both to be prompted with the curated set
    curated = ex.create_set(store, "curated", "arithmetic", [ExemplarItem("2 + 5", "2 + 5 = 7.", "7")])
    store.use_exemplar_set(2, curated)
    store.use_exemplar_set(3, curated)
    sets = {1: "arithmetic-default@1", 2: "curated@1", 3: "curated@1"}  # run 1 got the task's default from create_run

    data = accuracy_figures_data(store, [1, 2, 3])
    for frame in data.values():
        assert dict(zip(frame.run_id, frame.exemplar_set)) == {r: sets[r] for r in set(frame.run_id)}
    assert "exemplar_set" in data["accuracy"].to_csv(index=False).splitlines()[0].split(",")  # the CSV has the set

    at = open_page(PAGE, monkeypatch, db)
    at.multiselect(key="acc_runs").set_value([1, 2, 3]).run()
    assert at.radio(key="acc_group").value == "run"
    overall = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert len(overall) == 3 and len({t["name"] for t in overall}) == 3  # a colour per run

    at.radio(key="acc_group").set_value("exemplar set").run()
    assert_no_error(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["title"]["text"] == "Held-out accuracy, overall by exemplar set"
    overall = spec["data"]
    assert len(overall) == 3  # still a line per run ...
    assert sorted(t["name"] for t in overall) == ["arithmetic-default@1", "curated@1", "curated@1"]  # ... coloured by set
    assert sorted(t["name"] for t in overall if t.get("showlegend", True)) == ["arithmetic-default@1", "curated@1"]
    acc = data["accuracy"]
    for trace in overall:
        assert [round(y, 6) for y in values(trace["y"])] in [
            [round(y, 6) for y in acc[acc.run_id == r].accuracy] for r, s in sets.items() if s == trace["name"]]
    assert len(at.get("download_button")) == 4


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


def _x_axes(spec: dict) -> list[dict]:
    """Every x axis of a figure (one per facet)."""
    return [axis for name, axis in spec["layout"].items() if name.startswith("xaxis")]


def _iteration_charts(at) -> dict[str, list[dict]]:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {s["layout"]["title"]["text"]: _x_axes(s) for s in specs if "loss at every step" not in s["layout"]["title"]["text"]}


def _keep_iterations(db, last: int) -> None:
    with Store(db).db.write() as con:
        for table in ("attempts", "iterations"):
            con.execute(f"DELETE FROM {table} WHERE iteration > ?", [last])
        # No app path deletes attempts: bring the tables derived from them along by hand.
        refresh_outcomes(con, "SELECT run_id, iteration FROM iteration_accuracy UNION SELECT run_id, iteration FROM question_outcomes")


def test_every_iteration_has_its_own_tick_and_no_other(tmp_path, tmp_path_factory, monkeypatch, tiny_model):
    # With iterations 0 and 1 the axis labelled only 0; with iteration 0 alone plotly added a tick at -1.
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "a.duckdb")
    _keep_iterations(db, 1)
    charts = _iteration_charts(open_page(PAGE, monkeypatch, db))
    expected = {"Held-out accuracy, overall": [0, 1], "Held-out accuracy per difficulty": [0, 1],
                "Questions solved and kept: self-generated vs rationalized": [1]}
    assert set(expected) <= set(charts), list(charts)
    for title, ticks in expected.items():
        assert len(charts[title]) >= (3 if "difficulty" in title else 1)  # a panel per difficulty, each with ticks
        for axis in charts[title]:
            assert (axis["tickmode"], axis["tickvals"], axis["ticktext"]) == ("array", ticks, [str(t) for t in ticks]), title
            assert axis["range"] == [ticks[0] - 0.5, ticks[-1] + 0.5], title

    _keep_iterations(db, 0)  # only the few-shot baseline evaluated so far
    charts = _iteration_charts(open_page(PAGE, monkeypatch, db))
    for axis in charts["Held-out accuracy, overall"]:
        assert axis["tickvals"] == [0] and axis["range"] == [-0.5, 0.5]


def test_iteration_axis_ticks_every_facet_at_the_iterations_drawn():
    # The helper the Accuracy, Experiments and Audit pages share.
    import pandas as pd
    import plotly.express as px

    from pages._ui import iteration_axis

    df = pd.DataFrame({"iteration": [1, 2, 4, 1, 2, 4], "y": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "arm": list("aaabbb")})
    fig = px.line(df, x="iteration", y="y", facet_col="arm")
    iteration_axis(fig, df.iteration)
    axes = _x_axes(json.loads(fig.to_json()))
    assert len(axes) == 2
    for axis in axes:
        assert axis["tickvals"] == [1, 2, 4] and axis["ticktext"] == ["1", "2", "4"] and axis["range"] == [0.5, 4.5]
        assert axis["title"]["text"] == "iteration"
