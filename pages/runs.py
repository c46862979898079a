"""Runs: start a run from a form generated from RunConfig, and watch it live.

A run started here runs in a background worker process (star_core.runtime.jobs); one started
with `star run` shows up the same way, because both write their progress to the store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from pages import _ui as ui
from star_core.runtime import jobs
from star_core.engine import run_queue
from star_core.core.config import Group
from star_core.core.errors import ConfigError, StarError
from star_core.engine.prepare import prepare_run, shown_defaults
from star_core.core.presets import paper_experiment_preset, preset_names, presets_for
from star_core.core.settings_spec import NO_QUEUE_HELP, SETTINGS, form_values, sections, widget
from star_core.analysis.present import duration, pct
from star_core.analysis.run_models import model_lines, run_models
from star_core.core.states import Phase, RunStatus

POLL_S = 2.0
ERRORS_KEY = "run_form_errors"
STARTS_KEY = "run_form_starts"  # this session's _Starts
START_POLL_S = 1.0  # how often a page drawn while another rerun creates a run looks for its outcome


# --- the form ---------------------------------------------------------------------


def start_form(store) -> None:
    shown_in_form = {title: [n for n in names if n != "task"] for title, names in sections().items()}
    errors: dict[str, str] = st.session_state.get(ERRORS_KEY, {})
    sets = store.list_exemplar_sets()
    # NAME = its latest version; NAME@VERSION = that version (a run freezes the version it uses).
    exemplar_sets = list(dict.fromkeys(list(sets.name) + list(sets.label))) if not sets.empty else []
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
    previous = st.session_state.get("cfg_form_shown")
    if previous is not None and tuple(previous) != (task, preset):  # a field the choice changes shows its new value
        before = shown_defaults(*previous)
        for name in SETTINGS:
            if name != "task" and before[name] != shown[name]:
                st.session_state.pop(f"cfg_{name}", None)
    st.session_state["cfg_form_shown"] = (task, preset)
    values = {"task": task}
    starts = _starts()
    generation = starts.generation
    # Enter in a field only confirms its value: otherwise typing a value and Enter in five fields made five runs.
    with st.form("new_run", enter_to_submit=False):
        st.caption("Every setting of a run, with the defaults of `star run` and the task's suggestions filled in. "
                   "Hover a label's (?) for what it does.")
        for title, names in shown_in_form.items():
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
    if not submitted:
        return
    _start(store, starts, values, shown, preset, generation, queue=not no_queue)


def _exemplars_text(ref: str) -> str:
    return ref or "the task's default exemplars"


@dataclass
class _Outcome:
    """What one Start did: the run it stored (if any), and the messages for the form."""

    run_id: int | None = None
    errors: dict = field(default_factory=dict)
    finished: bool = False


class _Starts:
    """One session's Starts, safe between two reruns of the session that run at once.

    A click while the page's script runs starts the next rerun in a new thread at once; the old one
    goes on until its next Streamlit call (where it stops). So two reruns can both see a form's Start
    pressed. This object lives in the session's state; its generation and `underway` change only
    under its lock, with no Streamlit call inside (one can stop the thread midway): one rerun spends
    the generation and creates the run, the other draws the page (with Start disabled). The creating
    rerun writes the outcome into `underway` (its `finished` last), not to session state, so it
    survives that thread being stopped, and whichever rerun comes next shows it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.generation = 0
        self.underway: _Outcome | None = None  # the Start being acted on, until a draw has shown its outcome

    def spend(self, generation: int) -> _Outcome | None:
        """The outcome to fill in if this rerun may act on the form's Start; None if another already did."""
        with self._lock:
            if generation != self.generation or self.underway is not None:
                return None
            self.generation += 1
            self.underway = _Outcome()
            return self.underway

    def finished(self) -> _Outcome | None:
        with self._lock:
            return self.underway if self.underway is not None and self.underway.finished else None

    def shown(self, outcome: _Outcome) -> None:
        with self._lock:
            if self.underway is outcome:
                self.underway = None


_STARTS_LOCK = threading.Lock()


def _starts() -> _Starts:
    with _STARTS_LOCK:  # two reruns of a new session at once must share one
        if STARTS_KEY not in st.session_state:
            st.session_state[STARTS_KEY] = _Starts()
        return st.session_state[STARTS_KEY]


