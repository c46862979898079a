"""One run as the Runs page shows it, without Streamlit: its state (starting, crashed, in the queue…),
the button it offers, what a Cancel or Resume did, and the figures and notes of its live view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from star_core.analysis.present import duration, pct
from star_core.core.errors import StarError
from star_core.core.states import Phase, RunStatus
from star_core.engine import run_queue
from star_core.runtime import jobs

FLASH_S = 10.0  # how long a refusal stays on the page (it is redrawn every poll)
QUIET_S = 15.0  # an active run silent for longer gets a note (one fine-tuning step can take a minute)


def is_active(store, run_id: int, status: str) -> bool:
    """Running, queued, or pending with its worker still starting: the page polls it."""
    return status in (RunStatus.RUNNING, RunStatus.QUEUED) or (
        status == RunStatus.PENDING and jobs.worker_starting(store, run_id))


@dataclass(frozen=True)
class RunState:
    """A run's stored status and what its worker files add to it (a pending run starting, crashed or never started)."""

    status: str
    starting: bool = False
    died_early: bool = False
    never_started: bool = False
    cancelling: bool = False
    place: int | None = None  # in this machine's queue

    @property
    def active(self) -> bool:
        return self.status in (RunStatus.RUNNING, RunStatus.QUEUED) or self.starting

    @property
    def shown(self) -> str:
        """The status its badge shows."""
        return ("starting" if self.starting else "crashed" if self.died_early else "not started" if self.never_started
                else "cancelling" if self.cancelling else self.status)

    @property
    def action(self) -> str | None:
        """Its button: Cancel while active, Start for a pending run never begun, Resume, or none once done."""
        if self.active:
            return "Cancel"
        if self.status == RunStatus.DONE:
            return None
        return "Start" if self.status == RunStatus.PENDING and not self.died_early else "Resume"

    @property
    def place_text(self) -> str:
        return f" {run_queue.ordinal(self.place)} in the queue" if self.place else ""

    @property
    def broke(self) -> bool:
        """It failed or its worker died: its log is worth opening."""
        return self.status in (RunStatus.FAILED, RunStatus.CRASHED) or self.died_early


def run_state(store, run_id: int, status: str) -> RunState:
    pending = status == RunStatus.PENDING
    starting = pending and jobs.worker_starting(store, run_id)
    active = status in (RunStatus.RUNNING, RunStatus.QUEUED) or starting
    return RunState(status, starting=starting,
                    died_early=pending and jobs.worker_died_early(store, run_id),
                    never_started=pending and jobs.never_launched(store, run_id),
                    cancelling=active and not starting and store.cancel_requested(run_id),
                    place=run_queue.position(store, run_id) if status == RunStatus.QUEUED else None)


@dataclass
class Flash:
    """What a button did, for the next draws (a callback cannot draw): a toast once, a refusal for FLASH_S."""

    run_id: int
    text: str
    error: bool = False
    at: float = field(default_factory=time.monotonic)
    toasted: bool = False

    def error_shown(self, now: float) -> bool:
        return self.error and now - self.at < FLASH_S


def cancel(store, run_id: int) -> Flash:
    queued = store.get_run(run_id).status == RunStatus.QUEUED
    try:
        jobs.cancel(store, run_id)
    except StarError as exc:
        return Flash(run_id, f"Run {run_id} was not cancelled: {exc}", error=True)
    return Flash(run_id, f"Run {run_id} leaves the queue" if queued else
                 f"Cancelling run {run_id}: it stops after its current batch or fine-tuning step")


def resume(store, run_id: int, label: str) -> Flash:
    """Resume (or Start, the `label` of the button) a run."""
    try:
        jobs.resume(store, run_id)
    except StarError as exc:
        return Flash(run_id, f"Run {run_id} did not {label.lower()}: {exc}", error=True)
    doing = {"Start": "starting", "Resume": "resuming"}.get(label, label.lower())
    return Flash(run_id, f"Run {run_id} {doing} (it waits for a free slot if another run has it)")


