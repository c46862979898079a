"""Background runs: a worker process runs a stored run; it can be cancelled, killed and resumed."""

from __future__ import annotations

import os
import signal

import pytest

from app_helpers import wait_for
from tiny import tiny_config
from star_core.engine.prepare import create_run
from star_core.runtime import jobs
from star_core.core.errors import ConfigError, ModelLoadError, RunStateError
from star_core.store import Store


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_resumed_to_the_end(tmp_path, tiny_model):
    # (Cancel -> resume -> done through the same workers: test_app_runs_live.py.)
    store = Store(tmp_path / "j.duckdb").init()
    # The seed's fine-tuning (30 steps) keeps the worker busy after its first attempts: time to kill it mid-run.
    config = tiny_config(tiny_model, train_size=16, eval_size=8, gen_batch_size=2, iterations=1, seed_max_digits=1,
                         min_steps=30)
    run_id = create_run(store, config)
    assert store.get_run(run_id).status == "pending"

    pid = jobs.launch(store, run_id)
    assert pid > 0
    with pytest.raises(RunStateError):
        jobs.launch(store, run_id)  # one worker per run
    wait_for(lambda: store.attempt_count() > 0, what="the worker to write attempts")
    run = store.get_run(run_id)
    os.kill(run.pid, signal.SIGKILL)  # a crash: nothing gets recorded by the worker itself
    wait_for(lambda: store.get_run(run_id).status == "crashed", timeout=10, what="the crash to be seen")

    jobs.resume(store, run_id)
    wait_for(lambda: store.get_run(run_id).status in ("done", "failed"), what="the run to finish")
    assert store.get_run(run_id).status == "done", jobs.log_tail(store, run_id)
    assert "run %d done" % run_id in jobs.log_tail(store, run_id)
    with pytest.raises(RunStateError):
        jobs.resume(store, run_id)  # nothing left to do
    # Nothing duplicated by the crash: one attempt per (iteration, kind, question).
    with store.db.read() as con:
        dupes = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM attempts GROUP BY run_id, iteration, kind, problem_id, sample HAVING count(*) > 1)"
        ).fetchone()[0]
    assert dupes == 0


def test_a_worker_that_dies_before_claiming_its_run_is_seen(tmp_path, tiny_model):
    store = Store(tmp_path / "j.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model))
    folder = store.run_folder(run_id)
    folder.mkdir(parents=True)
    (folder / jobs.PID_NAME).write_text("999999999")  # no such process
    (folder / jobs.LOG_NAME).write_text("Traceback ...\nImportError: no module named torch\n")
    assert jobs.worker_died_early(store, run_id) and not jobs.worker_starting(store, run_id)
    assert "ImportError" in jobs.log_tail(store, run_id)


def test_create_run_names_the_field_at_fault(tmp_path):
    store = Store(tmp_path / "j.duckdb").init()
    from star_core.core.config import RunConfig

    with pytest.raises(ConfigError) as err:
        create_run(store, RunConfig(model=str(tmp_path / "no-such-model")))
    assert err.value.field == "model"
    assert store.list_runs().empty  # nothing stored for a run that cannot start


def test_a_worker_runs_in_the_precision_star_bf16_names(tmp_path, tiny_model, monkeypatch):
    """STAR_BF16 reaches the worker process (it inherits the environment) and the run's log says what it chose.
    Not marked slow (about 6 s): the quick subset's one run of a worker process to its end."""
    monkeypatch.setenv("STAR_BF16", "1")
    store = Store(tmp_path / "j.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, train_size=4, eval_size=4, iterations=0))
    jobs.launch(store, run_id)
    wait_for(lambda: store.get_run(run_id).status in ("done", "failed"), what="the run to finish")
    log = jobs.log_tail(store, run_id)
    assert store.get_run(run_id).status == "done", log
    assert "precision: bf16 weights for generation, bf16 autocast for fine-tuning (STAR_BF16=1)" in log


def test_a_star_bf16_that_is_no_choice_fails_the_run_with_its_name(tmp_path, tiny_model, monkeypatch):
    from star_core.engine import loop

    monkeypatch.setenv("STAR_BF16", "yes please")
    store = Store(tmp_path / "j.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, train_size=4, eval_size=4, iterations=0))
    with pytest.raises(ModelLoadError, match="STAR_BF16='yes please' is not a choice"):
        loop.execute_run(store, run_id, queue=False)
    assert store.get_run(run_id).status == "failed"
    assert "STAR_BF16" in store.get_run(run_id).error