def _start(store, starts: _Starts, values: dict, shown: dict, preset: str | None, generation: int,
           queue: bool) -> None:
    """Create the run the form describes and launch its worker, once per form generation."""
    values = form_values(values)
    given = {k: v for k, v in values.items() if k == "task" or v != shown[k]}  # what the user changed
    outcome = starts.spend(generation)
    if outcome is None:
        return  # the other click of a double click: the rerun that spent the Start shows what it did
    with st.spinner("Checking the model and preparing the problems…"):
        _create(store, outcome, given, preset, queue)  # no Streamlit call inside: nothing can stop it midway
    st.rerun()  # the next draw shows the outcome (_show_outcome)


def _create(store, outcome: _Outcome, given: dict, preset: str | None, queue: bool) -> None:
    """Store the run and launch its worker (jobs.start), recording what happened in `outcome`."""
    try:
        outcome.run_id = jobs.start(store, prepare_run(given, preset).config, queue=queue)
    except ConfigError as exc:  # InvalidSettings carries every invalid field
        outcome.errors = exc.field_messages()
    except jobs.WorkerStartError as exc:  # stored, but pending without a worker: show it, with Start
        outcome.run_id, outcome.errors = exc.run_id, {"": str(exc)}
    except StarError as exc:  # e.g. an exemplar set that does not exist: not one field's fault
        outcome.errors = {"": str(exc)}
    except BaseException as exc:
        outcome.errors = {"": f"the run was not started: {type(exc).__name__}: {exc}"}
        raise
    finally:
        outcome.finished = True


def _show_outcome(starts: _Starts) -> None:
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


def _await_start(starts: _Starts) -> None:
    """Drawn while another rerun of this session creates a run: look for its outcome until there is one."""
    if starts.underway is None:
        return
    st.info("Starting the run: checking the model and preparing the problems…", icon=":material/hourglass_top:")

    @st.fragment(run_every=START_POLL_S)
    def poll() -> None:
        if starts.finished() is not None:
            st.rerun(scope="app")

    poll()


# --- watching a run ---------------------------------------------------------------

IDLE_POLL_S = 5.0  # a run that is not active is still looked at: a resume elsewhere or a new run shows within seconds
FLASH_KEY = "runs_flash"  # what a button did, shown on the next draw (a callback cannot draw)
FLASH_S = 10.0  # how long a refusal stays on the page (it is redrawn every POLL_S)
QUIET_S = 15.0  # an active run silent for longer gets a note (one fine-tuning step can take a minute)


def _is_active(store, run_id: int, status: str) -> bool:
    return status in (RunStatus.RUNNING, RunStatus.QUEUED) or (
        status == RunStatus.PENDING and jobs.worker_starting(store, run_id))


def watch(store, run_id: int) -> None:
    run = store.get_run(run_id)
    active = _is_active(store, run_id, run.status)
    known = frozenset(store.run_labels())

    @st.fragment(run_every=POLL_S if active else None)
    def live() -> None:
        with ui.guard():
            _live_view(store, run_id, was_active=active, known_runs=known)

    live()
    if not active:
        # Still looking, cheaply: a run resumed or started elsewhere (`star run`, another tab) shows without a reload.
        @st.fragment(run_every=IDLE_POLL_S)
        def idle() -> None:
            with ui.guard():
                _notice_changes(store, run_id, was_active=False, known_runs=known)

        idle()


def _notice_changes(store, run_id: int, was_active: bool, known_runs: frozenset) -> None:
    run = store.get_run(run_id)
    if _is_active(store, run_id, run.status) != was_active or frozenset(store.run_labels()) != known_runs:
        st.rerun(scope="app")  # it started or ended, or a run appeared: redraw the page (run list, polling)


def _flash(run_id: int, text: str, error: bool = False) -> None:
    st.session_state[FLASH_KEY] = (run_id, time.monotonic(), text, error, False)


def _show_flash(run_id: int) -> None:
    """A button's outcome: a toast once for what it did, an error for a while for what it could not do."""
    flash = st.session_state.get(FLASH_KEY)
    if not flash or flash[0] != run_id:
        return
    _, at, text, error, toasted = flash
    if error and time.monotonic() - at < FLASH_S:
        st.error(ui.md_escape(text), icon=":material/block:")
    if not toasted:
        st.toast(ui.md_escape(text), icon=":material/block:" if error else ":material/check:")
        st.session_state[FLASH_KEY] = (run_id, at, text, error, True)


