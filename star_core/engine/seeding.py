"""The seed a run may start from, the partial hints of rationalization, and what an iteration trains on.

Few-shot, the embedded model writes no verified multi-digit rationale, so STaR has nothing above one digit to
keep (docs/measurements.md). Every small-model self-improvement loop starts from exact traces
(docs/paper.md#the-seeded-loop): the seed is the task's exact rationales of the easy training questions plus a
few of each longer difficulty, trained on before iteration 1 and in every iteration after. Pure functions: the
loop orders them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..store.attempts import Candidate
from ..tasks import Problem


def seed_problems(train: Sequence[Problem], max_difficulty: int, per_longer: int) -> list[Problem]:
    """The training questions the seed answers exactly: every one up to `max_difficulty`, then the first
    `per_longer` of each higher difficulty (in the training set's order). None without a seed (0)."""
    if max_difficulty <= 0:
        return []
    taken: dict[int, int] = {}
    chosen = []
    for p in train:
        if p.difficulty is None:
            continue
        if p.difficulty <= max_difficulty:
            chosen.append(p)
        elif taken.get(p.difficulty, 0) < per_longer:
            taken[p.difficulty] = taken.get(p.difficulty, 0) + 1
            chosen.append(p)
    return chosen


def hint_share(start: float, end: float, iteration: int, iterations: int) -> float:
    """The share of a reference's steps a partial hint gives in `iteration` (1-based): `start` in the first,
    annealed linearly to `end` in the last (QuestA anneals 50% to 25%); 0 where both are 0."""
    if iterations <= 1:
        return start
    progress = min(1.0, max(0.0, (iteration - 1) / (iterations - 1)))
    return start + (end - start) * progress


def training_rows(seed: Iterable[Candidate], earlier: Sequence[Sequence[Candidate]], current: Iterable[Candidate],
                  keep_earlier: bool) -> list[Candidate]:
    """What an iteration fine-tunes on: the seed, then (with `keep_earlier`) the kept rationales of earlier
    iterations (`earlier`: one list per iteration, oldest first) of questions this iteration kept none of, each
    question's from its latest iteration that kept any, then the iteration's own."""
    current = list(current)
    rows = list(seed)
    if keep_earlier:
        latest: dict[str, list[Candidate]] = {}
        for kept in earlier:
            by_question: dict[str, list[Candidate]] = {}
            for c in kept:
                by_question.setdefault(c.problem_id, []).append(c)
            latest.update(by_question)  # a later iteration's rows of a question replace an earlier one's
        now = {c.problem_id for c in current}
        rows += [c for question, group in latest.items() if question not in now for c in group]
    return rows + current
