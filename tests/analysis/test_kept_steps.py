"""The no-steps reason where people look: why an attempt was rejected, and per iteration how many kept rationales
had their steps (Store.kept_with_steps, the Accuracy page)."""

from __future__ import annotations

from app_helpers import assert_no_error, open_page, texts
from star_core.core.config import RunConfig
from star_core.engine.filtering import FilterRule
from star_core.analysis.present import kept_steps_table
from star_core.engine.filtering import why_kept
from star_core.store import AttemptRow, Store
from star_core.tasks.arithmetic import ArithmeticTask, rationale_for
from star_core.tasks.base import Problem

TASK = ArithmeticTask()


def _row(run_id, iteration, p: Problem, completion: str, kind: str = "generated") -> AttemptRow:
    verdict = TASK.verify_steps(completion, p)
    predicted = TASK.extract_answer(completion)
    return AttemptRow(run_id=run_id, iteration=iteration, problem_id=p.id, kind=kind, sample=0, prompt_id=1,
                      question_prompt=TASK.format_question(p), hint=None, completion=completion, rationale=completion.strip(),
                      predicted=predicted, correct=TASK.is_correct(predicted, p), verified=verdict.ok,
                      verify_reason=verdict.reason, prompt_tokens=10, new_tokens=10, seconds=0.1)


def seeded(path) -> tuple[Store, int]:
    """An answer-filter run: iteration 1 keeps 3 rationales with steps and 2 bare sums; iteration 2 keeps 1 bare sum
    and 1 with steps, and has a bare sum that was not kept."""
    store = Store(path).init()
    run_id = store.create_run(RunConfig(name="answer filter", filter="answer", train_size=8, eval_size=1))
    problems = [Problem(f"{a}+{b}", f"{a} + {b}", str(a + b), "train", 2) for a, b in
                [(12, 35), (47, 85), (19, 24), (66, 17), (30, 41), (58, 29)]]
    store.save_problems(run_id, problems)
    store.prompt_id("prefix")
    steps = lambda p: f" {rationale_for(*map(int, p.question.split(' + ')))} The answer is {p.answer}.\n\n"  # noqa: E731
    bare = lambda p: f" {p.question} = {p.answer}. The answer is {p.answer}.\n\n"  # noqa: E731
    one = [_row(run_id, 1, p, steps(p)) for p in problems[:3]] + [_row(run_id, 1, p, bare(p)) for p in problems[3:5]]
    two = [_row(run_id, 2, problems[0], bare(problems[0])), _row(run_id, 2, problems[1], steps(problems[1])),
           _row(run_id, 2, problems[2], bare(problems[2]))]
    store.add_attempts(one + two)
    for n in (1, 2):
        ids = [c.attempt_id for c in store.attempts_of(run_id, n, "generated")]
        store.mark_training(run_id, n, ids if n == 1 else ids[:2])
    return store, run_id


def test_a_bare_sum_is_stored_with_the_no_steps_reason_and_explained(tmp_path):
    store, run_id = seeded(tmp_path / "k.duckdb")
    with store.db.read() as con:
        reasons = con.execute("SELECT verify_reason, verified, count(*) FROM attempts WHERE run_id = ? GROUP BY ALL "
                              "ORDER BY ALL", [run_id]).fetchall()
    assert reasons == [("all 2 steps hold (place sums)", True, 4), ("no steps", False, 4)]
    assert why_kept({"kind": "generated", "correct": True, "verified": False, "verify_reason": "no steps"},
                    FilterRule(require_steps=True)) == \
        "Rejected: the answer is right but the rationale shows no steps (a bare sum)."
    assert "a step does not hold (step 1" in why_kept(
        {"kind": "generated", "correct": True, "verified": False, "verify_reason": "step 1 '3' makes 3, not 4"},
        FilterRule(require_steps=True))


def test_kept_with_steps_counts_per_iteration(tmp_path):
    store, run_id = seeded(tmp_path / "k.duckdb")
    counts = store.kept_with_steps([run_id])
    assert [tuple(r) for r in counts[["iteration", "kept", "with_steps", "checked"]].itertuples(index=False)] == \
        [(1, 5, 3, 5), (2, 2, 1, 2)]
    table = kept_steps_table(counts, {run_id: "answer filter"})
    assert list(table["share with steps"]) == [0.6, 0.5] and set(table.run) == {"answer filter"}
    assert store.kept_with_steps([]).empty and store.kept_with_steps([999]).empty


