"""Hint leakage: a rationalized rationale that restates its hint instead of reasoning to it.

Rationalization shows the model the answer as a hint; a rationale written with
it can copy the answer instead of deriving it, and training on that teaches the
model to guess. A rationale is flagged when it

1. quotes the hint or talks about it: '(CORRECT)', 'hint', 'the given/correct answer',
   'marked correct' (any case); or
2. gives no reasoning: nothing but the final statement 'The answer is ...'; or
3. states the answer before any reasoning: an earlier 'The answer is', or the
   answer itself (as the task writes it: '72', '$1,000', '(B)', the right choice's
   text) in the opening, i.e. before the first arithmetic step and before the end
   of the first sentence, with more said after it (a one-sentence rationale that
   ends in the answer concludes it). An answer the question itself contains does
   not count.

The rule is task-independent; the one task-specific piece is
`task.answer_pattern(problem)`, how a rationale would state the gold answer.
"""

from __future__ import annotations

import re

from .answers import FINAL_MARKER, ascii_digits

_HINT_WORDS = re.compile(
    r"\(\s*correct\s*\)|\bhint(?:ed|s)?\b|\b(?:given|correct|provided) answer\b|\bmarked (?:as )?correct\b", re.IGNORECASE
)
# The first arithmetic step: an operator (or a calculator annotation) between two operands.
_STEP = re.compile(r"[0-9)]\s*(?P<op>[-+*/×÷x^=]|<<)\s*[-$(0-9.]")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_CONNECTIVES = re.compile(r"(?:\b(?:so|thus|therefore|hence|then|and)\b|[\s.,;:!-])*$", re.IGNORECASE)


def hint_leak(rationale: str, answer_pattern: re.Pattern | None) -> str | None:
    """Why a rationalized rationale leaks its hint, or None when it does not."""
    text = ascii_digits(rationale)
    m = _HINT_WORDS.search(text)
    if m:
        return f"quotes the hint ({m.group(0)!r})"
    markers = list(FINAL_MARKER.finditer(text))
    body = text[: markers[-1].start()] if markers else text
    body = _CONNECTIVES.sub("", body).strip()  # 'So the answer is' -> the reasoning before 'So'
    if not body:
        return "gives the answer with no reasoning"
    ends = []
    step, sentence = _STEP.search(body), _SENTENCE_END.search(body)
    if step:
        ends.append(step.start("op"))
    if sentence:
        ends.append(sentence.start())
    opening = body[: min(ends)] if ends else body
    if FINAL_MARKER.search(opening):
        return "says 'the answer is' before any reasoning"
    if answer_pattern is not None:
        for m in answer_pattern.finditer(opening):
            if re.search(r"\w", body[m.end() :]):  # more is said after it: it is not the conclusion
                return f"states the answer ({m.group(0).strip()!r}) before any reasoning"
    return None
