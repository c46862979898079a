"""Experiments: the paper's five arms planned alike, stored as a group on shared problems, run and resumed in
order, `star experiment paper` printing the table, and the Experiments page."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from app_helpers import assert_no_error, open_page, texts
import star_core.cli.commands as cli
from star_core.engine import experiments
from star_core.core.config import RunConfig
from star_core.engine.experiments import (ARM_LABELS, Arm, experiment_table, figure_data, format_table, plan,
                                          star_against_arms, step_budget)
from star_core.engine.prepare import InvalidSettings
from star_core.core.presets import PRESETS
from star_core.core.states import RunStatus
from star_core.store import Store

ARMS = [a.value for a in Arm]


def tiny_flags(model: str) -> list[str]:
    return ["--model", model, "--train-size", "4", "--eval-size", "2", "--max-new-tokens", "6", "--iterations", "1",
            "--min-steps", "2", "--epochs", "0.1", "--batch-size", "4", "--gen-batch-size", "4", "--device", "cpu"]


def tiny_given(model: str) -> dict:
    return dict(model=model, train_size=4, eval_size=2, max_new_tokens=6, iterations=1, min_steps=2, epochs=0.1,
                batch_size=4, gen_batch_size=4, device="cpu")


# --- the plan (pure) --------------------------------------------------------------------


def test_the_arms_differ_only_in_what_names_them():
    planned = plan({"seed": 3, "train_size": 40, "eval_size": 10, "iterations": 4}, None)
    configs = planned.configs
    assert list(configs) == list(Arm) and planned.name == "paper"
    what = {a.value: (c.mode, c.iterations, c.rationalize) for a, c in configs.items()}
    assert what == {"fewshot-answer": ("direct", 0, True), "fewshot-rationale": ("star", 0, True),
                    "direct": ("direct", 4, True), "star-no-rationalization": ("star", 4, False), "star": ("star", 4, True)}
    shared = {"name", "mode", "iterations", "rationalize", "steps"}
    for c in configs.values():  # everything else is the same setting: the same problems, the same eval questions
        assert {k: v for k, v in vars(c).items() if k not in shared} == \
               {k: v for k, v in vars(configs[Arm.STAR]).items() if k not in shared}
    assert configs[Arm.DIRECT].name == "paper: direct fine-tuning"
    assert {c.seed_max_digits for c in configs.values()} == {0}  # the paper's loop: no arm starts from a seed


def test_every_training_arm_gets_the_same_step_budget():
    configs = plan({"train_size": 100, "batch_size": 8, "epochs": 2.0, "min_steps": 5}, None).configs
    budget = 25  # direct fine-tuning's 2 passes over 100 questions in batches of 8
    assert step_budget(RunConfig(train_size=100, batch_size=8, epochs=2.0, min_steps=5)) == budget
    for arm in (Arm.DIRECT, Arm.STAR_NO_RATIONALIZATION, Arm.STAR):
        assert configs[arm].steps == budget
        assert configs[arm].steps_for(1, kept=7) == budget and configs[arm].steps_for(2, kept=90) == 30  # +20%
    assert plan({"steps": 9}, None).configs[Arm.STAR].steps == 9  # --steps given: that budget for every arm
    assert step_budget(RunConfig(train_size=4, min_steps=20)) == 20


def test_a_preset_applies_to_every_arm_and_direct_fine_tuning_has_no_curriculum():
    configs = plan({"seed": 1, "max_difficulty": 4, "curriculum": True}, "paper-arithmetic").configs
    assert {c.max_difficulty for c in configs.values()} == {4}  # given beats the preset
    assert {c.train_size for c in configs.values()} == {PRESETS["paper-arithmetic"]["train_size"]}
    assert configs[Arm.STAR].curriculum and configs[Arm.STAR_NO_RATIONALIZATION].curriculum
    assert not configs[Arm.DIRECT].curriculum and not configs[Arm.FEWSHOT_ANSWER].curriculum
    assert {c.patience for c in configs.values()} == {PRESETS["paper-arithmetic"]["patience"]}


def test_settings_that_tell_the_arms_apart_are_refused():
    with pytest.raises(InvalidSettings) as err:
        plan({"mode": "direct", "rationalize": False}, None)
    assert set(err.value.errors) == {"mode", "rationalize"}
    with pytest.raises(InvalidSettings) as err:
        plan({"seed_max_digits": 2}, None)
    assert set(err.value.errors) == {"seed_max_digits"}
    with pytest.raises(InvalidSettings) as err:
        plan({"train_size": 0}, None)
    assert list(err.value.errors) == ["train_size"]


# --- the table and the figure (pure) ------------------------------------------------------


def _summary_and_accuracy():
    summary = pd.DataFrame([
        dict(arm="fewshot-answer", run_id=1, status="done", iterations_done=0, kept=None, train_steps=None,
             train_tokens=None, wall_s=3.0),
        dict(arm="star", run_id=5, status="done", iterations_done=2, kept=30, train_steps=44, train_tokens=9000,
             wall_s=125.0),
    ])
    rows = []
    for run_id, arm, by_iteration in ((1, "fewshot-answer", {0: (1, 4)}),
                                      (5, "star", {0: (2, 4), 1: (3, 4), 2: (2, 4)})):
        for it, (c, n) in by_iteration.items():
            rows.append(dict(arm=arm, run_id=run_id, iteration=it, difficulty=None, n=n, correct=c, accuracy=c / n))
            rows.append(dict(arm=arm, run_id=run_id, iteration=it, difficulty=1, n=2, correct=min(c, 2), accuracy=min(c, 2) / 2))
            rows.append(dict(arm=arm, run_id=run_id, iteration=it, difficulty=2, n=2, correct=c - min(c, 2),
                             accuracy=(c - min(c, 2)) / 2))
    return summary, pd.DataFrame(rows)


def test_the_table_reads_each_arm_at_its_last_iteration_with_its_best():
    table = experiment_table(*_summary_and_accuracy()).set_index("arm")
    assert list(table.index) == ["few-shot, answer only", "STaR"]
    star = table.loc["STaR"]
    assert star["evaluated at"] == 2 and star["overall"] == 0.5  # the last iteration, not the best
    assert star["best"] == 0.75 and star["best at"] == 1
    assert star["difficulty 1"] == 1.0 and star["difficulty 2"] == 0.0
    assert star["kept"] == 30 and star["train tokens"] == 9000 and star["iterations"] == 2
    few = table.loc["few-shot, answer only"]
    assert few["overall"] == 0.25 and few["evaluated at"] == 0 and pd.isna(few["kept"])
    text = format_table(table.reset_index())
    assert "STaR" in text and "50.0%" in text and "75.0%" in text and "2m 05s" in text and "9,000" in text


def test_figure_data_has_a_row_per_arm_iteration_and_difficulty():
    _, accuracy = _summary_and_accuracy()
    data = figure_data(accuracy)
    assert len(data) == 2 * (1 + 3) and set(data.difficulty) == {1, 2}
    assert set(data.arm) == {ARM_LABELS["fewshot-answer"], ARM_LABELS["star"]}
    assert set(data[data.arm_key == "star"].rationalization) == {"with rationalization"}
    assert data[data.arm_key == "fewshot-answer"].rationalization.isna().all()
    assert experiments.arm_order(data) == ["few-shot, answer only", "STaR"]


# --- stored as a group, run in order, resumed ----------------------------------------------


def test_an_experiment_groups_its_runs_and_resumes_its_unfinished_arms(tmp_path, tiny_model, monkeypatch):
    from star_core.engine import loop

    store = Store(tmp_path / "e.duckdb").init()
    experiment_id = experiments.create_experiment(store, {**tiny_given(tiny_model), "seed": 2}, None)
    experiment = store.get_experiment(experiment_id)
    assert list(experiment.runs) == ARMS and experiment.config["given"]["seed"] == 2
    with store.db.read() as con:
        view = con.execute("SELECT experiment_id, experiment, arm, run_id FROM v_experiment_runs ORDER BY run_id").fetchall()
    assert view == [(experiment_id, "paper", arm, run_id) for arm, run_id in experiment.runs.items()]
    questions = store.experiment_eval_questions(experiment_id)
    assert len(questions) == 5 and len({tuple(q) for q in questions.values()}) == 1 and len(questions["star"]) == 2
    train = [sorted(p.id for p in store.load_problems(r) if p.split == "train") for r in experiment.runs.values()]
    assert all(t == train[0] for t in train) and len(train[0]) == 4

    ran, cancelled = [], []

    def fake_execute(store, run_id, reporter=None, queue=True):
        ran.append(run_id)
        if run_id == experiment.runs["direct"] and not cancelled:  # the first time only
            cancelled.append(run_id)
            raise loop.Cancelled("cancelled in the test")
        store.claim_run(run_id)
        store.finish_run(run_id, RunStatus.DONE)

    monkeypatch.setattr(loop, "execute_run", fake_execute)
    with pytest.raises(loop.Cancelled):
        experiments.run_experiment(store, experiment_id)
    runs = list(experiment.runs.values())
    assert ran == runs[:3]  # in order, up to the arm that stopped
    ran.clear()
    experiments.run_experiment(store, experiment_id)
    assert ran == runs[2:]  # the done arms are skipped
    assert set(store.experiment_summary(experiment_id).status) == {"done"}
    listing = store.list_experiments()
    assert list(listing.runs) == [5] and list(listing.done) == [5]


def test_a_missing_experiment_is_one_clear_error(tmp_path, capsys):
    db = tmp_path / "e.duckdb"
    Store(db).init()
    assert cli.main(["experiment", "paper", "--db", str(db), "--resume", "9"]) == 2
    assert "there is no experiment 9" in capsys.readouterr().err


def test_star_experiment_refuses_a_bad_flag_before_touching_the_file(tmp_path, capsys):
    db = tmp_path / "e.duckdb"
    assert cli.main(["experiment", "paper", "--db", str(db), "--train-size", "0"]) == 2
    assert "invalid --train-size" in capsys.readouterr().err and not db.exists()


# --- the tiny model end to end: star experiment paper, and the page ------------------------


@pytest.fixture(scope="module")
def paper_db(tmp_path_factory, tiny_model):
    """`star experiment paper` on the tiny model, run once for the tests below: (db path, its stdout)."""
    import contextlib
    import io

    db = tmp_path_factory.mktemp("experiment") / "paper.duckdb"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["experiment", "paper", "--db", str(db), "--preset", "none", "--no-queue", *tiny_flags(tiny_model)])
    assert code == 0, out.getvalue()
    return db, out.getvalue()


@pytest.mark.xdist_group("paper-experiment")  # one test process runs paper_db once
def test_star_experiment_paper_runs_every_arm_and_prints_the_table(paper_db):
    db, printed = paper_db
    assert "Experiment 1 (paper)" in printed
    table = printed.split("Experiment 1 (paper)", 1)[1]
    header = table.splitlines()[1]
    # 2 eval questions over 1-3 digits: one of 2 digits and one of 3 (the remainder goes to the larger counts)
    for column in ("arm", "overall", "difficulty 2", "difficulty 3", "iterations", "kept", "train tokens", "wall time"):
        assert column in header, header
    for label in ARM_LABELS.values():
        assert label in table
    store = Store(db)
    summary = store.experiment_summary(1).set_index("arm")
    assert set(summary.status) == {"done"}
    assert list(summary.iterations_done) == [0, 0, 1, 1, 1]
    assert summary.kept["direct"] == 4  # every training question's gold answer
    assert summary.train_steps["direct"] == 2 and summary.train_tokens["direct"] > 0
    # the same budget for every arm that trains (min_steps here); a random model's STaR may keep nothing to train on
    assert {store.get_run(int(summary.run_id[a])).config.steps for a in ("direct", "star-no-rationalization", "star")} == {2}
    acc = store.experiment_accuracy(1)
    overall = acc[acc.difficulty.isna()]
    assert overall.groupby("arm").iteration.max().to_dict() == {"direct": 1, "fewshot-answer": 0, "fewshot-rationale": 0,
                                                                "star": 1, "star-no-rationalization": 1}
    assert (overall.n == 2).all()  # the same two eval questions everywhere
    with store.db.read() as con:
        answer_only = con.execute(
            "SELECT DISTINCT p.text FROM attempts a JOIN prompts p ON p.id = a.prompt_id WHERE a.run_id IN (1, 3)"
        ).fetchall()
        rationalized = con.execute("SELECT count(*) FROM attempts WHERE run_id = 4 AND kind = 'rationalized'").fetchone()[0]
        direct_train = con.execute("SELECT count(*) FROM attempts WHERE run_id = 3 AND kind <> 'eval'").fetchone()[0]
    # One few-shot prompt of bare answers; the direct arm's fine-tuned model is asked the question alone (no prefix:
    # --no-prompt-trained is the default).
    few_shot = [t for (t,) in answer_only if t]
    assert len(few_shot) == 1 and re.search(r"Answer: The answer is \d+\.", few_shot[0])
    assert sorted(t for (t,) in answer_only if not t) == [""]
    assert rationalized == 0 and direct_train == 0  # no rationalization without it; direct mode generates nothing


def _last_eval(con, run_id: int) -> dict:
    """problem id -> right at the run's last evaluated iteration, read straight from the attempts."""
    return dict(con.execute(
        "SELECT problem_id, correct FROM attempts WHERE run_id = ? AND kind = 'eval' AND iteration = "
        "(SELECT max(iteration) FROM attempts WHERE run_id = ? AND kind = 'eval')", [run_id, run_id]).fetchall())


