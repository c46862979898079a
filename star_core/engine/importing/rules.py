"""`--correct COLUMN>THRESHOLD`: which column of the imported files says an attempt is right, and from what value."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from ...core.errors import ImportInputError

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "=": operator.eq}
_RULE = re.compile(r"^\s*(?P<column>[^<>=]+?)\s*(?P<op>>=|<=|==|>|<|=)\s*(?P<threshold>[-+0-9.eE]+|true|false)\s*$",
                   re.IGNORECASE)
# Inspect scores as letters: correct, incorrect, partial, no answer (Inspect's value_to_float).
_LETTERS = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


@dataclass(frozen=True)
class CorrectRule:
    column: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.threshold:g}"

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


def parse_correct_rule(text: str) -> CorrectRule:
    """'acc>0.5', 'reward >= 1', 'match==C' read as a rule; ImportInputError saying the form otherwise."""
    match = _RULE.match(text)
    if match is None:
        raise ImportInputError(f"--correct {text!r} is not COLUMN>THRESHOLD (e.g. --correct acc>0.5, --correct reward>=1)")
    raw = match["threshold"].lower()
    try:
        threshold = {"true": 1.0, "false": 0.0}.get(raw)
        threshold = float(raw) if threshold is None else threshold
    except ValueError:
        raise ImportInputError(f"--correct {text!r}: {match['threshold']!r} is not a number") from None
    return CorrectRule(match["column"], match["op"], threshold)


def as_number(value) -> float | None:
    """A score as a number: a bool is 1 or 0, Inspect's letters C/I/P/N their values; None where it is none."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in _LETTERS:
            return _LETTERS[text.upper()]
        if text.lower() in ("true", "false"):
            return float(text.lower() == "true")
        try:
            return float(text)
        except ValueError:
            return None
    return None
