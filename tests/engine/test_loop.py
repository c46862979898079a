"""The STaR loop end to end on a tiny random model, and resuming after a crash."""

from __future__ import annotations

from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.store import Store
from tiny import tiny_config


def counts(store: Store, run_id: int) -> dict:
    with store.db.read() as con:
        rows = con.execute(
            "SELECT iteration, kind, count(*), count(DISTINCT (problem_id, sample)) FROM attempts WHERE run_id = ? GROUP BY ALL",
            [run_id],
        ).fetchall()
    return {(it, kind): (n, distinct) for it, kind, n, distinct in rows}


def test_loop_runs_every_phase_and_stores_every_attempt(tmp_path, tiny_model):
    store = Store(tmp_path / "s.duckdb").init()
    config = tiny_config(tiny_model, iterations=2, filter="answer")
    run_id = create_run(store, config)
    execute_run(store, run_id)

    assert store.get_run(run_id).status == "done"
    got = counts(store, run_id)
    # baseline + 2 iterations of eval, 2 of generation over all training questions
    assert got[(0, "eval")] == (4, 4) and got[(1, "eval")] == (4, 4) and got[(2, "eval")] == (4, 4)
    assert got[(1, "generated")] == (8, 8) and got[(2, "generated")] == (8, 8)
    # a random model answers (almost) nothing right, so (almost) every question is rationalized
    assert got.get((1, "rationalized"), (0, 0))[0] >= 6
    phases = store.iteration_phases(run_id)
    assert phases == {0: "done", 1: "done", 2: "done"}
    acc = store.accuracy(run_id)
    overall = acc[(acc.split == "eval") & acc.difficulty.isna()]
    assert list(overall.iteration) == [0, 1, 2] and (overall.n == 4).all()


def test_rationalized_training_example_has_no_hint(tmp_path, tiny_model):
    """The hint is in the prompt only: what is trained on is the plain question."""
    store = Store(tmp_path / "s.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model))
    execute_run(store, run_id)
    with store.db.read() as con:
        hinted = con.execute(
            "SELECT count(*) FROM attempts WHERE run_id = ? AND kind = 'rationalized' AND question_prompt LIKE '%(The answer is%'",
            [run_id],
        ).fetchone()[0]
    assert hinted > 0  # the hint was shown to the model
    examples = store.training_examples(run_id)
    assert all("(The answer is" not in q for q in examples.question)


def test_fine_tunes_on_kept_rationales_and_keeps_only_the_latest_checkpoint(tmp_path, tiny_model, monkeypatch):
    """With every answer judged right, every rationale is kept and each iteration fine-tunes."""
    from star_core.tasks.arithmetic import ArithmeticTask

    monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, predicted, problem: True)
    store = Store(tmp_path / "s.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, iterations=2, filter="answer"))
    execute_run(store, run_id)

    iterations = store.iterations(run_id).set_index("iteration")
    assert list(iterations.kept[[1, 2]]) == [8, 8]  # all 8 self-generated, nothing left to rationalize
    # The schedule, worked by hand: iteration 1 takes max(min_steps, ceil(epochs * kept / batch_size)) steps
    # (max(2, ceil(0.1 * 8 / 4)) = 2), and each later one step_growth (+20%) more, rounded up: ceil(2 * 1.2) = 3.
    config = store.get_run(run_id).config
    assert (config.min_steps, config.epochs, config.batch_size, config.step_growth) == (2, 0.1, 4, 0.2)
    assert list(iterations.steps[[1, 2]]) == [2, 3]
    assert counts(store, run_id).get((1, "rationalized")) is None
    with store.db.read() as con:
        used = con.execute("SELECT count(*) FROM attempts WHERE run_id = ? AND used_for_training", [run_id]).fetchone()[0]
    assert used == 16
    folder = store.run_folder(run_id)
    # Every answer right: each iteration ties the baseline, so the best model is the base one (iteration 0, the
    # earliest of the tie) and only the latest checkpoint stays; iteration 1's was removed after iteration 2.
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["iteration-2"]  # beside run.lock