@pytest.mark.xdist_group("paper-experiment")  # one test process runs paper_db once
def test_star_is_paired_with_every_other_arm_on_the_same_questions(paper_db):
    db, printed = paper_db
    store = Store(db)
    summary = store.experiment_summary(1)
    pairs = star_against_arms(store, summary)
    labels = [label for arm, label in ARM_LABELS.items() if arm != Arm.STAR.value]
    assert list(pairs.arm) == labels and list(pairs.run) == [1, 2, 3, 4]
    with store.db.read() as con:
        star = _last_eval(con, 5)
        for _, row in pairs.iterrows():
            arm = _last_eval(con, row.run)
            assert row.shared == len(star) == len(arm) == 2
            assert row["only STaR right"] == sum(star[q] and not arm[q] for q in star)
            assert row["only arm right"] == sum(arm[q] and not star[q] for q in star)
            assert row["STaR - arm"] == pytest.approx((sum(star.values()) - sum(arm.values())) / 2)
            assert row["ci low"] <= row["STaR - arm"] <= row["ci high"]
            assert 0 <= row.p <= 1
    section = printed.split("STaR paired with each arm", 1)[1]
    for _, row in pairs.iterrows():
        assert f"STaR - {row.arm} (run {row.run}):" in section
    assert star_against_arms(store, summary[summary.arm != Arm.STAR.value]).empty  # no STaR: nothing to pair


