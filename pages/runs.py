"""Runs: start a run from a form generated from RunConfig, and watch it live.

A run started here runs in a background worker process (star_core.runtime.jobs); one started
with `star run` shows up the same way, because both write their progress to the store.
"""

from __future__ import annotations

import streamlit as st

from pages import _runs_live, _ui as ui
from star_core.runtime import jobs, run_form, run_view
from star_core.core.config import Group
from star_core.core.errors import StarError
from star_core.engine.prepare import shown_defaults
from star_core.core.presets import paper_experiment_preset, preset_names, presets_for
from star_core.core.settings_spec import NO_QUEUE_HELP, SETTINGS, widget

ERRORS_KEY = "run_form_errors"
STARTS_KEY = "run_form_starts"  # this session's run_form.Starts
START_POLL_S = 1.0  # how often a page drawn while another rerun creates a run looks for its outcome


# --- the form ---------------------------------------------------------------------


def start_form(store) -> None:
    errors: dict[str, str] = st.session_state.get(ERRORS_KEY, {})
    exemplar_sets = run_form.exemplar_choices(store.list_exemplar_sets())
    # The task is chosen outside the form: choosing one redraws the form with that task's suggested values
    # (gsm8k's longer rationales) filled in, so what the form shows is what the run gets.
    task = widget(st, "task", SETTINGS["task"].default, key="cfg_task")
    # A preset (presets.py) is chosen the same way: the form then shows its values, and what is changed overrides them.
    presets = [""] + presets_for(task)
    if st.session_state.get("cfg_preset") not in presets:  # a preset made for another task
        st.session_state.pop("cfg_preset", None)
    preset = st.selectbox("Preset", presets, key="cfg_preset", format_func=lambda p: p or "none: the defaults",
                          help="A named set of settings (star run --preset NAME); the form shows its values, and a "
                               "value you change overrides the preset's.") or None
    shown = shown_defaults(task, preset)
    for name in run_form.stale_fields(st.session_state.get("cfg_form_shown"), (task, preset)):
        st.session_state.pop(f"cfg_{name}", None)  # a field the choice changes shows its new value
    st.session_state["cfg_form_shown"] = (task, preset)
    values = {"task": task}
    starts = run_form.session_starts(st.session_state, STARTS_KEY)
    generation = starts.generation
    # Enter in a field only confirms its value: otherwise typing a value and Enter in five fields made five runs.
    with st.form("new_run", enter_to_submit=False):
        st.caption("Every setting of a run, with the defaults of `star run` and the task's suggestions filled in. "
                   "Hover a label's (?) for what it does.")
        for title, names in run_form.form_sections().items():
            if not names:
                continue
            box = st.container() if title == Group.RUN else st.expander(title, expanded=any(n in errors for n in names))
            with box:
                cols = st.columns(3)
                for i, name in enumerate(names):
                    with cols[i % 3]:
                        # The sets stored in this database (Exemplars page).
                        stored = ({"options": [""] + exemplar_sets, "format_func": _exemplars_text}
                                  if name == "exemplars" and exemplar_sets else {})
                        values[name] = widget(st, name, shown[name], key=f"cfg_{name}", **stored)
                        if name in errors:
                            st.error(ui.md_escape(errors[name]), icon=":material/error:")
        if "" in errors:
            st.error(ui.md_escape(errors[""]), icon=":material/error:")
        no_queue = st.checkbox("Start without waiting in the queue", key="cfg_no_queue", help=NO_QUEUE_HELP)
        # The key carries the form's generation, which the Start acted on spends: a second click on the same
        # form (a double click) comes with the spent button's key, which the next draw no longer has.
        submitted = st.form_submit_button("Start", type="primary", key=f"start_run_{generation}",
                                          disabled=starts.underway is not None)
    if "task" in errors:
        st.error(ui.md_escape(errors["task"]), icon=":material/error:")
    if submitted:
        _start(store, starts, run_form.given_values(values, shown), preset, generation, queue=not no_queue)


def _exemplars_text(ref: str) -> str:
    return ref or "the task's default exemplars"


