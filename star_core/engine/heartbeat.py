"""A run's heartbeat: while a process owns a run (queued or running), a thread writes the time every
HEARTBEAT_S seconds, whatever the run is doing (loading a model, a long batch, waiting in the queue).

On its own machine a run's process is proven alive by the lock it holds (store/runs.py); for a reader on
another host sharing the database file, or on this one after a container restart renamed it, the heartbeat
is the only evidence: once it is older than STALE_S the run reads as crashed and can be resumed.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from ..store import Store
from ..store.runs import HEARTBEAT_S


@contextlib.contextmanager
def beating(store: Store, run_id: int, interval_s: float = HEARTBEAT_S) -> Iterator[threading.Thread]:
    """Write the run's heartbeat every `interval_s` seconds while the block runs (store.beat writes it only while
    the run is this process's own: queued or running, claimed by it)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                store.beat(run_id)
            except Exception:  # noqa: BLE001 - a busy or vanished file must not end the beat: the next one tries again
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-run-{run_id}", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join()
