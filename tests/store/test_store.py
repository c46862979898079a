"""The DuckDB store: migrations on empty and existing files, bad files, the lock rule."""

from __future__ import annotations

import multiprocessing
import time

import duckdb
import pandas as pd
import pytest

from star_core.core.config import RunConfig
from star_core.core.errors import StoreError
from star_core.store import AttemptRow, Store
from star_core.store.runs import RunClock
from star_core.store.connection import applied_version, migrate
from star_core.store.migrations import MIGRATIONS
from star_core.tasks.base import Problem

# The public SQL interface researchers query (README): its columns are a contract.
V_ATTEMPTS_PUBLIC = [
    "run_id", "iteration", "problem_id", "split", "difficulty", "kind", "question", "hint", "rationale",
    "predicted_answer", "gold_answer", "correct", "verified", "used_for_training",
]
V_ACCURACY = ["run_id", "iteration", "split", "difficulty", "n", "correct", "accuracy"]


def columns(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def attempt(run_id: int, problem_id: str, kind: str = "eval", iteration: int = 0, correct: bool = True) -> AttemptRow:
    return AttemptRow(
        run_id=run_id, iteration=iteration, problem_id=problem_id, kind=kind, sample=0, prompt_id=1,
        question_prompt=f"Question: {problem_id} = ?\nAnswer:", hint=None, completion=" x. The answer is 7.\n\n",
        rationale="x. The answer is 7.", predicted="7", correct=correct, verified=None, verify_reason="",
        prompt_tokens=9, new_tokens=7, seconds=0.1,
    )


def test_migrating_an_empty_file_creates_the_whole_schema(tmp_path):
    store = Store(tmp_path / "new.duckdb").init()
    with store.db.read() as con:
        assert applied_version(con) == len(MIGRATIONS)
        names = [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()]
        assert names == [m.__name__ for m in MIGRATIONS]
        assert columns(con, "v_attempts")[: len(V_ATTEMPTS_PUBLIC)] == V_ATTEMPTS_PUBLIC
        assert {"given_steps", "steps", "given_text"} <= set(columns(con, "v_attempts"))  # the model-written share
        assert "solution" in columns(con, "problems")
        assert columns(con, "v_accuracy") == V_ACCURACY
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"runs", "problems", "prompts", "iterations", "attempts", "audits", "exemplar_sets", "exemplars",
            "train_steps", "experiments", "experiment_runs", "question_outcomes", "iteration_accuracy",
            "imported_runs", "imported_files", "attempt_rewards"} <= tables
    with store.db.read() as con:
        # Derived from attempts (store/attempts.py keeps them current): internal, not part of the public views.
        assert columns(con, "question_outcomes") == ["run_id", "iteration", "kind", "problem_id", "solved", "kept"]
        assert columns(con, "iteration_accuracy") == ["run_id", "iteration", "split", "difficulty", "n", "correct"]
        assert columns(con, "train_steps") == ["run_id", "iteration", "step", "loss", "learning_rate", "tokens"]
        assert columns(con, "v_experiment_runs") == ["experiment_id", "experiment", "arm", "run_id"]
        assert {"pid", "host", "heartbeat_at", "progress_at"} <= set(columns(con, "runs"))  # liveness, progress
        assert columns(con, "v_imported_runs") == ["run_id", "name", "format", "framework", "framework_version", "source",
                                                   "correct_rule", "created_at", "files", "rows"]
        assert columns(con, "imported_files") == ["run_id", "path", "rows_done", "skipped", "imported_at"]
        assert columns(con, "attempt_rewards") == ["attempt_id", "reward"]


def test_the_written_share_is_one_sql_expression_over_v_attempts(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig(name="share"))
    store.save_problems(run_id, [Problem(id=q, question=q, answer="7", split="train", difficulty=3) for q in "abc"])
    rows = [attempt(run_id, "a", "generated", 1), attempt(run_id, "b", "rationalized", 1), attempt(run_id, "c", "seed")]
    for row, (given, steps) in zip(rows, [(0, 4), (2, 4), (4, 4)]):
        row.given_steps, row.steps = given, steps
    store.add_attempts(rows)
    with store.db.read() as con:
        ids = [r[0] for r in con.execute("SELECT id FROM attempts ORDER BY id").fetchall()]
    store.mark_training(run_id, 1, ids[:2])
    store.mark_training(run_id, 0, ids[2:])
    shares = store.written_shares(run_id)
    assert list(shares.written_share) == [0.75, 0.75]  # (4 + 2) of 8 steps, per difficulty 3 and overall; no seed
    assert list(shares.kept_self) == [1, 1] and list(shares.kept_rationalized) == [1, 1]


