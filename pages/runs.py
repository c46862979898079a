"""Runs: start a run from a form generated from RunConfig, and watch it live.

A run started here runs in a background worker process (star_core.jobs); one started
with `star run` shows up the same way, because both write their progress to the store.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from pages import _ui as ui
from star_core import jobs
from star_core.config import field_help
from star_core.errors import ConfigError, StarError
from star_core.prepare import prepare_run, shown_defaults
from star_core.presets import presets_for
from star_core.present import duration, field_label, pct

POLL_S = 2.0
ERRORS_KEY = "run_form_errors"
# Form sections; a RunConfig field not listed here still gets a widget, under "Other".
SECTIONS = {
    "Run": ["name", "task", "model", "exemplars", "train_size", "eval_size", "min_difficulty",
            "max_difficulty", "iterations", "patience", "mode", "rationalize", "filter"],
    "Curriculum over difficulties": ["curriculum", "curriculum_threshold"],
    "Dataset file (gsm8k, commonsenseqa, jsonl)": ["data", "data_map", "answer_type", "skip_bad_lines"],
    "Filtering": ["max_kept_per_question", "keep_hint_leaks"],
    "Decoding": ["temperature", "top_p", "samples_per_question", "max_new_tokens", "gen_batch_size"],
    "Fine-tuning": ["finetune", "lora_rank", "learning_rate", "batch_size", "epochs", "min_steps", "steps", "step_growth"],
    "Machine": ["device", "seed"],
}
ACTIVE = ("running", "pending")


# --- the form ---------------------------------------------------------------------


def _widget(name: str, meta: dict, default, exemplar_sets: list[str], key: str):
    label, help_text = field_label(name), meta["help"]
    if name == "exemplars" and exemplar_sets:  # the sets stored in this database (Exemplars page)
        options = [""] + exemplar_sets
        return st.selectbox(label, options, help=help_text, key=key,
                            format_func=lambda ref: ref or "the task's default exemplars")
    if "choices" in meta:
        choices = list(meta["choices"])
        return st.selectbox(label, choices, index=choices.index(default), help=help_text, key=key)
    if isinstance(default, bool):
        return st.checkbox(label, value=default, help=help_text, key=key)
    if isinstance(default, int):
        return st.number_input(label, value=default, min_value=meta.get("min"), max_value=meta.get("max"),
                               step=1, help=help_text, key=key)
    if isinstance(default, float):
        step = 10 ** math.floor(math.log10(abs(default))) if default else 0.01
        return st.number_input(label, value=float(default), min_value=_float(meta.get("min")),
                               max_value=_float(meta.get("max")), step=float(step), format="%g", help=help_text, key=key)
    return st.text_input(label, value=str(default), help=help_text, key=key)


def _float(x):
    return None if x is None else float(x)


def start_form(store) -> None:
    meta = field_help()
    listed = [n for names in SECTIONS.values() for n in names]
    sections = {title: [n for n in names if n in meta and n != "task"] for title, names in SECTIONS.items()}
    sections["Other"] = [n for n in meta if n not in listed]
    errors: dict[str, str] = st.session_state.get(ERRORS_KEY, {})
    sets = store.list_exemplar_sets()
    # NAME = its latest version; NAME@VERSION = that version (a run freezes the version it uses).
    exemplar_sets = list(dict.fromkeys(list(sets.name) + list(sets.label))) if not sets.empty else []
    # The task is chosen outside the form: choosing one redraws the form with that task's suggested values
    # (gsm8k's longer rationales) filled in, so what the form shows is what the run gets.
    task = st.selectbox(field_label("task"), list(meta["task"]["choices"]), key="cfg_task", help=meta["task"]["help"])
    # A preset (presets.py) is chosen the same way: the form then shows its values, and what is changed overrides them.
    presets = [""] + presets_for(task)
    if st.session_state.get("cfg_preset") not in presets:  # a preset made for another task
        st.session_state.pop("cfg_preset", None)
    preset = st.selectbox("Preset", presets, key="cfg_preset", format_func=lambda p: p or "none: the defaults",
                          help="A named set of settings (star run --preset NAME); the form shows its values, and a "
                               "value you change overrides the preset's.") or None
    shown = shown_defaults(task, preset)
    previous = st.session_state.get("cfg_form_shown")
    if previous is not None and tuple(previous) != (task, preset):  # a field the choice changes shows its new value
        before = shown_defaults(*previous)
        for name in meta:
            if name != "task" and before[name] != shown[name]:
                st.session_state.pop(f"cfg_{name}", None)
    st.session_state["cfg_form_shown"] = (task, preset)
    values = {"task": task}
    with st.form("new_run"):
        st.caption("Every setting of a run, with the defaults of `star run` and the task's suggestions filled in. "
                   "Hover a label's (?) for what it does.")
        for title, names in sections.items():
            if not names:
                continue
            box = st.container() if title == "Run" else st.expander(title, expanded=any(n in errors for n in names))
            with box:
                cols = st.columns(3)
                for i, name in enumerate(names):
                    with cols[i % 3]:
                        values[name] = _widget(name, meta[name], shown[name], exemplar_sets, key=f"cfg_{name}")
                        if name in errors:
                            st.error(ui.md_escape(errors[name]), icon=":material/error:")
        if "" in errors:
            st.error(ui.md_escape(errors[""]), icon=":material/error:")
        submitted = st.form_submit_button("Start", type="primary")
    if "task" in errors:
        st.error(ui.md_escape(errors["task"]), icon=":material/error:")
    if not submitted:
        return
    values = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
    for name, value in values.items():  # number_input gives floats for float fields, ints for int fields
        if isinstance(meta[name]["default"], float) and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    given = {k: v for k, v in values.items() if k == "task" or v != shown[k]}  # what the user changed
    try:
        with st.spinner("Checking the model and preparing the problems…"):
            run_id = jobs.create_run(store, prepare_run(given, preset).config)
            jobs.launch(store, run_id)
    except ConfigError as exc:  # InvalidSettings carries every invalid field
        errors = dict(getattr(exc, "errors", {exc.field: exc.message}))
    except StarError as exc:  # e.g. an exemplar set that does not exist: not one field's fault
        errors = {"": str(exc)}
    else:
        st.session_state[ERRORS_KEY] = {}
        st.session_state["watch_run"] = run_id
        st.query_params["run"] = str(run_id)
        st.toast(f"Run {run_id} started")
        st.rerun()
    st.session_state[ERRORS_KEY] = errors
    st.rerun()


# --- watching a run ---------------------------------------------------------------


def _is_active(store, run_id: int, status: str) -> bool:
    return status == "running" or (status == "pending" and jobs.worker_starting(store, run_id))


def watch(store, run_id: int) -> None:
    run = store.get_run(run_id)
    active = _is_active(store, run_id, run.status)

    @st.fragment(run_every=POLL_S if active else None)
    def live() -> None:
        with ui.guard():
            _live_view(store, run_id, was_active=active)

    live()


def _live_view(store, run_id: int, was_active: bool) -> None:
    run = store.get_run(run_id)
    rows = store.list_runs()
    row = rows[rows.id == run_id].iloc[0]
    starting = run.status == "pending" and jobs.worker_starting(store, run_id)
    died_early = run.status == "pending" and jobs.worker_died_early(store, run_id)
    active = run.status == "running" or starting
    cancelling = run.status == "running" and store.cancel_requested(run_id)
    if was_active and not active:
        st.rerun(scope="app")  # it ended: redraw the page, polling off

    head, buttons = st.columns([4, 2])
    planned = int(row.iterations_planned) if pd.notna(row.iterations_planned) else run.config.iterations
    with head:
        shown = "starting" if starting else "crashed" if died_early else "cancelling" if cancelling else run.status
        state = ui.status_badge(shown)
        st.markdown(f"{state} · " + ui.md_escape(f"{run.config.task} on {run.config.model} · "
                                                 f"{int(row.iterations_done)}/{planned} iterations done"))
    with buttons:
        _buttons(store, run_id, run.status, active, died_early, cancelling)

    phase, done, total = row.cur_phase, row.phase_done, row.phase_total
    if active and isinstance(phase, str) and pd.notna(total) and total:
        st.progress(min(1.0, float(done) / float(total)),
                    text=f"Iteration {int(row.cur_iteration)} · {phase}: {int(done)}/{int(total)}")
    elif starting:
        st.progress(0.0, text="Starting the worker: loading the model…")
    metrics = st.columns(6)
    metrics[0].metric("Iteration", f"{int(row.cur_iteration)}/{planned}" if pd.notna(row.cur_iteration) else "–")
    metrics[1].metric("Phase", phase if isinstance(phase, str) else ("finished" if run.status == "done" else "–"))
    metrics[2].metric("Done", f"{int(done)}/{int(total)}" if pd.notna(total) and isinstance(phase, str) else "–")
    metrics[3].metric("Tokens/s", f"{row.tokens_per_s:,.0f}" if pd.notna(row.tokens_per_s) and active else "–")
    metrics[4].metric("ETA (phase)", duration(row.eta_s) if active else "–")
    metrics[5].metric("Latest accuracy", pct(row.latest_accuracy),
                      help=f"Eval accuracy of the latest evaluated iteration; baseline {pct(row.baseline_accuracy)}, "
                           f"best {pct(row.best_accuracy)}")

    if run.status == "failed":
        st.error("The run failed. Its attempts so far are stored; fix the cause and resume it.")
        st.code(run.error or "(no error recorded)", language=None, wrap_lines=True)
    elif run.status == "crashed" or died_early:
        who = f"pid {run.pid} on {run.host}" if run.pid else "its worker"
        st.error(ui.md_escape(f"The run's worker process ({who}) died without recording why (killed, out of memory, or the "
                              "machine restarted). Everything stored so far is kept: resume it to continue."))
    elif run.status == "cancelled":
        st.info(ui.md_escape("Cancelled. Resume continues from the last stored batch." + (f" ({run.error})" if run.error else "")))

    st.markdown("**Newest rationales**")
    newest = store.newest_attempts(run_id, 8)
    if newest.empty:
        st.caption("None yet: they appear here as the model writes them.")
    else:
        st.dataframe(newest, hide_index=True, width="stretch", column_config={
            "attempt_id": st.column_config.NumberColumn("id", width="small"),
            "question": st.column_config.TextColumn(width="medium"),
            "rationale": st.column_config.TextColumn(width="large"),
        })
    log = jobs.log_tail(store, run_id, 30)
    if log:
        with st.expander("Worker log", expanded=(run.status in ("failed", "crashed") or died_early)):
            st.code(log, language=None)


def _buttons(store, run_id: int, status: str, active: bool, died_early: bool, cancelling: bool) -> None:
    cols = st.columns(2)
    if active:
        if cols[0].button("Cancel", key=f"cancel_{run_id}", icon=":material/stop:", disabled=cancelling,
                          help="Stops after the current batch or fine-tuning step; resume continues from there."):
            try:
                jobs.cancel(store, run_id)
                st.toast(f"Cancelling run {run_id} after its current batch…")
            except StarError as exc:
                st.error(ui.md_escape(str(exc)))
    elif status != "done":
        label = "Start" if status == "pending" and not died_early else "Resume"
        if cols[0].button(label, key=f"resume_{run_id}", icon=":material/play_arrow:", type="primary"):
            try:
                jobs.resume(store, run_id)
            except StarError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                st.toast(f"Run {run_id} resumed")
                st.rerun(scope="app")
    cols[1].page_link("pages/browse.py", label="Browse", icon=":material/search:", query_params={"run": run_id})


# --- page -------------------------------------------------------------------------


def main() -> None:
    st.title("Runs")
    store = ui.get_store()
    runs = store.list_runs()
    with st.expander("Start a new run", expanded=runs.empty or bool(st.session_state.get(ERRORS_KEY)), icon=":material/add:"):
        start_form(store)
    if runs.empty:
        st.info("No runs yet. Start one above, or from a terminal: `star run --db " + str(store.path) + "`.")
        return
    labels = store.run_labels()
    ids = sorted(labels, reverse=True)  # newest first
    # The URL's ?run= picks the run when it changes (a link from another page); the picker then
    # rewrites the URL, so a reload stays on the run being watched.
    wanted = ui.query_run()
    if wanted in ids and st.session_state.get("runs_url_run") != wanted:
        st.session_state["run_picker"] = wanted
    elif st.session_state.get("run_picker") not in ids and st.session_state.get("watch_run") in ids:
        st.session_state["run_picker"] = st.session_state["watch_run"]
    run_id = st.selectbox("Run", ids, format_func=labels.get, key="run_picker")
    st.session_state["watch_run"] = run_id
    st.session_state["runs_url_run"] = run_id
    if wanted != run_id:
        st.query_params["run"] = str(run_id)
    watch(store, run_id)


ui.require_app("pages/runs.py")
with ui.guard():
    main()
