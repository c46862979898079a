"""Helpers for the app's tests: a database holding one finished tiny run, built once per
test session and copied for each test, and an AppTest opened on a page."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
_BUILT: dict[str, Path] = {}


def finished_run_db(tmp_path_factory, tiny_model: str, dest: Path) -> Path:
    """A copy (at `dest`) of a database with one finished 2-iteration tiny run (run id 1)."""
    if "db" not in _BUILT:
        from star_core.engine.loop import execute_run
        from star_core.engine.prepare import create_run
        from star_core.store import Store

        path = tmp_path_factory.mktemp("finished") / "finished.duckdb"
        store = Store(path).init()
        run_id = create_run(store, tiny_config(tiny_model, iterations=2, filter="answer", name="tiny finished"))
        execute_run(store, run_id)
        _BUILT["db"] = path
    shutil.copy(_BUILT["db"], dest)
    return dest


def page(name: str, **query) -> AppTest:
    """Run pages/<name>.py alone, with `query` as its URL parameters (STAR_DB names the database)."""
    from pages._ui import NAV_KEY

    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)
    at.session_state[NAV_KEY] = True  # as if app.py's navigation ran (the page alone, for speed)
    for key, value in query.items():
        at.query_params[key] = str(value)
    return at.run()


def open_page(page: str | None, monkeypatch, db: Path, query: dict | None = None, timeout: float = 60) -> AppTest:
    """Run app.py on `db` and switch to `page` (None = the overview)."""
    monkeypatch.setenv("STAR_DB", str(db))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert_no_crash(at)
    return at


# How pages/_ui.py's guard() shows an exception that is not a StarError (a bug, not the user's input).
CRASH_TEXT = "Something went wrong"


def assert_no_error(at: AppTest) -> None:
    """The page raised nothing and shows no error element. ui.guard() catches a page's exceptions and shows
    them with st.error, so `at.exception` alone cannot see a page crash."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [unescaped(e.value) for e in at.error]


def assert_no_crash(at: AppTest) -> None:
    """For a page that rightly shows an error (bad input, a failed run): it raised nothing, and none of its
    error elements is guard()'s report of an unexpected exception."""
    assert not at.exception, [e.value for e in at.exception]
    crashes = [unescaped(e.value) for e in at.error if CRASH_TEXT in unescaped(e.value)]
    assert not crashes, crashes


def texts(at: AppTest) -> str:
    """Every markdown, caption, code, text, info and error string on the page, joined."""
    parts = []
    for kind in ("markdown", "caption", "code", "text", "info", "error", "warning", "success", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def wait_for(predicate, timeout: float = 240.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def unescaped(markdown: str) -> str:
    """Text as a reader sees it in a Markdown body that pages escaped with ui.md_escape."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown.replace("  \n", "\n"))


def one_error_line(err: str, *phrases: str) -> None:
    """What a command said on stderr is one `error:` line, no traceback, naming each of `phrases`."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
