"""Paired comparison of two (run, iteration) evaluations on the eval questions they share.

Two runs share a question when their problems hold the same question text and gold answer,
whatever the ids: a dataset task's ids are its file's line numbers, which an imported run
cannot know, while every run stores the question and its gold answer. So runs of one task with
the same seed and eval size share every eval question, and any two runs (imported ones too)
share those they have in common. Only the first sample of an eval attempt counts, and a
question one side holds twice (two prompts of an import that ask it) counts once.

Everything is aggregated in DuckDB: the pairing touches two iterations' eval attempts,
a few hundred rows, however large the database is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from ..core.errors import StarError
from .queries import Queries


class ComparisonError(StarError):
    """Two evaluations cannot be compared (no such run or iteration, or no shared questions)."""


@dataclass(frozen=True)
class EvaluatedSide:
    run_id: int
    iteration: int
    answered: int  # eval questions answered at that iteration


@dataclass
class EvalPairing:
    a: EvaluatedSide
    b: EvaluatedSide
    cells: pd.DataFrame  # difficulty, both_right, only_a, only_b, both_wrong: one row per difficulty (NULL: none)
    discordant: pd.DataFrame  # the questions exactly one side got right, with both attempts

    @property
    def shared(self) -> int:
        return int(self.cells[["both_right", "only_a", "only_b", "both_wrong"]].to_numpy().sum())


# The eval answers of one side: first sample of each eval question, with the question it answered (the kind is
# 'generated' for an imported run without evaluation: its training rollouts, see _rollout_runs).
_SIDE = """
    SELECT t.id, t.problem_id, t.correct, t.predicted, p.question, p.answer, p.difficulty
    FROM attempts t JOIN problems p ON p.run_id = t.run_id AND p.problem_id = t.problem_id
    WHERE t.run_id = ? AND t.iteration = ? AND t.kind = ? AND t.sample = 0
    QUALIFY row_number() OVER (PARTITION BY p.question, p.answer ORDER BY t.problem_id) = 1
"""
_PAIRED = f"""
    WITH a AS ({_SIDE}), b AS ({_SIDE}),
    paired AS (
        SELECT a.problem_id, coalesce(a.difficulty, b.difficulty) AS difficulty, a.question, a.answer AS gold_answer,
               a.id AS a_attempt_id, b.id AS b_attempt_id, a.predicted AS a_answer, b.predicted AS b_answer,
               a.correct AS a_correct, b.correct AS b_correct
        FROM a JOIN b ON b.question = a.question AND b.answer = a.answer
    )
"""


class CompareQueries(Queries):
    def evaluated_iterations(self, run_ids: list[int] | None = None) -> pd.DataFrame:
        """Per run and iteration with eval answers: how many it answered and how many eval questions the run has."""
        with self.db.read() as con:
            return _evaluated(con, run_ids or [])

    def run_settings(self, run_ids: list[int]) -> dict[int, dict]:
        """run id -> its stored settings (the RunConfig JSON as a dict, unvalidated), to say what differs between runs."""
        ids = [int(r) for r in run_ids]
        if not ids:
            return {}
        with self.db.read() as con:
            rows = con.execute(f"SELECT id, config FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
        return {int(r): json.loads(c) for r, c in rows}

    def last_evaluated_iteration(self, run_id: int) -> int:
        """The run's last iteration whose evaluation is complete (else the last with any eval answer)."""
        with self.db.read() as con:
            return _last_complete(_evaluated_run(con, self.db.path, run_id))

    def eval_pairing(self, run_a: int, iteration_a: int | None, run_b: int, iteration_b: int | None) -> EvalPairing:
        """Both sides' eval outcomes on their shared questions: the four cells per difficulty and the
        discordant questions. `iteration_* = None` is the run's last evaluated iteration."""
        with self.db.read() as con:  # one connection: opening one is most of a small query's time
            done_both = _evaluated(con, [run_a, run_b])
            sides = []
            for run_id, iteration in ((run_a, iteration_a), (run_b, iteration_b)):
                done = _check_evaluated(con, self.db.path, run_id, done_both[done_both.run_id == int(run_id)])
                if iteration is None:
                    iteration = _last_complete(done)
                answered = done[done.iteration == int(iteration)].answered
                if answered.empty:
                    its = ", ".join(str(i) for i in done.iteration)
                    raise ComparisonError(f"run {run_id} has no eval answers at iteration {iteration} (evaluated: {its})")
                sides.append(EvaluatedSide(int(run_id), int(iteration), int(answered.iloc[0])))
            a, b = sides
            # The pairs once, in a temporary table (read-only connections may make them), then both summaries.
            rollouts = _rollout_runs(con)
            kind = lambda r: "generated" if r in rollouts else "eval"  # noqa: E731
            con.execute(f"CREATE TEMP TABLE pairs AS {_PAIRED} SELECT * FROM paired",
                        [a.run_id, a.iteration, kind(a.run_id), b.run_id, b.iteration, kind(b.run_id)])
            cells = con.execute(
                """
                SELECT difficulty,
                       count(*) FILTER (WHERE a_correct AND b_correct) AS both_right,
                       count(*) FILTER (WHERE a_correct AND NOT b_correct) AS only_a,
                       count(*) FILTER (WHERE b_correct AND NOT a_correct) AS only_b,
                       count(*) FILTER (WHERE NOT a_correct AND NOT b_correct) AS both_wrong
                FROM pairs GROUP BY difficulty ORDER BY difficulty NULLS LAST
                """
            ).df()
            discordant = con.execute(
                """
                SELECT problem_id, difficulty, question, gold_answer, CASE WHEN a_correct THEN 'A' ELSE 'B' END AS right_side,
                       a_answer, b_answer, a_attempt_id, b_attempt_id
                FROM pairs WHERE a_correct <> b_correct
                ORDER BY difficulty NULLS LAST, right_side, a_attempt_id
                """
            ).df()
        pairing = EvalPairing(a, b, cells, discordant)
        if pairing.shared == 0:
            raise ComparisonError(
                f"run {a.run_id} at iteration {a.iteration} ({a.answered} eval answers) and run {b.run_id} at iteration "
                f"{b.iteration} ({b.answered}) share no eval questions (same question and gold answer); "
                "compare runs of the same task with the same seed and eval size"
            )
        return pairing


