"""Attempts: every completion the model wrote, as it is written."""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass

import pandas as pd
import pyarrow as pa

from ..core.states import AttemptKind
from .queries import Queries


@dataclass(frozen=True)
class Candidate:
    """One stored attempt on a training question, as the filter sees it."""

    attempt_id: int
    problem_id: str
    kind: AttemptKind  # GENERATED or RATIONALIZED
    sample: int
    rationale: str
    completion: str
    correct: bool
    verified: bool | None  # None where the task cannot check steps
    hint_leak: bool | None = None  # rationalized only
    given_steps: int | None = None  # steps a partial hint gave (the completion starts with them)
    steps: int | None = None  # steps of the reference


@dataclass
class AttemptRow:
    run_id: int
    iteration: int
    problem_id: str
    kind: str  # generated | rationalized | eval
    sample: int
    prompt_id: int
    question_prompt: str
    hint: str | None
    completion: str
    rationale: str
    predicted: str | None
    correct: bool
    verified: bool | None
    verify_reason: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    hint_leak: bool | None = None  # rationalized only: the rationale restates the hint (tasks/leak.py)
    given_text: str | None = None  # the reference's first steps a partial hint gave: the completion starts with them
    given_steps: int | None = None  # how many of the reference's steps were given (seed: all of them)
    steps: int | None = None  # how many steps the reference has (None where the task has no reference)


_COLUMNS = ", ".join(AttemptRow.__dataclass_fields__)

# A batch goes in as one Arrow table: DuckDB's executemany inserts row by row. Measured
# alone on a 2-core CPU in batches of 1,000: 513 attempts/s row by row, 7,133 from a table
# (docs/scale.md#what-the-one-writer-ingests); the driver's ingest caps a phase however many workers decode.
_ARROW_SCHEMA = pa.schema([
    ("run_id", pa.int64()), ("iteration", pa.int64()), ("problem_id", pa.string()), ("kind", pa.string()),
    ("sample", pa.int64()), ("prompt_id", pa.int64()), ("question_prompt", pa.string()), ("hint", pa.string()),
    ("completion", pa.string()), ("rationale", pa.string()), ("predicted", pa.string()), ("correct", pa.bool_()),
    ("verified", pa.bool_()), ("verify_reason", pa.string()), ("prompt_tokens", pa.int64()), ("new_tokens", pa.int64()),
    ("seconds", pa.float64()), ("hint_leak", pa.bool_()), ("given_text", pa.string()), ("given_steps", pa.int64()),
    ("steps", pa.int64()),
])
assert _ARROW_SCHEMA.names == list(AttemptRow.__dataclass_fields__), "the Arrow schema must list AttemptRow's fields in order"


def insert_attempts(con, source: str, params: list | None = None) -> int:
    """The one way attempts enter the database: every writer (a run's batches, imports, seeds) calls it.

    `source` is a SELECT whose columns are named like the attempts table's (any subset that the table
    can default). The attempts go in with the tables derived from them (`refresh_outcomes`) brought up
    to date for their runs and iterations, inside the caller's transaction, so a batch and what is
    derived from it are stored together or not at all. Returns the number of attempts inserted.
    """
    # Temporary tables: on an error they go with the connection, and the caller sees the error itself.
    con.execute(f"CREATE OR REPLACE TEMP TABLE new_attempts AS {source}", params or [])
    con.execute("INSERT INTO attempts BY NAME SELECT * FROM new_attempts")
    count = con.execute("SELECT count(*) FROM new_attempts").fetchall()[0][0]
    refresh_outcomes(con, "SELECT DISTINCT run_id, iteration FROM new_attempts")
    con.execute("DROP TABLE temp.new_attempts")
    return count


