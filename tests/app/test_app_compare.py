"""The Compare runs and Trajectories pages, Browse's trajectory filter and the Accuracy page's
error bars, colours and legend, rendered with AppTest on a constructed store."""

from __future__ import annotations

import base64
import html
import json
import re

import numpy as np
import pytest

import compare_seed
from app_helpers import assert_no_crash, assert_no_error, open_page, texts
from compare_seed import RUN1_EVAL, RUN1_TRAIN, RUN2_EVAL
from star_core.analysis.comparison import RunRef, compare_runs
from star_core.analysis.present import PALETTE
from star_core.analysis.stats import compare_outcomes
from star_core.analysis.trajectories import Trajectory, grid, with_classes

SHARED = [f"e{i}" for i in range(1, 8)]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "c.duckdb"
    compare_seed.seed(path)
    return path


def matrix(z) -> list[list[float]]:
    """A heat map's z: nested lists, or plotly's typed-array encoding {dtype, bdata, shape}."""
    if isinstance(z, dict):
        rows, cols = (int(x) for x in z["shape"].split(","))
        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).tolist()
        return [flat[i * cols:(i + 1) * cols] for i in range(rows)]
    return [list(r) for r in z]


def specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_compare_page_shows_the_paired_figures_and_opens_a_discordant_question(db, monkeypatch):
    at = open_page("pages/compare.py", monkeypatch, db, query={"a": "1", "b": "2"})
    assert not at.error, [e.value for e in at.error]
    assert (at.selectbox(key="cmp_a_run").value, at.selectbox(key="cmp_a_iteration").value) == (1, 2)
    assert (at.selectbox(key="cmp_b_run").value, at.selectbox(key="cmp_b_iteration").value) == (2, 1)  # last complete
    want = compare_outcomes([RUN1_EVAL[p][0][2] for p in SHARED], [RUN2_EVAL[p][1] for p in SHARED])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy A"] == f"{want.accuracy_a:.1%}" and metrics["Accuracy B"] == f"{want.accuracy_b:.1%}"
    assert metrics["Difference B − A"] == f"{want.difference * 100:+.1f} pt"
    assert metrics["p-value"] == f"{want.p_value:.3f}"
    page = texts(at)
    assert f"{want.ci_low * 100:+.1f} pt to {want.ci_high * 100:+.1f} pt" in page
    assert "Newcombe" in page and "McNemar" in page
    assert "they share 7" in page  # fewer than either side answered: said so
    cells = [d.value for d in at.dataframe if "B right" in d.value.columns][0]
    assert cells["B right"].tolist() == [want.both_right, want.only_b] and cells["B wrong"].tolist() == [want.only_a, want.both_wrong]
    per = [d.value for d in at.dataframe if "ci" in d.value.columns][0]
    assert per.difficulty.tolist() == [1, 2] and per.shared.sum() == 7
    titles = [s["layout"]["title"]["text"] for s in specs(at)]
    assert "Difference B − A with its 95% interval" in titles
    assert len(at.get("download_button")) == 2  # the figures per difficulty, the discordant list

    disc = [d.value for d in at.dataframe if "a_attempt_id" in d.value.columns][0]
    assert sorted(disc.problem_id) == ["e4", "e5", "e6"]
    at.selectbox(key="cmp_open").set_value(1).run()
    assert_no_error(at)
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 2  # A's and B's rationale with the differences marked
    opened = disc.iloc[1]
    plain = [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in bodies]
    assert "(run 1, iteration 2, eval)" in plain[0] and "(run 2, iteration 1, eval)" in plain[1]
    assert "line-through" in bodies[0] and "<span" in bodies[1]  # the differences are marked
    assert opened.question in [c.value for c in at.code]


def test_compare_two_iterations_of_one_run_and_a_clear_refusal(db, monkeypatch):
    at = open_page("pages/compare.py", monkeypatch, db, query={"a": "1@0", "b": "1@2"})
    assert not at.error
    c = compare_runs(compare_seed.Store(db), RunRef(1, 0), RunRef(1, 2))
    assert {m.label: m.value for m in at.metric}["Difference B − A"] == f"{c.overall.difference * 100:+.1f} pt"
    assert "they share" not in texts(at)  # the same questions on both sides

    at.selectbox(key="cmp_b_run").set_value(3).run()  # run 3 asked other questions
    assert_no_crash(at)
    assert any("share no eval questions" in e.value for e in at.error)


