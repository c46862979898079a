"""Pure statistics for hand audits: confidence intervals and agreement.

The audit numbers are the ones researchers cite ("x% of rationalized rationales
were sound at iteration 3"), so each share comes with a Wilson score interval
(well behaved for small n and shares near 0 or 1, unlike the normal one), and
agreement comes as published audits report it: Cohen's kappa for the verifier
against "sound" and for each pair of auditors (with a bootstrap interval over
items), Krippendorff's alpha (nominal) over all auditors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

# The audit vocabulary is the store's too, so it lives in core; re-exported for the audit's readers.
from ..core.states import QUEUE_ORDERS, RATING_HELP, RATINGS, VERIFIER_ROWS, QueueMode, Rating  # noqa: F401
from .stats import Z_95, wilson_interval  # noqa: F401 - the audit figures' interval, shared with run comparisons




BOOTSTRAP_RESAMPLES = 2000  # the 2.5% and 97.5% percentiles move by under 0.01 between seeds at n = 40
BOOTSTRAP_SEED = 0  # a fixed seed: the same labels always print the same interval


def cohen_kappa(both_yes: int, a_yes_b_no: int, a_no_b_yes: int, both_no: int) -> float:
    """Cohen's kappa of two yes/no raters from their 2x2 table; nan when undefined.

    1 = perfect agreement, 0 = what chance alone gives, < 0 = worse than chance.
    """
    n = both_yes + a_yes_b_no + a_no_b_yes + both_no
    if n == 0:
        return math.nan
    observed = (both_yes + both_no) / n
    a_yes = (both_yes + a_yes_b_no) / n
    b_yes = (both_yes + a_no_b_yes) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if expected == 1:
        return 1.0 if observed == 1 else math.nan
    return (observed - expected) / (1 - expected)


# --- agreement between auditors -------------------------------------------------------


def _codes(a: Sequence[Hashable], b: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray, int]:
    if len(a) != len(b):
        raise ValueError(f"the two raters' labels must pair up item by item (lengths {len(a)} and {len(b)})")
    categories = {c: i for i, c in enumerate(sorted(set(a) | set(b), key=str))}
    return (np.array([categories[x] for x in a], dtype=np.int64), np.array([categories[x] for x in b], dtype=np.int64),
            len(categories))


def _kappa_of_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each (k, k) contingency table in a (..., k, k) array; nan where chance agreement is 1.

    kappa = (p_o - p_e) / (1 - p_e), p_o the share on the diagonal, p_e the sum of the margins' products.
    """
    n = tables.sum(axis=(-2, -1)).astype(float)
    observed = np.trace(tables, axis1=-2, axis2=-1) / n
    expected = (tables.sum(axis=-1) * tables.sum(axis=-2)).sum(axis=-1) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (observed - expected) / (1 - expected)
    return np.where(np.isclose(expected, 1.0), np.nan, kappa)


def kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's (unweighted) kappa of two raters over the same items, any number of categories.

    nan when it is undefined: no items, or both raters gave one and the same category to every
    item (chance agreement is then 1), as sklearn.metrics.cohen_kappa_score gives.
    """
    if len(a) == 0:
        return math.nan
    x, y, k = _codes(a, b)
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (x, y), 1)
    return float(_kappa_of_tables(table))


def kappa_interval(a: Sequence[Hashable], b: Sequence[Hashable], resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED, confidence: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of kappa, resampling items with replacement.

    Resamples whose kappa is undefined (every item drawn got one category from both) are left out;
    (nan, nan) with fewer than 2 items or when no resample is defined.
    """
    n = len(a)
    if n < 2:
        return (math.nan, math.nan)
    x, y, k = _codes(a, b)
    cell = x * k + y  # the table cell of each item
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # Each resample's table at once: offset every resample's cells into its own block of k*k bins.
    flat = (cell[draws] + (np.arange(resamples) * k * k)[:, None]).ravel()
    tables = np.bincount(flat, minlength=resamples * k * k).reshape(resamples, k, k)
    values = _kappa_of_tables(tables)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal data; each unit (item) is the list of the values its raters gave.

    Only units with two or more values are pairable; with the coincidence matrix o over their values,
    n_c = the row sums and n = the pairable values,
        alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2).
    nan when no unit is pairable or every pairable value is the same (no variation to agree on).
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    if not pairable:
        return math.nan
    categories = {c: i for i, c in enumerate(sorted({v for u in pairable for v in u}, key=str))}
    k = len(categories)
    o = np.zeros((k, k))
    for unit in pairable:
        counts = np.bincount([categories[v] for v in unit], minlength=k).astype(float)
        # Every ordered pair of different raters' values in the unit, weighted 1 / (m_u - 1).
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = n * n - (n_c * n_c).sum()
    if expected == 0:
        return math.nan
    return float(1 - (n - 1) * (n - np.trace(o)) / expected)


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    n: int  # items both rated
    kappa: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Agreement:
    """Agreement between auditors: Cohen's kappa per pair on the items both rated, alpha over everyone."""

    auditors: list[str]
    pairs: list[PairAgreement] = field(default_factory=list)
    alpha: float | None = None  # Krippendorff's alpha, nominal
    alpha_n: int = 0  # items alpha is over: those two or more auditors rated

    def to_dict(self) -> dict:
        return asdict(self)


