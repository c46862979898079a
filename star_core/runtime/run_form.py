"""The Runs page's new-run form without Streamlit: which fields a task or preset change resets, what the
user changed, and Start, which creates one run per click however many reruns of the page see it.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from star_core.core.errors import ConfigError, StarError
from star_core.core.settings_spec import SETTINGS, form_values, sections
from star_core.engine.prepare import prepare_run, shown_defaults
from star_core.runtime import jobs


def form_sections() -> dict[str, list[str]]:
    """The form's sections and their fields, less the task (chosen above the form: it changes what the form shows)."""
    return {title: [n for n in names if n != "task"] for title, names in sections().items()}


def exemplar_choices(sets) -> list[str]:
    """The stored exemplar sets (store.list_exemplar_sets()) as NAME, its latest version, and NAME@VERSION."""
    return list(dict.fromkeys(list(sets.name) + list(sets.label))) if not sets.empty else []


def stale_fields(previous: tuple[str, str | None] | None, current: tuple[str, str | None]) -> list[str]:
    """The fields whose shown value the change of (task, preset) from `previous` to `current` changes."""
    if previous is None or tuple(previous) == tuple(current):
        return []
    before, after = shown_defaults(*previous), shown_defaults(*current)
    return [name for name in SETTINGS if name != "task" and before[name] != after[name]]


def given_values(values: dict, shown: dict) -> dict:
    """What the user gave: the task, and each field whose value differs from the one the form showed."""
    values = form_values(values)
    return {k: v for k, v in values.items() if k == "task" or v != shown[k]}


@dataclass
class Outcome:
    """What one Start did: the run it stored (if any), and the messages for the form."""

    run_id: int | None = None
    errors: dict = field(default_factory=dict)
    finished: bool = False


class Starts:
    """One session's Starts. A click during a rerun starts another at once, in a new thread, and the old one stops
    only at its next Streamlit call: so both may see Start pressed. Under the lock (no Streamlit call inside) one
    spends the generation and creates the run, writing the outcome here, which outlives its thread, for a later draw."""

    def __init__(self):
        self._lock = threading.Lock()
        self.generation = 0
        self.underway: Outcome | None = None  # the Start being acted on, until a draw has shown its outcome

    def spend(self, generation: int) -> Outcome | None:
        """The outcome to fill in if this rerun may act on the form's Start; None if another already did."""
        with self._lock:
            if generation != self.generation or self.underway is not None:
                return None
            self.generation += 1
            self.underway = Outcome()
            return self.underway

    def finished(self) -> Outcome | None:
        with self._lock:
            return self.underway if self.underway is not None and self.underway.finished else None

    def shown(self, outcome: Outcome) -> None:
        with self._lock:
            if self.underway is outcome:
                self.underway = None


_SESSIONS_LOCK = threading.Lock()


def session_starts(state: MutableMapping, key: str) -> Starts:
    """The session's Starts, kept in its state under `key`; two reruns of a new session at once share one."""
    with _SESSIONS_LOCK:
        if key not in state:
            state[key] = Starts()
        return state[key]


def create(store, outcome: Outcome, given: dict, preset: str | None, queue: bool) -> None:
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
