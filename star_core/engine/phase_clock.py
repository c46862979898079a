"""Progress of one phase: done of total, tokens per second, and the time left."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..core.states import Phase


@dataclass
class PhaseClock:
    iteration: int
    phase: Phase
    total: int
    done: int = 0  # questions (or fine-tuning steps) finished, including those done before a resume
    new_tokens: int = 0
    started: float = field(default_factory=lambda: time.perf_counter())
    resumed_at: int = 0  # `done` when this process started the phase: the rate counts only its own work

    def __post_init__(self) -> None:
        self.resumed_at = self.done

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def tokens_per_s(self) -> float | None:
        elapsed = self.elapsed()
        return self.new_tokens / elapsed if elapsed > 0 and self.new_tokens else None

    def eta_s(self) -> float | None:
        """Seconds left at this process's pace so far; None until it has done something."""
        own = self.done - self.resumed_at
        if own <= 0 or self.done > self.total:
            return None
        eta = self.elapsed() / own * (self.total - self.done)
        return eta if math.isfinite(eta) else None

    def values(self, tokens_per_s: float | None = None) -> dict:
        """The run's live progress columns (Store.set_progress)."""
        return dict(iteration=self.iteration, phase=self.phase, done=self.done, total=self.total,
                    tokens_per_s=tokens_per_s if tokens_per_s is not None else self.tokens_per_s(), eta_s=self.eta_s())
