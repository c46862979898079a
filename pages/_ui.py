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

from star_core import exemplars as ex
from star_core.errors import StarError
from star_core.present import STATUS_COLORS, added_to_set_message
from star_core.store import Store
from star_core.store.exemplar_sets import ExemplarSetError

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


def exemplar_set_names(store, task: str) -> list[str]:
    """The task's set names, the most recently written first and the shipped '-default' sets last."""
    sets = store.list_exemplar_sets(task=task)
    if sets.empty:
        return []
    latest = sets.groupby("name").created_at.max()
    return sorted(latest.index, key=lambda n: (n.endswith("-default"), -latest[n].timestamp()))


def add_to_exemplar_set(store, attempt_id: int, task: str, key: str, default_name: str = "curated") -> None:
    """Pick an exemplar set of `task` (or type a new name) and add one attempt to it with a button.

    Says which set and version it landed in (a set a run used gets a new version), or why the
    exemplar was refused (the task's answer and step checks). `key` prefixes the widget keys.
    """
    names = exemplar_set_names(store, task) or [default_name]
    name_key = f"{key}_set_name"
    typed = st.session_state.get(name_key)
    if typed and typed not in names:
        names.append(typed)  # a new name typed earlier in this session
    if name_key not in st.session_state:
        st.session_state[name_key] = names[0]
    c = st.columns([3, 2, 3], vertical_alignment="bottom")
    c[0].selectbox("Exemplar set", names, key=name_key, accept_new_options=True,
                   help=f"An existing {task} set, or type a new name. The question, rationale and gold answer "
                        "are appended to the set's latest version; a set a run used gets a new version.")
    if not c[1].button("Add to exemplar set", key=f"{key}_add_to_set", icon=":material/library_add:"):
        return
    name = (st.session_state.get(name_key) or "").strip()
    with guard():
        try:
            before = store.find_exemplar_set(name)
        except ExemplarSetError:
            before = None
        try:
            set_id = ex.add_attempts_to_set(store, name, [attempt_id])
        except StarError as exc:
            st.error(f"Not added: {exc}")
            return
        st.success(added_to_set_message(name, before, store.exemplar_set(set_id), attempt_id))
