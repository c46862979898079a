"""Fine-tuning's saved state, so that a cancelled or killed run resumes fine-tuning where it was.

A state is everything the next step depends on: the trainable weights (the LoRA
adapter, or every weight with full fine-tuning), the optimizer's moments, the
learning-rate schedule, the random generators, the data order still to come, the
step and the losses so far. Restored into a model built the same way (same seed,
same examples), training continues exactly as if it had never stopped.

One file per state, `<folder>/step-000010.pt`, written as `.partial` and renamed
into place once complete (a rename is atomic), so a process killed while saving
leaves the previous state intact. The newest complete file is the state; older
ones are removed after a newer one is in place.

A state carries a fingerprint of what it was trained on (settings, prefix, every
example's tokens, the trainable tensors' names and shapes): one that does not
match the job at hand is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

STATE_FORMAT = 1
_NAME = re.compile(r"step-(\d{6,})\.pt")

# A state is saved every EVERY_STEPS steps or EVERY_S seconds, whichever comes first, and on a cancel;
# never sooner than OVERHEAD_FACTOR times the last save's duration after it (full fine-tuning's state is
# ~3x the model: at most ~10% of the time goes to saving).
EVERY_STEPS = 10
EVERY_S = 60.0
OVERHEAD_FACTOR = 10.0


def fingerprint(settings, prefix_ids: list[int], rows: list[tuple[list[int], list[int]]],
                trainable: list[tuple[str, torch.Tensor]]) -> str:
    """What a state must have been trained on to be resumed here."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(settings), sort_keys=True).encode())
    h.update(json.dumps(prefix_ids).encode())
    h.update(json.dumps(rows).encode())
    h.update(json.dumps([(name, list(p.shape)) for name, p in trainable]).encode())
    return h.hexdigest()


def checkpoint_due(steps_since: int, seconds_since: float, last_save_s: float,
                   every_steps: int = EVERY_STEPS, every_s: float = EVERY_S) -> bool:
    """Whether to save a state now, `steps_since` steps and `seconds_since` seconds after the last one."""
    if steps_since <= 0:
        return False
    if seconds_since < OVERHEAD_FACTOR * last_save_s:
        return False
    return steps_since >= every_steps or seconds_since >= every_s


@dataclass
class Cadence:
    """When the next state is due (see checkpoint_due); `saved()` after each save."""

    every_steps: int = EVERY_STEPS
    every_s: float = EVERY_S
    last_step: int = 0
    last_time: float = field(default_factory=time.monotonic)
    last_save_s: float = 0.0

    def due(self, step: int) -> bool:
        return checkpoint_due(step - self.last_step, time.monotonic() - self.last_time, self.last_save_s,
                              self.every_steps, self.every_s)

    def saved(self, step: int, took_s: float) -> None:
        self.last_step, self.last_time, self.last_save_s = step, time.monotonic(), took_s


def state_files(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete state in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def saved_step(folder: Path | None) -> int | None:
    """The step of the newest complete state in `folder`, or None (cheap: from its name)."""
    files = state_files(folder) if folder is not None else []
    return files[-1][0] if files else None


def save(folder: Path, step: int, state: dict) -> float:
    """Write `state` (see finetune) as the folder's state for `step`, atomically; seconds it took."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}.pt"
    partial = final.with_name(final.name + ".partial")
    with open(partial, "wb") as f:
        torch.save({"format": STATE_FORMAT, "step": step, **state}, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the state
    os.replace(partial, final)
    for older, path in state_files(folder):
        if older != step:
            path.unlink(missing_ok=True)
    return time.monotonic() - started


def load(folder: Path | None, expected_fingerprint: str) -> dict | None:
    """The newest state in `folder` if it was trained on the same job, else None."""
    step = saved_step(folder)
    if step is None:
        return None
    try:
        state = torch.load(folder / f"step-{step:06d}.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable (a damaged disk, another torch's format): start over instead
        return None
    if state.get("format") != STATE_FORMAT or state.get("fingerprint") != expected_fingerprint:
        return None
    return state