def test_train_steps_are_stored_once_per_step(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig(name="steps"))
    store.add_train_steps(run_id, 1, [(1, 2.0), (2, 1.5), (3, float("nan"))])
    store.add_train_steps(run_id, 1, [(2, 1.25), (4, 0.75)])  # a resumed iteration trains again: new losses win
    store.add_train_steps(run_id, 2, [])
    steps = store.train_steps([run_id])
    assert steps.step.tolist() == [1, 2, 3, 4] and (steps.iteration == 1).all()
    assert steps.loss.tolist()[:2] == [2.0, 1.25] and pd.isna(steps.loss[2]) and steps.loss[3] == 0.75  # NaN kept as NULL
    assert store.train_steps([]).empty and store.train_steps([run_id + 1]).empty


def test_migrating_an_existing_file_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    MIGRATIONS[0](con)  # a file written by the first release
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'm001_initial')")
    con.execute("INSERT INTO runs (name, task, model, config, status) VALUES ('old', 'arithmetic', 'm', ?, 'done')", [RunConfig().to_json()])
    con.execute("INSERT INTO problems VALUES (1, '3+4', 'eval', 1, '3 + 4', '7', NULL)")
    con.close()

    store = Store(path)
    store.add_attempts([attempt(1, "3+4")])
    with store.db.read() as con:
        assert applied_version(con) == len(MIGRATIONS)
        assert con.execute("SELECT name FROM runs").fetchall() == [("old",)]
        assert con.execute("SELECT count(*) FROM v_attempts").fetchone()[0] == 1
    assert store.get_run(1).config == RunConfig()


def test_migrations_apply_once(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).init()
    with duckdb.connect(str(path)) as con:
        migrate(con, path)  # nothing left to apply: no error, no second row
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_file_that_is_not_a_database_gives_a_clear_error_and_is_left_alone(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="cannot open database"):
        Store(path).init()
    assert path.read_bytes() == before


def test_a_foreign_duckdb_database_is_refused(tmp_path):
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE sales (id INTEGER)")
    with pytest.raises(StoreError, match="not a STaR Studio one"):
        Store(path).init()
    with duckdb.connect(str(path)) as con:
        assert {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()} == {"sales"}


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.duckdb"
    Store(path).init()
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, 'm999_future')", [len(MIGRATIONS) + 1])
    with pytest.raises(StoreError, match="upgrade star-studio"):
        Store(path).init()


def test_a_batch_is_stored_whole_or_not_at_all(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    store.save_problems(run_id, [Problem("3+4", "3 + 4", "7", "eval", 1)])
    store.add_attempts([attempt(run_id, "3+4")])
    with pytest.raises(duckdb.ConstraintException):
        store.add_attempts([attempt(run_id, "3+4", kind="generated", iteration=1), attempt(run_id, "3+4")])  # 2nd is a duplicate
    with store.db.read() as con:
        assert con.execute("SELECT kind FROM attempts").fetchall() == [("eval",)]


def _hold_the_file(path: str, seconds: float, ready, release=None) -> None:
    con = duckdb.connect(path)
    ready.set()
    if release is None:
        time.sleep(seconds)
    else:
        release.wait(seconds)  # until the test has seen what it waits for (at most `seconds`)
    con.close()


def test_a_reader_waits_for_a_writer_in_another_process(tmp_path):
    path = tmp_path / "s.duckdb"
    store = Store(path).init()
    store.create_run(RunConfig(name="first"))
    ready = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=_hold_the_file, args=(str(path), 1.5, ready))
    holder.start()
    assert ready.wait(30), "the other process never opened the file"
    assert store.list_runs().name.tolist() == ["first"]  # retried until the other process let go
    holder.join()


