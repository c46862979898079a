"""The Runs page's logic without Streamlit: the new-run form's Start (star_core.runtime.run_form) and what the
live view of one run shows (star_core.runtime.run_view), tested directly, without an app."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from star_core.core.errors import RunStateError, StarError
from star_core.core.states import Phase, RunStatus
from star_core.engine.prepare import shown_defaults
from star_core.runtime import jobs, run_form, run_view


def test_the_modules_run_without_streamlit():
    code = ("import sys; import star_core.runtime.run_form, star_core.runtime.run_view; "
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the form ----------------------------------------------------------------------


def test_the_form_has_every_field_but_the_task():
    fields = [n for names in run_form.form_sections().values() for n in names]
    assert "task" not in fields and {"model", "iterations", "exemplars"} <= set(fields)


def test_exemplar_choices_name_each_set_and_each_version_once():
    sets = pd.DataFrame({"name": ["mine", "mine", "yours"], "label": ["mine@1", "mine@2", "yours@1"]})
    assert run_form.exemplar_choices(sets) == ["mine", "yours", "mine@1", "mine@2", "yours@1"]
    assert run_form.exemplar_choices(sets.iloc[0:0]) == []


def test_a_task_change_resets_only_the_fields_whose_shown_value_it_changes():
    before, after = shown_defaults("arithmetic"), shown_defaults("gsm8k")
    changed = [n for n in before if n != "task" and before[n] != after[n]]
    assert changed  # gsm8k suggests longer rationales
    assert run_form.stale_fields(("arithmetic", None), ("gsm8k", None)) == changed


def test_no_field_is_reset_on_the_first_draw_or_without_a_change():
    assert run_form.stale_fields(None, ("gsm8k", None)) == []
    assert run_form.stale_fields(("gsm8k", None), ("gsm8k", None)) == []
    assert run_form.stale_fields(["gsm8k", None], ("gsm8k", None)) == []  # as session state may hand it back


def test_a_preset_change_resets_the_fields_it_sets():
    plain, preset = shown_defaults("arithmetic"), shown_defaults("arithmetic", "paper-arithmetic")
    differ = {n for n in plain if n != "task" and plain[n] != preset[n]}
    assert differ and set(run_form.stale_fields(("arithmetic", None), ("arithmetic", "paper-arithmetic"))) == differ


def test_given_values_are_the_task_and_what_the_user_changed():
    shown = shown_defaults("arithmetic")
    values = {"task": "arithmetic", "iterations": shown["iterations"] + 1, "name": f"  {shown['name'] or ''}  ",
              "train_size": shown["train_size"]}
    given = run_form.given_values(values, shown)
    assert given == {"task": "arithmetic", "iterations": shown["iterations"] + 1}


# --- Start, once per click ---------------------------------------------------------


def test_a_start_spends_its_generation_once():
    starts = run_form.Starts()
    outcome = starts.spend(0)
    assert outcome is not None and starts.generation == 1 and starts.underway is outcome
    assert starts.spend(0) is None  # the double click's second click
    assert starts.spend(1) is None  # a new form's click while the first run is still being created
    assert starts.finished() is None  # not finished: nothing to show yet
    outcome.finished = True
    assert starts.finished() is outcome
    starts.shown(outcome)
    assert starts.underway is None and starts.finished() is None
    assert starts.spend(1) is not None and starts.generation == 2


def test_showing_an_older_outcome_leaves_the_one_underway():
    starts = run_form.Starts()
    first = starts.spend(0)
    first.finished = True
    starts.shown(first)
    second = starts.spend(1)
    starts.shown(first)
    assert starts.underway is second


class _SlowStarts(run_form.Starts):
    """Starts slow to read its generation, so that reruns acting on one click at once overlap in spend()."""

    @property
    def generation(self) -> int:
        time.sleep(0.01)
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = value


def test_of_reruns_that_see_the_same_click_at_once_one_creates_the_run():
    starts = _SlowStarts()
    barrier = threading.Barrier(8)
    got = []

    def rerun():
        barrier.wait()
        got.append(starts.spend(0))

    threads = [threading.Thread(target=rerun) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o is not None for o in got) == 1 and starts.generation == 1


class _SlowState(dict):
    """Session state slow to answer a lookup, so that a second rerun looks before the first has stored its Starts."""

    def __contains__(self, key):
        found = super().__contains__(key)
        time.sleep(0.05)
        return found


def test_two_reruns_of_a_new_session_share_one_starts():
    state, got = _SlowState(), []
    threads = [threading.Thread(target=lambda: got.append(run_form.session_starts(state, "k"))) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert len({id(s) for s in got}) == 1 and state["k"] is got[0]
    assert run_form.session_starts(state, "k") is got[0]


def _create(monkeypatch, start, given=None) -> run_form.Outcome:
    monkeypatch.setattr(jobs, "start", start)
    outcome = run_form.Outcome()
    run_form.create(object(), outcome, given or {"task": "arithmetic"}, None, queue=True)
    return outcome


def test_create_records_the_run_it_started(monkeypatch):
    seen = {}
    outcome = _create(monkeypatch, lambda store, config, queue: seen.update(config=config, queue=queue) or 7,
                      {"task": "arithmetic", "iterations": 2})
    assert (outcome.run_id, outcome.errors, outcome.finished) == (7, {}, True)
    assert seen["config"].iterations == 2 and seen["queue"] is True


def test_create_puts_each_invalid_setting_beside_its_field(monkeypatch):
    outcome = _create(monkeypatch, lambda *a, **k: pytest.fail("an invalid run is not started"),
                      {"task": "arithmetic", "iterations": -1})
    assert outcome.run_id is None and outcome.finished and set(outcome.errors) == {"iterations"}


def test_a_stored_run_whose_worker_did_not_start_is_named_with_the_error(monkeypatch):
    def start(*a, **k):
        raise jobs.WorkerStartError(5, "run 5 is stored, but its worker did not start")

    outcome = _create(monkeypatch, start)
    assert outcome.run_id == 5 and outcome.errors == {"": "run 5 is stored, but its worker did not start"}


def test_another_refusal_is_the_forms_error(monkeypatch):
    def start(*a, **k):
        raise StarError("no exemplar set 'gone'")

    outcome = _create(monkeypatch, start)
    assert outcome.run_id is None and outcome.errors == {"": "no exemplar set 'gone'"} and outcome.finished


def test_an_unexpected_error_is_raised_and_still_finishes_the_outcome(monkeypatch):
    def start(*a, **k):
        raise KeyError("boom")

    monkeypatch.setattr(jobs, "start", start)
    outcome = run_form.Outcome()
    with pytest.raises(KeyError):
        run_form.create(object(), outcome, {"task": "arithmetic"}, None, queue=False)
    assert outcome.finished and outcome.errors == {"": "the run was not started: KeyError: 'boom'"}


# --- one run's state ---------------------------------------------------------------


@pytest.mark.parametrize("state, shown, action", [
    (run_view.RunState(RunStatus.RUNNING), "running", "Cancel"),
    (run_view.RunState(RunStatus.RUNNING, cancelling=True), "cancelling", "Cancel"),
    (run_view.RunState(RunStatus.QUEUED, place=2), "queued", "Cancel"),
    (run_view.RunState(RunStatus.PENDING, starting=True), "starting", "Cancel"),
    (run_view.RunState(RunStatus.PENDING, died_early=True), "crashed", "Resume"),
    (run_view.RunState(RunStatus.PENDING, never_started=True), "not started", "Start"),
    (run_view.RunState(RunStatus.CANCELLED), "cancelled", "Resume"),
    (run_view.RunState(RunStatus.FAILED), "failed", "Resume"),
    (run_view.RunState(RunStatus.DONE), "done", None),
])
def test_what_a_run_shows_and_which_button_it_gets(state, shown, action):
    assert (state.shown, state.action) == (shown, action)
    assert state.active == (action == "Cancel")


def test_a_queued_runs_place_and_a_broken_runs_log():
    assert run_view.RunState(RunStatus.QUEUED, place=2).place_text == " 2nd in the queue"
    assert run_view.RunState(RunStatus.QUEUED).place_text == ""
    assert [run_view.RunState(s, died_early=d).broke for s, d in [
        (RunStatus.FAILED, False), (RunStatus.CRASHED, False), (RunStatus.PENDING, True), (RunStatus.CANCELLED, False),
    ]] == [True, True, True, False]


def _fake_jobs(monkeypatch, starting=False, died=False, never=False, place=None):
    monkeypatch.setattr(jobs, "worker_starting", lambda store, run_id: starting)
    monkeypatch.setattr(jobs, "worker_died_early", lambda store, run_id: died)
    monkeypatch.setattr(jobs, "never_launched", lambda store, run_id: never)
    monkeypatch.setattr(run_view.run_queue, "position", lambda store, run_id: place)


def test_run_state_reads_the_worker_files_only_of_a_pending_run(monkeypatch):
    store = SimpleNamespace(cancel_requested=lambda run_id: False)
    _fake_jobs(monkeypatch, starting=True, died=True, never=True)
    assert run_view.run_state(store, 1, RunStatus.CANCELLED) == run_view.RunState(RunStatus.CANCELLED)
    pending = run_view.run_state(store, 1, RunStatus.PENDING)
    assert pending.starting and pending.died_early and pending.never_started


def test_an_active_run_asked_to_stop_is_cancelling_and_a_queued_one_has_its_place(monkeypatch):
    store = SimpleNamespace(cancel_requested=lambda run_id: True)
    _fake_jobs(monkeypatch, place=3)
    assert run_view.run_state(store, 1, RunStatus.QUEUED) == run_view.RunState(RunStatus.QUEUED, cancelling=True,
                                                                               place=3)
    assert run_view.run_state(store, 1, RunStatus.RUNNING).place is None
    _fake_jobs(monkeypatch, starting=True)  # a starting worker is stopped, not asked to stop
    assert not run_view.run_state(store, 1, RunStatus.PENDING).cancelling


def test_is_active(monkeypatch):
    _fake_jobs(monkeypatch, starting=False)
    assert [run_view.is_active(None, 1, s) for s in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.PENDING,
                                                     RunStatus.DONE)] == [True, True, False, False]
    _fake_jobs(monkeypatch, starting=True)
    assert run_view.is_active(None, 1, RunStatus.PENDING) and not run_view.is_active(None, 1, RunStatus.FAILED)


# --- what a button did -------------------------------------------------------------


def test_a_refusal_stays_for_a_while_and_a_success_is_only_toasted():
    refused = run_view.Flash(1, "no", error=True, at=100.0)
    assert refused.error_shown(100.0 + run_view.FLASH_S - 0.1) and not refused.error_shown(100.0 + run_view.FLASH_S)
    assert not run_view.Flash(1, "yes", at=100.0).error_shown(100.0)


def _store(status):
    return SimpleNamespace(get_run=lambda run_id: SimpleNamespace(status=status))


def test_cancel_says_what_it_did(monkeypatch):
    monkeypatch.setattr(jobs, "cancel", lambda store, run_id: None)
    queued, running = run_view.cancel(_store(RunStatus.QUEUED), 4), run_view.cancel(_store(RunStatus.RUNNING), 4)
    assert (queued.run_id, queued.text, queued.error) == (4, "Run 4 leaves the queue", False)
    assert running.text.startswith("Cancelling run 4: it stops after") and not running.error


def test_a_refused_cancel_or_resume_says_why(monkeypatch):
    def refuse(*a, **k):
        raise RunStateError("run 4 is already done")

    monkeypatch.setattr(jobs, "cancel", refuse)
    monkeypatch.setattr(jobs, "resume", refuse)
    cancel = run_view.cancel(_store(RunStatus.DONE), 4)
    assert cancel.error and cancel.text == "Run 4 was not cancelled: run 4 is already done"
    start = run_view.resume(_store(RunStatus.DONE), 4, "Start")
    assert start.error and start.text == "Run 4 did not start: run 4 is already done"


def test_resume_and_start_say_which_they_did(monkeypatch):
    monkeypatch.setattr(jobs, "resume", lambda store, run_id: 99)
    assert run_view.resume(None, 4, "Start").text == "Run 4 starting (it waits for a free slot if another run has it)"
    assert run_view.resume(None, 4, "Resume").text.startswith("Run 4 resuming")


# --- the live view's figures and notes ---------------------------------------------


def _row(**values) -> pd.Series:
    base = dict(cur_phase=None, phase_done=None, phase_total=None, cur_iteration=None, iterations_planned=None,
                tokens_per_s=None, eta_s=None, latest_accuracy=None, baseline_accuracy=None, best_accuracy=None,
                progress_age_s=None)
    return pd.Series({**base, **values}, dtype=object)


def test_progress_of_a_running_phase():
    row = _row(cur_phase="generate", phase_done=30, phase_total=40, cur_iteration=2)
    assert run_view.progress(row, RunStatus.RUNNING) == (0.75, "Iteration 2 · generate: 30/40")
    assert run_view.progress(_row(cur_phase="generate", phase_done=50, phase_total=40, cur_iteration=2),
                             RunStatus.RUNNING)[0] == 1.0
    assert run_view.progress(row, RunStatus.QUEUED) is None
    assert run_view.progress(_row(cur_phase="generate", phase_done=0, phase_total=0, cur_iteration=2),
                             RunStatus.RUNNING) is None
    assert run_view.progress(_row(phase_total=40), RunStatus.RUNNING) is None


def test_planned_iterations_as_stored_else_the_configs():
    run = SimpleNamespace(config=SimpleNamespace(iterations=6))
    assert run_view.planned_iterations(_row(iterations_planned=4.0), run) == 4
    assert run_view.planned_iterations(_row(iterations_planned=float("nan")), run) == 6


def _steps_store(losses_by_iteration):
    rows = [(it, loss) for it, losses in losses_by_iteration.items() for loss in losses]
    steps = pd.DataFrame(rows, columns=["iteration", "loss"])
    return SimpleNamespace(train_steps=lambda run_ids: steps)


def test_the_running_loss_is_the_mean_of_the_iterations_last_five_stored_losses():
    store = _steps_store({1: [9.0, 9.0], 2: [5.0, 1.0, 2.0, 3.0, 4.0, 5.0, float("nan")]})
    assert run_view.running_loss(store, 1, _row(cur_iteration=2)) == "3.000"
    assert run_view.running_loss(store, 1, _row(cur_iteration=3)) == "–"


def test_metrics_of_a_fine_tuning_run():
    row = _row(cur_phase=Phase.FINETUNE.value, phase_done=3, phase_total=10, cur_iteration=1, tokens_per_s=1234.4,
               eta_s=90.0, latest_accuracy=0.5, baseline_accuracy=0.25, best_accuracy=0.5)
    store = _steps_store({1: [2.0, 4.0]})
    shown = {label: value for label, value, _ in run_view.metrics(store, 1, row, RunStatus.RUNNING, 3)}
    assert shown["Iteration"] == "1/3" and shown["Phase"] == "finetune" and shown["Done"] == "3/10"
    assert shown["Tokens/s"] == "1,234" and shown["Loss"] == "3.000" and shown["ETA (phase)"] != "–"
    helps = {label: help_ for label, _, help_ in run_view.metrics(store, 1, row, RunStatus.RUNNING, 3)}
    assert "baseline" in helps["Latest accuracy"] and helps["Iteration"] is None


def test_metrics_of_a_finished_run_show_no_speed_or_loss():
    row = _row(cur_phase=None, cur_iteration=3, tokens_per_s=1000.0, eta_s=5.0, latest_accuracy=0.5)
    store = SimpleNamespace(train_steps=lambda run_ids: pytest.fail("a finished run's loss is not read"))
    shown = {label: value for label, value, _ in run_view.metrics(store, 1, row, RunStatus.DONE, 3)}
    assert shown["Phase"] == "finished" and shown["Done"] == "–"
    assert shown["Tokens/s"] == shown["ETA (phase)"] == shown["Loss"] == "–"


def test_a_quiet_run_gets_a_note_after_a_while():
    assert run_view.quiet_note(_row(progress_age_s=None), "generate") is None
    assert run_view.quiet_note(_row(progress_age_s=float("nan")), "generate") is None
    assert run_view.quiet_note(_row(progress_age_s=run_view.QUIET_S), "generate") is None
    assert "next batch" in run_view.quiet_note(_row(progress_age_s=run_view.QUIET_S + 1), "generate")
    assert "next fine-tuning step" in run_view.quiet_note(_row(progress_age_s=60.0), Phase.FINETUNE)


def test_a_queued_runs_note(monkeypatch):
    run = SimpleNamespace(host="box")
    monkeypatch.setattr(run_view.run_queue, "holders", lambda: [{"run_id": 3, "db": "/x/a.duckdb"}])
    leaving = run_view.RunState(RunStatus.QUEUED, cancelling=True, place=1)
    assert run_view.queue_note(run, leaving) == "Leaving the queue…"
    assert run_view.queue_note(run, run_view.RunState(RunStatus.QUEUED)).startswith("Queued on box:")
    note = run_view.queue_note(run, run_view.RunState(RunStatus.QUEUED, place=2))
    assert note.startswith("Waiting for a free slot on this machine: 2nd in the queue (run 3 of a.duckdb running).")


def test_why_a_run_is_not_going_on():
    run = SimpleNamespace(status=RunStatus.CRASHED, pid=12, host="box", error=None)
    kind, text, _ = run_view.state_note(run, run_view.RunState(RunStatus.CRASHED))
    assert kind == "error" and "(pid 12 on box) died without recording why" in text
    assert run_view.state_note(SimpleNamespace(status=RunStatus.FAILED, error="x"),
                               run_view.RunState(RunStatus.FAILED))[0] == "error"
    pending = SimpleNamespace(status=RunStatus.PENDING, pid=None, host=None, error=None)
    assert "(its worker) died" in run_view.state_note(pending, run_view.RunState(RunStatus.PENDING, died_early=True))[1]
    assert run_view.state_note(pending, run_view.RunState(RunStatus.PENDING, never_started=True))[0] == "warning"
    cancelled = SimpleNamespace(status=RunStatus.CANCELLED, error="by you")
    assert run_view.state_note(cancelled, run_view.RunState(RunStatus.CANCELLED))[1].endswith(" (by you)")
    running = SimpleNamespace(status=RunStatus.RUNNING, error=None)
    assert run_view.state_note(running, run_view.RunState(RunStatus.RUNNING)) is None


# --- the run picker ----------------------------------------------------------------


def test_the_picker_follows_a_new_url_else_keeps_the_run_watched():
    ids = [3, 2, 1]
    assert run_view.picked_run(ids, wanted=2, url_run=3, picker=3, watching=3) == 2  # a link to run 2
    assert run_view.picked_run(ids, wanted=2, url_run=2, picker=3, watching=3) is None  # the URL already followed
    assert run_view.picked_run(ids, wanted=9, url_run=3, picker=None, watching=3) == 3  # the picker lost its value
    assert run_view.picked_run(ids, wanted=None, url_run=None, picker=1, watching=3) is None
    assert run_view.picked_run(ids, wanted=None, url_run=None, picker=None, watching=9) is None
