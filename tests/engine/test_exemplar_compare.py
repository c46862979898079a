"""Exemplar sets compared by evidence: `star exemplars compare` stores two ordinary iteration-0 runs grouped
as an experiment of kind exemplars, prints star compare's figures plus set_a and set_b; the Exemplars page
starts one in a worker and shows its result; the runs are labelled by their set elsewhere."""

from __future__ import annotations

import json

import pytest

from app_helpers import assert_no_error, open_page, one_error_line, texts, wait_for
from exemplar_compare_seed import MINUS_ONE, RIGHT_A, RIGHT_B, seed
from star_core.engine import exemplar_compare
from star_core.cli.commands import main
from star_core.core.states import ExemplarArm, ExperimentKind, RunStatus
from star_core.store import Store


@pytest.fixture
def compared(tmp_path):
    return seed(tmp_path / "cmp.duckdb")


def test_the_two_runs_are_ordinary_iteration_0_runs_on_the_same_questions(compared):
    store, experiment_id = compared
    experiment = store.get_experiment(experiment_id)
    assert experiment.config["kind"] == ExperimentKind.EXEMPLARS and list(experiment.runs) == list(ExemplarArm)
    run_a, run_b = (store.get_run(experiment.runs[arm]) for arm in ExemplarArm)
    assert (run_a.config.exemplars, run_b.config.exemplars) == ("arithmetic-default@1", f"{MINUS_ONE}@1")
    assert run_a.config.iterations == run_b.config.iterations == 0
    assert run_a.config.seed_max_digits == run_b.config.seed_max_digits == 0  # iteration 0 is the prompt's model
    same = {f: (getattr(run_a.config, f), getattr(run_b.config, f)) for f in ("seed", "eval_size", "model", "task")}
    assert all(a == b for a, b in same.values())
    evals = lambda r: sorted((p.id, p.question) for p in store.load_problems(r.id) if p.split == "eval")  # noqa: E731
    assert evals(run_a) == evals(run_b)
    assert store.find_exemplar_set(MINUS_ONE).frozen  # a run used it


