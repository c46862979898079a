"""What the CLI prints: progress bars per phase and the result tables."""

from __future__ import annotations

import sys

import pandas as pd
from tqdm import tqdm

from ..analysis.present import duration, pct, runs_overview, written_shares
from ..core.states import Phase
from ..engine import run_queue
from ..store import Store


class ConsoleReporter:
    """A tqdm bar per phase, with counts, tokens/s and the phase's ETA."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def phase(self, iteration: int, phase: str, total: int) -> None:
        self._close()
        unit = "step" if phase == Phase.FINETUNE else "q"
        self.bar = tqdm(total=total, desc=f"iter {iteration} {phase:<11}", unit=unit, file=self.stream,
                        dynamic_ncols=True, leave=True)

    def advance(self, done: int, total: int, tokens_per_s: float | None, note: str = "") -> None:
        if self.bar is None:
            return
        self.bar.n = done
        extra = f"{tokens_per_s:,.0f} tok/s" if tokens_per_s else ""
        self.bar.set_postfix_str(", ".join(x for x in (extra, note) if x), refresh=False)
        self.bar.refresh()
        if done >= total:
            self._close()

    def message(self, text: str) -> None:
        self._close()
        print(text, file=self.stream)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def accuracy_table(store: Store, run_id: int) -> str:
    """Eval accuracy per iteration, overall and per difficulty, with what each iteration trained on."""
    acc = store.accuracy(run_id)
    evals = acc[acc.split == "eval"].copy()
    if evals.empty:
        return f"run {run_id} has no evaluation yet"
    evals["column"] = evals.difficulty.map(lambda d: "overall" if pd.isna(d) else f"difficulty {int(d)}")
    evals["cell"] = [f"{a:.1%} ({c}/{n})" for a, c, n in zip(evals.accuracy, evals.correct, evals.n)]
    table = evals.pivot(index="iteration", columns="column", values="cell")
    table = table[["overall"] + sorted(c for c in table.columns if c != "overall")]
    table.columns.name = None
    iters = store.iterations(run_id).set_index("iteration")
    train = acc[(acc.split == "train") & acc.difficulty.isna()].set_index("iteration")
    table["train self-solved"] = [pct(train.accuracy[i]) if i in train.index else "–" for i in table.index]
    table["kept"] = [_int(iters.kept.get(i)) for i in table.index]
    table["steps"] = [_int(iters.steps.get(i)) for i in table.index]
    table["train loss"] = [f"{iters.train_loss[i]:.3f}" if i in iters.index and pd.notna(iters.train_loss[i]) else "-" for i in table.index]
    _add_kept_with_steps(table, store, run_id, evals)
    table["ends at"] = _ends_at(iters, table.index)
    table.index.name = "iteration"
    seeded = bool(store.get_run(run_id).config.seed_max_digits) and pd.notna(iters.steps.get(0)) and iters.steps[0] > 0
    zero = "the seed alone, fine-tuned" if seeded else "few-shot baseline"
    return f"Run {run_id}: eval accuracy by iteration (0 = {zero})\n" + table.to_string()


def _add_kept_with_steps(table: pd.DataFrame, store: Store, run_id: int, evals: pd.DataFrame) -> None:
    """How many kept rationales had verified steps, for a task that checks them. Where the run spans several
    difficulties, the easiest is left out too: a 1-digit sum has no steps to show, so its rationales would hide
    that the harder ones are bare answers."""
    def column(kept: pd.DataFrame) -> list[str]:
        rows = kept[kept.checked > 0].set_index("iteration")
        return [f"{int(rows.with_steps[i])}/{int(rows.kept[i])}" if i in rows.index else "-" for i in table.index]

    kept = store.kept_with_steps([run_id])
    if not (kept.checked > 0).any():
        return
    table["kept with steps"] = column(kept)
    difficulties = sorted(int(d) for d in evals.difficulty.dropna().unique())
    if len(difficulties) > 1:
        table[f"of difficulty > {difficulties[0]}"] = column(store.kept_with_steps([run_id], difficulties[0] + 1))
    # The share of the kept steps the model wrote itself, not given in a partial hint (seed rows not counted).
    shares = dict(zip(kept.iteration, written_shares(kept)))
    table["written by the model"] = [pct(shares[i]) if pd.notna(shares.get(i)) else "-" for i in table.index]


def _ends_at(iters: pd.DataFrame, iterations) -> list[str]:
    """When each iteration ended, counted from the start of iteration 0."""
    if iters.empty or 0 not in iters.index:
        return ["-" for _ in iterations]
    start = iters.started_at[0]
    return [duration((iters.finished_at[i] - start).total_seconds())
            if i in iters.index and pd.notna(iters.finished_at[i]) else "-" for i in iterations]


def runs_table(store: Store) -> str:
    runs = store.list_runs()
    if runs.empty:
        return f"no runs in {store.path}"
    return runs_overview(runs, run_queue.status_labels(store, runs)).to_string(index=False)


def _int(x) -> str:
    return "-" if x is None or pd.isna(x) else str(int(x))