def test_trajectories_page_counts_transitions_and_grid(db, monkeypatch):
    at = open_page("pages/trajectories.py", monkeypatch, db, query={"run": "1"})
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="traj_run").value == 1 and at.radio(key="traj_split").value == "eval"
    metrics = {m.label: m.value for m in at.metric}
    for t in Trajectory:
        assert metrics[t.value.capitalize()] == str(sum(1 for _, c in RUN1_EVAL.values() if c == t.value))
    charts = {s["layout"]["title"]["text"]: s for s in specs(at)}
    assert any("trajectory class per difficulty" in t for t in charts)
    transition = next(s for t, s in charts.items() if "wrong→right" in t)
    assert {tr["name"] for tr in transition["data"]} == {"wrong→right", "right→wrong", "stayed right", "stayed wrong"}
    heat = next(s for t, s in charts.items() if t.endswith("questions"))["data"][0]
    assert heat["type"] == "heatmap"
    classified = with_classes(compare_seed.Store(db).question_paths(1))
    expected = grid(classified[classified.split == "eval"])
    assert len(heat["y"]) == len(RUN1_EVAL) and heat["x"] == ["0", "1", "2"]
    z = matrix(heat["z"])
    for row, y in zip(z, heat["y"]):  # each row is that question's outcome per iteration (1 right, 0 wrong)
        assert row == expected[expected.problem_id == y.split(" · ")[0]].value.tolist()
        assert row == [float(x) for x in RUN1_EVAL[y.split(" · ")[0]][0]]
    assert len(at.get("download_button")) == 3

    at.multiselect(key="traj_classes").set_value(["learned"]).run()
    heat = [s for s in specs(at) if s["data"][0]["type"] == "heatmap"][0]["data"][0]
    assert sorted(y.split(" · ")[0] for y in heat["y"]) == sorted(p for p, (_, c) in RUN1_EVAL.items() if c == "learned")
    at.selectbox(key="traj_question").set_value("e7").run()
    assert_no_error(at)
    across = [d.value for d in at.dataframe if "sample" in d.value.columns][0]
    assert across.iteration.tolist() == [0, 1, 2] and across.correct.tolist() == RUN1_EVAL["e7"][0]

    at.radio(key="traj_split").set_value("train").run()
    assert_no_error(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Learned"] == str(sum(1 for *_, c in RUN1_TRAIN.values() if c == "learned"))


def test_browse_filters_by_trajectory_class(db, monkeypatch):
    at = open_page("pages/browse.py", monkeypatch, db, query={"run": "1"})
    at.multiselect(key="f_trajectory").set_value(["forgotten"]).run()
    assert_no_error(at)
    forgotten = [p for p, (_, c) in RUN1_EVAL.items() if c == "forgotten"] + [p for p, (*_, c) in RUN1_TRAIN.items() if c == "forgotten"]
    table = at.dataframe[0].value
    store = compare_seed.Store(db)
    assert {store.attempt_detail(int(i))["problem_id"] for i in table.attempt_id} == set(forgotten)
    # Right or wrong, the answer given and the gold answer come first, under words, not field names.
    proto = at.dataframe[0].proto
    assert list(proto.column_order)[:4] == ["attempt_id", "correct", "predicted_answer", "gold_answer"]
    headers = {k: v.get("label") for k, v in json.loads(proto.columns).items()}
    assert headers["predicted_answer"] == "Answer" and headers["gold_answer"] == "Gold"
    assert headers["hint_leak"] == "Hint leak" and headers["used_for_training"] == "Trained on"


def test_accuracy_page_error_bars_colours_and_legend(db, monkeypatch):
    store = compare_seed.Store(db)
    store.add_train_steps(1, 1, [(1, 2.5), (2, 1.5), (3, 0.9)])
    store.add_train_steps(1, 2, [(1, 2.4), (2, 1.1)])
    at = open_page("pages/accuracy.py", monkeypatch, db)
    assert not at.error
    assert at.multiselect(key="acc_runs").value == [1, 2, 3]  # every run with data
    overall = specs(at)[0]["data"]
    names = [t["name"] for t in overall]
    assert names == ["#1 rationalize on, seed 0, iterations 2", "#2 rationalize off, seed 0, iterations 2",
                     "#3 rationalize on, seed 7, iterations 1"]
    colours = [t["line"]["color"] for t in overall]
    assert colours == list(PALETTE[:3])  # three distinct hues
    for t in overall:
        assert "error_y" in t and t["error_y"].get("array") is not None and t["error_y"].get("arrayminus") is not None
    assert "95% Wilson interval" in texts(at) and "n = 3 to 9" in texts(at)
    loss = [s for s in specs(at) if "every step" in s["layout"]["title"]["text"]]
    assert loss and {t["name"] for t in loss[0]["data"]} == {names[0]}


def test_compare_page_defaults_to_runs_asking_the_same_questions(db, monkeypatch):
    # The newest evaluated run (3) asked other questions (seed 7): it is compared with its own first iteration,
    # not refused against run 2.
    at = open_page("pages/compare.py", monkeypatch, db)
    assert not at.error, [e.value for e in at.error]
    assert (at.selectbox(key="cmp_a_run").value, at.selectbox(key="cmp_b_run").value) == (3, 3)
    at = open_page("pages/compare.py", monkeypatch, db, query={"b": "2"})
    assert (at.selectbox(key="cmp_a_run").value, at.selectbox(key="cmp_a_iteration").value) == (1, 2)
    assert not at.error
