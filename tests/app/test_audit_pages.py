"""The Audit and Exemplars pages through streamlit.testing (AppTest): label, relabel, filter, build, freeze, version."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_helpers import assert_no_crash, assert_no_error, page, unescaped
from audit_seed import seed
import star_core.engine.exemplars as ex
from star_core.core.config import RunConfig
from star_core.store import ExemplarItem, QueueFilter

TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    path = tmp_path / "pages.duckdb"
    store, run_id = seed(path)
    monkeypatch.setenv("STAR_DB", str(path))
    return store, run_id


def current_item(at) -> int:
    return int(at.query_params["item"][0] if isinstance(at.query_params["item"], list) else at.query_params["item"])


def test_label_then_change_it_keeps_history(seeded):
    store, _ = seeded
    at = page("audit", order="oldest")
    assert_no_error(at)
    first = current_item(at)
    at.button(key="a_rate_sound").click().run()
    assert_no_crash(at)
    assert len(at.error) == 1 and "auditor" in at.error[0].value.lower()  # no name, nothing saved
    assert store.audit_item(first).rating is None
    at.text_input(key="a_auditor").input("ada").run()
    at.multiselect(key=f"a_tags_{first}").select("skips a step").run()
    at.text_area(key=f"a_note_{first}").input("short but right").run()
    at.button(key="a_rate_sound").click().run()
    assert_no_error(at)
    assert (store.audit_item(first).rating, store.audit_item(first).tags) == ("sound", ["skips a step"])
    assert current_item(at) != first  # moved on
    at.button(key="a_prev").click().run()
    assert current_item(at) == first
    at.button(key="a_rate_wrong").click().run()
    item = store.audit_item(first)
    assert (item.rating, item.note, item.revisions) == ("wrong", "short but right", 2)
    assert list(store.audit_history(first).rating) == ["wrong", "sound"]
    assert "Audited 1 of 32" in " ".join(c.value for c in at.caption)


def test_filters_narrow_the_queue_and_survive_in_the_url(seeded):
    store, run_id = seeded
    at = page("audit", auditor="ada")
    at.selectbox(key="a_kind").set_value("rationalized").run()
    at.checkbox(key="a_cu").check().run()
    assert_no_error(at)
    expected = store.audit_queue(QueueFilter(run_id=run_id, kind="rationalized", correct_unverified=True))
    assert f"of {len(expected)}" in at.markdown[0].value and current_item(at) in expected
    assert at.query_params["kind"] in ("rationalized", ["rationalized"])
    at.checkbox(key="a_un").check().run()
    at.button(key="a_rate_flawed").click().run()
    assert store.audit_item(expected[0]).rating == "flawed"
    reloaded = page("audit", **{k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()})
    assert reloaded.text_input(key="a_auditor").value == "ada"
    assert reloaded.selectbox(key="a_kind").value == "rationalized"
    assert f"of {len(expected) - 1}" in reloaded.markdown[0].value  # unaudited only, rebuilt on reload


def test_what_the_audits_say(seeded):
    store, _ = seeded
    for a in store.audit_queue(QueueFilter(kept=True)):
        store.save_audit(a, "sound", ["skips a step"], "", "ada")
    at = page("audit", view="What the audits say")
    assert_no_error(at)
    assert [s.value for s in at.subheader][:4] == ["Share rated sound", "Step verifier vs human ratings",
                                                  "Agreement between auditors", "Rationales flagged by tag"]
    # Every kept rationale is rated sound: per iteration, the 4 sound self-generated ones and the 2 sound
    # rationalized ones (audit_seed), each at 100%.
    table = next(d.value for d in at.dataframe if "sound_share" in d.value.columns)
    assert sorted(zip(table.iteration, table.kind, table.audited, table.kept, table.sound_share)) == [
        (1, "generated", 4, 4, "100%"), (1, "rationalized", 2, 2, "100%"),
        (2, "generated", 4, 4, "100%"), (2, "rationalized", 2, 2, "100%")]


def test_build_a_set_from_sound_rationales_then_freeze_and_version(seeded):
    store, _ = seeded
    sound = store.audit_queue(QueueFilter(kept=True, order="oldest"))[:3]
    for a in sound:
        store.save_audit(a, "sound", [], "", "ada")
    at = page("exemplars")
    at.text_input(key="e_aud_name").input("curated").run()
    at.button(key="e_aud_create").click().run()
    assert_no_error(at)
    s = store.find_exemplar_set("curated")
    assert s.label == "curated@1" and [it.source_attempt_id for it in s.items] == sound and not s.frozen
    assert "All 3 exemplars pass" in at.success[-1].value
    # Edit in place while not frozen.
    at.button(key=f"e_{s.id}_1_up").click().run()
    assert [it.source_attempt_id for it in store.exemplar_set(s.id).items] == [sound[1], sound[0], sound[2]]
    # A run uses it: frozen; an edit makes version 2 and the run keeps version 1.
    run_id = store.create_run(RunConfig(exemplars="curated"))
    store.use_exemplar_set(run_id, s.id)
    at = page("exemplars", set="curated@1")
    assert any("Frozen" in w.value for w in at.warning)
    at.text_area(key=f"e_{s.id}_0_r").input(store.exemplar_set(s.id).items[0].rationale + " ").run()
    at.button(key=f"e_{s.id}_0_save").click().run()
    assert_no_error(at)
    v2 = store.find_exemplar_set("curated")
    assert v2.label == "curated@2" and store.run_exemplar_set_id(run_id) == s.id
    assert store.exemplar_set(s.id).items[0].rationale == s.items[1].rationale  # the run's text is untouched
    assert "saved as curated@2" in at.success[0].value


def test_an_invalid_exemplar_is_rejected_with_a_clear_reason(seeded):
    store, _ = seeded
    set_id = ex.create_set(store, "hand", "arithmetic", [ExemplarItem("2 + 5", "2 + 5 = 7.", "7")])
    at = page("exemplars", set="hand@1")
    at.text_area(key=f"e_add_{set_id}_q").input("31 + 24")
    at.text_area(key=f"e_add_{set_id}_r").input("31 + 24 = 50 + 6 = 56.")
    at.text_input(key=f"e_add_{set_id}_a").input("55")
    at.button[[b.label for b in at.button].index("Add exemplar")].click().run()
    assert_no_crash(at)
    assert len(at.error) == 1, [unescaped(e.value) for e in at.error]
    assert "step 1 '50 + 6' makes 56, not 55" in unescaped(at.error[0].value)  # shown as text: escaped Markdown
    assert len(store.exemplar_set(set_id).items) == 1


def test_malformed_jsonl_import_names_the_line_and_imports_nothing(seeded):
    store, _ = seeded
    at = page("exemplars")
    assert_no_error(at)
    at.text_input(key="e_imp_name").input("imported").run()
    good = ex.to_jsonl([ExemplarItem("2 + 5", "2 + 5 = 7.", "7")])
    at.file_uploader(key="e_imp_file").set_value(("mine.jsonl", (good + "{oops\n").encode(), "application/jsonl")).run()
    at.button(key="e_imp_go").click().run()
    assert_no_crash(at)
    errors = [unescaped(e.value) for e in at.error]
    assert len(errors) == 1 and "mine.jsonl:2: not valid JSON" in errors[0] and "nothing was imported" in errors[0], errors
    assert store.list_exemplar_sets().empty
    # The same file without its bad line imports, and the page says so.
    at.file_uploader(key="e_imp_file").set_value(("mine.jsonl", good.encode(), "application/jsonl")).run()
    at.button(key="e_imp_go").click().run()
    assert_no_error(at)
    imported = store.find_exemplar_set("imported")
    assert [it.question for it in imported.items] == ["2 + 5"]
    assert any(f"Imported {imported.label}" in unescaped(s.value) for s in at.success), [s.value for s in at.success]


def test_the_auditor_and_filters_survive_a_visit_to_another_page(seeded):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/audit.py").run()
    at.text_input(key="a_auditor").input("ada").run()
    at.selectbox(key="a_kind").set_value("rationalized").run()
    at.switch_page("pages/exemplars.py").run()
    at.switch_page("pages/audit.py").run()
    assert_no_error(at)
    assert at.text_input(key="a_auditor").value == "ada"
    assert at.selectbox(key="a_kind").value == "rationalized"


def test_the_queue_opens_on_the_newest_run_that_has_rationales(seeded):
    store, run_id = seeded
    queued = store.create_run(RunConfig(name="queued behind it"))  # newer, but nothing written yet
    at = page("audit", order="oldest")
    assert_no_error(at)
    assert at.selectbox(key="a_run").value == run_id != queued
    assert store.audit_item(current_item(at)).run_id == run_id


@pytest.fixture
def short_page_wait(monkeypatch):
    """The pages give up on a busy file after 0.5 s instead of 20 (their store is made again, and after the test)."""
    import pages._ui as ui

    monkeypatch.setattr(ui, "LOCK_TIMEOUT_S", 0.5)
    ui._store.clear()
    yield
    ui._store.clear()


def test_a_label_the_busy_database_could_not_take_is_kept_in_the_form_until_saved(seeded, short_page_wait):
    """Another process holding the file (an open `duckdb -readonly` session is enough) past the page's wait: the
    page says the label was not saved and keeps rating, tags and note, and Retry saves them once the file is free."""
    import subprocess
    import sys

    store, _ = seeded
    at = page("audit", order="oldest")
    first = current_item(at)
    at.text_input(key="a_auditor").input("ada").run()
    at.multiselect(key=f"a_tags_{first}").select("skips a step").run()
    at.text_area(key=f"a_note_{first}").input("short but right").run()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('held', flush=True); time.sleep(120)", str(store.db.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        at.button(key="a_rate_flawed").click().run()
        assert not at.exception
        assert [e.value for e in at.error if "Not saved" in e.value], [e.value for e in at.error]
        assert current_item(at) == first  # stayed on the item
        assert any("Flawed" in w.value and "Not saved yet" in w.value for w in at.warning)
        assert at.multiselect(key=f"a_tags_{first}").value == ["skips a step"]
        assert at.text_area(key=f"a_note_{first}").value == "short but right"
    finally:
        holder.kill()
        holder.wait()
    assert store.audit_item(first).rating is None  # it really was not saved
    at.button(key="a_retry").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    item = store.audit_item(first)
    assert (item.rating, item.tags, item.note, item.auditor) == ("flawed", ["skips a step"], "short but right", "ada")
    assert not [w for w in at.warning if "Not saved yet" in w.value]
    assert current_item(at) != first  # moved on, as a saved label does
