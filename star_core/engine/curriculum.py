"""Curriculum over difficulties: which training questions an iteration uses.

The paper widened its range of digits as the model improved. Here the training set is
drawn once over the full range (so a run's problems never change and it resumes
exactly); an iteration uses only its questions up to the current top difficulty:

* iteration 1 trains on min_difficulty .. min_difficulty + 1 (with a seed: up to one past the seed's top,
  the first difficulty the seed does not cover; its rows are kept below it);
* after each iteration whose self-solved accuracy (first sample, before any hint) on
  the current top difficulty exceeds the threshold, the next difficulty is added;
* a top difficulty with no training question to judge by is passed (nothing of it
  can hold the range back);
* the eval set always spans the full range.

Until the range is full an iteration therefore uses fewer than train_size questions.
The range is recomputed from the stored accuracies, so a resumed run gets the same one.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def curriculum_top(min_difficulty: int, max_difficulty: int, threshold: float,
                   solved: Sequence[Mapping[int, float]], seed_top: int = 0) -> int:
    """The top difficulty of the next iteration's range.

    `solved[k]` is iteration k+1's self-solved accuracy on the training questions, by
    difficulty (only those it trained on); the result is for iteration len(solved) + 1.
    `seed_top`: the highest difficulty a seed covers (0: none); the range starts one past it.
    """
    top = min(max(min_difficulty, seed_top) + 1, max_difficulty)
    for accuracy in solved:
        if top < max_difficulty and (top not in accuracy or accuracy[top] > threshold):
            top += 1
    return top


def in_range(difficulty: int | None, top: int) -> bool:
    """Whether a training question of `difficulty` is in a range that ends at `top` (no difficulty: always)."""
    return difficulty is None or difficulty <= top
