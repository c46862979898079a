"""End to end in a real browser: `streamlit run app.py` on a loopback port, driven by Playwright
in Debian's Chromium. Start a tiny run, wait for it to finish, open a rationale, see the chart."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from browser_helpers import runs_page

pytestmark = pytest.mark.slow


def test_start_watch_browse_and_plot_in_chromium(server, tmp_path, tiny_model):
    from playwright.sync_api import expect

    with runs_page(server) as page:
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)  # the page's script has finished
        page.get_by_label("Model", exact=True).fill(tiny_model)
        for label, value in (("Training questions", "6"), ("Eval questions", "4"), ("Iterations", "1")):
            page.get_by_label(label, exact=True).fill(value)
        page.get_by_text("Decoding", exact=True).click()
        page.get_by_label("Max. new tokens", exact=True).fill("8")
        page.get_by_label("Max. new tokens", exact=True).press("Tab")
        page.get_by_role("button", name="Start", exact=True).click()

        # Live progress, then done, without reloading the page.
        expect(page.get_by_text("Newest rationales")).to_be_visible()
        expect(page.get_by_text("finished", exact=True)).to_be_visible(timeout=240_000)
        expect(page.get_by_text("1/1 iterations done")).to_be_visible()
        page.screenshot(path=str(tmp_path / "runs.png"))

        page.get_by_role("link", name="Browse", exact=True).click()
        expect(page.get_by_text("attempts match")).to_be_visible()
        page.get_by_label("Open attempt (or select a row above)").click()
        option = page.get_by_role("option").nth(1)
        attempt = option.inner_text().split(" ")[0]  # "#19"
        option.click()
        expect(page.get_by_role("heading", name=f"Attempt {attempt}")).to_be_visible()
        # The attempt's own "Rationale" heading (column headers of the tables say it too).
        expect(page.get_by_role("strong").filter(has_text=re.compile(r"^Rationale$"))).to_be_visible()
        expect(page.get_by_text("Side by side: this question's rationales")).to_be_visible()
        page.screenshot(path=str(tmp_path / "browse.png"))

        page.get_by_role("link", name="Accuracy").first.click()
        expect(page.get_by_text("Held-out accuracy, overall")).to_be_visible()
        expect(page.locator(".js-plotly-plot").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "accuracy.png"))
        assert page.get_by_text("Traceback").count() == 0
    shots = os.environ.get("STAR_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for name in ("runs.png", "browse.png", "accuracy.png"):
            shutil.copy(tmp_path / name, Path(shots) / f"e2e_{name}")