def test_a_task_that_cannot_check_steps_is_left_out(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"run_id": [1, 2], "iteration": [1, 1], "kept": [4, 6], "with_steps": [0, 6], "checked": [0, 6]})
    table = kept_steps_table(frame, {2: "arith"})
    assert list(table.run) == ["arith"] and list(table["share with steps"]) == [1.0]


def test_the_accuracy_page_shows_how_many_kept_rationales_had_their_steps(tmp_path, monkeypatch):
    store, run_id = seeded(tmp_path / "k.duckdb")
    at = open_page("pages/accuracy.py", monkeypatch, tmp_path / "k.duckdb", query={"run": str(run_id)})
    assert_no_error(at)
    assert "Kept rationales with their steps" in texts(at)
    table = next(d.value for d in at.dataframe if "with steps" in d.value.columns)
    assert list(table["kept"]) == [5, 2] and list(table["with steps"]) == [3, 1]


def test_the_accuracy_page_shows_the_share_of_kept_steps_the_model_wrote(tmp_path, monkeypatch):
    store, run_id = seeded(tmp_path / "k.duckdb")
    seed_row = _row(run_id, 0, Problem("58+29", "58 + 29", "87", "train", 2), " 58 + 29 = 70 + 17 = 87.\n\n", "seed")
    store.add_attempts([seed_row])
    with store.db.write() as con:  # one partially hinted rationale: 2 of its 4 steps given; the seed row all given
        con.execute("UPDATE attempts SET steps = 4, given_steps = CASE WHEN kind = 'seed' THEN 4 "
                    "WHEN problem_id = '12+35' THEN 2 ELSE 0 END, used_for_training = used_for_training "
                    "OR kind = 'seed'")
    at = open_page("pages/accuracy.py", monkeypatch, tmp_path / "k.duckdb", query={"run": str(run_id)})
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "written by the model" in d.value.columns)
    assert list(table["kept"]) == [5, 2]  # the seed row is not the model's: not counted
    assert list(table["written by the model"]) == [1 - 2 / 20, 1 - 2 / 8]


def with_a_one_digit_question(store: Store, run_id: int) -> Problem:
    """A 1-digit question kept in iteration 1 (its rationale verifies: a single sum has nothing more to show),
    and eval attempts at difficulties 1 and 2 for iterations 0 and 1, both finished."""
    one = Problem("3+4", "3 + 4", "7", "train", 1)
    evals = [Problem("2+5", "2 + 5", "7", "eval", 1), Problem("21+13", "21 + 13", "34", "eval", 2)]
    store.save_problems(run_id, store.load_problems(run_id) + [one, *evals])
    store.add_attempts([_row(run_id, 1, one, " 3 + 4 = 7. The answer is 7.\n\n")])
    store.mark_training(run_id, 1, [c.attempt_id for c in store.attempts_of(run_id, 1, "generated")])  # all six
    for iteration in (0, 1):
        store.add_attempts([_row(run_id, iteration, p, f" The answer is {p.answer}.\n\n", kind="eval") for p in evals])
        store.set_iteration_phase(run_id, iteration, "done")
    return one


def test_min_difficulty_leaves_the_easier_questions_out(tmp_path):
    store, run_id = seeded(tmp_path / "k.duckdb")
    with_a_one_digit_question(store, run_id)
    rows = lambda frame: [tuple(r) for r in frame[["iteration", "kept", "with_steps"]].itertuples(index=False)]  # noqa: E731
    assert rows(store.kept_with_steps([run_id])) == [(1, 6, 4), (2, 2, 1)]  # the 1-digit one verifies
    assert rows(store.kept_with_steps([run_id], min_difficulty=2)) == [(1, 5, 3), (2, 2, 1)]
    assert store.kept_with_steps([run_id], min_difficulty=3).empty


def test_star_runs_prints_one_runs_table_with_the_kept_steps_above_the_easiest_difficulty(tmp_path, capsys):
    from star_core.cli import main

    db = tmp_path / "k.duckdb"
    store, run_id = seeded(db)
    with_a_one_digit_question(store, run_id)
    del store
    assert main(["runs", "--db", str(db), "--run", str(run_id)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "kept with steps" in line)
    assert "of difficulty > 1" in header and "ends at" in header
    row = next(line.split() for line in out.splitlines() if line.startswith("1 "))
    assert "4/6" in row and "3/5" in row  # all kept, then the 2-digit ones only
    assert main(["runs", "--db", str(db), "--run", "42"]) == 2
    assert "there is no run 42" in capsys.readouterr().err