@pytest.mark.xdist_group("paper-experiment")  # one test process runs paper_db once
def test_resuming_a_finished_experiment_runs_nothing_and_prints_the_table(paper_db, capsys):
    db, _ = paper_db
    assert cli.main(["experiment", "paper", "--db", str(db), "--resume", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Experiment 1 (paper)" in printed and "== " not in printed  # no arm started


@pytest.mark.xdist_group("paper-experiment")  # one test process runs paper_db once
def test_the_experiments_page_shows_the_table_and_the_figures(paper_db, tmp_path, monkeypatch):
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(paper_db[0], db)
    at = open_page("pages/experiments.py", monkeypatch, db)
    assert_no_error(at)
    assert at.selectbox(key="exp_picker").value == 1
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "arm" in f.columns)
    assert list(table.arm) == list(ARM_LABELS.values()) and list(table.run) == [1, 2, 3, 4, 5]
    assert "The paper's table" in texts(at) and "Eval accuracy per difficulty" in texts(at)
    import json

    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2  # one panel per arm; with and without rationalization overlaid
    panels = [a["text"] for a in charts[0]["layout"]["annotations"]]
    assert panels == list(ARM_LABELS.values())
    assert {t["name"] for t in charts[0]["data"]} == {"2", "3"}  # a line per difficulty
    paired = next(f for f in frames if "STaR - arm" in f.columns)
    assert list(paired.arm) == [label for arm, label in ARM_LABELS.items() if arm != Arm.STAR.value]
    assert "STaR against each arm, paired" in texts(at)
    assert len([b for b in at.get("download_button")]) == 3


def test_the_experiments_page_without_experiments(tmp_path, monkeypatch):
    at = open_page("pages/experiments.py", monkeypatch, tmp_path / "none.duckdb")
    assert any("No experiments yet" in i.value for i in at.info)


def test_the_runs_page_button_stores_the_experiment_and_launches_its_worker(tmp_path, monkeypatch):
    """The button stores the five arms (the default model is only checked, never loaded here) and hands the
    experiment to a worker; the Experiments page then offers to resume it while no worker runs it."""
    from star_core.runtime import jobs

    launched = []
    monkeypatch.setattr(jobs, "launch_experiment", lambda store, experiment_id: launched.append(experiment_id) or 1)
    db = tmp_path / "r.duckdb"
    at = open_page("pages/runs.py", monkeypatch, db)
    assert at.selectbox(key="exp_preset").value == "paper-arithmetic"
    at.number_input(key="exp_seed").set_value(3)
    next(b for b in at.button if b.key == "exp_start").click().run()
    assert_no_error(at)
    assert launched == [1]
    store = Store(db)
    experiment = store.get_experiment(1)
    assert list(experiment.runs) == ARMS and experiment.config == {"kind": "paper", "preset": "paper-arithmetic",
                                                                   "given": {"seed": 3}}
    configs = [store.get_run(r).config for r in experiment.runs.values()]
    assert {c.seed for c in configs} == {3} and {c.max_difficulty for c in configs} == {5}

    at = open_page("pages/experiments.py", monkeypatch, db)
    assert any("no worker is running them" in w.value for w in at.warning)
    next(b for b in at.button if b.key == "exp_resume_1").click().run()
    assert launched == [1, 1]
