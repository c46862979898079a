"""An audit key never disappears without a word: one pressed for an item the page has already left says so."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app_helpers import assert_no_error
from audit_seed import seed
from pages._ui import NAV_KEY

ROOT = Path(__file__).resolve().parents[2]


def test_a_key_for_an_item_the_page_has_left_is_refused_with_a_cue(tmp_path, monkeypatch):
    path = tmp_path / "keys.duckdb"
    store, _ = seed(path)
    monkeypatch.setenv("STAR_DB", str(path))
    at = AppTest.from_file(str(ROOT / "pages" / "audit.py"), default_timeout=60)
    at.session_state[NAV_KEY] = True
    at.query_params["order"] = "oldest"
    at.query_params["auditor"] = "ada"
    at.run()
    assert_no_error(at)
    first = int(at.session_state["a_item"])
    at.button(key="a_rate_sound").click().run()
    second = int(at.session_state["a_item"])
    assert second != first and store.audit_item(first).rating == "sound" and not at.error

    # As when a key arrives before the page has redrawn: the page has already moved (here back to the
    # first item, as K does), while the key's button was last drawn for the second.
    at.session_state["a_item"] = first
    at.button(key="a_rate_wrong").click().run()
    assert_no_error(at)
    notices = [w.value.replace("\\", "") for w in at.warning]
    assert any(f"that key was for #{second}" in w and f"moved on to #{first}" in w for w in notices), notices
    assert not at.error  # a key that arrived late is told, not shown as a failure
    assert store.audit_item(second).rating is None  # nothing saved on an item the key was not meant for
    assert store.audit_item(first).rating == "sound"

    at.button(key="a_rate_wrong").click().run()  # pressed again: it applies to the item shown
    assert store.audit_item(first).rating == "wrong" and not at.error
