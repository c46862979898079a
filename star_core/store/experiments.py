"""Experiments: named groups of runs on the same problems (tables experiments and experiment_runs, m007)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from ..core.errors import ExperimentError
from ..tasks.base import NO_STEPS
from .runs import heartbeat_age
from .queries import Queries


@dataclass
class Experiment:
    id: int
    name: str
    created_at: datetime
    config: dict  # the kind, the preset and the settings applied to every arm
    runs: dict[str, int]  # arm -> run id, in the order they were added


class ExperimentQueries(Queries):
    def create_experiment(self, name: str, config: dict, runs: dict[str, int]) -> int:
        """An experiment and its runs (arm -> run id), in one transaction."""
        with self.db.write() as con:
            experiment_id = con.execute(
                "INSERT INTO experiments (name, config) VALUES (?, ?) RETURNING id", [name, json.dumps(config, sort_keys=True)]
            ).fetchone()[0]
            con.executemany("INSERT INTO experiment_runs (experiment_id, arm, run_id) VALUES (?, ?, ?)",
                            [(experiment_id, arm, run_id) for arm, run_id in runs.items()])
        return experiment_id

    def add_experiment_run(self, experiment_id: int, arm: str, run_id: int) -> None:
        with self.db.write() as con:
            con.execute("INSERT INTO experiment_runs (experiment_id, arm, run_id) VALUES (?, ?, ?)", [experiment_id, arm, run_id])

    def get_experiment(self, experiment_id: int) -> Experiment:
        with self.db.read() as con:
            row = con.execute("SELECT id, name, created_at, config FROM experiments WHERE id = ?", [experiment_id]).fetchone()
            runs = con.execute("SELECT arm, run_id FROM experiment_runs WHERE experiment_id = ? ORDER BY rowid",
                               [experiment_id]).fetchall()
        if row is None:
            raise ExperimentError(f"there is no experiment {experiment_id} in {self.db.path} (see the Experiments page)")
        return Experiment(row[0], row[1], row[2], json.loads(row[3]), dict(runs))

    def list_experiments(self, kind: str | None = None) -> pd.DataFrame:
        """One row per experiment (of `kind`, if given): id, name, created_at, its runs, and how many are done."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT e.id, e.name, e.created_at, count(er.run_id) AS runs,
                       count(*) FILTER (WHERE r.status = 'done') AS done
                FROM experiments e LEFT JOIN experiment_runs er ON er.experiment_id = e.id
                LEFT JOIN runs r ON r.id = er.run_id
                WHERE ? IS NULL OR coalesce(json_extract_string(e.config, '$.kind'), 'paper') = ?
                GROUP BY ALL ORDER BY e.id
                """,
                [kind, kind],
            ).df()

    def exemplar_comparisons(self, set_id: int | None = None) -> pd.DataFrame:
        """Exemplar comparisons (experiments of kind exemplars), newest first, those of set `set_id` if given:
        id, created_at, each side's set label, run and status."""
        with self.db.read() as con:
            df = con.execute(
                f"""
                SELECT e.id, e.created_at,
                       json_extract_string(e.config, '$.set_a') AS set_a, json_extract_string(e.config, '$.set_b') AS set_b,
                       ra.id AS run_a, ra.status AS status_a, ra.pid AS pid_a, ra.host AS host_a,
                       {heartbeat_age("ra.heartbeat_at")} AS age_a,
                       rb.id AS run_b, rb.status AS status_b, rb.pid AS pid_b, rb.host AS host_b,
                       {heartbeat_age("rb.heartbeat_at")} AS age_b
                FROM experiments e
                JOIN experiment_runs a ON a.experiment_id = e.id AND a.arm = 'set-a' JOIN runs ra ON ra.id = a.run_id
                JOIN experiment_runs b ON b.experiment_id = e.id AND b.arm = 'set-b' JOIN runs rb ON rb.id = b.run_id
                WHERE json_extract_string(e.config, '$.kind') = 'exemplars'
                  AND (? IS NULL OR ra.exemplar_set_id = ? OR rb.exemplar_set_id = ?)
                ORDER BY e.id DESC
                """,
                [set_id, set_id, set_id],
            ).df()
        for side in "ab":
            df[f"status_{side}"] = [self.live_status(i, s, p, h, a) for i, s, p, h, a in
                                    zip(df[f"run_{side}"], df[f"status_{side}"], df[f"pid_{side}"], df[f"host_{side}"],
                                        df[f"age_{side}"])]
        return df.drop(columns=["pid_a", "host_a", "age_a", "pid_b", "host_b", "age_b"])

    def experiment_summary(self, experiment_id: int) -> pd.DataFrame:
        """Per arm: its run's status, trained iterations, what the last trained iteration kept, training
        steps and tokens over all iterations, and wall seconds (the sum of its iterations' spans)."""
        with self.db.read() as con:
            df = con.execute(
                f"""
                SELECT er.arm, er.run_id, r.status, r.pid, r.host, r.name,
                       {heartbeat_age("r.heartbeat_at")} AS heartbeat_age_s,
                       json_extract(r.config, '$.iterations')::INTEGER AS iterations_planned,
                       count(i.iteration) FILTER (WHERE i.phase = 'done' AND i.iteration > 0) AS iterations_done,
                       max(i.iteration) FILTER (WHERE i.phase = 'done') AS last_done,
                       arg_max(i.kept, i.iteration) FILTER (WHERE i.phase = 'done' AND i.iteration > 0) AS kept,
                       sum(i.steps) AS train_steps, sum(i.train_tokens) AS train_tokens,
                       sum(epoch(i.finished_at - i.started_at)) AS wall_s
                FROM experiment_runs er JOIN runs r ON r.id = er.run_id
                LEFT JOIN iterations i ON i.run_id = er.run_id
                WHERE er.experiment_id = ?
                GROUP BY ALL ORDER BY min(er.rowid)
                """,
                [experiment_id],
            ).df()
        df["status"] = [self.live_status(i, s, p, h, a) for i, s, p, h, a in
                        zip(df["run_id"], df["status"], df["pid"], df["host"], df["heartbeat_age_s"])]
        return df.drop(columns=["pid", "host", "heartbeat_age_s"])

    def experiment_accuracy(self, experiment_id: int) -> pd.DataFrame:
        """Eval accuracy of every arm's run per iteration, overall (difficulty NULL) and per difficulty."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT er.arm, a.run_id, a.iteration, a.difficulty, a.n, a.correct, a.accuracy
                FROM experiment_runs er JOIN v_accuracy a ON a.run_id = er.run_id AND a.split = 'eval'
                WHERE er.experiment_id = ?
                ORDER BY er.rowid, a.iteration, a.difficulty NULLS FIRST
                """,
                [experiment_id],
            ).df()

    def experiment_eval_questions(self, experiment_id: int) -> dict[str, list[str]]:
        """Each arm's eval questions (problem ids, sorted): the arms of one experiment share them."""
        with self.db.read() as con:
            rows = con.execute(
                """
                SELECT er.arm, list(p.problem_id ORDER BY p.problem_id)
                FROM experiment_runs er JOIN problems p ON p.run_id = er.run_id AND p.split = 'eval'
                WHERE er.experiment_id = ? GROUP BY er.arm
                """,
                [experiment_id],
            ).fetchall()
        return dict(rows)


