"""The stopping rules (patience and the time budget), on hand-computed cases."""

from __future__ import annotations

import pytest

from star_core.engine.stopping import (best_iteration, budget_message, next_iteration_seconds, over_budget, should_stop,
                                       stop_message)


@pytest.mark.parametrize(
    "accuracies, patience, stop",
    [
        ([], 2, False),  # nothing evaluated yet
        ([0.3], 1, False),  # only the few-shot baseline
        ([0.3, 0.5], 1, False),  # iteration 1 improved
        ([0.3, 0.2], 1, True),  # iteration 1 worse than few-shot, patience 1
        ([0.3, 0.2], 2, False),
        ([0.3, 0.5, 0.4], 1, True),
        ([0.3, 0.5, 0.4], 2, False),
        ([0.3, 0.5, 0.4, 0.45], 2, True),  # best at 1; iterations 2 and 3 did not beat it
        ([0.3, 0.5, 0.4, 0.6], 2, False),  # iteration 3 improved: the wait starts again
        ([0.3, 0.5, 0.4, 0.6, 0.6], 1, True),  # a tie is no improvement
        ([0.3, 0.5, 0.5, 0.5], 2, True),
        ([0.3, 0.5, 0.5, 0.5], 3, False),
        ([0.5, 0.5, 0.5, 0.5], 3, True),  # never better than few-shot
        ([0.1, 0.2, 0.3, 0.4, 0.5], 1, False),  # always improving
        ([0.1, 0.9, 0.1, 0.1, 0.1, 0.1], 4, True),
        ([0.1, 0.9, 0.1, 0.1, 0.1], 4, False),
        ([0.3, 0.2, 0.1], 0, False),  # patience 0: off
        ([0.0, 0.0], 1, True),
    ],
)
def test_should_stop(accuracies, patience, stop):
    assert should_stop(accuracies, patience) is stop


def test_best_iteration_is_the_first_to_reach_the_best():
    assert best_iteration([0.2, 0.5, 0.5, 0.1]) == 1
    assert best_iteration([0.7]) == 0
    with pytest.raises(ValueError):
        best_iteration([])


def test_negative_patience_is_a_mistake():
    with pytest.raises(ValueError):
        should_stop([0.1, 0.2], -1)


def test_the_message_says_why():
    text = stop_message([0.3, 0.5, 0.4, 0.45], 2)
    assert "after iteration 3" in text and "2 iteration(s)" in text and "50.0% at iteration 1" in text


@pytest.mark.parametrize(
    "elapsed, last, budget, stop",
    [
        (0.0, None, 0.0, False),  # 0: no budget
        (10_000.0, 500.0, 0.0, False),
        (30.0, None, 1800.0, False),  # after iteration 0: nothing to judge by but the time spent
        (1800.5, None, 1800.0, True),  # iteration 0 alone spent it
        (1300.0, 450.0, 1800.0, False),  # 1750 s: ends inside the budget
        (1300.0, 500.0, 1800.0, False),  # exactly at the budget: still inside
        (1300.0, 501.0, 1800.0, True),
        (1900.0, 10.0, 1800.0, True),
    ],
)
def test_over_budget(elapsed, last, budget, stop):
    assert over_budget(elapsed, last, budget) is stop


def test_a_negative_budget_is_a_mistake():
    with pytest.raises(ValueError):
        over_budget(1.0, 1.0, -1.0)


def test_the_next_iteration_grows_by_its_fine_tuning_alone():
    assert next_iteration_seconds(None, None, 0.2) is None  # no STaR iteration has finished
    assert next_iteration_seconds(400.0, 300.0, 0.2) == pytest.approx(460.0)  # 100 s decoding + 300 s x 1.2
    assert next_iteration_seconds(400.0, None, 0.2) == 400.0  # nothing fine-tuned: nothing grows
    assert next_iteration_seconds(400.0, 300.0, 0.0) == 400.0


def test_the_512_question_run_would_have_stopped_inside_its_budget():
    # Its iterations 0-2 (docs/measurements.md): 15 s, 398 s, then 657 s of which 521 s fine-tuning; iteration 3
    # took 738 s and ended 8 s past 30 minutes when the last length alone judged it.
    spent = 15.0 + 398.0 + 657.0
    assert not over_budget(spent, 657.0, 1800.0)
    assert over_budget(spent, next_iteration_seconds(657.0, 521.0, 0.2), 1800.0)


def test_the_budget_message_says_why():
    text = budget_message(4, 1320.0, 456.0, 1800.0)
    assert "before iteration 4" in text and "22.0 of the 30 minutes" in text and "iteration 4 should take 7.6" in text
    assert "should take" not in budget_message(1, 1900.0, None, 1800.0)