def test_the_result_is_star_compare_plus_the_sets(compared, capsys):
    store, experiment_id = compared
    found = exemplar_compare.result(store, experiment_id)
    ours = found.to_dict()
    assert main(["compare", "--db", str(store.path), f"{found.run_a}@0", f"{found.run_b}@0", "--format", "json"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert set(ours) == set(theirs) | {"set_a", "set_b", "experiment_id"}
    assert {k: ours[k] for k in theirs} == theirs
    assert (ours["set_a"], ours["set_b"]) == ("arithmetic-default@1", f"{MINUS_ONE}@1")
    n = 12
    assert (ours["accuracy_a"], ours["accuracy_b"]) == (len(RIGHT_A) / n, len(RIGHT_B) / n)
    assert (ours["only_a"], ours["only_b"]) == (len(RIGHT_A - RIGHT_B), len(RIGHT_B - RIGHT_A))


def test_the_runs_are_labelled_by_their_set_and_kept_off_the_experiments_page(compared):
    store, experiment_id = compared
    found = exemplar_compare.result(store, experiment_id)
    labels = store.run_labels()
    assert labels[found.run_a].startswith(f"#{found.run_a} set arithmetic-default@1")
    assert labels[found.run_b].startswith(f"#{found.run_b} set {MINUS_ONE}@1")
    assert store.list_experiments(kind=ExperimentKind.PAPER).empty and len(store.list_experiments()) == 1
    mine = store.exemplar_comparisons(store.find_exemplar_set(MINUS_ONE).id)
    assert list(mine.id) == [experiment_id] and list(mine.status_a) == [RunStatus.DONE]


def test_bad_sets_and_settings_are_one_line_each(tmp_path, capsys):
    db = str(tmp_path / "bad.duckdb")
    for args, phrase in (
        (["arithmetic-default", "arithmetic-default"], "the same set"),
        (["arithmetic-default", "nope"], "no exemplar set 'nope'"),
        (["arithmetic-default", "arithmetic-default@7"], "no version 7"),
        (["arithmetic-default", "gsm8k-default", "--eval-size", "0"], "--eval-size"),
    ):
        assert main(["exemplars", "compare", *args, "--db", db]) == 2
        one_error_line(capsys.readouterr().err, phrase)
    store = Store(db)
    with pytest.raises(Exception, match="leave it out"):
        exemplar_compare.plan(store, "arithmetic-default", MINUS_ONE, {"iterations": 2})
    with pytest.raises(Exception, match="leave it out"):
        exemplar_compare.plan(store, "arithmetic-default", MINUS_ONE, {"seed_max_digits": 2})
    assert store.list_runs().empty  # nothing stored by a refused comparison


def test_sets_of_two_tasks_are_refused(tmp_path, capsys):
    db = str(tmp_path / "two.duckdb")  # both shipped sets are registered on the way (no run used them yet)
    assert main(["exemplars", "compare", "arithmetic-default", "commonsenseqa-default", "--db", db]) == 2
    one_error_line(capsys.readouterr().err, "only sets of one task key")


def test_the_exemplars_page_shows_the_comparison(compared, monkeypatch):
    store, experiment_id = compared
    at = open_page("pages/exemplars.py", monkeypatch, store.path, query={"set": f"{MINUS_ONE}@1"})
    assert_no_error(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["A: arithmetic-default@1"] == "58.3%" and metrics[f"B: {MINUS_ONE}@1"] == "41.7%"
    assert metrics["B − A"] == "-16.7 pt" and metrics["p-value"] == "0.688"
    shown = next(d.value for d in at.dataframe if "open_a" in d.value.columns)
    found = exemplar_compare.result(store, experiment_id)
    assert len(shown) == len(RIGHT_A ^ RIGHT_B)
    assert all(u.startswith(f"/browse?run={found.run_a}&attempt=") for u in shown.open_a)
    assert "95% confidence interval of B − A" in texts(at)


def test_compare_with_starts_a_worker_and_follows_it(compared, monkeypatch):
    """The button stores the two runs (the model is only checked, never loaded here) and hands them to a worker."""
    from star_core.runtime import jobs

    store, _ = compared
    launched = []
    monkeypatch.setattr(jobs, "launch_experiment", lambda store, experiment_id: launched.append(experiment_id) or 1)
    at = open_page("pages/exemplars.py", monkeypatch, store.path, query={"set": f"{MINUS_ONE}@1"})
    set_id = store.find_exemplar_set(MINUS_ONE).id
    at.selectbox(key=f"e_cmp_other_{set_id}").set_value("arithmetic-default@1")
    at.number_input(key=f"e_cmp_size_{set_id}").set_value(8)
    at.button(key=f"e_cmp_go_{set_id}").click().run()
    assert_no_error(at)
    assert len(launched) == 1
    new = store.get_experiment(launched[0])
    assert (new.config["set_a"], new.config["set_b"]) == (f"{MINUS_ONE}@1", "arithmetic-default@1")
    assert {store.get_run(r).config.eval_size for r in new.runs.values()} == {8}
    assert f"A: {MINUS_ONE}@1, run" in texts(at)  # the new comparison is shown, still pending


@pytest.mark.slow
def test_star_exemplars_compare_runs_both_sets_and_agrees_with_star_compare(tmp_path, tiny_model, capsys):
    db = str(tmp_path / "tiny.duckdb")
    flags = ["--db", db, "--model", tiny_model, "--eval-size", "6", "--max-new-tokens", "6", "--device", "cpu",
             "--no-queue"]
    store = Store(db).init()
    from star_core.engine.exemplars import default_exemplar_path
    import star_core.engine.exemplars as ex
    from star_core.tasks import get_task

    task = get_task("arithmetic")
    store.create_exemplar_set(MINUS_ONE, task.key,
                              ex.parse_jsonl("\n".join(default_exemplar_path(task).read_text().splitlines()[:-1]), task))
    assert main(["exemplars", "compare", "arithmetic-default", MINUS_ONE, "--format", "json", *flags]) == 0
    ours = json.loads(capsys.readouterr().out)
    experiment = store.get_experiment(ours["experiment_id"])
    run_a, run_b = (experiment.runs[arm] for arm in ExemplarArm)
    assert main(["compare", "--db", db, f"{run_a}@0", f"{run_b}@0", "--format", "json"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert {k: ours[k] for k in theirs} == theirs and ours["shared"] == 6
    assert all(store.get_run(r).status == RunStatus.DONE for r in (run_a, run_b))

    # The app's way: the same comparison in the experiments worker.
    from star_core.runtime import jobs

    again = exemplar_compare.create(store, "arithmetic-default", MINUS_ONE,
                                    {"model": tiny_model, "eval_size": 6, "max_new_tokens": 6, "device": "cpu"})
    jobs.launch_experiment(store, again)
    wait_for(lambda: exemplar_compare.result(store, again).comparison, timeout=300, what="the worker's comparison")
    assert {k: v for k, v in exemplar_compare.result(store, again).to_dict().items() if k in ("accuracy_a", "accuracy_b")} \
        == {"accuracy_a": ours["accuracy_a"], "accuracy_b": ours["accuracy_b"]}  # greedy: the same answers


def test_the_compare_and_accuracy_pages_name_the_runs_by_their_set(compared, monkeypatch):
    store, experiment_id = compared
    found = exemplar_compare.result(store, experiment_id)
    at = open_page("pages/compare.py", monkeypatch, store.path, query={"a": f"{found.run_a}@0", "b": f"{found.run_b}@0"})
    shown = [s.format_func(s.value) for s in at.selectbox if s.label in ("Run A", "Run B")]
    assert shown == [f"#{found.run_a} set arithmetic-default@1 (smollm2-135m)", f"#{found.run_b} set {MINUS_ONE}@1 (smollm2-135m)"]
    at = open_page("pages/accuracy.py", monkeypatch, store.path)
    picked = at.multiselect(key="acc_runs")
    assert [picked.format_func(r) for r in picked.value] == shown
