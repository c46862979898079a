"""Compare two (run, iteration) evaluations: what `star compare` prints and the Compare page shows.

The store pairs the two sides' eval answers on their shared questions (store/compare.py);
star_core.analysis.stats turns the four cells into accuracies, the paired difference with its 95%
interval and the exact McNemar p-value, overall and per difficulty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from .stats import CI_METHOD, TEST_METHOD, PairedComparison, compare_counts
from ..store.compare import ComparisonError, EvaluatedSide

_REF = re.compile(r"^\s*#?(\d+)\s*(?:@\s*(\d+))?\s*$")


@dataclass(frozen=True)
class RunRef:
    """RUN or RUN@ITERATION; iteration None = the run's last evaluated one."""

    run_id: int
    iteration: int | None = None

    @classmethod
    def parse(cls, text: str) -> "RunRef":
        m = _REF.match(text or "")
        if not m:
            raise ComparisonError(f"{text!r} is not RUN or RUN@ITERATION (e.g. 3 or 3@2; run ids: star runs)")
        return cls(int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


@dataclass
class RunComparison:
    a: EvaluatedSide
    b: EvaluatedSide
    overall: PairedComparison
    by_difficulty: dict  # difficulty (None: the task has none) -> PairedComparison
    discordant: pd.DataFrame  # problem_id, difficulty, question, gold_answer, right_side, a_answer, b_answer, a/b_attempt_id

    @property
    def shared_note(self) -> str | None:
        """Says how many questions the two share when it is fewer than either side answered."""
        n = self.overall.shared
        if n >= self.a.answered and n >= self.b.answered:
            return None
        return (f"A answered {self.a.answered} eval questions and B {self.b.answered}; they share {n}, "
                "and only those are compared.")

    def to_dict(self) -> dict:
        """One JSON-able object: the overall figures at top level, per difficulty, the discordant questions."""
        out = {"a": _side(self.a), "b": _side(self.b), **_figures(self.overall), "confidence": 0.95,
               "ci_method": CI_METHOD, "test_method": TEST_METHOD}
        out["by_difficulty"] = [{"difficulty": d, **_figures(c)} for d, c in self.by_difficulty.items()]
        out["discordant"] = [
            {k: _plain(v) for k, v in row.items()} for row in self.discordant.to_dict(orient="records")]
        return out

    def difficulty_table(self, overall: bool = False) -> pd.DataFrame:
        """The per-difficulty figures as a frame, after an 'all' row when `overall` (the page's CSV)."""
        rows = ([{"difficulty": "all", **_figures(self.overall)}] if overall else []) + [
            {"difficulty": d, **_figures(c)} for d, c in self.by_difficulty.items()]
        return pd.DataFrame(rows, columns=["difficulty", *_figures(self.overall)])


def compare_runs(store, a: RunRef, b: RunRef) -> RunComparison:
    pairing = store.eval_pairing(a.run_id, a.iteration, b.run_id, b.iteration)
    by_difficulty = {
        (None if pd.isna(r.difficulty) else int(r.difficulty)): compare_counts(
            int(r.both_right), int(r.only_a), int(r.only_b), int(r.both_wrong))
        for r in pairing.cells.itertuples(index=False)
    }
    totals = pairing.cells[["both_right", "only_a", "only_b", "both_wrong"]].sum()
    overall = compare_counts(*(int(totals[c]) for c in ("both_right", "only_a", "only_b", "both_wrong")))
    return RunComparison(pairing.a, pairing.b, overall, by_difficulty, pairing.discordant)


def format_table(c: RunComparison, labels: dict[int, str] | None = None) -> str:
    """The comparison as text for a terminal."""
    labels = labels or {}
    o = c.overall
    name = lambda s: f"run {labels.get(s.run_id, '#' + str(s.run_id))} at iteration {s.iteration}"  # noqa: E731
    lines = [
        f"A: {name(c.a)}",
        f"B: {name(c.b)}",
        f"{o.shared} shared eval questions" + (f" ({c.shared_note})" if c.shared_note else ""),
        "",
        f"accuracy A   {o.accuracy_a:7.1%}  ({o.both_right + o.only_a}/{o.shared})",
        f"accuracy B   {o.accuracy_b:7.1%}  ({o.both_right + o.only_b}/{o.shared})",
        f"B - A        {signed_points(o.difference)}  95% CI {signed_points(o.ci_low)} to {signed_points(o.ci_high)}   {p_clause(o.p_value)}",
        "",
        f"both right {o.both_right} · only A right {o.only_a} · only B right {o.only_b} · both wrong {o.both_wrong}",
    ]
    if len(c.by_difficulty) > 1 or None not in c.by_difficulty:
        lines += ["", f"{'difficulty':>10} {'shared':>6} {'A':>7} {'B':>7} {'B - A':>7} {'95% CI':>22} {'p':>7}"
                      f" {'both':>5} {'only A':>6} {'only B':>6} {'neither':>7}"]
        for d, x in c.by_difficulty.items():
            lines.append(
                f"{'–' if d is None else d:>10} {x.shared:>6} {x.accuracy_a:>7.1%} {x.accuracy_b:>7.1%} "
                f"{signed_points(x.difference):>7} {signed_points(x.ci_low) + ' to ' + signed_points(x.ci_high):>22} {p_text(x.p_value):>7}"
                f" {x.both_right:>5} {x.only_a:>6} {x.only_b:>6} {x.both_wrong:>7}")
    lines += ["", f"interval: {CI_METHOD}", f"p-value: {TEST_METHOD}"]
    return "\n".join(lines)


def _figures(c: PairedComparison) -> dict:
    return {k: getattr(c, k) for k in ("shared", "accuracy_a", "accuracy_b", "difference", "ci_low", "ci_high", "p_value",
                                       "both_right", "only_a", "only_b", "both_wrong")}


def _side(s: EvaluatedSide) -> dict:
    return {"run_id": s.run_id, "iteration": s.iteration, "answered": s.answered}


def _plain(value):
    """numpy scalars and NaN as plain JSON values."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def signed_points(x: float) -> str:
    """A difference of proportions as signed percentage points: 0.042 -> '+4.2 pt' (the CLI and the pages alike)."""
    return f"{x * 100:+.1f} pt"


def p_text(p: float) -> str:
    """A p-value as the CLI and the pages print it."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float) -> str:
    """'p = 0.359', or 'p < 0.001' (not 'p = < 0.001')."""
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
