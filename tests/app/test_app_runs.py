"""The runs page: a form generated from RunConfig, messages beside invalid fields, a run
started in a background worker and watched live, crashed runs offered a resume."""

from __future__ import annotations

import socket

import pytest

from app_helpers import assert_no_crash, assert_no_error, open_page, texts, unescaped, wait_for
from star_core.core.config import RunConfig, field_help
from star_core.store import Store

PAGE = "pages/runs.py"


def test_form_has_every_field_prefilled_with_the_defaults(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "r.duckdb")
    defaults = RunConfig()
    for name in field_help():
        found = [w for kind in ("text_input", "number_input", "selectbox", "checkbox")
                 for w in getattr(at, kind) if w.key == f"cfg_{name}"]
        assert len(found) == 1, f"no widget for {name}"
        assert found[0].value == getattr(defaults, name), name
    assert any("No runs yet" in i.value for i in at.info)


def test_invalid_values_get_a_message_beside_the_field(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "r.duckdb")
    at.number_input(key="cfg_min_difficulty").set_value(3)
    at.number_input(key="cfg_max_difficulty").set_value(2)
    at.text_input(key="cfg_model").set_value("   ")
    at.button[0].click().run()  # Start
    assert_no_crash(at)
    errors = [unescaped(e.value) for e in at.error]
    assert any("must name a model" in e for e in errors), errors
    at.text_input(key="cfg_model").set_value(str(tmp_path / "no-such-model"))
    at.button[0].click().run()
    errors = [unescaped(e.value) for e in at.error]
    assert any("min_difficulty" in e for e in errors), errors
    assert Store(tmp_path / "r.duckdb").list_runs().empty  # nothing was started

    at.number_input(key="cfg_max_difficulty").set_value(3)
    at.button[0].click().run()
    errors = [unescaped(e.value) for e in at.error]
    assert any("no-such-model" in e for e in errors), errors  # a model that cannot be found names the field
    assert Store(tmp_path / "r.duckdb").list_runs().empty


@pytest.mark.slow
def test_start_a_run_and_watch_it_to_the_end(tmp_path, monkeypatch, tiny_model):
    db = tmp_path / "r.duckdb"
    at = open_page(PAGE, monkeypatch, db)
    for key, value in dict(cfg_model=tiny_model).items():
        at.text_input(key=key).set_value(value)
    for key, value in dict(cfg_train_size=6, cfg_eval_size=4, cfg_iterations=1, cfg_max_new_tokens=8,
                           cfg_gen_batch_size=2, cfg_min_steps=2, cfg_batch_size=2).items():
        at.number_input(key=key).set_value(value)
    at.selectbox(key="cfg_device").set_value("cpu")
    at.button[0].click().run()
    assert_no_error(at)
    store = Store(db)
    runs = store.list_runs()
    assert list(runs.id) == [1]
    assert at.query_params["run"] == ["1"] or at.query_params["run"] == "1"

    # Poll the page as its fragment would, until the run is done: progress shows on the way.
    seen = set()

    def finished():
        at.run()
        assert_no_error(at)
        page = texts(at)
        for word in ("starting", "running", "evaluate", "generate", "rationalize"):
            if word in page:
                seen.add(word)
        if at.get("progress"):
            seen.add("progress bar")
        return store.get_run(1).status in ("done", "failed", "crashed")

    wait_for(finished, what="the run to finish")
    at.run()
    assert store.get_run(1).status == "done", texts(at)
    assert seen & {"progress bar", "running", "starting"}, seen
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Iteration"] == "1/1" and metrics["Latest accuracy"].endswith("%")
    newest = at.dataframe[0].value
    assert len(newest) > 0 and {"rationale", "kind", "correct"} <= set(newest.columns)
    assert "done" in texts(at)


def test_a_crashed_run_shows_its_state_and_offers_resume(tmp_path, monkeypatch, tiny_model):
    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    from tiny import tiny_config

    run_id = store.create_run(tiny_config(tiny_model, name="crashy"))
    # As if a worker claimed it and was then killed: running, with a pid that no longer exists.
    with store.db.write() as con:
        con.execute("UPDATE runs SET status = 'running', pid = 999999999, host = ? WHERE id = ?",
                    [socket.gethostname(), run_id])
    failed = store.create_run(tiny_config(tiny_model, name="broken"))
    store.finish_run(failed, "failed", "ModelLoadError: the weights are corrupt")

    at = open_page(PAGE, monkeypatch, db, query={"run": str(run_id)})
    assert "crashed" in texts(at) and "died without recording why" in texts(at)
    assert [b.label for b in at.button if b.label == "Resume"], [b.label for b in at.button]

    at.selectbox(key="run_picker").set_value(failed).run()
    assert_no_crash(at)  # a failed run is shown with st.error
    assert "the weights are corrupt" in texts(at)
    assert [b.label for b in at.button if b.label == "Resume"]


def test_exemplar_sets_of_the_database_are_offered(tmp_path, monkeypatch):
    from star_core.store import ExemplarItem

    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    store.create_exemplar_set("mine", "arithmetic", [ExemplarItem("1 + 2", "1 + 2 = 3.", "3")])
    at = open_page(PAGE, monkeypatch, db)
    picker = at.selectbox(key="cfg_exemplars")
    assert picker.value == "" and {"mine", "mine@1"} <= set(picker.options)