def test_a_lock_held_too_long_becomes_a_store_error(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).init()
    ready, release = multiprocessing.get_context("spawn").Event(), multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=_hold_the_file, args=(str(path), 60, ready, release))
    holder.start()
    try:
        assert ready.wait(30), "the other process never opened the file"
        with pytest.raises(StoreError, match="held by another process"):
            Store(path, lock_timeout=0.5).list_runs()
    finally:
        release.set()
        holder.join(30)


def _iteration_attempts(store: Store, run_id: int) -> None:
    """Iteration 0 and 1 evaluated; iteration 1 generated on two difficulties (only sample 0 counts)."""
    store.save_problems(run_id, [Problem("e1", "1 + 1", "2", "eval", 1), Problem("e2", "2 + 2", "4", "eval", 2),
                                 Problem("t1", "3 + 4", "7", "train", 1), Problem("t2", "33 + 44", "77", "train", 2)])
    store.add_attempts([attempt(run_id, "e1"), attempt(run_id, "e2", correct=False),
                        attempt(run_id, "e1", iteration=1), attempt(run_id, "e2", iteration=1),
                        attempt(run_id, "t1", kind="generated", iteration=1),
                        attempt(run_id, "t2", kind="generated", iteration=1, correct=False)])


def test_eval_accuracies_are_overall_per_iteration_in_order(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    _iteration_attempts(store, run_id)
    assert store.eval_accuracies(run_id, before=2) == [0.5, 1.0]
    assert store.eval_accuracies(run_id, before=1) == [0.5]
    assert store.eval_accuracies(run_id + 1, before=9) == []


def test_run_clock_sums_the_finished_iterations_and_times_the_last(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    assert store.run_clock(run_id, before=1) == RunClock(0.0, None, None)
    for n in range(4):
        store.set_iteration_phase(run_id, n, "done" if n < 3 else "generate")
    store.set_iteration_phase(run_id, 2, "done", train_seconds=300.0)
    with store.db.write() as con:  # hand-set times: 40 s, 400 s and 460 s, an hour's gap before iteration 2 that counts nothing
        for n, start, end in [(0, "10:00:00", "10:00:40"), (1, "10:00:40", "10:07:20"), (2, "11:00:00", "11:07:40")]:
            con.execute("UPDATE iterations SET started_at = ?, finished_at = ? WHERE run_id = ? AND iteration = ?",
                        [f"2026-12-01 {start}", f"2026-12-01 {end}", run_id, n])
    assert store.run_clock(run_id, before=1) == RunClock(40.0, None, None)  # iteration 0 is evaluation, not STaR's
    assert store.run_clock(run_id, before=2) == RunClock(440.0, 400.0, 0.0)  # iteration 1 recorded no fine-tuning
    assert store.run_clock(run_id, before=4) == RunClock(900.0, 460.0, 300.0)  # the unfinished iteration 3 counts nothing


def test_train_accuracy_by_difficulty_per_training_iteration(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    _iteration_attempts(store, run_id)
    assert store.train_accuracy_by_difficulty(run_id, before=2) == [{1: 1.0, 2: 0.0}]
    assert store.train_accuracy_by_difficulty(run_id, before=1) == []  # iteration 0 trains on nothing


def test_an_iteration_checkpoint_is_its_folder_or_none(tmp_path):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = store.create_run(RunConfig())
    store.set_iteration_phase(run_id, 1, "evaluate", checkpoint=str(tmp_path / "iteration-1"))
    store.set_iteration_phase(run_id, 2, "evaluate", kept=0, steps=0, checkpoint=None)  # nothing was kept
    assert store.iteration_checkpoint(run_id, 1) == tmp_path / "iteration-1"
    assert store.iteration_checkpoint(run_id, 2) is None and store.iteration_checkpoint(run_id, 3) is None


def test_the_query_groups_declare_what_they_share_and_hold_nothing_else(tmp_path):
    from star_core.store.queries import Queries

    assert [group.__name__ for group in Store.__bases__ if not issubclass(group, Queries)] == []
    assert list(vars(Store(tmp_path / "s.duckdb"))) == ["db"]  # the one thing the groups share