def agreement(labels: Mapping[Hashable, Mapping[str, Hashable]]) -> Agreement:
    """Agreement from {item: {auditor: rating}} (an adjudication is not an auditor's rating: leave it out).

    Every pair of auditors is listed (n = 0 when they share no item); a figure that is undefined is None.
    """
    auditors = sorted({who for ratings in labels.values() for who in ratings})
    pairs = []
    for a, b in itertools.combinations(auditors, 2):
        shared = [(r[a], r[b]) for r in labels.values() if a in r and b in r]
        xs, ys = [s[0] for s in shared], [s[1] for s in shared]
        low, high = kappa_interval(xs, ys)
        pairs.append(PairAgreement(a, b, len(shared), _none(kappa(xs, ys)), _none(low), _none(high)))
    units = [list(r.values()) for r in labels.values() if len(r) >= 2]
    return Agreement(auditors, pairs, _none(krippendorff_alpha_nominal(units)), len(units))


def _none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def format_agreement(result: Agreement) -> str:
    """The agreement as text for a terminal."""
    if not result.auditors:
        return "no audit labels yet"
    fmt = lambda x: "–" if x is None else f"{x:+.3f}"  # noqa: E731
    lines = [f"auditors: {', '.join(result.auditors)}", ""]
    if result.pairs:
        width = max(len(p.a) + len(p.b) for p in result.pairs) + 5
        lines.append(f"{'pair':<{width}} {'n':>5} {'kappa':>7}  95% CI (bootstrap over items)")
        for p in result.pairs:
            ci = "–" if p.ci_low is None else f"{p.ci_low:+.3f} to {p.ci_high:+.3f}"
            lines.append(f"{p.a + ' vs ' + p.b:<{width}} {p.n:>5} {fmt(p.kappa):>7}  {ci}")
    else:
        lines.append("one auditor: no pair to compare")
    lines += ["", f"Krippendorff's alpha (nominal): {fmt(result.alpha)} over {result.alpha_n} items rated by two or more"]
    return "\n".join(lines)


def sound_share(store, run_id: int | None = None, kept_only: bool = True) -> pd.DataFrame:
    """Per run, iteration and kind: the labels counted, how many say sound, the share and its 95% Wilson
    interval (the counts as Store.sound_counts defines them)."""
    df = store.sound_counts(run_id, kept_only=kept_only)
    intervals = [wilson_interval(int(s), int(n)) for s, n in zip(df["sound"], df["audited"])]
    df["sound_share"] = [s / n if n else float("nan") for s, n in zip(df["sound"], df["audited"])]
    df["ci_low"] = [lo for lo, _ in intervals]
    df["ci_high"] = [hi for _, hi in intervals]
    return df


def verifier_agreement(store, run_id: int | None = None) -> tuple[pd.DataFrame, float, int]:
    """How the automatic filter (right answer and steps verified) agrees with the human rating.

    Returns the table (Store.verifier_table), Cohen's kappa of "verifier passes" against "rated sound"
    over the labels of attempts the task can verify, and how many labels that kappa is over.
    """
    table = store.verifier_table(run_id)
    passes = table.loc[VERIFIER_ROWS[0]]
    fails = table.loc[VERIFIER_ROWS[1]] + table.loc[VERIFIER_ROWS[2]]
    both_yes, pass_not_sound = int(passes["sound"]), int(passes.sum() - passes["sound"])
    fail_sound, both_no = int(fails["sound"]), int(fails.sum() - fails["sound"])
    n = both_yes + pass_not_sound + fail_sound + both_no
    return table, cohen_kappa(both_yes, pass_not_sound, fail_sound, both_no), n