# Buttons act in callbacks: they run before the page's script, so a click is applied even when the
# page's own refresh interrupts the run it triggered (an `if st.button()` body can be skipped then).


def _on_cancel(store, run_id: int) -> None:
    queued = store.get_run(run_id).status == RunStatus.QUEUED
    try:
        jobs.cancel(store, run_id)
    except StarError as exc:
        _flash(run_id, f"Run {run_id} was not cancelled: {exc}", error=True)
    else:
        _flash(run_id, f"Run {run_id} leaves the queue" if queued else
               f"Cancelling run {run_id}: it stops after its current batch or fine-tuning step")


def _on_resume(store, run_id: int, label: str) -> None:
    try:
        jobs.resume(store, run_id)
    except StarError as exc:
        _flash(run_id, f"Run {run_id} did not {label.lower()}: {exc}", error=True)
    else:
        doing = {"Start": "starting", "Resume": "resuming"}.get(label, label.lower())
        _flash(run_id, f"Run {run_id} {doing} (it waits for a free slot if another run has it)")


def _live_view(store, run_id: int, was_active: bool, known_runs: frozenset = frozenset()) -> None:
    run = store.get_run(run_id)
    starting = run.status == RunStatus.PENDING and jobs.worker_starting(store, run_id)
    died_early = run.status == RunStatus.PENDING and jobs.worker_died_early(store, run_id)
    never_started = run.status == RunStatus.PENDING and jobs.never_launched(store, run_id)
    active = run.status in (RunStatus.RUNNING, RunStatus.QUEUED) or starting
    if active != was_active or (known_runs and frozenset(store.run_labels()) != known_runs):
        st.rerun(scope="app")  # it started or ended, or a run appeared: redraw the page (run list, polling)
    rows = store.list_runs()
    row = rows[rows.id == run_id].iloc[0]
    cancelling = active and not starting and store.cancel_requested(run_id)
    _show_flash(run_id)

    head, buttons = st.columns([4, 2])
    planned = int(row.iterations_planned) if pd.notna(row.iterations_planned) else run.config.iterations
    place = run_queue.position(store, run_id) if run.status == RunStatus.QUEUED else None
    with head:
        shown = ("starting" if starting else "crashed" if died_early else "not started" if never_started
                 else "cancelling" if cancelling else run.status)
        state = ui.status_badge(shown) + (f" {run_queue.ordinal(place)} in the queue" if place else "")
        st.markdown(f"{state} · " + ui.md_escape(f"{run.config.task} on {run.config.model} · "
                                                 f"{int(row.iterations_done)}/{planned} iterations done"))
    with buttons:
        _buttons(store, run_id, run.status, active, died_early, cancelling)

    phase, done, total = row.cur_phase, row.phase_done, row.phase_total
    running = run.status == RunStatus.RUNNING
    if running and isinstance(phase, str) and pd.notna(total) and total:
        st.progress(min(1.0, float(done) / float(total)),
                    text=f"Iteration {int(row.cur_iteration)} · {phase}: {int(done)}/{int(total)}")
        _quiet_note(row, phase)
    elif starting:
        st.progress(0.0, text="Starting the worker…")
    if run.status == RunStatus.QUEUED:
        _queued_note(run, place, cancelling)
    metrics = st.columns(7)
    metrics[0].metric("Iteration", f"{int(row.cur_iteration)}/{planned}" if pd.notna(row.cur_iteration) else "–")
    metrics[1].metric("Phase", phase if isinstance(phase, str) else ("finished" if run.status == RunStatus.DONE else "–"))
    metrics[2].metric("Done", f"{int(done)}/{int(total)}" if pd.notna(total) and isinstance(phase, str) else "–")
    metrics[3].metric("Tokens/s", f"{row.tokens_per_s:,.0f}" if pd.notna(row.tokens_per_s) and running else "–")
    metrics[4].metric("ETA (phase)", duration(row.eta_s) if running else "–")
    metrics[5].metric("Loss", _running_loss(store, run_id, row) if running and phase == Phase.FINETUNE else "–",
                      help="Fine-tuning loss, mean of the last 5 steps stored (written about every 2 s)")
    metrics[6].metric("Latest accuracy", pct(row.latest_accuracy),
                      help=f"Eval accuracy of the latest evaluated iteration; baseline {pct(row.baseline_accuracy)}, "
                           f"best {pct(row.best_accuracy)}")

    _models(store, run_id)

    if run.status == RunStatus.FAILED:
        st.error("The run failed. Its attempts so far are stored; fix the cause and resume it.")
        st.code(run.error or "(no error recorded)", language=None, wrap_lines=True)
    elif run.status == RunStatus.CRASHED or died_early:
        who = f"pid {run.pid} on {run.host}" if run.pid else "its worker"
        st.error(ui.md_escape(f"The run's worker process ({who}) died without recording why (killed, out of memory, or the "
                              "machine restarted). Everything stored so far is kept: resume it to continue."))
    elif never_started:
        st.warning("No worker was ever started for this run: its start was cut short, its worker could not be "
                   "launched, or it was stored by an older version. Nothing has run yet; Start runs it in a "
                   "background worker.", icon=":material/play_circle:")
    elif run.status == RunStatus.CANCELLED:
        st.info(ui.md_escape("Cancelled. Resume continues from the last stored batch (fine-tuning from its last saved "
                             "step)." + (f" ({run.error})" if run.error else "")))

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
        with st.expander("Worker log", expanded=(run.status in (RunStatus.FAILED, RunStatus.CRASHED) or died_early)):
            st.code(log, language=None)


