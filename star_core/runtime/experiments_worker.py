"""Kept only while pages/runs.py still launches experiments through it: the launch is jobs.launch_experiment,
the worker `python -m star_core.runtime.worker experiment`. Delete this module once that page calls jobs."""

from __future__ import annotations

from . import jobs


def launch(store, experiment_id: int) -> int:
    return jobs.launch_experiment(store, experiment_id)  # looked up per call, so that a test's stand-in applies