def _rollout_runs(con) -> set[int]:
    """Imported runs without any evaluation (a TRL GRPO run): Compare and Trajectories read their training
    rollouts' first sample at each step as their answers (docs/import.md)."""
    return {int(r) for (r,) in con.execute(
        "SELECT i.run_id FROM imported_runs i WHERE NOT EXISTS "
        "(SELECT 1 FROM attempts e WHERE e.run_id = i.run_id AND e.kind = 'eval')").fetchall()}


def _evaluated(con, run_ids: list[int]) -> pd.DataFrame:
    ids = [int(r) for r in run_ids]
    cond = f"AND t.run_id IN ({', '.join('?' * len(ids))})" if ids else ""
    rollouts = sorted(_rollout_runs(con))
    # Only with such a run is the query widened: a database of our own runs keeps the plain eval filter.
    kinds = (f"(t.kind = 'eval' OR (t.kind = 'generated' AND t.run_id IN ({', '.join(map(str, rollouts))})))"
             if rollouts else "t.kind = 'eval'")
    return con.execute(
        f"""
        WITH evals AS (SELECT run_id, count(*) FILTER (WHERE split = 'eval') AS eval_questions,
                              count(*) AS questions FROM problems GROUP BY run_id)
        SELECT t.run_id, t.iteration, count(*) AS answered,
               any_value(CASE WHEN t.kind = 'generated' THEN e.questions ELSE e.eval_questions END) AS eval_questions
        FROM attempts t LEFT JOIN evals e ON e.run_id = t.run_id
        WHERE {kinds} AND t.sample = 0 {cond}
        GROUP BY t.run_id, t.iteration ORDER BY t.run_id, t.iteration
        """,
        ids,
    ).df()


def _evaluated_run(con, path, run_id: int) -> pd.DataFrame:
    return _check_evaluated(con, path, run_id, _evaluated(con, [run_id]))


def _check_evaluated(con, path, run_id: int, done: pd.DataFrame) -> pd.DataFrame:
    """`done` (one run's evaluated iterations), or a ComparisonError when there is no such run or no evaluation yet."""
    if not con.execute("SELECT count(*) FROM runs WHERE id = ?", [int(run_id)]).fetchone()[0]:
        raise ComparisonError(f"there is no run {run_id} in {path} (see: star runs --db {path})")
    if done.empty:
        raise ComparisonError(f"run {run_id} has no evaluated iteration yet (iteration 0, the few-shot baseline, "
                              "is evaluated first)")
    return done


def _last_complete(done: pd.DataFrame) -> int:
    # A run still evaluating has a partial last iteration; its previous one compares on every question.
    complete = done[done.answered >= done.eval_questions]
    return int((complete if not complete.empty else done).iteration.max())