def _models(store, run_id: int) -> None:
    """Which iteration's model is the best and which the latest, and whether each checkpoint is on disk."""
    models = run_models(store.finished_iterations(run_id))
    if models is None:
        return
    lines = "  \n".join(ui.md_escape(line) for line in model_lines(models))
    st.markdown(f"**Models**  \n{lines}",
                help=ui.md_escape("A run keeps the checkpoints of its best iteration (highest eval accuracy, the "
                                  "earliest of a tie) and its latest. Export the best with: star export --model "
                                  f"--db {store.path} --run {run_id} --out DIR"))


def _queued_note(run, place: int | None, cancelling: bool) -> None:
    if cancelling:
        st.info("Leaving the queue…")
        return
    if place is None:
        st.info(ui.md_escape(f"Queued on {run.host}: it starts there when a slot frees."))
        return
    busy = ", ".join(f"run {h.get('run_id')} of {Path(str(h.get('db', '?'))).name}" for h in run_queue.holders())
    st.info(ui.md_escape(f"Waiting for a free slot on this machine: {run_queue.ordinal(place)} in the queue"
                         + (f" ({busy} running)" if busy else "") + ". It starts by itself, before loading a model; "
                         "Cancel takes it out of the queue."), icon=":material/hourglass_top:")


def _quiet_note(row, phase: str) -> None:
    """Progress is written between batches and steps; one can be slow on a busy machine: say it is still going."""
    if row.progress_age_s is None or pd.isna(row.progress_age_s):
        return
    quiet = float(row.progress_age_s)
    if quiet > QUIET_S:
        what = "fine-tuning step" if phase == Phase.FINETUNE else "batch"
        st.caption(f"Last progress {duration(quiet)} ago: the next {what} is still being computed "
                   "(slow when other processes share the cores).")


def _running_loss(store, run_id: int, row) -> str:
    steps = store.train_steps([run_id])
    steps = steps[(steps.iteration == row.cur_iteration) & steps.loss.notna()]
    return f"{steps.loss.tail(5).mean():.3f}" if not steps.empty else "–"


def _buttons(store, run_id: int, status: str, active: bool, died_early: bool, cancelling: bool) -> None:
    cols = st.columns(2)
    if active:
        queued = status == RunStatus.QUEUED
        cols[0].button("Cancel", key=f"cancel_{run_id}", icon=":material/stop:", disabled=cancelling,
                       on_click=_on_cancel, args=(store, run_id),
                       help="Takes the run out of the queue." if queued else
                       "Stops after the current batch or fine-tuning step; resume continues from there.")
    elif status != RunStatus.DONE:
        label = "Start" if status == RunStatus.PENDING and not died_early else "Resume"
        cols[0].button(label, key=f"resume_{run_id}", icon=":material/play_arrow:", type="primary",
                       on_click=_on_resume, args=(store, run_id, label),
                       help="Runs in a background worker; it waits its turn if another run has this machine's slot.")
    cols[1].page_link("pages/browse.py", label="Browse", icon=":material/search:", query_params={"run": run_id})


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
    starts = _starts()
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
