"""What the Store's query groups share, declared in one place.

`Store` (store/__init__.py) mixes these groups over one `Connection`: each reaches the database through `self.db`
and holds no state of its own. Three reach past their group: attempts and experiments call the runs group's
`set_progress` and `live_status`, and the runs group calls the Store's `run_folder`.
"""

from __future__ import annotations

from pathlib import Path

from .connection import Connection


class Queries:
    """The base of every query group: the connection its SQL runs on."""

    db: Connection

    def run_folder(self, run_id: int) -> Path:
        raise NotImplementedError  # the Store's: where a run's files go, beside its database file
