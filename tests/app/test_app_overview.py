"""The overview (app.py): runs with status and accuracy, the open database, opening another."""

from __future__ import annotations

from app_helpers import assert_no_crash, assert_no_error, finished_run_db, open_page, texts


def test_empty_database_renders_and_points_to_the_runs_page(tmp_path, monkeypatch):
    at = open_page(None, monkeypatch, tmp_path / "new.duckdb")
    assert at.title[0].value == "STaR Studio"
    assert any("No runs in this database yet" in i.value for i in at.info)
    assert str(tmp_path / "new.duckdb") in texts(at)  # which file is open
    assert not at.error


def test_lists_runs_and_opens_another_database(tmp_path, tmp_path_factory, monkeypatch, tiny_model):
    db = finished_run_db(tmp_path_factory, tiny_model, tmp_path / "runs.duckdb")
    at = open_page(None, monkeypatch, tmp_path / "empty.duckdb")
    assert not at.dataframe

    at.text_input(key="db_input").set_value(str(db))
    at.button[0].click().run()  # the form's Open button
    assert_no_error(at)
    assert at.session_state["db_path"] == str(db)
    table = at.dataframe[0].value
    assert list(table["run"]) == [1] and table["status"][0] == "done"
    assert table["iterations"][0] == "2/2" and table["latest"][0].endswith("%")
    links = [p.proto.page for p in at.get("page_link")]
    assert any("browse" in link for link in links) and any("accuracy" in link for link in links)

    # A folder is not a database file: the page says so and keeps the open one.
    at.text_input(key="db_input").set_value(str(tmp_path))
    at.button[0].click().run()
    assert_no_crash(at)
    assert any("is a folder" in e.value for e in at.error)
    assert at.session_state["db_path"] == str(db)


def test_pages_are_thin_and_the_engine_has_no_streamlit():
    import ast
    import re

    from app_helpers import ROOT

    for path in sorted((ROOT / "star_core").rglob("*.py")):
        # Module-level imports only: `star app` launches streamlit from inside its command.
        body = ast.parse(path.read_text()).body
        imported = {alias.name.split(".")[0] for node in body if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in body if isinstance(node, ast.ImportFrom)}
        assert "streamlit" not in imported, f"{path} imports streamlit"
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.+\b(FROM|INTO|SET|WHERE)\b")
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|duckdb)\b", text, re.M), f"{path} imports torch or duckdb"
        if path.stem in ("runs", "browse", "accuracy", "_ui", "app"):
            assert not sql.search(text), f"{path} has SQL"


def test_a_locked_database_shows_a_message_not_a_traceback(tmp_path, monkeypatch):
    """Another process holding the file for longer than the app waits: a message on the page."""
    import subprocess
    import sys

    from app_helpers import ROOT
    from star_core.store import Store

    db = tmp_path / "locked.duckdb"
    Store(db).init()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)",
         str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        sys.path.insert(0, str(ROOT))
        import pages._ui as ui

        monkeypatch.setattr(ui, "LOCK_TIMEOUT_S", 0.5)
        ui._store.clear()
        at = open_page("pages/browse.py", monkeypatch, db)
        assert_no_crash(at)
        assert any("held by another process" in e.value for e in at.error), [e.value for e in at.error]
    finally:
        holder.kill()
        holder.wait()
