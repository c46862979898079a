"""The Runs page follows a run through cancel -> resume -> done; its buttons answer in callbacks, so a click
takes effect (or says why not) even when the page's own refresh reruns it."""

from __future__ import annotations

import pytest

from app_helpers import assert_no_crash, assert_no_error, open_page, texts, wait_for
from tiny import tiny_config
from star_core.engine.prepare import create_run
from star_core.runtime import jobs
from star_core.store import Store

PAGE = "pages/runs.py"


@pytest.mark.slow
def test_cancel_resume_done(tmp_path, monkeypatch, tiny_model):
    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    run_id = create_run(store, tiny_config(tiny_model, seed_max_digits=1, min_steps=60))  # the seed: fine-tuning to cancel
    jobs.launch(store, run_id)
    wait_for(lambda: store.get_run(run_id).status == "running", what="the worker to claim the run")

    at = open_page(PAGE, monkeypatch, db, query={"run": str(run_id)})
    at.button(key=f"cancel_{run_id}").click().run()
    assert_no_error(at)
    assert store.cancel_requested(run_id)
    # Visible at once, not on a later poll: "cancelling", or "cancelled" where the worker was quicker than the rerun.
    assert "cancelling" in texts(at) or (store.get_run(run_id).status == "cancelled" and "cancelled" in texts(at))
    assert any("Cancelling run" in t.value for t in at.toast)
    wait_for(lambda: store.get_run(run_id).status == "cancelled", what="the cancel")

    at.run()
    assert "Cancelled" in texts(at)
    at.button(key=f"resume_{run_id}").click().run()
    assert_no_error(at)
    assert store.get_run(run_id).status in ("pending", "queued", "running")
    assert "Resume" not in [b.label for b in at.button]  # no second Resume while it starts
    wait_for(lambda: store.get_run(run_id).status in ("done", "failed", "crashed"), what="the resumed run")
    at.run()
    assert store.get_run(run_id).status == "done", jobs.log_tail(store, run_id)
    assert "done" in texts(at) and "Cancel" not in [b.label for b in at.button]


def test_a_refused_click_says_why(tmp_path, monkeypatch, tiny_model):
    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    run_id = create_run(store, tiny_config(tiny_model))
    store.finish_run(run_id, "cancelled")
    at = open_page(PAGE, monkeypatch, db, query={"run": str(run_id)})
    store.claim_run(run_id)  # meanwhile resumed elsewhere (`star run --resume`), by a live process: this one
    at.button(key=f"resume_{run_id}").click().run()
    assert_no_crash(at)
    assert any("did not resume" in e.value and "already running" in e.value for e in at.error), [e.value for e in at.error]
    assert store.get_run(run_id).status == "running"
