"""What the app reads: the browse table, one attempt in full, one question's attempts,
the accuracy figures' data and the newest rationales of a run.

Every query is read-only and short, so a run writing the same file only waits
milliseconds for it (and the app retries while the run writes: see connection.py).
The browse table pages with LIMIT/OFFSET over a filtered scan of `attempts`, which
DuckDB answers in well under 200 ms on a million attempts (bench/browse_latency.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..core.states import AttemptKind
from .queries import Queries

# The columns the browse table shows (the long text columns are fetched for one attempt only).
TABLE_COLUMNS = (
    "attempt_id", "run_id", "iteration", "kind", "difficulty", "question", "rationale",
    "predicted_answer", "gold_answer", "correct", "verified", "used_for_training", "hint_leak",
)
# Sortable columns -> the SQL expression they sort by.
SORTABLE = {
    "attempt_id": "a.id", "run_id": "a.run_id", "iteration": "a.iteration", "kind": "a.kind",
    "difficulty": "p.difficulty", "correct": "a.correct", "verified": "a.verified",
    "used_for_training": "a.used_for_training", "new_tokens": "a.new_tokens", "seconds": "a.seconds",
}
KINDS = tuple(AttemptKind)


@dataclass
class AttemptFilter:
    """Filters of the browse table; an empty list or None means 'any'."""

    run_ids: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    difficulties: list[int] = field(default_factory=list)
    correct: bool | None = None
    verified: bool | str | None = None  # True, False, "unchecked" (NULL: the task cannot check steps), None = any
    used_for_training: bool | None = None
    hint_leak: bool | None = None
    search: str = ""  # case-insensitive substring of the question or the rationale
    # Only these (run id, problem id) questions, e.g. a trajectory class's (star_core.analysis.trajectories.question_ids);
    # None = any, an empty list = none.
    questions: list[tuple[int, str]] | None = None

    def where(self) -> tuple[str, list]:
        clauses, params = [], []

        def among(column: str, values: list) -> None:
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)

        among("a.run_id", [int(v) for v in self.run_ids])
        among("a.iteration", [int(v) for v in self.iterations])
        among("a.kind", list(self.kinds))
        if self.difficulties:
            # Conditions on the question are semi-joins: the scan of attempts needs no join.
            clauses.append(f"(a.run_id, a.problem_id) IN (SELECT run_id, problem_id FROM problems "
                           f"WHERE difficulty IN ({', '.join('?' * len(self.difficulties))}))")
            params.extend(int(v) for v in self.difficulties)
        for column, value in (("a.correct", self.correct), ("a.used_for_training", self.used_for_training)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(bool(value))
        if self.verified == "unchecked":
            clauses.append("a.verified IS NULL")
        elif self.verified is not None:
            clauses.append("a.verified = ?")
            params.append(bool(self.verified))
        if self.hint_leak is not None:
            clauses.append("coalesce(a.hint_leak, false) = ?")
            params.append(bool(self.hint_leak))
        if self.questions is not None:
            if self.questions:
                # Two parallel lists unnested side by side: one parameter each, however many questions.
                clauses.append("(a.run_id, a.problem_id) IN (SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]))")
                params.extend([[int(r) for r, _ in self.questions], [str(p) for _, p in self.questions]])
            else:
                clauses.append("false")
        if self.search.strip():
            # ILIKE with the pattern characters escaped: a case-insensitive substring match
            # (DuckDB scans a million rationales in ~50 ms this way).
            clauses.append("(a.rationale ILIKE ? ESCAPE '\\' OR (a.run_id, a.problem_id) IN "
                           "(SELECT run_id, problem_id FROM problems WHERE question ILIKE ? ESCAPE '\\'))")
            needle = "%" + _escape_like(self.search.strip()) + "%"
            params.extend([needle, needle])
        return (" AND ".join(clauses) or "true"), params


@dataclass
class BrowsePage:
    rows: pd.DataFrame
    total: int  # attempts matching the filter, over all pages


_FROM = "FROM attempts a JOIN problems p ON p.run_id = a.run_id AND p.problem_id = a.problem_id"


class BrowseQueries(Queries):
    # --- the browse table -------------------------------------------------------

    def browse_attempts(self, flt: AttemptFilter | None = None, sort: str = "attempt_id", descending: bool = True,
                        limit: int = 50, offset: int = 0) -> BrowsePage:
        """One page of attempts matching `flt`, sorted by `sort` (ties by attempt id)."""
        flt = flt or AttemptFilter()
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}; sortable: {', '.join(SORTABLE)}")
        where, params = flt.where()
        direction = "DESC" if descending else "ASC"
        order = f"{SORTABLE[sort]} {direction} NULLS LAST" + ("" if sort == "attempt_id" else f", a.id {direction}")
        # Two steps: find the page's ids (and the count) scanning only the columns the filter
        # and sort need, then fetch those rows' text.
        source = _FROM if sort == "difficulty" else "FROM attempts a"
        with self.db.read() as con:
            if where == "true":
                found = con.execute(f"SELECT a.id {source} ORDER BY {order} LIMIT ? OFFSET ?",
                                    [int(limit), int(offset)]).fetchall()
                total = con.execute("SELECT count(*) FROM attempts").fetchall()[0][0]
            else:  # one scan gives the page and the count (a window count over it took twice as long on 10M attempts)
                ties = "" if sort == "attempt_id" else f", id {direction}"
                found = con.execute(
                    f"""
                    WITH matching AS MATERIALIZED (SELECT a.id, {SORTABLE[sort]} AS sort_key {source} WHERE {where})
                    SELECT id, (SELECT count(*) FROM matching) FROM matching
                    ORDER BY sort_key {direction} NULLS LAST{ties} LIMIT ? OFFSET ?
                    """,
                    params + [int(limit), int(offset)],
                ).fetchall()
                total = found[0][1] if found else (
                    con.execute(f"SELECT count(*) FROM attempts a WHERE {where}", params).fetchall()[0][0] if offset else 0)
            ids = [r[0] for r in found]
            rows = _page_rows(con, ids)
        return BrowsePage(rows, int(total))

    def browse_options(self, run_ids: list[int] | None = None) -> dict[str, list]:
        """The values the filters can take (iterations and difficulties of the chosen runs)."""
        run_ids = [int(r) for r in run_ids or []]
        cond = f"WHERE run_id IN ({', '.join('?' * len(run_ids))})" if run_ids else ""
        with self.db.read() as con:
            iterations = [r[0] for r in con.execute(
                f"SELECT DISTINCT iteration FROM iterations {cond} ORDER BY 1", run_ids).fetchall()]
            difficulties = [r[0] for r in con.execute(
                f"SELECT DISTINCT difficulty FROM problems {cond} {'AND' if cond else 'WHERE'} difficulty IS NOT NULL ORDER BY 1",
                run_ids).fetchall()]
            runs = con.execute("SELECT id, name, task, model FROM runs ORDER BY id").fetchall()
        return {"iterations": iterations, "difficulties": difficulties,
                "runs": [(r[0], _run_label(r[0], r[1], r[2], r[3])) for r in runs]}

    # --- one attempt, one question ----------------------------------------------

    def attempt_detail(self, attempt_id: int) -> dict | None:
        """Every stored column of one attempt, with its question, choices and run name."""
        with self.db.read() as con:
            df = con.execute(
                "SELECT v.*, r.name AS run_name, r.task FROM v_attempts v JOIN runs r ON r.id = v.run_id WHERE v.attempt_id = ?",
                [int(attempt_id)],
            ).df()
        if df.empty:
            return None
        return {k: (None if _isna(v) else v) for k, v in df.iloc[0].to_dict().items()}

    def question_attempts(self, run_id: int, problem_id: str) -> pd.DataFrame:
        """Every attempt at one question of a run, by iteration and kind (for side-by-side views)."""
        with self.db.read() as con:
            return con.execute(
                """
                SELECT a.id AS attempt_id, a.iteration, a.kind, a.sample, a.hint, a.rationale, a.completion,
                       a.predicted AS predicted_answer, a.correct, a.verified, a.verify_reason,
                       a.used_for_training, a.hint_leak
                FROM attempts a WHERE a.run_id = ? AND a.problem_id = ?
                ORDER BY a.iteration, CASE a.kind WHEN 'generated' THEN 0 WHEN 'rationalized' THEN 1 ELSE 2 END, a.sample
                """,
                [int(run_id), problem_id],
            ).df()

    def newest_attempts(self, run_id: int, limit: int = 10) -> pd.DataFrame:
        """The run's latest attempts, newest first (the live view of a running run)."""
        with self.db.read() as con:
            return con.execute(
                f"""
                SELECT a.id AS attempt_id, a.iteration, a.kind, p.question, a.rationale,
                       a.predicted AS predicted_answer, p.answer AS gold_answer, a.correct, a.verified
                {_FROM} WHERE a.run_id = ? ORDER BY a.id DESC LIMIT ?
                """,
                [int(run_id), int(limit)],
            ).df()

    # --- accuracy page ----------------------------------------------------------

    def eval_accuracy(self, run_ids: list[int]) -> pd.DataFrame:
        """Eval accuracy per run and iteration; difficulty NULL is the overall figure."""
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "iteration", "difficulty", "n", "correct", "accuracy"])
        ids = [int(r) for r in run_ids]
        with self.db.read() as con:
            return con.execute(
                f"""
                -- v_accuracy's eval rows, summed from the derived counts (store/attempts.py keeps them current)
                SELECT run_id, iteration, difficulty, sum(n)::BIGINT AS n, sum(correct)::BIGINT AS correct,
                       sum(correct) / sum(n) AS accuracy
                FROM iteration_accuracy WHERE split = 'eval' AND run_id IN ({', '.join('?' * len(ids))})
                GROUP BY GROUPING SETS ((run_id, iteration, difficulty), (run_id, iteration))
                HAVING GROUPING(difficulty) = 1 OR difficulty IS NOT NULL
                ORDER BY run_id, iteration, difficulty NULLS FIRST
                """,
                ids,
            ).df()

    def coverage(self, run_ids: list[int]) -> pd.DataFrame:
        """Per run and iteration: training questions solved self-generated (correct, and kept)
        and by rationalization (kept), out of all training questions (the paper's coverage)."""
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "iteration", "train_questions", "solved_self", "kept_self",
                                         "kept_rationalized", "kept_total"])
        ids = [int(r) for r in run_ids]
        marks = ", ".join("?" * len(ids))
        with self.db.read() as con:
            return con.execute(
                f"""
                WITH train AS (SELECT run_id, count(*) AS train_questions FROM problems
                               WHERE split = 'train' AND run_id IN ({marks}) GROUP BY run_id),
                per AS (  -- question_outcomes: one row per question, kind and iteration (store/attempts.py keeps it current)
                    SELECT run_id, iteration,
                           count(*) FILTER (WHERE kind = 'generated' AND solved) AS solved_self,
                           count(*) FILTER (WHERE kind = 'generated' AND kept) AS kept_self,
                           count(*) FILTER (WHERE kind = 'rationalized' AND kept) AS kept_rationalized
                    FROM question_outcomes WHERE run_id IN ({marks}) GROUP BY run_id, iteration
                )
                SELECT per.run_id, per.iteration, train.train_questions, per.solved_self, per.kept_self,
                       per.kept_rationalized, per.kept_self + per.kept_rationalized AS kept_total
                FROM per JOIN train USING (run_id) ORDER BY run_id, iteration
                """,
                ids + ids,
            ).df()

    def training_stats(self, run_ids: list[int]) -> pd.DataFrame:
        """Fine-tuning per run and iteration: kept rationales, steps, final loss, time."""
        if not run_ids:
            return pd.DataFrame(columns=["run_id", "iteration", "kept", "steps", "train_loss", "train_tokens", "train_seconds"])
        ids = [int(r) for r in run_ids]
        with self.db.read() as con:
            return con.execute(
                f"""
                SELECT run_id, iteration, kept, steps, train_loss, train_tokens, train_seconds FROM iterations
                WHERE iteration > 0 AND run_id IN ({', '.join('?' * len(ids))}) ORDER BY run_id, iteration
                """,
                ids,
            ).df()

    def run_labels(self) -> dict[int, str]:
        """'#id name (task, model)' for every run, for pickers and chart legends; a run of an exemplar
        comparison (star exemplars compare) is named by its set: '#id set NAME@VERSION (model)'."""
        with self.db.read() as con:
            rows = con.execute(
                """
                SELECT r.id, CASE WHEN s.id IS NOT NULL THEN 'set ' || s.name || '@' || s.version ELSE r.name END,
                       r.task, r.model
                FROM runs r
                LEFT JOIN experiment_runs er ON er.run_id = r.id
                LEFT JOIN experiments e ON e.id = er.experiment_id
                    AND json_extract_string(e.config, '$.kind') = 'exemplars'
                LEFT JOIN exemplar_sets s ON s.id = r.exemplar_set_id AND e.id IS NOT NULL
                ORDER BY r.id
                """
            ).fetchall()
        return {r[0]: _run_label(*r) for r in rows}

    def attempt_count(self) -> int:
        with self.db.read() as con:
            return con.execute("SELECT count(*) FROM attempts").fetchone()[0]


def _page_rows(con, ids: list[int]) -> pd.DataFrame:
    """The browse table's columns for these attempts, in this order.

    The range of the ids bounds the scan: a page's attempts lie close together (newest first, or
    in id order within a sort key), so DuckDB reads only the row groups that hold them instead of
    every stored attempt's text (docs/measurements.md, 2026-12-07).
    """
    rows = con.execute(
        f"""
        SELECT a.id AS attempt_id, a.run_id, a.iteration, a.kind, p.difficulty, p.question, a.rationale,
               a.predicted AS predicted_answer, p.answer AS gold_answer, a.correct, a.verified,
               a.used_for_training, a.hint_leak
        {_FROM} WHERE a.id BETWEEN ? AND ? AND a.id IN (SELECT unnest(?::BIGINT[]))
        """,
        [min(ids, default=0), max(ids, default=-1), ids],
    ).df()
    position = {attempt_id: i for i, attempt_id in enumerate(ids)}
    return rows.sort_values("attempt_id", key=lambda col: col.map(position)).reset_index(drop=True)


def _run_label(run_id: int, name: str, task: str, model: str) -> str:
    model_short = model.rstrip("/").rsplit("/", 1)[-1]
    return f"#{run_id} {name or task} ({model_short})"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
