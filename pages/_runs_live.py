"""The Runs page's live view of one run: its state, buttons, progress and figures, redrawn while it runs.

Not a page itself; the figures and notes come from star_core.runtime.run_view.
"""

from __future__ import annotations

import time

import streamlit as st

from pages import _ui as ui
from star_core.analysis.run_models import model_lines, run_models
from star_core.core.states import RunStatus
from star_core.runtime import jobs, run_view

POLL_S = 2.0
IDLE_POLL_S = 5.0  # a run that is not active is still looked at: a resume elsewhere or a new run shows within seconds
FLASH_KEY = "runs_flash"  # what a button did (run_view.Flash), shown on the next draw


def watch(store, run_id: int) -> None:
    run = store.get_run(run_id)
    active = run_view.is_active(store, run_id, run.status)
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
    if run_view.is_active(store, run_id, run.status) != was_active or frozenset(store.run_labels()) != known_runs:
        st.rerun(scope="app")  # it started or ended, or a run appeared: redraw the page (run list, polling)


def _show_flash(run_id: int) -> None:
    flash: run_view.Flash | None = st.session_state.get(FLASH_KEY)
    if not flash or flash.run_id != run_id:
        return
    if flash.error_shown(time.monotonic()):
        st.error(ui.md_escape(flash.text), icon=":material/block:")
    if not flash.toasted:
        st.toast(ui.md_escape(flash.text), icon=":material/block:" if flash.error else ":material/check:")
        flash.toasted = True


# Buttons act in callbacks: they run before the page's script, so a click is applied even when the
# page's own refresh interrupts the run it triggered (an `if st.button()` body can be skipped then).
def _act(action, *args) -> None:
    st.session_state[FLASH_KEY] = action(*args)


def _live_view(store, run_id: int, was_active: bool, known_runs: frozenset = frozenset()) -> None:
    run = store.get_run(run_id)
    state = run_view.run_state(store, run_id, run.status)
    if state.active != was_active or (known_runs and frozenset(store.run_labels()) != known_runs):
        st.rerun(scope="app")  # it started or ended, or a run appeared: redraw the page (run list, polling)
    rows = store.list_runs()
    row = rows[rows.id == run_id].iloc[0]
    _show_flash(run_id)

    head, buttons = st.columns([4, 2])
    planned = run_view.planned_iterations(row, run)
    with head:
        st.markdown(f"{ui.status_badge(state.shown)}{state.place_text} · " + ui.md_escape(
            f"{run.config.task} on {run.config.model} · {int(row.iterations_done)}/{planned} iterations done"))
    with buttons:
        _buttons(store, run_id, state)

    progress = run_view.progress(row, run.status)
    if progress:
        st.progress(progress[0], text=progress[1])
        note = run_view.quiet_note(row, row.cur_phase)
        if note:
            st.caption(note)
    elif state.starting:
        st.progress(0.0, text="Starting the worker…")
    if run.status == RunStatus.QUEUED:
        waiting = state.place is not None and not state.cancelling
        st.info(ui.md_escape(run_view.queue_note(run, state)), icon=":material/hourglass_top:" if waiting else None)
    for col, (label, value, help_) in zip(st.columns(7), run_view.metrics(store, run_id, row, run.status, planned)):
        col.metric(label, value, help=help_)

    _models(store, run_id)

    note = run_view.state_note(run, state)
    if note:
        getattr(st, note[0])(ui.md_escape(note[1]), icon=note[2])
    if run.status == RunStatus.FAILED:
        st.code(run.error or "(no error recorded)", language=None, wrap_lines=True)

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
        with st.expander("Worker log", expanded=state.broke):
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


def _buttons(store, run_id: int, state: run_view.RunState) -> None:
    cols = st.columns(2)
    if state.action == "Cancel":
        cols[0].button("Cancel", key=f"cancel_{run_id}", icon=":material/stop:", disabled=state.cancelling,
                       on_click=_act, args=(run_view.cancel, store, run_id),
                       help="Takes the run out of the queue." if state.status == RunStatus.QUEUED else
                       "Stops after the current batch or fine-tuning step; resume continues from there.")
    elif state.action:
        cols[0].button(state.action, key=f"resume_{run_id}", icon=":material/play_arrow:", type="primary",
                       on_click=_act, args=(run_view.resume, store, run_id, state.action),
                       help="Runs in a background worker; it waits its turn if another run has this machine's slot.")
    cols[1].page_link("pages/browse.py", label="Browse", icon=":material/search:", query_params={"run": run_id})
