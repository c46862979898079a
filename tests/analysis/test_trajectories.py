"""Question trajectories: the classes on hand-made paths, and a run's paths read from a constructed store."""

from __future__ import annotations

import itertools

import pytest

import compare_seed
from compare_seed import RUN1_EVAL, RUN1_TRAIN
from star_core.store import AttemptFilter
from star_core.analysis.trajectories import (
    Outcome, Trajectory, class_counts, classify, grid, outcome, question_ids, transitions, with_classes,
)

L, FG, AR, NR, U = (Trajectory.LEARNED, Trajectory.FORGOTTEN, Trajectory.ALWAYS_RIGHT, Trajectory.NEVER_RIGHT,
                    Trajectory.UNSTABLE)


@pytest.mark.parametrize("path, expected", [
    ([True], AR), ([False], NR),
    ([False, True], L), ([False, False, True], L), ([False, True, True, True], L),
    ([True, False], FG), ([False, True, False], FG), ([True, True, False], FG), ([True, False, True, False], FG),
    ([True, False, True], U), ([False, True, False, True], U), ([True, True, False, False, True], U),
    ([True, True, True], AR), ([False, False, False, False], NR),
])
def test_classes_by_hand(path, expected):
    assert classify(path) is expected


def test_classes_partition_every_path():
    # Against the definitions read independently: every path of length 1..6 is in exactly one class.
    for length in range(1, 7):
        for path in itertools.product([False, True], repeat=length):
            dropped = any(a and not b for a, b in zip(path, path[1:]))
            member = {
                AR: all(path),
                NR: not any(path),
                FG: any(path) and not path[-1],
                L: path[-1] and not path[0] and not dropped,
                U: path[-1] and not all(path) and dropped,
            }
            assert sum(member.values()) == 1, path
            assert member[classify(path)], path
    with pytest.raises(ValueError):
        classify([])


def test_outcome_of_an_iteration():
    assert outcome(True, False) is Outcome.RIGHT and outcome(True, True) is Outcome.RIGHT  # self-solved wins
    assert outcome(False, True) is Outcome.HINT_ONLY and outcome(False, False) is Outcome.WRONG


@pytest.fixture
def store(tmp_path):
    return compare_seed.seed(tmp_path / "c.duckdb")


def test_paths_of_a_run_from_the_store(store):
    df = with_classes(store.question_paths(1))
    by_id = df.set_index("problem_id")
    assert set(by_id.index) == set(RUN1_EVAL) | set(RUN1_TRAIN)
    for pid, (path, cls) in RUN1_EVAL.items():
        assert list(by_id.iterations[pid]) == [0, 1, 2]
        assert list(by_id.right[pid]) == path and by_id.trajectory[pid] == cls, pid
        assert by_id.split[pid] == "eval"
    for pid, (gen, rat, kept, cls) in RUN1_TRAIN.items():
        assert list(by_id.iterations[pid]) == [1, 2]  # iteration 0 only evaluates
        assert list(by_id.right[pid]) == gen and by_id.trajectory[pid] == cls, pid
        assert list(by_id.hint_right[pid]) == [r and not g for g, r in zip(gen, rat)]
        assert list(by_id.kept[pid]) == kept
    assert by_id.path["t1"] == "h✓" and by_id.path["e5"] == "✓✗✓"
    assert by_id.first_right["e7"] == 2 and by_id.first_right["e2"] == 0 and by_id.first_right.isna()["e4"]


def test_counts_per_class_and_difficulty(store):
    df = with_classes(store.question_paths(1))
    counts = class_counts(df)
    assert set(counts.trajectory) == {t.value for t in Trajectory}  # every class listed, zeros too
    expected = {}
    for pid, (_, cls) in RUN1_EVAL.items():
        key = ("eval", compare_seed.DIFFICULTY[pid], cls)
        expected[key] = expected.get(key, 0) + 1
    for pid, (*_, cls) in RUN1_TRAIN.items():
        key = ("train", compare_seed.DIFFICULTY[pid], cls)
        expected[key] = expected.get(key, 0) + 1
    got = {(r.split, int(r.difficulty), r.trajectory): int(r.questions) for r in counts.itertuples() if r.questions}
    assert got == expected
    assert counts.questions.sum() == len(df)


