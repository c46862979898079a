"""The stopping rule (patience), on hand-computed accuracy sequences."""

from __future__ import annotations

import pytest

from star_core.engine.stopping import best_iteration, should_stop, stop_message


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
