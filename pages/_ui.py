"""What every page shares: the open database, error display, and the run picker.

Not a page itself (app.py lists the pages). Pages get the store with ``get_store()``:
the database file is chosen on the overview page and kept in the session, with the
STAR_DB environment variable (set by ``star app --db``) or ./star.duckdb as default.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path

import streamlit as st

from star_core.errors import StarError
from star_core.present import STATUS_COLORS
from star_core.store import Store

DB_KEY = "db_path"
NAV_KEY = "_star_navigation"  # set by app.py in every run of the app
REDIRECT_KEY = "_star_redirect"
# A read waits this long for a writing run to let go of the file before the page says so.
LOCK_TIMEOUT_S = 20.0


def require_app(page_file: str) -> None:
    """Make sure a page runs inside app.py's navigation.

    Right after the server starts, a first visit straight to /runs can run the page file
    alone (Streamlit's older pages/ folder mode): no sidebar navigation, no wide layout.
    Such a visit goes through app.py instead, which then opens the page asked for.
    """
    if not st.session_state.get(NAV_KEY):
        st.session_state[REDIRECT_KEY] = (page_file, {k: st.query_params[k] for k in st.query_params})
        st.switch_page("app.py")


def default_db() -> str:
    return str(Path(os.environ.get("STAR_DB") or "star.duckdb").expanduser().resolve())


def db_path() -> str:
    if DB_KEY not in st.session_state:
        st.session_state[DB_KEY] = default_db()
    return st.session_state[DB_KEY]


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    # One per file and server process; Store keeps no connection open, so it is thread-safe.
    return Store(path, lock_timeout=LOCK_TIMEOUT_S).init()


def get_store() -> Store:
    """The session's store; shows the problem and stops the page if the file cannot be opened."""
    try:
        return _store(db_path())
    except StarError as exc:
        st.error(f"Cannot open the database: {exc}")
        st.info("Open another database file on the Overview page.")
        st.stop()


def open_db(path: str) -> str:
    """Switch this session to another database file (created if missing); raises StarError if unusable."""
    resolved = str(Path(path.strip()).expanduser().resolve())
    if not path.strip():
        raise StarError("give a database file path")
    if Path(resolved).is_dir():
        raise StarError(f"{resolved} is a folder; give a .duckdb file inside it")
    _store(resolved)
    st.session_state[DB_KEY] = resolved
    return resolved


@contextlib.contextmanager
def guard():
    """Turn any error into a message on the page: never a traceback (details go to the server log)."""
    try:
        yield
    except StarError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must stay usable whatever went wrong
        print(traceback.format_exc(), file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        st.error(f"Something went wrong: {type(exc).__name__}: {first}. Reload the page to try again.")


def status_badge(status: str) -> str:
    """Markdown for a status badge."""
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{status}]"


def query_run() -> int | None:
    """The run named in the page's URL (?run=ID), if any."""
    value = st.query_params.get("run")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def sidebar_db() -> None:
    with st.sidebar:
        st.caption("Database")
        st.code(db_path(), language=None, wrap_lines=True)