def test_transitions_between_consecutive_iterations(store):
    df = with_classes(store.question_paths(1))
    tr = transitions(df)
    got = {(r.split, r.step, r.transition): int(r.questions) for r in tr.itertuples()}

    def count(paths, a, b, x, y):
        return sum(1 for p in paths if p[a] == x and p[b] == y)

    evals = [p for p, _ in RUN1_EVAL.values()]
    for a, b in ((0, 1), (1, 2)):
        assert got[("eval", f"{a}→{b}", "wrong→right")] == count(evals, a, b, False, True)
        assert got[("eval", f"{a}→{b}", "right→wrong")] == count(evals, a, b, True, False)
        assert got[("eval", f"{a}→{b}", "stayed right")] == count(evals, a, b, True, True)
        assert got[("eval", f"{a}→{b}", "stayed wrong")] == count(evals, a, b, False, False)
    trains = [g for g, *_ in RUN1_TRAIN.values()]
    assert got[("train", "1→2", "wrong→right")] == count(trains, 0, 1, False, True) == 1
    assert got[("train", "1→2", "right→wrong")] == count(trains, 0, 1, True, False) == 1
    assert not any(k[0] == "train" and k[1] == "0→1" for k in got)


def test_grid_has_a_cell_per_question_and_iteration(store):
    df = with_classes(store.question_paths(1))
    g = grid(df)
    assert len(g) == 3 * len(RUN1_EVAL) + 2 * len(RUN1_TRAIN)
    cell = g.set_index(["problem_id", "iteration"])
    assert cell.outcome["t1", 1] == Outcome.HINT_ONLY.value and cell.value["t1", 1] == 0.5 and cell.kept["t1", 1]
    assert cell.outcome["t3", 2] == Outcome.WRONG.value and not cell.kept["t3", 2]
    assert cell.value["e5", 1] == 0.0 and cell.value["e5", 2] == 1.0
    assert cell.trajectory["e5", 0] == "unstable"
    assert grid(df.iloc[0:0]).empty and transitions(df.iloc[0:0]).empty and class_counts(df.iloc[0:0]).empty


def test_browse_filters_by_trajectory_class(store):
    learned = question_ids(store, [1], ["learned"])
    assert sorted(pid for _, pid in learned) == sorted(
        [p for p, (_, c) in RUN1_EVAL.items() if c == "learned"] + [p for p, (*_, c) in RUN1_TRAIN.items() if c == "learned"])
    page = store.browse_attempts(AttemptFilter(questions=learned), limit=200)
    assert page.total == 3 * 3 + 3  # e1, e7, e8 at three iterations; t1: generated, rationalized, generated
    assert set(page.rows.question) == {store.attempt_detail(int(i))["question"] for i in page.rows.attempt_id}
    details = {store.attempt_detail(int(i))["problem_id"] for i in page.rows.attempt_id}
    assert details == {"e1", "e7", "e8", "t1"}
    assert store.browse_attempts(AttemptFilter(questions=[]), limit=10).total == 0  # a class with no questions
    assert store.browse_attempts(AttemptFilter(questions=None), limit=10).total == store.attempt_count()


def test_paths_of_one_split(store):
    evals, trains = store.question_paths(1, "eval"), store.question_paths(1, "train")
    assert set(evals.problem_id) == set(RUN1_EVAL) and set(trains.problem_id) == set(RUN1_TRAIN)
    both = store.question_paths(1).set_index("problem_id")
    for df in (evals, trains):
        for r in df.itertuples():
            assert list(r.right) == list(both.right[r.problem_id]) and list(r.kept) == list(both.kept[r.problem_id])
    with pytest.raises(ValueError):
        store.question_paths(1, "test")