def test_the_tasks_suggested_settings_apply_unless_changed(tmp_path, monkeypatch):
    from star_core.runtime import jobs
    from star_core.tasks import suggested_settings

    data = tmp_path / "gsm.jsonl"
    data.write_text("".join(
        f'{{"question": "Tom has {n} apples and buys 2 more. How many now?", "answer": "{n} + 2 = <<{n}+2={n + 2}>>{n + 2}\\n#### {n + 2}"}}\n'
        for n in range(1, 9)
    ))
    monkeypatch.setattr(jobs, "launch", lambda store, run_id, queue=True: 0)  # store the run only; no worker
    db = tmp_path / "r.duckdb"
    at = open_page(PAGE, monkeypatch, db)
    at.selectbox(key="cfg_task").set_value("gsm8k")
    at.text_input(key="cfg_data").set_value(str(data))
    for key, value in dict(cfg_train_size=4, cfg_eval_size=4).items():
        at.number_input(key=key).set_value(value)
    at.button[0].click().run()
    assert_no_error(at)
    suggested = suggested_settings("gsm8k")["max_new_tokens"]
    assert suggested != RunConfig().max_new_tokens
    assert Store(db).get_run(1).config.max_new_tokens == suggested

    at.number_input(key="cfg_max_new_tokens").set_value(50)  # a value the user chose is kept
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert Store(db).get_run(2).config.max_new_tokens == 50
    # The form shows gsm8k's suggestion; the run default (96 tokens) is a choice like any other.
    assert at.number_input(key="cfg_max_new_tokens").value == 50
    at.number_input(key="cfg_max_new_tokens").set_value(RunConfig().max_new_tokens)
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    assert Store(db).get_run(3).config.max_new_tokens == RunConfig().max_new_tokens


def test_the_form_is_not_submitted_by_enter(tmp_path, monkeypatch):
    # Enter in a field submitted the form: a value and Enter in each of five fields made five runs.
    at = open_page(PAGE, monkeypatch, tmp_path / "r.duckdb")
    forms = [node.proto.form for node in at.main if getattr(node, "type", None) == "form"]
    assert [f.form_id for f in forms] == ["new_run"]
    assert forms[0].enter_to_submit is False


def test_each_start_spends_the_forms_button_and_the_page_follows_its_run(tmp_path, monkeypatch):
    # A double click's second click carries the button the first one spent (the browser test clicks twice).
    from star_core.runtime import jobs

    monkeypatch.setattr(jobs, "launch", lambda store, run_id, queue=True: 0)  # store the run only; no worker
    db = tmp_path / "r.duckdb"
    at = open_page(PAGE, monkeypatch, db)
    spent = at.button(key="start_run_0")
    spent.click().run()
    assert_no_error(at)
    assert list(Store(db).list_runs().id) == [1]
    assert at.query_params["run"] in (["1"], "1")  # the page follows the run it started
    assert [b.key for b in at.button if b.key and b.key.startswith("start_run_")] == ["start_run_1"]

    at.button(key="start_run_1").click().run()  # a new press on the redrawn form is a new run
    assert list(Store(db).list_runs().id) == [1, 2]


def test_a_worker_that_cannot_be_started_leaves_a_run_that_says_so_and_offers_start(tmp_path, monkeypatch):
    from star_core.runtime import jobs

    def no_python(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/gone/python")

    monkeypatch.setattr(jobs, "spawn_worker", no_python)
    db = tmp_path / "r.duckdb"
    at = open_page(PAGE, monkeypatch, db)
    at.button(key="start_run_0").click().run()
    assert_no_crash(at)
    errors = [unescaped(e.value) for e in at.error]
    assert any("run 1 is stored, but its worker did not start" in e and "/gone/python" in e for e in errors), errors
    assert Store(db).get_run(1).status == "pending" and jobs.never_launched(Store(db), 1)
    # The page shows the stored run: not started, with Start.
    assert at.selectbox(key="run_picker").value == 1
    assert "not started" in texts(at) and "No worker was ever started for this run" in texts(at)
    assert [b.label for b in at.button if b.key == "resume_1"] == ["Start"]


def test_a_pending_run_that_never_had_a_worker_is_started_by_start(tmp_path, monkeypatch):
    # As an older database, or a start cut short, leaves it: pending, no worker.pid in its folder.
    from star_core.runtime import jobs

    db = tmp_path / "r.duckdb"
    run_id = Store(db).init().create_run(RunConfig(name="orphan"))
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda store, rid, queue=True: launched.append(rid) or 4242)
    at = open_page(PAGE, monkeypatch, db, query={"run": str(run_id)})
    page = texts(at)
    assert "No worker was ever started for this run" in page and "not started" in page
    assert "died without recording why" not in page
    start = [b for b in at.button if b.key == f"resume_{run_id}"]
    assert [b.label for b in start] == ["Start"]
    start[0].click().run()
    assert_no_error(at)
    assert launched == [run_id]
