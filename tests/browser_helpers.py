"""What the browser tests share: the app served by `streamlit run app.py` on a loopback port, and
Debian's Chromium driven by Playwright (installed by scripts/install.sh --test)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def require_browser() -> None:
    """Skip the test, saying what to install, where Playwright or Chromium is missing."""
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(db: Path, log: Path):
    """The app on database `db`, its output in `log`; yields its URL once it answers, stops it afterwards."""
    port = _free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=dict(os.environ, STAR_DB=str(db)), stdout=out, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("streamlit did not start:\n" + log.read_text())
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def chromium():
    """A Chromium browser, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def settle(page) -> None:
    """Wait until the app is not running a script (a key pressed mid-run may be dropped by the browser side)."""
    from playwright.sync_api import expect

    time.sleep(0.3)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30000)


@contextlib.contextmanager
def runs_page(server: str):
    """Chromium on the app's Runs page, its form drawn; closed afterwards."""
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # the first Start imports torch in the server
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(60_000)
        page.goto(server + "/runs")
        expect(page.get_by_label("Model", exact=True)).to_be_visible()
        time.sleep(0.3)
        yield page
