"""A run killed with SIGKILL at any moment resumes with nothing lost and nothing duplicated."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from star_core.store import Store

FLAGS = ["--train-size", "48", "--eval-size", "8", "--iterations", "2", "--max-new-tokens", "12", "--gen-batch-size", "4",
         "--batch-size", "4", "--min-steps", "40", "--epochs", "0.1", "--filter", "answer", "--device", "cpu",
         # the paper's loop, as before the seeded defaults: the expected counts below are its
         "--seed-max-digits", "0", "--train-prefix", "--prompt-trained"]


def _star_run_where_every_answer_is_right(db: str, args: list[str], log: str) -> None:
    """`star run` in a child process, every answer judged right so that every iteration fine-tunes."""
    from star_core.cli.commands import main
    from star_core.tasks.arithmetic import ArithmeticTask

    ArithmeticTask.is_correct = lambda self, predicted, problem: True
    sys.stdout = sys.stderr = open(log, "a", buffering=1)
    sys.exit(main(["run", "--db", db, *args]))


def start(db: Path, *args: str) -> multiprocessing.Process:
    proc = multiprocessing.get_context("spawn").Process(
        target=_star_run_where_every_answer_is_right, args=(str(db), list(args), str(db.with_suffix(".log")))
    )
    proc.start()
    return proc


def log_of(db: Path) -> str:
    return db.with_suffix(".log").read_text()[-3000:]


def wait_for(store: Store, proc: multiprocessing.Process, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive():
            pytest.fail(f"the run ended before the moment to kill it:\n{log_of(store.path)}")
        if store.db.path.exists() and condition(store):
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run never reached the moment to kill it")


def attempt_counts(store: Store) -> tuple[int, int]:
    with store.db.read() as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT (run_id, iteration, kind, problem_id, sample)) FROM attempts"
        ).fetchone()


def generated_so_far(store: Store) -> int:
    with store.db.read() as con:
        return con.execute("SELECT count(*) FROM attempts WHERE iteration = 1 AND kind = 'generated'").fetchone()[0]


def in_phase(phase: str, iteration: int):
    def check(store: Store) -> bool:
        runs = store.list_runs()
        return not runs.empty and runs.cur_phase[0] == phase and runs.cur_iteration[0] == iteration and runs.phase_done[0] > 0
    return check


def _kill_at(store: Store, proc: multiprocessing.Process, moment) -> None:
    wait_for(store, proc, moment)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    before = attempt_counts(store)
    assert before[0] == before[1] > 0
    assert store.get_run(1).status == "crashed"


@pytest.mark.slow
def test_kill_9_during_generation_then_during_fine_tuning_then_resume(tmp_path, tiny_model):
    # One run killed twice (one run instead of two saves the suite a minute): in the middle of a
    # generation phase, then, resumed, in the middle of fine-tuning; the second resume ends it.
    db = tmp_path / "s.duckdb"
    store = Store(db, lock_timeout=120)
    _kill_at(store, start(db, "--model", tiny_model, *FLAGS), lambda s: 0 < generated_so_far(s) < 48)
    _kill_at(store, start(db, "--resume", "1"), in_phase("finetune", 1))

    resumed = start(db, "--resume", "1")
    resumed.join(900)
    assert resumed.exitcode == 0, log_of(db)
    assert store.get_run(1).status == "done"
    total, distinct = attempt_counts(store)
    assert total == distinct  # nothing duplicated
    with store.db.read() as con:
        per_kind = dict(con.execute(
            "SELECT iteration || ' ' || kind, count(*) FROM attempts WHERE kind != 'rationalized' GROUP BY ALL"
        ).fetchall())
        rationalized = con.execute("SELECT count(*) FROM attempts WHERE kind = 'rationalized'").fetchone()[0]
    # nothing lost: every question of every phase has its attempt; with every answer right, none is rationalized
    assert per_kind == {"0 eval": 8, "1 generated": 48, "1 eval": 8, "2 generated": 48, "2 eval": 8}
    assert rationalized == 0
    iterations = store.iterations(1).set_index("iteration")
    assert list(iterations.kept[[1, 2]]) == [48, 48] and (iterations.steps[[1, 2]] >= 40).all()
    assert store.iteration_phases(1) == {0: "done", 1: "done", 2: "done"}
