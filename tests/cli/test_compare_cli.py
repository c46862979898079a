"""`star compare` on a constructed store: the paired figures as JSON and as a table, and clear refusals."""

from __future__ import annotations

import json

import pytest

import compare_seed
from compare_seed import DIFFICULTY, RUN1_EVAL, RUN2_EVAL
from tiny import star
from star_core.analysis.comparison import RunRef, compare_runs
from star_core.analysis.stats import CI_METHOD, TEST_METHOD, compare_outcomes
from star_core.store import ComparisonError

KEYS = ("shared", "accuracy_a", "accuracy_b", "difference", "ci_low", "ci_high", "p_value", "both_right", "only_a",
        "only_b", "both_wrong")


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "c.duckdb"
    compare_seed.seed(path)
    return str(path)


def expected(a: dict, b: dict, pids) -> dict:
    """The figures recomputed from the hand-set outcome tables (question -> right)."""
    c = compare_outcomes([a[p] for p in pids], [b[p] for p in pids])
    return {k: getattr(c, k) for k in KEYS}


# Run 1 at iteration 2 vs run 2 at iteration 1 (run 2's iteration 2 is a partial evaluation): the 7 shared questions.
SHARED = [f"e{i}" for i in range(1, 8)]
A_LAST = {p: path[2] for p, (path, _) in RUN1_EVAL.items()}
B_LAST = {p: path[1] for p, path in RUN2_EVAL.items()}


def test_json_gives_the_paired_figures_overall_and_per_difficulty(db, capsys):
    code, out, err = star(capsys, "compare", "--db", db, "1", "2", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["a"] == {"run_id": 1, "iteration": 2, "answered": 8}  # last evaluated iterations by default
    assert result["b"] == {"run_id": 2, "iteration": 1, "answered": 9}
    want = expected(A_LAST, B_LAST, SHARED)
    assert {k: result[k] for k in KEYS} == pytest.approx(want)
    assert (result["shared"], result["both_right"], result["only_a"], result["only_b"], result["both_wrong"]) == (7, 3, 1, 2, 1)
    assert result["difference"] == pytest.approx(result["accuracy_b"] - result["accuracy_a"])
    assert result["ci_method"] == CI_METHOD and result["test_method"] == TEST_METHOD and result["confidence"] == 0.95
    per = {d["difficulty"]: d for d in result["by_difficulty"]}
    assert set(per) == {1, 2}
    for d, row in per.items():
        pids = [p for p in SHARED if DIFFICULTY[p] == d]
        assert {k: row[k] for k in KEYS} == pytest.approx(expected(A_LAST, B_LAST, pids))
    disc = {d["problem_id"]: d for d in result["discordant"]}
    assert set(disc) == {p for p in SHARED if A_LAST[p] != B_LAST[p]} == {"e4", "e5", "e6"}
    assert disc["e5"]["right_side"] == "A" and disc["e4"]["right_side"] == "B"
    assert isinstance(disc["e4"]["a_attempt_id"], int) and disc["e4"]["a_attempt_id"] != disc["e4"]["b_attempt_id"]


def test_two_iterations_of_one_run(db, capsys):
    code, out, _ = star(capsys, "compare", "--db", db, "1@0", "1@2", "--format", "json")
    assert code == 0
    result = json.loads(out)
    first = {p: path[0] for p, (path, _) in RUN1_EVAL.items()}
    assert {k: result[k] for k in KEYS} == pytest.approx(expected(first, A_LAST, list(RUN1_EVAL)))
    assert result["shared"] == 8 and (result["a"]["iteration"], result["b"]["iteration"]) == (0, 2)


def test_table_is_readable_and_names_the_methods(db, capsys):
    code, out, _ = star(capsys, "compare", "--db", db, "1", "2@1")
    assert code == 0
    c = compare_outcomes([A_LAST[p] for p in SHARED], [B_LAST[p] for p in SHARED])
    assert "A: run #1 with hints" in out and "at iteration 2" in out and "B: run #2 no hints" in out
    assert "7 shared eval questions" in out and "they share 7" in out  # fewer than either answered: said so
    assert f"{c.accuracy_a:.1%}" in out and f"{c.accuracy_b:.1%}" in out
    assert f"{c.difference * 100:+.1f} pt" in out and f"{c.ci_low * 100:+.1f} pt to {c.ci_high * 100:+.1f} pt" in out
    assert f"p = {c.p_value:.3f}" in out
    assert "both right 3 · only A right 1 · only B right 2 · both wrong 1" in out
    assert "difficulty" in out and "Newcombe" in out and "McNemar" in out


@pytest.mark.parametrize("a, b, message", [
    ("1", "3", "share no eval questions"),
    ("9", "1", "there is no run 9"),
    ("1@5", "2", "run 1 has no eval answers at iteration 5 (evaluated: 0, 1, 2)"),
    ("one", "2", "is not RUN or RUN@ITERATION"),
])
def test_refusals_are_one_clear_line(db, capsys, a, b, message):
    code, out, err = star(capsys, "compare", "--db", db, a, b)
    assert code == 2 and not out
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_missing_database(tmp_path, capsys):
    code, _, err = star(capsys, "compare", "--db", str(tmp_path / "none.duckdb"), "1", "2")
    assert code == 2 and "does not exist" in err


def test_run_refs_parse():
    assert RunRef.parse("3") == RunRef(3, None) and RunRef.parse("3@2") == RunRef(3, 2)
    assert RunRef.parse(" #4 @ 0 ") == RunRef(4, 0)
    for bad in ("", "3@", "@2", "3@x", "-1"):
        with pytest.raises(ComparisonError):
            RunRef.parse(bad)


def test_a_full_overlap_has_no_shared_note(db):
    c = compare_runs(compare_seed.Store(db), RunRef(1, 1), RunRef(1, 2))
    assert c.shared_note is None and c.overall.shared == 8
    partial = compare_runs(compare_seed.Store(db), RunRef(1), RunRef(2, 2))  # run 2's unfinished evaluation
    assert partial.overall.shared == 3 and "they share 3" in partial.shared_note


def test_a_run_without_evaluation_is_named(db, capsys):
    store = compare_seed.Store(db)
    empty = store.create_run(compare_seed.RunConfig(name="failed before evaluating"))
    code, _, err = star(capsys, "compare", "--db", db, "1", str(empty))
    assert code == 2 and f"run {empty} has no evaluated iteration yet" in err
