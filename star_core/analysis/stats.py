"""Pure statistics for comparing runs: binomial intervals and paired comparisons.

Two runs (or two iterations of one run) answer the same eval questions, so their
accuracies are compared *paired*: only the questions one side gets right and the
other wrong (the discordant pairs) carry information about the difference.

* p-value: the exact McNemar test, a two-sided binomial test of the discordant
  pairs against 1/2: p = min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2);
  p = 1 when there are no discordant pairs.
* 95% interval of the difference: Newcombe's hybrid score interval for paired
  proportions (Newcombe 1998, "Improved confidence intervals for the difference
  between binomial proportions based on paired data", method 10): the Wilson
  intervals of both accuracies, combined with the (corrected) phi correlation of
  the pairs. Unlike the Wald interval it stays inside [-1, 1] and behaves at
  accuracies near 0 or 1 and with few questions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Hashable, Iterable, Sequence

Z_95 = 1.959963984540054
CI_METHOD = "Newcombe hybrid score interval for paired proportions (Newcombe 1998, method 10)"
TEST_METHOD = "exact McNemar test (two-sided binomial test on the discordant pairs)"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share; (nan, nan) when n is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts.

    Computed with exact fractions, so it is exact for any count (no float underflow of 2^-n).
    """
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be non-negative")
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail))


@dataclass(frozen=True)
class PairedComparison:
    """Side A vs side B on the same questions. `difference` is accuracy_b - accuracy_a."""

    shared: int
    both_right: int
    only_a: int  # A right, B wrong
    only_b: int  # A wrong, B right
    both_wrong: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    ci_method: str = CI_METHOD
    test_method: str = TEST_METHOD

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    def to_dict(self) -> dict:
        return asdict(self)


def paired_counts(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, int, int]:
    """(both right, only A, only B, both wrong) of two outcome vectors over the same questions, in order."""
    if len(a) != len(b):
        raise ValueError(f"the outcome vectors must pair up question by question (lengths {len(a)} and {len(b)})")
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    return both, only_a, only_b, len(a) - both - only_a - only_b


def compare_counts(both_right: int, only_a: int, only_b: int, both_wrong: int, z: float = Z_95) -> PairedComparison:
    """The paired comparison from the four cells of the 2x2 table."""
    cells = (both_right, only_a, only_b, both_wrong)
    if any(c < 0 for c in cells):
        raise ValueError(f"cell counts must be non-negative, got {cells}")
    n = sum(cells)
    if n == 0:
        raise ValueError("no shared questions to compare")
    right_a, right_b = both_right + only_a, both_right + only_b
    acc_a, acc_b = right_a / n, right_b / n
    low, high = _newcombe_paired(both_right, only_a, only_b, both_wrong, z)
    return PairedComparison(
        shared=n, both_right=both_right, only_a=only_a, only_b=only_b, both_wrong=both_wrong,
        accuracy_a=acc_a, accuracy_b=acc_b, difference=(only_b - only_a) / n,
        ci_low=low, ci_high=high, p_value=mcnemar_exact_p(only_a, only_b),
    )


def compare_outcomes(a: Sequence[bool], b: Sequence[bool]) -> PairedComparison:
    """The paired comparison of two outcome vectors over the same questions (a[i] and b[i]: question i)."""
    return compare_counts(*paired_counts(a, b))


def compare_by_group(rows: Iterable[tuple[Hashable, bool, bool]]) -> dict:
    """(group, a right, b right) rows -> {group: PairedComparison}, groups in sorted order (None last)."""
    cells: dict = {}
    for group, x, y in rows:
        c = cells.setdefault(group, [0, 0, 0, 0])
        c[0 if x and y else 1 if x else 2 if y else 3] += 1
    order = sorted(cells, key=lambda g: (g is None, g if g is not None else 0))
    return {g: compare_counts(*cells[g]) for g in order}


def _newcombe_paired(e: int, f: int, g: int, h: int, z: float) -> tuple[float, float]:
    """Newcombe's method 10 for theta = p_B - p_A, with e = both right, f = only A, g = only B, h = both wrong.

    p1 = p_B = (e + g) / n and p2 = p_A = (e + f) / n, each with its Wilson interval (l, u);
    phi is the correlation of the pairs, corrected towards 0 by n/2 when positive and 0 when a
    margin is empty; then
        low  = theta - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        high = theta + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)
    """
    n = e + f + g + h
    p1, p2 = (e + g) / n, (e + f) / n
    l1, u1 = wilson_interval(e + g, n, z)
    l2, u2 = wilson_interval(e + f, n, z)
    margins = (e + g) * (f + h) * (e + f) * (g + h)  # B right, B wrong, A right, A wrong
    if margins == 0:
        phi = 0.0
    else:
        cross = e * h - f * g
        corrected = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = corrected / math.sqrt(margins)
    theta = p1 - p2
    d_low = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    d_high = (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2
    return max(-1.0, theta - math.sqrt(max(0.0, d_low))), min(1.0, theta + math.sqrt(max(0.0, d_high)))
