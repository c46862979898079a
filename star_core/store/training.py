"""The fine-tuning loss at every optimizer step (table train_steps, migration m006)."""

from __future__ import annotations

import math

import pandas as pd
from .queries import Queries


class TrainStepQueries(Queries):
    def add_train_steps(self, run_id: int, iteration: int, rows: list[tuple[int, float]]) -> None:
        """Store (step, loss) pairs of one iteration's fine-tuning; a step stored again replaces the old row
        (a resumed iteration fine-tunes again from the base model, so its new losses win)."""
        # A NaN loss (a diverged step) is stored as NULL: the chart shows a gap there.
        clean = [(int(run_id), int(iteration), int(step), float(loss) if math.isfinite(float(loss)) else None)
                 for step, loss in rows]
        if not clean:
            return
        with self.db.write() as con:
            con.executemany(
                "INSERT INTO train_steps (run_id, iteration, step, loss) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, iteration, step) DO UPDATE SET loss = excluded.loss",
                clean,
            )

    def train_steps(self, run_ids: list[int]) -> pd.DataFrame:
        """Per run, iteration and step: the training loss (empty for runs made before steps were stored)."""
        cols = ["run_id", "iteration", "step", "loss", "learning_rate", "tokens"]
        ids = [int(r) for r in run_ids]
        if not ids:
            return pd.DataFrame(columns=cols)
        with self.db.read() as con:
            return con.execute(
                f"SELECT {', '.join(cols)} FROM train_steps WHERE run_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY run_id, iteration, step",
                ids,
            ).df()
