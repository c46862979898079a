"""Each question's path across a run's iterations, and what kind of path it is.

A question's path is its outcome at every iteration it was attempted, in order:

* an eval question is *right* or *wrong* at iterations 0, 1, ... (its first eval sample);
* a training question, from iteration 1 on (iteration 0 only evaluates), is *right* when a
  self-generated attempt (any sample) reached the gold answer, *hint only* when only the
  rationalized retry (shown the answer) did, *wrong* otherwise; whether a rationale of it
  was kept for fine-tuning is recorded beside. A hint-only solution does not count as right:
  the question is what the model can solve by itself.

Classes, a partition of the non-empty paths by where the path ends and whether it ever went
from right to wrong:

* ``always right``: right at every iteration;
* ``never right``: right at none;
* ``forgotten``: right at some iteration and wrong at the last;
* ``learned``: right at the last, wrong at the first, and never right then wrong
  (wrong ... wrong, right ... right);
* ``unstable``: right at the last, but right then wrong somewhere before (e.g. wrong, right,
  wrong, right; or right, wrong, right).

A run still writing its last iteration has questions whose path ends one iteration earlier.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.states import _Text


class Trajectory(_Text):
    LEARNED = "learned"
    FORGOTTEN = "forgotten"
    ALWAYS_RIGHT = "always right"
    NEVER_RIGHT = "never right"
    UNSTABLE = "unstable"


class Outcome(str, Enum):
    """A question's outcome at one iteration (the grid's cells)."""

    RIGHT = "right"
    HINT_ONLY = "right only with the hint"
    WRONG = "wrong"

    def __str__(self) -> str:
        return self.value


# Grid values: a heat map colours right 1, hint only 0.5, wrong 0.
OUTCOME_VALUE = {Outcome.RIGHT: 1.0, Outcome.HINT_ONLY: 0.5, Outcome.WRONG: 0.0}


def classify(path: Sequence[bool]) -> Trajectory:
    """The class of a path of right (True) / wrong (False) outcomes in iteration order."""
    path = [bool(x) for x in path]
    if not path:
        raise ValueError("a trajectory needs at least one attempted iteration")
    if all(path):
        return Trajectory.ALWAYS_RIGHT
    if not any(path):
        return Trajectory.NEVER_RIGHT
    if not path[-1]:
        return Trajectory.FORGOTTEN
    dropped = any(x and not y for x, y in zip(path, path[1:]))
    return Trajectory.UNSTABLE if dropped else Trajectory.LEARNED


def outcome(right: bool, hint_right: bool) -> Outcome:
    return Outcome.RIGHT if right else Outcome.HINT_ONLY if hint_right else Outcome.WRONG


TRANSITIONS = ("wrong→right", "right→wrong", "stayed right", "stayed wrong")


# --- over a run's questions (frames from Store.question_paths) -----------------------


def with_classes(paths: pd.DataFrame) -> pd.DataFrame:
    """Store.question_paths' frame with each question's `trajectory`, its path as text (✓ right, h only
    with the hint, ✗ wrong), and the iteration it was first right at (None if never)."""
    df = paths.copy()
    # Plain Python lists: iterating pandas' (Arrow) columns element by element is several times slower.
    rights = [_bools(r) for r in df["right"].tolist()]
    hints = [_bools(h) for h in df["hint_right"].tolist()]
    its = [_ints(i) for i in df["iterations"].tolist()]
    df["trajectory"] = [classify(r).value for r in rights]
    df["path"] = ["".join("✓" if x else ("h" if h else "✗") for x, h in zip(r, hs)) for r, hs in zip(rights, hints)]
    df["first_right"] = pd.array([next((i for i, x in zip(it, r) if x), None) for it, r in zip(its, rights)], dtype="Int64")
    return df


def _bools(values) -> list[bool]:
    # A numpy array's tolist() already gives Python bools (and ints, below).
    return values.tolist() if hasattr(values, "tolist") else [bool(x) for x in values]


def _ints(values) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else [int(x) for x in values]


def class_counts(classified: pd.DataFrame) -> pd.DataFrame:
    """Questions per split, difficulty and trajectory class (every class listed, zeros included)."""
    cols = ["split", "difficulty", "trajectory", "questions"]
    # pd.isna: a question without difficulty reads back as None, NaN or pd.NA (a run where none has one)
    diffs = [None if pd.isna(d) else int(d) for d in classified["difficulty"].tolist()]
    counts = Counter(zip(classified["split"].tolist(), diffs, classified["trajectory"].tolist()))
    groups = sorted({key[:2] for key in counts}, key=lambda g: (g[0], g[1] is None, g[1] or 0))
    rows = [(split, d, t.value, counts.get((split, d, t.value), 0)) for split, d in groups for t in Trajectory]
    out = pd.DataFrame(rows, columns=cols)
    out["difficulty"] = out.difficulty.astype("Int64")
    return out


_KIND = {(False, True): "wrong→right", (True, False): "right→wrong", (True, True): "stayed right",
         (False, False): "stayed wrong"}


def transitions(classified: pd.DataFrame) -> pd.DataFrame:
    """Per split and pair of consecutive attempted iterations: how many questions went wrong→right,
    right→wrong, or stayed (every kind listed, zeros included)."""
    cols = ["split", "from_iteration", "to_iteration", "transition", "questions", "step"]
    counts: Counter = Counter()
    for split, its, right in zip(classified["split"].tolist(), classified["iterations"].tolist(),
                                 classified["right"].tolist()):
        its, right = _ints(its), _bools(right)
        for k in range(len(its) - 1):
            counts[(split, its[k], its[k + 1], _KIND[(right[k], right[k + 1])])] += 1
    steps = sorted({key[:3] for key in counts})
    rows = [(*step, kind, counts.get((*step, kind), 0), f"{step[1]}→{step[2]}") for step in steps for kind in TRANSITIONS]
    return pd.DataFrame(rows, columns=cols)


def grid(classified: pd.DataFrame) -> pd.DataFrame:
    """One row per question and attempted iteration: its outcome, the outcome's value (1 right,
    0.5 hint only, 0 wrong) and whether a rationale of it was kept (long form, for a heat map and CSV)."""
    cols = ["problem_id", "split", "difficulty", "trajectory", "iteration", "outcome", "value", "kept"]
    if classified.empty:
        return pd.DataFrame(columns=cols)
    lengths = [len(x) for x in classified["iterations"]]
    row = np.repeat(np.arange(len(classified)), lengths)
    flat = {c: np.concatenate(classified[c].tolist()).astype(int if c == "iterations" else bool)
            for c in ("iterations", "right", "hint_right", "kept")}
    outcome_ = np.where(flat["right"], Outcome.RIGHT.value,
                        np.where(flat["hint_right"], Outcome.HINT_ONLY.value, Outcome.WRONG.value))
    value = np.where(flat["right"], OUTCOME_VALUE[Outcome.RIGHT],
                     np.where(flat["hint_right"], OUTCOME_VALUE[Outcome.HINT_ONLY], OUTCOME_VALUE[Outcome.WRONG]))
    out = {c: classified[c].to_numpy()[row] for c in ("problem_id", "split", "difficulty", "trajectory")}
    out.update(iteration=flat["iterations"], outcome=outcome_, value=value, kept=flat["kept"])
    return pd.DataFrame(out, columns=cols)


def question_ids(store, run_ids: list[int], wanted: list[str]) -> list[tuple[int, str]]:
    """(run id, problem id) of the questions of `run_ids` whose trajectory is one of `wanted` (for Browse's filter)."""
    out = []
    for run_id in run_ids:
        df = with_classes(store.question_paths(run_id))
        out += [(int(run_id), pid) for pid in df.problem_id[df.trajectory.isin(list(wanted))]]
    return out
