"""Each question's outcome at every iteration of a run (what star_core.analysis.trajectories classifies).

One aggregation in DuckDB over the run's attempts: per question and iteration, then one
list per question, so the app gets one row per question (hundreds to a few thousand) and
never the run's attempts.
"""

from __future__ import annotations

import pandas as pd
from .queries import Queries

PATH_COLUMNS = ["problem_id", "split", "difficulty", "question", "gold_answer", "iterations", "right", "hint_right", "kept"]


class TrajectoryQueries(Queries):
    def question_paths(self, run_id: int, split: str | None = None) -> pd.DataFrame:
        """One row per question of the run that has attempts: its split, difficulty, question, and per attempted
        iteration (lists in iteration order) whether it was right (eval: the first eval sample; training: any
        self-generated sample), right only with the hint (a rationalized attempt reached the answer), and kept.
        `split` 'train' or 'eval' reads only those questions' attempts."""
        kinds = {"eval": "kind = 'eval'", "train": "kind IN ('generated', 'rationalized')", None: "true"}
        if split not in kinds:
            raise ValueError(f"split must be 'train', 'eval' or None, not {split!r}")
        with self.db.read() as con:
            return con.execute(
                f"""
                WITH per AS (
                    SELECT problem_id, iteration,
                           coalesce(bool_or(correct) FILTER (WHERE kind IN ('generated', 'eval')), false) AS right,
                           coalesce(bool_or(correct) FILTER (WHERE kind = 'rationalized'), false) AS hint_right,
                           bool_or(used_for_training) AS kept
                    FROM attempts
                    WHERE run_id = ? AND (kind <> 'eval' OR sample = 0) AND {kinds[split]}
                    GROUP BY problem_id, iteration
                )
                SELECT per.problem_id, p.split, p.difficulty, p.question, p.answer AS gold_answer,
                       list(per.iteration ORDER BY per.iteration) AS iterations,
                       list(per.right ORDER BY per.iteration) AS right,
                       list(per.hint_right ORDER BY per.iteration) AS hint_right,
                       list(per.kept ORDER BY per.iteration) AS kept
                FROM per JOIN problems p ON p.run_id = ? AND p.problem_id = per.problem_id
                GROUP BY per.problem_id, p.split, p.difficulty, p.question, p.answer
                ORDER BY p.split DESC, p.difficulty NULLS LAST, per.problem_id
                """,
                [int(run_id), int(run_id)],
            ).df()
