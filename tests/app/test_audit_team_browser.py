"""Two auditors in two browsers at once (Chromium through Playwright, against `streamlit run app.py`):
A rates five rationales, B gives them a second opinion and disagrees on two, the two wait in the
*to adjudicate* queue, and the adjudicated label shows in the statistics."""

from __future__ import annotations

import pytest

from browser_helpers import chromium, settle
from star_core.analysis.agreement import QueueMode, sound_share
from star_core.store import QueueFilter

pytestmark = pytest.mark.slow


def _open(browser, url: str, auditor: str):
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/audit?order=oldest&auditor={auditor}")
    expect(page.get_by_text("Item 1 of")).to_be_visible(timeout=30000)
    return page


def _open_at(browser, url: str, auditor: str, attempt_id: int):
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/audit?order=oldest&auditor={auditor}&item={attempt_id}")
    expect(page.get_by_text("Item 11 of")).to_be_visible(timeout=30000)
    return page


def _rate(page, keys: str, total: int | None = None) -> None:
    """Press the rating keys, one item after another (the last item of a queue stays where it is)."""
    from playwright.sync_api import expect

    page.get_by_role("heading", name="Audit rationales").click()  # focus off the text boxes: keys are shortcuts
    for n, key in enumerate(keys, start=2):
        settle(page)
        page.keyboard.press(key)
        if total is not None and n > total:
            expect(page.get_by_text("Saved: #", exact=False)).to_be_visible(timeout=15000)
            settle(page)
        else:
            expect(page.get_by_text(f"Item {n} of")).to_be_visible(timeout=15000)


def _queue(page, mode: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(mode, exact=True).click()
    settle(page)


def test_two_auditors_a_second_opinion_and_an_adjudication(app_server):
    from playwright.sync_api import expect

    url, store = app_server
    queue = store.audit_queue(QueueFilter(run_id=1, order="oldest"))
    with chromium() as browser:
        ada, bob = _open(browser, url, "ada"), _open(browser, url, "bob")  # both sessions open at once
        _rate(ada, "11111")
        _queue(bob, "second opinion")
        expect(bob.get_by_text("Item 1 of 5", exact=False)).to_be_visible(timeout=15000)
        assert store.audit_queue(QueueFilter(run_id=1, order="oldest", mode=QueueMode.SECOND_OPINION,
                                             auditor="bob")) == queue[:5]
        expect(bob.get_by_text("Also rated by 1 other auditor(s)")).to_be_visible()  # but not what ada said
        _rate(bob, "13131", total=5)
        # Both labels of each item are stored, each under its auditor.
        for i, attempt in enumerate(queue[:5]):
            labels = {who: rating for who, rating, _ in store.audit_item(attempt).labels}
            assert labels == {"ada": "sound", "bob": "wrong" if i in (1, 3) else "sound"}

        _queue(bob, "to adjudicate")
        expect(bob.get_by_text("Item 1 of 2", exact=False)).to_be_visible(timeout=15000)
        expect(bob.get_by_text("Ratings: ada: sound; bob: wrong").first).to_be_visible()
        assert store.audit_queue(QueueFilter(run_id=1, order="oldest", mode=QueueMode.ADJUDICATE)) == [queue[1], queue[3]]
        _rate(bob, "2", total=2)
        adjudication = store.audit_item(queue[1], adjudicating=True)
        assert (adjudication.rating, adjudication.auditor, adjudication.adjudicated) == ("flawed", "bob", True)

        bob.get_by_text("What the audits say", exact=True).click()
        expect(bob.get_by_text("Rated differently: 2")).to_be_visible(timeout=30000)
        bob.get_by_text("Kept rationales only", exact=True).click()  # the adjudicated one was not kept
        settle(bob)
        expect(bob.get_by_text("the adjudicated label where a rationale has one (1 here)", exact=False)).to_be_visible(
            timeout=15000)
        share = sound_share(store, 1, kept_only=False)
        # 5 of ada's, 5 of bob's, one item adjudicated: its two labels give way to the adjudication.
        assert int(share.audited.sum()) == 9 and int(share.adjudicated.sum()) == 1 and int(share.flawed.sum()) == 1
        bob.screenshot(path="/tmp/issue20_audit_stats.png", full_page=True)

        # Two more auditors on the same three rationales at the same time, key for key in turn.
        start = queue[10]
        cy, dee = (_open_at(browser, url, who, start) for who in ("cy", "dee"))
        for n, (cy_key, dee_key) in enumerate(zip("123", "332"), start=2):
            for page, key in ((cy, cy_key), (dee, dee_key)):
                page.get_by_role("heading", name="Audit rationales").click()
                settle(page)
                page.keyboard.press(key)
            for page in (cy, dee):
                expect(page.get_by_text(f"Item {10 + n} of")).to_be_visible(timeout=15000)
        for attempt, want in zip(queue[10:13], [("sound", "wrong"), ("flawed", "wrong"), ("wrong", "flawed")]):
            labels = {who: rating for who, rating, _ in store.audit_item(attempt).labels}
            assert (labels["cy"], labels["dee"]) == want
