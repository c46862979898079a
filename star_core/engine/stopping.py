"""When a run stops before its last iteration: the paper iterates until performance plateaus
(docs/paper.md#presets-stopping-and-the-papers-comparison).

`--iterations` stays the upper bound; `patience` stops earlier, once eval accuracy has
not improved for that many iterations.
"""

from __future__ import annotations


def best_iteration(accuracies: list[float]) -> int:
    """The first iteration that reached the best accuracy (a later tie is no improvement)."""
    if not accuracies:
        raise ValueError("no accuracies")
    best = max(accuracies)
    return accuracies.index(best)


def should_stop(accuracies: list[float], patience: int) -> bool:
    """Whether to stop after the last of `accuracies` (eval accuracy of iterations 0..n, in order).

    Stop when none of the last `patience` iterations improved on the best accuracy before
    them, i.e. the best of 0..n was first reached `patience` or more iterations ago
    (n - best >= patience). Improving means strictly higher; iteration 0, the few-shot
    baseline, counts, so with patience 1 a first iteration worse than few-shot stops the run.
    `patience` 0 never stops.
    """
    if patience < 0:
        raise ValueError(f"patience must be at least 0, got {patience}")
    if patience == 0 or not accuracies:
        return False
    return len(accuracies) - 1 - best_iteration(accuracies) >= patience


def stop_message(accuracies: list[float], patience: int) -> str:
    """Why a run stopped early, in words (for the run's messages)."""
    n, best = len(accuracies) - 1, best_iteration(accuracies)
    return (f"stopping after iteration {n}: eval accuracy has not improved for {n - best} iteration(s) "
            f"(patience {patience}; best {accuracies[best]:.1%} at iteration {best})")
