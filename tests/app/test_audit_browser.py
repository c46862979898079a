"""The audit flow in a real browser: Debian's chromium driven by Playwright against `streamlit run app.py`.

Seeds a database through the store (no model), labels rationales with the keyboard
(1/2/3 rate and move on, K goes back), checks that a key typed into the note is
text and not a rating, and that a draft note and the position survive a reload.
"""

from __future__ import annotations

import re

import pytest

from browser_helpers import chromium, settle
from star_core.store import QueueFilter

pytestmark = pytest.mark.slow


def test_audit_with_the_keyboard(app_server):
    from playwright.sync_api import expect

    url, store = app_server
    queue = store.audit_queue(QueueFilter(run_id=1, order="oldest"))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/audit?order=oldest")
        expect(page.get_by_text("Item 1 of")).to_be_visible(timeout=30000)
        auditor = page.get_by_role("textbox", name="Auditor")
        auditor.fill("ada")
        auditor.press("Enter")
        title = page.get_by_role("heading", name="Audit rationales")
        title.click()  # focus leaves the text box: keys are shortcuts again
        for n, key in enumerate(["1", "2", "3"], start=2):
            settle(page)
            page.keyboard.press(key)
            expect(page.get_by_text(f"Item {n} of")).to_be_visible(timeout=15000)
        settle(page)
        page.keyboard.press("k")
        expect(page.get_by_text("Item 3 of")).to_be_visible(timeout=15000)
        assert [store.audit_item(a).rating for a in queue[:4]] == ["sound", "flawed", "wrong", None]
        assert store.audit_item(queue[0]).auditor == "ada"

        note = page.get_by_role("textbox", name="Note")
        note.click()
        page.keyboard.type("1 step is skipped")
        title.click()
        # Leaving the note reruns the page, which puts the draft in the address: that rerun comes after any
        # rating the typed "1" could have made, so once the address has it, a rating would be stored.
        expect(page).to_have_url(re.compile(r"draft=1(\+|%20)step(\+|%20)is(\+|%20)skipped"), timeout=30000)
        settle(page)
        expect(page.get_by_text("Item 3 of")).to_be_visible()  # typed text, not a rating
        assert store.audit_item(queue[2]).rating == "wrong"
        page.reload()  # a new session: position, auditor and draft note come back from the URL
        expect(page.get_by_text("Item 3 of")).to_be_visible(timeout=30000)
        expect(page.get_by_role("textbox", name="Note")).to_have_value("1 step is skipped")
        expect(page.get_by_role("textbox", name="Auditor")).to_have_value("ada")
        page.get_by_role("heading", name="Audit rationales").click()
        settle(page)
        page.keyboard.press("2")
        expect(page.get_by_text("Item 4 of")).to_be_visible(timeout=15000)
        item = store.audit_item(queue[2])
        assert (item.rating, item.note, item.revisions) == ("flawed", "1 step is skipped", 2)
