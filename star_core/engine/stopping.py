"""When a run stops before its last iteration: the paper iterates until performance plateaus
(docs/paper.md#presets-stopping-and-the-papers-comparison).

`--iterations` stays the upper bound; `patience` stops earlier, once eval accuracy has
not improved for that many iterations, and `time_budget_minutes` once the next iteration
would end past the budget.
"""

from __future__ import annotations

# The best iteration is also the model a run keeps beside its latest (analysis/run_models.py): one rule for both.
from ..analysis.run_models import best_iteration

__all__ = ["best_iteration", "budget_message", "next_iteration_seconds", "over_budget", "should_stop", "stop_message"]


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


def next_iteration_seconds(last_s: float | None, last_train_s: float | None, step_growth: float) -> float | None:
    """How long the next iteration should take: as long as the last finished one, its fine-tuning grown by
    `step_growth` as the step schedule grows it (None before the first STaR iteration has finished).

    Fine-tuning is most of an iteration and its steps grow; taking the last iteration's length as it is let a
    run with 512 training questions end 8 s past a 30-minute budget, where this estimate was 23 s off (761 s against 738 s)
    (docs/measurements.md#2026-12-04-four-times-the-training-questions-per-iteration-on-a-cpu-with-bf16).
    """
    if last_s is None:
        return None
    return last_s + step_growth * (last_train_s or 0.0)


def over_budget(elapsed_s: float, next_s: float | None, budget_s: float) -> bool:
    """Whether an iteration started now would end past `budget_s`, `elapsed_s` having been spent on the
    iterations before it (iteration 0 included) and the next expected to take `next_s`
    (next_iteration_seconds; None before the first STaR iteration, when only the budget already spent
    counts). `budget_s` 0 never stops.
    """
    if budget_s < 0:
        raise ValueError(f"the time budget must be at least 0, got {budget_s}")
    if budget_s == 0:
        return False
    return elapsed_s + (next_s or 0.0) > budget_s


def budget_message(next_iteration: int, elapsed_s: float, next_s: float | None, budget_s: float) -> str:
    """Why a run stopped at its time budget, in words (for the run's messages)."""
    expected = f" and iteration {next_iteration} should take {next_s / 60:.1f}" if next_s else ""
    return (f"stopping before iteration {next_iteration}: {elapsed_s / 60:.1f} of the {budget_s / 60:g} minutes' "
            f"time budget spent{expected}, so it would end past the budget")
