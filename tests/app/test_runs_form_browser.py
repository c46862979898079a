"""The run form in a real browser (Chromium driven by Playwright, as in test_browser.py): values typed
with Enter in its fields and a double click on Start make one run, and register the shipped exemplar
set once. The run is tiny (iterations 0: the baseline eval of 4 questions) and is cancelled at the end."""

from __future__ import annotations

import os
import signal

import pytest

from app_helpers import wait_for
from browser_helpers import runs_page

pytestmark = pytest.mark.slow


def test_enter_in_fields_and_a_double_click_on_start_make_one_run(server, tmp_path, tiny_model):  # noqa: F811
    from playwright.sync_api import expect

    from star_core.runtime import jobs
    from star_core.store import Store

    store = Store(tmp_path / "browser.duckdb")  # the server fixture's database
    try:
        with runs_page(server) as page:
            idle = page.get_by_test_id("stStatusWidget")  # shown while the page's script runs
            expect(idle).to_have_count(0)
            page.get_by_label("Model", exact=True).fill(tiny_model)
            page.get_by_text("Decoding", exact=True).click()
            page.get_by_label("Max. new tokens", exact=True).fill("8")
            for label, value in (("Training questions", "6"), ("Eval questions", "4"), ("Iterations", "0")):
                field = page.get_by_label(label, exact=True)
                field.fill(value)
                field.press("Enter")  # confirms the value; it submitted the form, one run per field
                expect(idle).to_have_count(0)
            # No check here: a run an Enter started would come from a rerun the server takes before the one of
            # the Start below, so it would be run 1 (with the values typed so far) and Start's run 2.

            # A person's double click: the second click lands while the first one's rerun is running (Playwright's
            # dblclick sends both within a few milliseconds, and Streamlit merges them into one rerun).
            start = page.get_by_role("button", name="Start", exact=True)
            start.click()
            page.wait_for_timeout(150)
            start.click(timeout=5_000)
            expect(page.get_by_text("Newest rationales")).to_be_visible()  # the page follows the new run
            # Start is drawn enabled again only once the page has shown a Start's outcome and no other is underway.
            # The second click's rerun decided long before (it came 150 ms after the first): had it got through,
            # its run would be underway and Start disabled until that run is stored and shown.
            expect(page.get_by_role("button", name="Start", exact=True, include_hidden=True)).to_be_enabled(timeout=60_000)
            expect(idle).to_have_count(0)
            assert page.get_by_text("Traceback").count() == 0

            runs = store.list_runs()
            assert list(runs.id) == [1], runs[["id", "status"]]
            config = store.get_run(1).config
            assert (config.train_size, config.eval_size, config.iterations, config.max_new_tokens) == (6, 4, 0, 8)
            sets = store.list_exemplar_sets()
            assert list(sets[sets.name == "arithmetic-default"].version) == [1]
    finally:
        _stop_workers(store, jobs)


def _stop_workers(store, jobs) -> None:
    """Cancel what the test started and wait for it to end (a worker outlives the app's server)."""
    from star_core.core.errors import StarError
    from star_core.core.processes import alive

    for run_id in (int(i) for i in store.list_runs().id):
        try:
            jobs.cancel(store, run_id)
        except StarError:  # already ended, or never started
            pass
        try:
            wait_for(lambda: _ended(store, jobs, run_id), timeout=90, what=f"run {run_id} to end")
        except AssertionError:
            pid = store.get_run(run_id).pid
            if pid and alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)


def _ended(store, jobs, run_id: int) -> bool:
    from star_core.core.states import ACTIVE_STATUSES, RunStatus

    status = store.get_run(run_id).status
    if status == RunStatus.PENDING:
        return not jobs.worker_starting(store, run_id)
    return status not in ACTIVE_STATUSES
