"""The faster browse and coverage queries give exactly what plain Python over the stored attempts gives.

`question_outcomes` is derived from the attempts (store/attempts.py keeps it current on every insert and
every training mark; m014_browse_speed backfills it): on random stores, built batch by batch with training
marks between, the coverage figures, the browse page's search, sort and paging must equal an oracle
computed here from what the test wrote, after every step.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from star_core.core.config import RunConfig
from star_core.store import AttemptFilter, AttemptRow, Store
from star_core.store.browse import SORTABLE
from star_core.store.migrations import MIGRATIONS, m014_browse_speed
from star_core.tasks.base import Problem

RUNS = (1, 2)
PROBLEMS = [Problem(f"p{i}", f"Q{i}: {i} + 1 = ?", str(i + 1), "train" if i < 4 else "eval", None if i == 5 else 1 + i % 3)
            for i in range(6)]
# Texts with LIKE's pattern characters and both cases, so the search's escaping and case folding count.
TEXT = st.text(alphabet="ab AB%_\\+1=", min_size=0, max_size=8)

attempt = st.tuples(st.sampled_from(RUNS), st.integers(0, 2), st.sampled_from([p.id for p in PROBLEMS]),
                    st.sampled_from(["generated", "rationalized", "eval"]), TEXT, st.booleans(),
                    st.sampled_from([True, False, None]))
step = st.one_of(
    st.tuples(st.just("add"), st.lists(attempt, min_size=1, max_size=12)),
    # A training mark: run, iteration, and which of that iteration's stored attempts (by position) it keeps.
    st.tuples(st.just("mark"), st.tuples(st.sampled_from(RUNS), st.integers(0, 2), st.lists(st.integers(0, 40), max_size=6))),
)
query = st.tuples(st.one_of(TEXT, st.just("")), st.sampled_from(sorted(SORTABLE)), st.booleans(), st.integers(0, 6))


def new_store(path) -> Store:
    store = Store(path).init()
    for run in RUNS:
        assert store.create_run(RunConfig(name=f"r{run}")) == run
        store.save_problems(run, PROBLEMS)
    return store


def stored(store: Store) -> pd.DataFrame:
    """Every attempt as the oracle sees it, read plainly (no derived table)."""
    with store.db.read() as con:
        return con.execute(
            "SELECT a.id, a.run_id, a.iteration, a.problem_id, a.kind, a.rationale, a.correct, a.verified, a.used_for_training, "
            "a.hint_leak, a.new_tokens, a.seconds, p.question, p.difficulty FROM attempts a JOIN problems p USING (run_id, problem_id)"
        ).df()


def oracle_coverage(df: pd.DataFrame, run_ids: list[int], train: dict[int, int]) -> list[tuple]:
    out = []
    work = df[df.kind.isin(["generated", "rationalized"]) & df.run_id.isin(run_ids)]
    for (run, iteration), g in sorted(work.groupby(["run_id", "iteration"])):
        gen, rat = g[g.kind == "generated"], g[g.kind == "rationalized"]
        solved = gen[gen.correct].problem_id.nunique()
        kept_self, kept_rat = gen[gen.used_for_training].problem_id.nunique(), rat[rat.used_for_training].problem_id.nunique()
        out.append((run, iteration, train[run], solved, kept_self, kept_rat, kept_self + kept_rat))
    return out


def oracle_page(df: pd.DataFrame, search: str, sort: str, descending: bool, offset: int, limit: int) -> tuple[list[int], int]:
    needle = search.strip().lower()
    if needle:
        df = df[df.rationale.str.lower().str.contains(needle, regex=False) | df.question.str.lower().str.contains(needle, regex=False)]
    column = {"attempt_id": "id", "difficulty": "difficulty"}.get(sort, sort)
    known, unknown = df[df[column].notna()], df[df[column].isna()]
    # ORDER BY column NULLS LAST, then the attempt id in the same direction.
    order = known.sort_values([column, "id"], ascending=not descending, kind="stable")
    ids = list(order.id) + list(unknown.sort_values("id", ascending=not descending).id)
    return ids[offset:offset + limit], len(df)


def plain_accuracy(store: Store, run_ids: list[int]) -> pd.DataFrame:
    """The eval rows of the public view v_accuracy, computed over every attempt."""
    with store.db.read() as con:
        return con.execute(
            f"SELECT run_id, iteration, difficulty, n, correct, accuracy FROM v_accuracy WHERE split = 'eval' "
            f"AND run_id IN ({', '.join(str(int(r)) for r in run_ids)}) ORDER BY run_id, iteration, difficulty NULLS FIRST").df()


def check(store: Store) -> None:
    for run_ids in (list(RUNS), [2]):
        got, want = store.eval_accuracy(run_ids), plain_accuracy(store, run_ids)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    overall = plain_accuracy(store, list(RUNS)).query("difficulty.isna()", engine="python")
    runs = store.list_runs().set_index("id")
    for run in RUNS:
        mine = overall[overall.run_id == run].sort_values("iteration")
        latest = mine.accuracy.iloc[-1] if len(mine) else None
        assert (runs.latest_accuracy[run] if pd.notna(runs.latest_accuracy[run]) else None) == latest
    df = stored(store)
    got = store.coverage(list(RUNS))
    with store.db.read() as con:
        train = dict(con.execute("SELECT run_id, count(*) FROM problems WHERE split = 'train' GROUP BY run_id").fetchall())
    assert [tuple(int(v) for v in row) for row in got.itertuples(index=False)] == oracle_coverage(df, list(RUNS), train)
    assert [tuple(int(v) for v in r) for r in store.coverage([2]).itertuples(index=False)] == oracle_coverage(df, [2], train)


@pytest.mark.slow  # 15 random histories of writes, each checked against plain Python after every write: ~20 s
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=4), queries=st.lists(query, min_size=1, max_size=2))
def test_coverage_search_and_sort_equal_plain_python_after_every_write(tmp_path_factory, steps, queries):
    store = new_store(tmp_path_factory.mktemp("prop") / "s.duckdb")
    prompt = store.prompt_id("prefix")
    samples: dict[tuple, int] = {}
    for op, arg in steps:
        if op == "add":
            rows = []
            for run, iteration, problem, kind, text, correct, verified in arg:
                key = (run, iteration, kind, problem)
                samples[key] = samples.get(key, -1) + 1
                rows.append(AttemptRow(run, iteration, problem, kind, samples[key], prompt, "q", None, text, text, None,
                                       correct, verified, "", 1, len(text), 0.1 * samples[key],
                                       hint_leak=None if kind != "rationalized" else correct))
            store.add_attempts(rows)
        else:
            run, iteration, picks = arg
            ids = sorted(stored(store).query("run_id == @run and iteration == @iteration").id)
            store.mark_training(run, iteration, sorted({ids[p % len(ids)] for p in picks}) if ids else [])
        check(store)
        df = stored(store)
        for search, sort, descending, offset in queries:
            page = store.browse_attempts(AttemptFilter(search=search), sort=sort, descending=descending, limit=4, offset=offset)
            ids, total = oracle_page(df, search, sort, descending, offset, 4)
            assert (list(page.rows.attempt_id), page.total) == (ids, total), (search, sort, descending, offset)
            # The page's columns are the attempts' own.
            for row in page.rows.itertuples(index=False):
                want = df[df.id == row.attempt_id].iloc[0]
                assert (row.rationale, row.question, bool(row.correct)) == (want.rationale, want.question, bool(want.correct))


def test_migration_backfills_outcomes_of_an_existing_file(tmp_path):
    """A file written before m014 (attempts stored without the derived table) gets its outcomes on opening."""
    path = tmp_path / "old.duckdb"
    before = MIGRATIONS[: MIGRATIONS.index(m014_browse_speed)]
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    for number, migration in enumerate(before, start=1):
        migration(con)
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [number, migration.__name__])
    con.execute("INSERT INTO runs (name, task, model, config, status) VALUES ('old', 'arithmetic', 'm', ?, 'done')",
                [RunConfig().to_json()])
    for p in PROBLEMS:
        con.execute("INSERT INTO problems (run_id, problem_id, split, difficulty, question, answer) VALUES (1, ?, ?, ?, ?, ?)", [p.id, p.split, p.difficulty, p.question, p.answer])
    # As an old release wrote them: straight into attempts, some kept for training.
    con.execute(
        """
        INSERT INTO attempts (run_id, iteration, problem_id, kind, sample, prompt_id, question_prompt, completion, rationale,
                              correct, used_for_training)
        SELECT 1, i % 3, 'p' || (i % 6), ['generated', 'rationalized', 'eval'][1 + i % 5 % 3], i, 1, 'q', 'c', 'r',
               i % 4 = 0, i % 7 = 0
        FROM range(200) t(i)
        """
    )
    con.close()
    store = Store(path).init()
    df = stored(store)
    assert len(df) == 200 and df.used_for_training.any() and df.correct.any()
    got = [tuple(int(v) for v in row) for row in store.coverage([1]).itertuples(index=False)]
    assert got == oracle_coverage(df, [1], {1: 4}) and any(row[3] for row in got) and any(row[5] for row in got)


def test_coverage_follows_batches_and_training_marks(tmp_path):
    """Batches of one iteration in several writes, marks replaced, then more attempts: coverage stays exact."""
    store = new_store(tmp_path / "s.duckdb")
    prompt = store.prompt_id("prefix")

    def row(problem: str, kind: str, sample: int, correct: bool, iteration: int = 1) -> AttemptRow:
        return AttemptRow(1, iteration, problem, kind, sample, prompt, "q", None, "c", "r", None, correct, None, "", 1, 1, 0.1)

    store.add_attempts([row("p0", "generated", 0, True), row("p0", "generated", 1, False), row("p1", "generated", 0, False)])
    check(store)
    store.add_attempts([row("p1", "generated", 1, True), row("p2", "rationalized", 0, True), row("p3", "eval", 0, True)])
    check(store)
    gen = store.attempts_of(1, 1, "generated")
    store.mark_training(1, 1, [gen[0].attempt_id, gen[-1].attempt_id])
    check(store)
    assert tuple(store.coverage([1]).iloc[0][["solved_self", "kept_self", "kept_rationalized"]]) == (2, 2, 0)
    rat = store.attempts_of(1, 1, "rationalized")
    store.mark_training(1, 1, [rat[0].attempt_id])  # replaces the earlier choice
    check(store)
    assert tuple(store.coverage([1]).iloc[0][["solved_self", "kept_self", "kept_rationalized"]]) == (2, 0, 1)
    store.add_attempts([row("p2", "generated", 0, True, iteration=2), row("p4", "eval", 0, False), row("p5", "eval", 0, True)])
    check(store)
    assert list(store.coverage([1]).iteration) == [1, 2]
    assert len(store.eval_accuracy([1])) > 1
    # Problems saved again with other splits and difficulties: the derived accuracy follows.
    store.save_problems(1, [Problem(p.id, p.question, p.answer, "eval" if p.split == "train" else "train", 3)
                            for p in PROBLEMS] + [Problem("p9", "new", "1", "eval", 1)])
    check(store)
    assert set(store.eval_accuracy([1]).difficulty.dropna()) == {3}
