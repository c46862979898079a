"""The arithmetic task: problem generation, answer extraction and the step verifier."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError
from star_core.engine.exemplars import load_exemplars
from star_core.tasks.arithmetic import ArithmeticTask, place_sums, rationale_for
from star_core.tasks.base import NO_STEPS, Problem

TASK = ArithmeticTask()


def problem(a: int, b: int) -> Problem:
    return Problem(f"{a}+{b}", f"{a} + {b}", str(a + b), "train")


# --- problems -------------------------------------------------------------------


def test_problems_are_distinct_split_and_spread_over_digits():
    problems = TASK.problems(RunConfig(train_size=256, eval_size=96, min_difficulty=1, max_difficulty=3))
    assert len(problems) == 352 and len({p.id for p in problems}) == 352
    per = collections.Counter((p.split, p.difficulty) for p in problems)
    assert [per["eval", d] for d in (1, 2, 3)] == [32, 32, 32]
    # 1-digit has only 100 distinct pairs: what it cannot hold goes to 2 and 3 digits
    assert per["train", 1] == 68 and per["train", 2] + per["train", 3] == 188
    for p in problems:
        a, b = (int(x) for x in p.question.split(" + "))
        assert int(p.answer) == a + b
        assert len(str(a)) == len(str(b)) == p.difficulty


def test_problems_depend_only_on_the_seed():
    ids = lambda seed: [p.id for p in TASK.problems(RunConfig(seed=seed, train_size=20, eval_size=10))]  # noqa: E731
    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_asking_for_more_problems_than_exist_names_the_field():
    with pytest.raises(ConfigError) as err:
        TASK.problems(RunConfig(train_size=90, eval_size=11, min_difficulty=1, max_difficulty=1))
    assert err.value.field == "train_size" and "100 distinct problems" in str(err.value)


def test_exactly_all_problems_of_a_digit_count():
    problems = TASK.problems(RunConfig(train_size=90, eval_size=10, min_difficulty=1, max_difficulty=1))
    assert len({p.id for p in problems}) == 100


# --- answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        (" 3 + 4 = 7. The answer is 7.\n\n", "7"),
        (" The answer is 7. No wait. The answer is 8.", "8"),  # models correct themselves: the last one counts
        (" 600 + 500 = 1,100. The answer is 1,100.", "1100"),
        (" I do not know.", None),
        (" The answer is", None),
        (" The answer is 12.\n\nQuestion: 1 + 1 = ?\nAnswer: The answer is 2.", "12"),  # text after the stop is not read
        (" the answer is: 42", "42"),
    ],
)
def test_extract_answer(completion, expected):
    assert TASK.extract_answer(completion) == expected


def test_is_correct_ignores_leading_zeros_and_rejects_missing_answers():
    assert TASK.is_correct("007", problem(3, 4))
    assert not TASK.is_correct(None, problem(3, 4))
    assert not TASK.is_correct("8", problem(3, 4))


# --- the step verifier --------------------------------------------------------------


@given(st.integers(0, 99_999), st.integers(0, 99_999))
def test_the_canonical_rationale_always_verifies(a, b):
    completion = TASK.format_completion(rationale_for(a, b), str(a + b))
    assert TASK.verify_steps(completion, problem(a, b)).ok is True
    assert TASK.is_correct(TASK.extract_answer(completion), problem(a, b))


@given(st.integers(10, 9_999), st.integers(10, 9_999), st.integers(1, 9))
def test_a_wrong_place_sum_never_verifies(a, b, error):
    sums = place_sums(a, b)
    sums[0] += error
    completion = f" {a} + {b} = {' + '.join(map(str, sums))} = {a + b}. The answer is {a + b}."
    verdict = TASK.verify_steps(completion, problem(a, b))
    assert verdict.ok is False and "step 1" in verdict.reason


@pytest.mark.parametrize(
    "a, b, completion, ok, reason",
    [
        (47, 85, " 47 + 85 = 120 + 12 = 132. The answer is 132.", True, "place sums"),
        (47, 85, " 47 + 85 = 12 + 120 = 132. The answer is 132.", True, "place sums"),  # the places in either order
        (47, 85, " 85 + 47 = 120 + 12 = 132. The answer is 132.", True, "place sums"),  # operands in either order
        # more steps than the scratchpad's are fine when each holds and one of them is the place sums
        (47, 85, " 47 + 85 = 40 + 80 + 7 + 5 = 120 + 12 = 132. The answer is 132.", True, "all 3 steps hold (place sums)"),
        (19, 24, " 19 + 24 = 30 + 13 = 43. The answer is 43.", True, "all 2 steps hold (place sums)"),
        (105, 203, " 105 + 203 = 300 + 8 = 308. The answer is 308.", True, "place sums"),  # a place summing to 0 left out
        (105, 203, " 105 + 203 = 300 + 0 + 8 = 308. The answer is 308.", True, "place sums"),  # or written as 0
        (10, 5, " 10 + 5 = 10 + 5 = 15. The answer is 15.", True, "place sums"),  # operands of different lengths
        # the place sums folded one place at a time (bench/formats.py's chained format): every fold is a step
        (56847, 29375, " 56847 + 29375 = 70000 + 15000 + 1100 + 110 + 12 = 70000 + 15000 + 1100 + 122 = 70000 + 15000"
         " + 1222 = 70000 + 16222 = 86222. The answer is 86222.", True, "all 5 steps hold (place sums)"),
        (56847, 29375, " 56847 + 29375 = 70000 + 15000 + 1100 + 110 + 12 = 70000 + 15000 + 1100 + 132 = 86232."
         " The answer is 86232.", False, "step 2 '70000 + 15000 + 1100 + 132' makes 86232, not 86222"),
        # a bare sum on a problem with places to add: a right answer with no reasoning in it
        (47, 85, " 47 + 85 = 132. The answer is 132.", False, "no steps"),
        (85, 47, " 85 + 47 = 132. The answer is 132.", False, "no steps"),
        (994, 123, " 994 + 123 = 1117. The answer is 1117.", False, "no steps"),  # what the model wrote after iteration 1
        (10, 5, " 10 + 5 = 15. The answer is 15.", False, "no steps"),  # one operand of 2 digits is enough
        (12345, 67890, " 12345 + 67890 = 80235. The answer is 80235.", False, "no steps"),
        # steps that hold but are not the scratchpad
        (19, 24, " 19 + 24 = 40 + 3 = 43. The answer is 43.", False, "none is the place sums 30 + 13"),
        (47, 85, " 47 + 85 = 40 + 80 + 7 + 5 = 132. The answer is 132.", False, "none is the place sums 120 + 12"),
        # nothing to decompose: one place to add (every 1-digit problem, and 40 + 50)
        (3, 4, " 3 + 4 = 7. The answer is 7.", True, "states the sum directly"),
        (7, 8, " 7 + 8 = 15. The answer is 15.", True, "states the sum directly"),
        (40, 50, " 40 + 50 = 90. The answer is 90.", True, "states the sum directly"),
        (0, 0, " 0 + 0 = 0. The answer is 0.", True, "states the sum directly"),
        (3, 4, " 3 + 4 = 4 + 3 = 7. The answer is 7.", True, "all 2 steps hold"),
        # the poison of docs/measurements.md: wrong arithmetic that copies the hinted answer
        (3, 4, " 3 + 4 + 0 = 11. The answer is 7.", False, "does not start"),
        (75, 42, " 75 + 42 = 192. The answer is 117.", False, "makes 192, not 117"),
        (19, 24, " 19 + 24 = 32 + 16 = 48. The answer is 48.", False, "makes 48, not 43"),
        (19, 24, " 19 + 24 = 43. The answer is 44.", False, "ends in 43 but the answer given is 44"),
        (19, 24, " 19 + 24 = 30 + 13 = 43. The answer is 44.", False, "ends in 43 but the answer given is 44"),
        (19, 24, " 19 + 24 = 43.", False, "no final answer"),
        (19, 24, " The answer is 43.", False, "does not start"),
        (19, 24, " 19 + 24 = forty-three. The answer is 43.", False, "not a sum of whole numbers"),
        (19, 24, " 19 + 24 = 4" + "0" * 40 + ". The answer is 43.", False, "not a sum of whole numbers"),
        (19, 24, " 19 + 24 = 30 + 13. The answer is 43.", False, "does not end in a single number"),
        (5, 0, " 5. The answer is 5.", False, "does not start"),
    ],
)
def test_verify_steps(a, b, completion, ok, reason):
    verdict = TASK.verify_steps(completion, problem(a, b))
    assert verdict.ok is ok
    assert reason in verdict.reason


@given(st.integers(0, 99_999), st.integers(0, 99_999))
def test_a_bare_sum_verifies_only_where_there_is_nothing_to_decompose(a, b):
    verdict = TASK.verify_steps(f" {a} + {b} = {a + b}. The answer is {a + b}.", problem(a, b))
    if len(place_sums(a, b)) == 1:  # one place to add: the bare sum is the scratchpad (rationale_for writes it so)
        assert verdict.ok is True and verdict.reason == "states the sum directly (one place to add)"
    else:
        assert verdict.ok is False and verdict.reason == NO_STEPS == "no steps"
    if a < 10 and b < 10:
        assert verdict.ok is True  # a 1-digit problem may always state its sum


def test_the_shipped_exemplars_pass_the_checks():
    exemplars = load_exemplars(TASK)
    assert len(exemplars) >= 4
    for ex in exemplars:
        a, b = (int(x) for x in ex.question.split(" + "))
        assert ex.rationale == rationale_for(a, b)