def state_note(run, state: RunState) -> tuple[str, str, str | None] | None:
    """Why a run is not going on, as (kind, text, icon): kind is error, warning or info; None for a run going on."""
    if run.status == RunStatus.FAILED:
        return "error", "The run failed. Its attempts so far are stored; fix the cause and resume it.", None
    if run.status == RunStatus.CRASHED or state.died_early:
        who = f"pid {run.pid} on {run.host}" if run.pid else "its worker"
        return "error", (f"The run's worker process ({who}) died without recording why (killed, out of memory, or "
                         "the machine restarted). Everything stored so far is kept: resume it to continue."), None
    if state.never_started:
        return "warning", ("No worker was ever started for this run: its start was cut short, its worker could not be "
                           "launched, or it was stored by an older version. Nothing has run yet; Start runs it in a "
                           "background worker."), ":material/play_circle:"
    if run.status == RunStatus.CANCELLED:
        return "info", ("Cancelled. Resume continues from the last stored batch (fine-tuning from its last saved "
                        "step)." + (f" ({run.error})" if run.error else "")), None
    return None


def planned_iterations(row, run) -> int:
    """The iterations a run plans: as stored (store.list_runs()), else its config's."""
    return int(row.iterations_planned) if pd.notna(row.iterations_planned) else run.config.iterations


def progress(row, status: str) -> tuple[float, str] | None:
    """The progress bar of a running run's phase: its fraction done and its text; None without a phase to show."""
    phase, done, total = row.cur_phase, row.phase_done, row.phase_total
    if status != RunStatus.RUNNING or not isinstance(phase, str) or pd.isna(total) or not total:
        return None
    text = f"Iteration {int(row.cur_iteration)} · {phase}: {int(done)}/{int(total)}"
    return min(1.0, float(done) / float(total)), text


def metrics(store, run_id: int, row, status: str, planned: int) -> list[tuple[str, str, str | None]]:
    """The live view's figures: (label, value, help) each, "–" where there is none."""
    phase, done, total = row.cur_phase, row.phase_done, row.phase_total
    running = status == RunStatus.RUNNING
    return [
        ("Iteration", f"{int(row.cur_iteration)}/{planned}" if pd.notna(row.cur_iteration) else "–", None),
        ("Phase", phase if isinstance(phase, str) else ("finished" if status == RunStatus.DONE else "–"), None),
        ("Done", f"{int(done)}/{int(total)}" if pd.notna(total) and isinstance(phase, str) else "–", None),
        ("Tokens/s", f"{row.tokens_per_s:,.0f}" if pd.notna(row.tokens_per_s) and running else "–", None),
        ("ETA (phase)", duration(row.eta_s) if running else "–", None),
        ("Loss", running_loss(store, run_id, row) if running and phase == Phase.FINETUNE else "–",
         "Fine-tuning loss, mean of the last 5 steps stored (written about every 2 s)"),
        ("Latest accuracy", pct(row.latest_accuracy), f"Eval accuracy of the latest evaluated iteration; baseline "
                                                      f"{pct(row.baseline_accuracy)}, best {pct(row.best_accuracy)}"),
    ]


def running_loss(store, run_id: int, row) -> str:
    steps = store.train_steps([run_id])
    steps = steps[(steps.iteration == row.cur_iteration) & steps.loss.notna()]
    return f"{steps.loss.tail(5).mean():.3f}" if not steps.empty else "–"


def quiet_note(row, phase: str) -> str | None:
    """Progress is written between batches and steps; one can be slow on a busy machine: say it is still going."""
    if row.progress_age_s is None or pd.isna(row.progress_age_s):
        return None
    quiet = float(row.progress_age_s)
    if quiet <= QUIET_S:
        return None
    what = "fine-tuning step" if phase == Phase.FINETUNE else "batch"
    return (f"Last progress {duration(quiet)} ago: the next {what} is still being computed "
            "(slow when other processes share the cores).")


def queue_note(run, state: RunState) -> str:
    """Where a queued run waits, and what it waits for."""
    if state.cancelling:
        return "Leaving the queue…"
    if state.place is None:
        return f"Queued on {run.host}: it starts there when a slot frees."
    busy = ", ".join(f"run {h.get('run_id')} of {Path(str(h.get('db', '?'))).name}" for h in run_queue.holders())
    return (f"Waiting for a free slot on this machine: {run_queue.ordinal(state.place)} in the queue"
            + (f" ({busy} running)" if busy else "") + ". It starts by itself, before loading a model; "
            "Cancel takes it out of the queue.")


def picked_run(ids: list[int], wanted: int | None, url_run: int | None, picker: int | None,
               watching: int | None) -> int | None:
    """The run the picker is set to before it is drawn: the URL's `wanted` when the URL changed (a link from
    another page), else the run being watched if the picker no longer holds a listed run; None: leave it."""
    if wanted in ids and url_run != wanted:
        return wanted
    if picker not in ids and watching in ids:
        return watching
    return None