def _start(store, starts: run_form.Starts, given: dict, preset: str | None, generation: int, queue: bool) -> None:
    """Create the run the form describes and launch its worker, once per form generation."""
    outcome = starts.spend(generation)
    if outcome is None:
        return  # the other click of a double click: the rerun that spent the Start shows what it did
    with st.spinner("Checking the model and preparing the problems…"):
        run_form.create(store, outcome, given, preset, queue)  # no Streamlit call inside: nothing can stop it midway
    st.rerun()  # the next draw shows the outcome (_show_outcome)


def _show_outcome(starts: run_form.Starts) -> None:
    """Show what the session's last Start did: its errors under the form, its run below (once)."""
    outcome = starts.finished()
    if outcome is None:
        return
    st.session_state[ERRORS_KEY] = outcome.errors
    if outcome.run_id is not None:
        st.query_params["run"] = str(outcome.run_id)
        if not outcome.errors:
            st.toast(f"Run {outcome.run_id} started")
    starts.shown(outcome)  # last: a draw stopped before this point leaves it for the next one


def _await_start(starts: run_form.Starts) -> None:
    """Drawn while another rerun of this session creates a run: look for its outcome until there is one."""
    if starts.underway is None:
        return
    st.info("Starting the run: checking the model and preparing the problems…", icon=":material/hourglass_top:")

    @st.fragment(run_every=START_POLL_S)
    def poll() -> None:
        if starts.finished() is not None:
            st.rerun(scope="app")

    poll()


# --- page -------------------------------------------------------------------------


def experiment_controls(store) -> None:
    """The paper's comparison (star experiment paper): its five arms, one after another, in a background worker."""
    from star_core.engine import experiments

    with st.expander("Run the paper's comparison", icon=":material/science:"):
        st.caption("Five runs on the same problems and eval questions, one after another: few-shot answer only, "
                   "few-shot with rationales, direct fine-tuning, STaR without rationalization, STaR. Each arm that "
                   "trains gets the same fine-tuning steps per iteration. The Experiments page shows the table and "
                   "the figure; each arm also shows here as a run.")
        names = [""] + preset_names()
        default = paper_experiment_preset() or ""
        cols = st.columns(2)
        preset = cols[0].selectbox("Preset", names, index=names.index(default) if default in names else 0,
                                   key="exp_preset", format_func=lambda p: p or "none: the defaults",
                                   help="The settings every arm gets (star experiment paper --preset NAME).")
        seed = cols[1].number_input("Seed", min_value=0, value=0, step=1, key="exp_seed",
                                    help="Decides the problems, the splits, sampling and fine-tuning of every arm.")
        if st.button("Run the paper's comparison", key="exp_start", icon=":material/science:"):
            try:
                with st.spinner("Checking the model and preparing the problems of every arm…"):
                    experiment_id = experiments.create_experiment(store, {"seed": int(seed)}, preset or None)
                    jobs.launch_experiment(store, experiment_id)
            except StarError as exc:
                st.error(ui.md_escape(str(exc)))
            else:
                st.toast(f"Experiment {experiment_id} started")
        st.page_link("pages/experiments.py", label="Experiments", icon=":material/science:")


def main() -> None:
    st.title("Runs")
    store = ui.get_store()
    starts = run_form.session_starts(st.session_state, STARTS_KEY)
    _show_outcome(starts)
    runs = store.list_runs()
    with st.expander("Start a new run", expanded=runs.empty or bool(st.session_state.get(ERRORS_KEY)), icon=":material/add:"):
        start_form(store)
    _await_start(starts)
    experiment_controls(store)
    if runs.empty:
        st.info("No runs yet. Start one above, or from a terminal:")
        st.code(f"star run --db {store.path}", language=None)
        return
    labels = store.run_labels()
    ids = sorted(labels, reverse=True)  # newest first
    # The URL's ?run= picks the run when it changes (a link from another page); the picker then
    # rewrites the URL, so a reload stays on the run being watched.
    wanted = ui.query_run()
    picked = run_view.picked_run(ids, wanted, st.session_state.get("runs_url_run"),
                                 st.session_state.get("run_picker"), st.session_state.get("watch_run"))
    if picked is not None:
        st.session_state["run_picker"] = picked
    run_id = st.selectbox("Run", ids, format_func=labels.get, key="run_picker")
    st.session_state["watch_run"] = run_id
    st.session_state["runs_url_run"] = run_id
    if wanted != run_id:
        st.query_params["run"] = str(run_id)
    _runs_live.watch(store, run_id)


ui.require_app("pages/runs.py")
with ui.guard():
    main()