def refresh_outcomes(con, keys: str, params: list | None = None) -> None:
    """Recompute the tables derived from attempts for the (run_id, iteration) pairs that `keys` selects.

    question_outcomes: per run, iteration, kind (generated or rationalized) and question, whether any
    attempt was correct and whether any is used for training (the coverage figures count these rows
    instead of distinct questions over every attempt). iteration_accuracy: per run, iteration, split and
    difficulty, the attempts v_accuracy counts and the correct ones (the accuracy figures and the runs
    overview sum these). Both from the attempts as stored, so a recompute is always exact.
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE outcome_keys AS {keys}", params or [])
    scope = "(run_id, iteration) IN (SELECT run_id, iteration FROM outcome_keys)"
    con.execute(f"DELETE FROM question_outcomes WHERE {scope}")
    con.execute(
        f"""
        INSERT INTO question_outcomes (run_id, iteration, kind, problem_id, solved, kept)
        SELECT run_id, iteration, kind, problem_id, bool_or(correct), bool_or(used_for_training)
        FROM attempts WHERE kind IN ('generated', 'rationalized') AND {scope}
        GROUP BY run_id, iteration, kind, problem_id
        """
    )
    con.execute(f"DELETE FROM iteration_accuracy WHERE {scope}")
    con.execute(
        f"""
        INSERT INTO iteration_accuracy (run_id, iteration, split, difficulty, n, correct)
        SELECT a.run_id, a.iteration, p.split, p.difficulty, count(*), count(*) FILTER (WHERE a.correct)
        FROM attempts a JOIN problems p USING (run_id, problem_id)
        WHERE ((a.kind = 'eval' AND p.split = 'eval') OR (a.kind = 'generated' AND a.sample = 0))
          AND (a.run_id, a.iteration) IN (SELECT run_id, iteration FROM outcome_keys)
        GROUP BY a.run_id, a.iteration, p.split, p.difficulty
        """
    )
    con.execute("DROP TABLE temp.outcome_keys")


class AttemptQueries(Queries):
    def prompt_id(self, text: str) -> int:
        """The id of a few-shot prefix, stored once however many attempts use it."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self.db.write() as con:
            con.execute("INSERT INTO prompts (sha256, text) VALUES (?, ?) ON CONFLICT DO NOTHING", [digest, text])
            return con.execute("SELECT id FROM prompts WHERE sha256 = ?", [digest]).fetchone()[0]

    def prompt_text(self, prompt_id: int) -> str:
        with self.db.read() as con:
            return con.execute("SELECT text FROM prompts WHERE id = ?", [prompt_id]).fetchone()[0]

    def add_attempts(self, rows: list[AttemptRow], progress: dict | None = None) -> None:
        """Insert a batch of attempts in one transaction, with the run's progress.

        A batch is the unit of work a resumed run skips: it is stored whole or not at all.
        """
        if not rows:
            return
        columns = list(zip(*(astuple(r) for r in rows)))
        batch = pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(columns, _ARROW_SCHEMA)],
            schema=_ARROW_SCHEMA,
        )
        with self.db.write() as con:  # a connection of its own: the registered table goes with it
            con.register("attempt_batch", batch)
            insert_attempts(con, f"SELECT {_COLUMNS} FROM attempt_batch")
            if progress:
                self.set_progress(rows[0].run_id, con=con, **progress)

    def done_problems(self, run_id: int, iteration: int, kind: str) -> set[str]:
        with self.db.read() as con:
            rows = con.execute(
                "SELECT DISTINCT problem_id FROM attempts WHERE run_id = ? AND iteration = ? AND kind = ?",
                [run_id, iteration, kind],
            ).fetchall()
        return {r[0] for r in rows}

    def attempts_of(self, run_id: int, iteration: int, kind: AttemptKind) -> list[Candidate]:
        """An iteration's attempts of one kind, as the filter sees them, in stored order."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT id, problem_id, kind, sample, rationale, completion, correct, verified, hint_leak, given_steps, steps "
                "FROM attempts "
                "WHERE run_id = ? AND iteration = ? AND kind = ? ORDER BY id",
                [run_id, iteration, kind],
            ).fetchall()
        return [Candidate(r[0], r[1], AttemptKind(r[2]), *r[3:]) for r in rows]

    def eval_answers(self, run_id: int, iteration: int) -> pd.DataFrame:
        """An iteration's eval attempts as they were asked and answered: problem_id, prefix (the few-shot prompt
        text), question_prompt, completion, correct."""
        with self.db.read() as con:
            return con.execute(
                "SELECT a.problem_id, p.text AS prefix, a.question_prompt, a.completion, a.correct "
                "FROM attempts a JOIN prompts p ON p.id = a.prompt_id "
                "WHERE a.run_id = ? AND a.iteration = ? AND a.kind = 'eval' ORDER BY a.id",
                [run_id, iteration]).df()
    def kept_of(self, run_id: int, iteration: int) -> list[Candidate]:
        """The rationales an iteration fine-tuned on that the model wrote (no seed rows), in stored order."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT id, problem_id, kind, sample, rationale, completion, correct, verified, hint_leak, given_steps, steps "
                "FROM attempts WHERE run_id = ? AND iteration = ? AND used_for_training "
                "AND kind IN ('generated', 'rationalized') ORDER BY id",
                [run_id, iteration],
            ).fetchall()
        return [Candidate(r[0], r[1], AttemptKind(r[2]), *r[3:]) for r in rows]

    def written_shares(self, run_id: int) -> pd.DataFrame:
        """Per iteration and difficulty: the kept rationales the model wrote (seed rows not counted), their steps,
        the steps given in a partial hint, and the share it wrote itself (`1 - sum(given_steps) / sum(steps)`)."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT iteration, difficulty, count(*) AS kept,
                       count(*) FILTER (WHERE kind = 'generated') AS kept_self,
                       count(*) FILTER (WHERE kind = 'rationalized') AS kept_rationalized,
                       count(*) FILTER (WHERE coalesce(given_steps, 0) > 0) AS kept_partial,
                       sum(steps) AS steps, sum(coalesce(given_steps, 0)) AS given_steps,
                       1 - sum(coalesce(given_steps, 0)) / sum(steps) AS written_share
                FROM v_attempts
                WHERE run_id = ? AND used_for_training AND kind IN ('generated', 'rationalized')
                GROUP BY GROUPING SETS ((iteration, difficulty), (iteration))
                ORDER BY iteration, difficulty NULLS FIRST
                """,
                [run_id],
            ).df()

    def mark_training(self, run_id: int, iteration: int, attempt_ids: list[int]) -> None:
        """Record which attempts an iteration fine-tunes on (replacing any earlier choice)."""
        with self.db.write() as con:
            con.execute("UPDATE attempts SET used_for_training = false WHERE run_id = ? AND iteration = ?", [run_id, iteration])
            if attempt_ids:
                con.execute(
                    "UPDATE attempts SET used_for_training = true WHERE id IN (SELECT unnest(?::BIGINT[]))", [attempt_ids]
                )
            # The marks feed the derived outcomes: recompute them for every iteration the marks touched.
            refresh_outcomes(con, "SELECT ?::INTEGER AS run_id, ?::INTEGER AS iteration UNION "
                                  "SELECT DISTINCT run_id, iteration FROM attempts WHERE id IN (SELECT unnest(?::BIGINT[]))",
                             [run_id, iteration, [int(i) for i in attempt_ids]])

    def training_examples(self, run_id: int, iteration: int | None = None) -> pd.DataFrame:
        """Kept rationales as prompt/completion rows (the prompt without any hint).

        The few-shot prefix is part of the prompt: the model is trained in the exact
        format it is prompted with. `iteration=None` gives every iteration's.
        """
        with self.db.read() as con:
            return con.execute(
                """
                SELECT a.run_id, a.iteration, a.problem_id, a.kind, a.sample, a.id AS attempt_id,
                       a.prompt_id, p.question, p.answer AS gold_answer, a.rationale, a.completion, a.predicted AS predicted_answer,
                       p.choices
                FROM attempts a JOIN problems p USING (run_id, problem_id)
                WHERE a.run_id = ? AND a.used_for_training AND (? IS NULL OR a.iteration = ?)
                ORDER BY a.iteration, a.id
                """,
                [run_id, iteration, iteration],
            ).df()

    def generation_stats(self, run_id: int) -> pd.DataFrame:
        """Per iteration and kind: questions, prompt and new tokens, and decoding seconds."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT iteration, kind, count(DISTINCT problem_id) AS questions, sum(prompt_tokens) AS prompt_tokens,
                       sum(new_tokens) AS new_tokens, sum(seconds) AS seconds
                FROM attempts WHERE run_id = ? GROUP BY iteration, kind ORDER BY iteration, kind
                """,
                [run_id],
            ).df()
