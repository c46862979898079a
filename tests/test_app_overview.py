"""The overview (app.py): runs with status and accuracy, the open database, opening another."""

from __future__ import annotations

from app_helpers import finished_run_db, open_page, texts


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
    assert not at.exception and not at.error
    assert at.session_state["db_path"] == str(db)
    table = at.dataframe[0].value
    assert list(table["run"]) == [1] and table["status"][0] == "done"
    assert table["iterations"][0] == "2/2" and table["latest"][0].endswith("%")
    links = [p.proto.page for p in at.get("page_link")]
    assert any("browse" in link for link in links) and any("accuracy" in link for link in links)

    # A folder is not a database file: the page says so and keeps the open one.
    at.text_input(key="db_input").set_value(str(tmp_path))
    at.button[0].click().run()
    assert not at.exception
    assert any("is a folder" in e.value for e in at.error)
    assert at.session_state["db_path"] == str(db)