class KeptStepQueries(Queries):
    def kept_with_steps(self, run_ids: list[int], min_difficulty: int | None = None) -> pd.DataFrame:
        """Per run and iteration: kept (used for training) rationales, and how many of them had their steps
        (verified, and not the bare sum the step check calls NO_STEPS). verified is NULL for tasks that
        cannot check steps: those rows count as kept only. min_difficulty counts only the questions of at
        least that difficulty (2: the multi-digit sums, where a 1-digit question has no steps to show).
        Seed rows are not the model's: never counted. steps and given_steps sum the reference steps of the kept
        rationales and those a partial hint gave (NULL where the task has no reference), for the share the model
        wrote itself: 1 - given_steps / steps."""
        ids = [int(r) for r in run_ids]
        cols = ["run_id", "iteration", "kept", "with_steps", "checked", "steps", "given_steps"]
        if not ids:
            return pd.DataFrame(columns=cols)
        harder = "" if min_difficulty is None else "AND p.difficulty >= ?"
        with self.db.read() as con:
            return con.execute(
                f"""
                SELECT a.run_id, a.iteration, count(*) AS kept,
                       count(*) FILTER (WHERE a.verified AND coalesce(a.verify_reason, '') <> ?) AS with_steps,
                       count(a.verified) AS checked,
                       sum(a.steps) AS steps, sum(coalesce(a.given_steps, 0)) FILTER (WHERE a.steps > 0) AS given_steps
                FROM attempts a JOIN problems p USING (run_id, problem_id)
                WHERE a.used_for_training AND a.kind IN ('generated', 'rationalized') AND a.run_id IN ({', '.join('?' * len(ids))}) {harder}
                GROUP BY a.run_id, a.iteration ORDER BY a.run_id, a.iteration
                """,
                [NO_STEPS, *ids, *([] if min_difficulty is None else [int(min_difficulty)])],
            ).df()
