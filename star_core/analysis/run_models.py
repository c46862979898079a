"""Which iterations' models a run keeps on disk: its best, by eval accuracy, and its latest.

Every iteration fine-tunes from the base model, so going on (or resuming) needs only the latest iteration's
checkpoint: the next iteration generates with it. The best one is kept too, because it is the model a user
wants, and patience (engine/stopping.py) stops a run only once its best iteration is `patience` iterations
old: keeping the latest alone threw the best away in every run that patience ended.

Best is the earliest iteration that reached the highest eval accuracy: a later tie is no improvement, the
rule patience counts from, and the earlier model was trained on less. Iteration 0, the few-shot baseline,
counts: where it is the best, the best model is the base model itself, and only the latest is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..store import EvaluatedIteration
from .present import pct


def best_iteration(accuracies: list[float]) -> int:
    """The first iteration that reached the best accuracy (a later tie is no improvement)."""
    if not accuracies:
        raise ValueError("no accuracies")
    best = max(accuracies)
    return accuracies.index(best)


@dataclass(frozen=True)
class RunModels:
    """A run's best and latest evaluated iterations (the same one where the latest is the best)."""

    best: EvaluatedIteration
    latest: EvaluatedIteration

    @property
    def kept(self) -> set[int]:
        return {self.best.iteration, self.latest.iteration}


def run_models(iterations: list[EvaluatedIteration]) -> RunModels | None:
    """The best and latest of a run's evaluated iterations (Store.finished_iterations; None: none yet).

    Accuracies are compared as fractions of the same eval questions, so equal means as many right."""
    if not iterations:
        return None
    best = iterations[best_iteration([it.accuracy for it in iterations])]
    return RunModels(best=best, latest=max(iterations, key=lambda it: it.iteration))


def checkpoints_to_discard(iterations: list[EvaluatedIteration],
                           also_keep: frozenset[int] = frozenset()) -> list[Path]:
    """The recorded checkpoint folders of evaluated iterations that are neither the best nor the latest nor in
    `also_keep` (some may be gone already: the caller deletes those that are there)."""
    models = run_models(iterations)
    if models is None:
        return []
    keep = models.kept | also_keep
    return [it.checkpoint for it in iterations if it.checkpoint is not None and it.iteration not in keep]


def on_disk(iteration: EvaluatedIteration) -> bool:
    return iteration.checkpoint is not None and iteration.checkpoint.exists()


def model_state(iteration: EvaluatedIteration) -> str:
    """Where an iteration's model is, in words."""
    if iteration.checkpoint is None:
        if iteration.iteration == 0:
            return "the base model (few-shot baseline)"
        return "the base model (no rationale was kept, so it was not fine-tuned)"
    if on_disk(iteration):
        return f"checkpoint on disk ({iteration.checkpoint})"
    return f"checkpoint deleted ({iteration.checkpoint})"


def describe(iteration: EvaluatedIteration) -> str:
    return (f"iteration {iteration.iteration}, eval {pct(iteration.accuracy)} ({iteration.correct}/{iteration.n}); "
            f"{model_state(iteration)}")


def model_lines(models: RunModels) -> list[str]:
    """'best: …' and 'latest: …' (one 'best and latest: …' line where they are the same iteration)."""
    if models.best.iteration == models.latest.iteration:
        return [f"best and latest: {describe(models.best)}"]
    return [f"best: {describe(models.best)}", f"latest: {describe(models.latest)}"]
