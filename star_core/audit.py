"""Pure statistics for hand audits: confidence intervals and agreement.

The audit numbers are the ones researchers cite ("x% of rationalized rationales
were sound at iteration 3"), so each share comes with a Wilson score interval
(well behaved for small n and shares near 0 or 1, unlike the normal one), and
verifier-vs-human agreement comes with Cohen's kappa (agreement beyond chance).
"""

from __future__ import annotations

import math

from .stats import Z_95, wilson_interval  # noqa: F401 - the audit figures' interval, shared with run comparisons

RATINGS = ("sound", "flawed", "wrong")
RATING_HELP = {
    "sound": "the reasoning is right and supports the answer",
    "flawed": "the final answer is right but the reasoning is not (lucky guess, copies the hint, a slip)",
    "wrong": "the rationale and its answer are wrong",
}
QUEUE_ORDERS = ("random", "oldest", "disagreement")


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
