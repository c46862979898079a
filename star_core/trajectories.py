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

from enum import Enum
from typing import Sequence

import pandas as pd


class Trajectory(str, Enum):
    LEARNED = "learned"
    FORGOTTEN = "forgotten"
    ALWAYS_RIGHT = "always right"
    NEVER_RIGHT = "never right"
    UNSTABLE = "unstable"

    def __str__(self) -> str:
        return self.value


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
    """Store.question_paths' frame with each question's `trajectory`, its path as text, and the
    iteration it was first right at (None if never)."""
    df = paths.copy()
    rights = [list(map(bool, r)) for r in df["right"]]
    df["trajectory"] = [classify(r).value for r in rights]
    df["path"] = ["".join("✓" if x else ("h" if h else "✗") for x, h in zip(r, hs)) for r, hs in zip(rights, df["hint_right"])]
    df["first_right"] = pd.array([next((int(i) for i, x in zip(its, r) if x), None)
                                  for its, r in zip(df["iterations"], rights)], dtype="Int64")
    return df


def class_counts(classified: pd.DataFrame) -> pd.DataFrame:
    """Questions per split, difficulty and trajectory class (every class listed, zeros included)."""
    classes = [t.value for t in Trajectory]
    if classified.empty:
        return pd.DataFrame(columns=["split", "difficulty", "trajectory", "questions"])
    df = classified.assign(difficulty=classified.difficulty.astype("Int64"))
    counts = df.groupby(["split", "difficulty", "trajectory"], dropna=False).size()
    full = pd.MultiIndex.from_tuples(
        [(s, d, t) for s, d in df[["split", "difficulty"]].drop_duplicates().itertuples(index=False) for t in classes],
        names=["split", "difficulty", "trajectory"])
    out = counts.reindex(full, fill_value=0).rename("questions").reset_index()
    out["trajectory"] = pd.Categorical(out.trajectory, classes, ordered=True)
    out = out.sort_values(["split", "difficulty", "trajectory"], na_position="last").reset_index(drop=True)
    out["trajectory"] = out.trajectory.astype(str)
    return out


def transitions(classified: pd.DataFrame) -> pd.DataFrame:
    """Per split and pair of consecutive attempted iterations: how many questions went wrong→right,
    right→wrong, or stayed (every kind listed, zeros included)."""
    cols = ["split", "from_iteration", "to_iteration", "transition", "questions"]
    long = _explode(classified)
    if long.empty:
        return pd.DataFrame(columns=cols + ["step"])
    nxt = long.groupby("problem_id", sort=False)[["iteration", "right"]].shift(-1)
    steps = long.assign(to_iteration=nxt.iteration, to_right=nxt.right).dropna(subset=["to_iteration"])
    was, now = steps.right.astype(bool), steps.to_right.astype(bool)
    kind = pd.Series("stayed wrong", index=steps.index)
    kind[was & now], kind[was & ~now], kind[~was & now] = "stayed right", "right→wrong", "wrong→right"
    steps = steps.assign(from_iteration=steps.iteration, to_iteration=steps.to_iteration.astype(int), transition=kind)
    counts = steps.groupby(cols[:4]).size()
    pairs = steps[cols[:3]].drop_duplicates()
    full = pd.MultiIndex.from_tuples([(*p, k) for p in pairs.itertuples(index=False) for k in TRANSITIONS], names=cols[:4])
    out = counts.reindex(full, fill_value=0).rename("questions").reset_index()
    out["step"] = out.from_iteration.astype(str) + "→" + out.to_iteration.astype(str)
    return out.sort_values(["split", "from_iteration", "to_iteration"], kind="stable").reset_index(drop=True)


def grid(classified: pd.DataFrame) -> pd.DataFrame:
    """One row per question and attempted iteration: its outcome, the outcome's value (1 right,
    0.5 hint only, 0 wrong) and whether a rationale of it was kept (long form, for a heat map and CSV)."""
    cols = ["problem_id", "split", "difficulty", "trajectory", "iteration", "outcome", "value", "kept"]
    long = _explode(classified)
    if long.empty:
        return pd.DataFrame(columns=cols)
    right, hint = long.right.astype(bool), long.hint_right.astype(bool)
    long["outcome"] = Outcome.WRONG.value
    long.loc[hint, "outcome"] = Outcome.HINT_ONLY.value
    long.loc[right, "outcome"] = Outcome.RIGHT.value
    long["value"] = long.outcome.map({o.value: v for o, v in OUTCOME_VALUE.items()})
    long["kept"] = long.kept.astype(bool)
    return long[cols].reset_index(drop=True)


def _explode(classified: pd.DataFrame) -> pd.DataFrame:
    """One row per question and attempted iteration, in question then iteration order."""
    if classified.empty:
        return pd.DataFrame(columns=["problem_id", "split", "difficulty", "trajectory", "iteration", "right",
                                     "hint_right", "kept"])
    keep = [c for c in ("problem_id", "split", "difficulty", "trajectory") if c in classified]
    df = classified[keep + ["iterations", "right", "hint_right", "kept"]].rename(columns={"iterations": "iteration"})
    df = df.assign(**{c: df[c].map(list) for c in ("iteration", "right", "hint_right", "kept")})
    long = df.explode(["iteration", "right", "hint_right", "kept"], ignore_index=True)
    long["iteration"] = long.iteration.astype(int)
    return long


def question_ids(store, run_ids: list[int], wanted: list[str]) -> list[tuple[int, str]]:
    """(run id, problem id) of the questions of `run_ids` whose trajectory is one of `wanted` (for Browse's filter)."""
    out = []
    for run_id in run_ids:
        df = with_classes(store.question_paths(run_id))
        out += [(int(run_id), pid) for pid in df.problem_id[df.trajectory.isin(list(wanted))]]
    return out
