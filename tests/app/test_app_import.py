"""The pages on imported runs: Browse, Trajectories, Compare, Accuracy, Exemplars and the Overview's import section
read a run `star import` made (tests/engine/test_import.py says how each fixture was made) without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_helpers import open_page, texts
from star_core.engine.importing import import_run
from star_core.store import Store

DATA = Path(__file__).resolve().parents[1] / "data" / "import"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "imported.duckdb"
    store = Store(path).init()
    assert import_run(store, "trl-grpo", DATA / "trl", task="arithmetic").run_id == 1
    assert import_run(store, "verl", DATA / "verl").run_id == 2
    return path


def no_error(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_browse_shows_the_completions_with_our_verdicts(db, monkeypatch):
    at = open_page("pages/browse.py", monkeypatch, db, query={"run": "1"})
    no_error(at)
    shown = at.dataframe[0].value
    assert len(shown) == 32 and set(shown.iteration) == {1, 2}
    assert "**32** attempts match" in texts(at)


def test_trajectories_follow_each_prompt_over_the_steps(db, monkeypatch):
    at = open_page("pages/trajectories.py", monkeypatch, db, query={"run": "1"})
    no_error(at)
    assert "its training questions are shown" in texts(at)
    table = next(d.value for d in at.dataframe if "question" in d.value.columns)
    assert sorted(table.question) == ["12 + 5", "23 + 41", "3 + 4", "8 + 9"]


def test_compare_pairs_two_steps_of_a_grpo_run(db, monkeypatch):
    at = open_page("pages/compare.py", monkeypatch, db, query={"a": "1@1", "b": "1@2"})
    no_error(at)
    assert any(m.label == "Accuracy A" for m in at.metric)


def test_accuracy_shows_the_reward_beside_the_share_right(db, monkeypatch):
    at = open_page("pages/accuracy.py", monkeypatch, db, query={"run": "1"})
    no_error(at)
    assert "Imported runs: right completions and reward by step" in texts(at)


def test_the_overview_imports_from_a_path(tmp_path, monkeypatch):
    path = tmp_path / "new.duckdb"
    Store(path).init()
    at = open_page(None, monkeypatch, path)
    at.selectbox(key="import_format").set_value("verl")
    at.text_input(key="import_path").set_value(str(DATA / "verl"))
    form_submit = [b for b in at.button if b.label == "Import"]
    form_submit[0].click().run()
    no_error(at)
    assert any("14 completions" in s.value for s in at.success)
    assert Store(path).imported_run(1).format == "verl"


def test_exemplars_builds_a_set_from_an_audited_rationale_of_an_imported_run(db, monkeypatch):
    store = Store(db)
    chosen = 2
    assert store.attempts_for_exemplars([chosen]).rationale[0].startswith("3 + 4 = 7")  # right, steps verified
    store.save_audit(chosen, "sound", [], "", "ada")
    at = open_page("pages/exemplars.py", monkeypatch, db)
    no_error(at)
    pick = at.multiselect(key="e_aud_pick_None")
    assert pick.value == [chosen] and "3 + 4" in pick.format_func(chosen)
    next(b for b in at.button if b.key == "e_aud_create").click().run()
    no_error(at)
    s = store.find_exemplar_set("curated")
    assert (s.task, [it.source_attempt_id for it in s.items], s.items[0].question) == ("arithmetic", [chosen], "3 + 4")
