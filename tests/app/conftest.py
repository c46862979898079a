"""What the app's browser tests share: the app served on an empty database, or on one with a run to audit."""

from __future__ import annotations

import pytest

from audit_seed import seed
from browser_helpers import require_browser, serve_app


@pytest.fixture
def server(tmp_path):
    """The url of `streamlit run app.py` on a new, empty database."""
    require_browser()
    with serve_app(tmp_path / "browser.duckdb", tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def app_server(tmp_path):
    """(url, store) of `streamlit run app.py` on a seeded database (no model)."""
    require_browser()
    db = tmp_path / "browser.duckdb"
    store, run_id = seed(db)
    with serve_app(db, tmp_path / "streamlit.log") as url:
        yield url, store
