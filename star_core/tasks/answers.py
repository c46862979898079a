"""Pure answer functions shared by the dataset tasks: extraction, normalisation, comparison.

Extraction reads the text after the **last** final-answer marker ('The answer
is' or GSM8K's '####'): models correct themselves, so the last statement wins.
Normalisation turns what was said into a canonical value; comparison is on the
canonical values only.

Digits: ASCII digits, and full-width digits (０-９, mapped to ASCII), are digits.
Other scripts' digits (e.g. Arabic-Indic ١٨) and superscripts are not read as
numbers: the model is prompted in ASCII and a grader should not guess.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from .base import ANSWER_MARKER, after_last, rationale_of

FINAL_MARKER = re.compile(rf"{ANSWER_MARKER.pattern}|####", re.IGNORECASE)
MAX_NUMBER_DIGITS = 60  # a longer digit run is not an answer (and never parsed)

_WIDE = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "\u2212": "-", "\uff0d": "-", "\uff0c": ",", "\uff0e": "."})
# A number as people and models write it: optional sign (not a minus between two
# operands), optional $, digits with or without thousands commas, optional decimals.
_NUMBER = re.compile(
    r"(?:(?<![0-9A-Za-z)\]])(?P<sign>-)\s?)?\$?\s?"
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)?(?P<frac>\.[0-9]+)?"
)


def final_statement(completion: str) -> str | None:
    """The rest of the line after the last final-answer marker of a completion, or None without one."""
    return after_last(FINAL_MARKER, rationale_of(completion))


def ascii_digits(text: str) -> str:
    return text.translate(_WIDE)


# --- numbers ------------------------------------------------------------------


def numbers_in(text: str) -> list[str]:
    """Every number in a text, canonical ('1,000' -> '1000', '$18.00' -> '18', '-.5' -> '-0.5')."""
    out = []
    for m in _NUMBER.finditer(ascii_digits(text)):
        if m["int"] is None and m["frac"] is None:
            continue
        value = canonical_number((m["sign"] or "") + (m["int"] or "0").replace(",", "") + (m["frac"] or ""))
        if value is not None:
            out.append(value)
    return out


def canonical_number(text: str) -> str | None:
    """A number's canonical text ('18.00' -> '18', '1,000' -> '1000', '$5' -> '5'), or None if it is not one."""
    cleaned = ascii_digits(text).strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", cleaned):
        return None
    if len(re.sub(r"[^0-9]", "", cleaned)) > MAX_NUMBER_DIGITS:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern above admits only valid literals
        return None
    text = format(value.normalize(), "f") if value else "0"
    return text


def extract_number(completion: str) -> str | None:
    """The last number after the last final-answer marker, canonical.

    With a marker but no number, the statement itself is returned (so a reader
    sees what was said); it never compares equal to a number.
    """
    statement = final_statement(completion)
    if statement is None:
        return None
    numbers = numbers_in(statement)
    return numbers[-1] if numbers else statement.rstrip(".")[:100]


def numbers_equal(predicted: str | None, gold: str) -> bool:
    if predicted is None:
        return False
    a, b = canonical_number(predicted), canonical_number(gold)
    return a is not None and b is not None and Decimal(a) == Decimal(b)


def number_pattern(number: str) -> re.Pattern:
    """A pattern for a number as a rationale may write it: '1000', '1,000', '$1,000.00'."""
    value = Decimal(canonical_number(number) or number)
    sign = "-" if value < 0 else ""
    whole, _, frac = format(abs(value), "f").partition(".")
    grouped = re.sub(r"(?<=[0-9])(?=(?:[0-9]{3})+$)", ",", whole)
    whole_re = re.escape(whole) if grouped == whole else f"(?:{re.escape(whole)}|{re.escape(grouped)})"
    if whole == "0" and frac:
        whole_re = "0?"
    frac_re = rf"\.{frac}0*" if frac else r"(?:\.0+)?"
    return re.compile(rf"(?<![0-9.,]){re.escape(sign)}\$?{whole_re}{frac_re}(?![0-9]|,[0-9])")


# --- choices ------------------------------------------------------------------

_PAREN_LABEL = re.compile(r"\(([A-Za-z]|[0-9]{1,2})\)")
_BARE_LABEL = re.compile(r"^([A-Z]|[0-9]{1,2})(?:[.):,]|$)")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")


def extract_choice(completion: str) -> str | None:
    """The chosen label ('B') after the last marker, else the text said (normalised) for matching to a choice.

    '(B)', '(b) enforce', 'B', 'B.' give 'B'; a bare capital letter followed by a
    word ('A blotter') is an article, not a label, so the text is returned.
    """
    statement = final_statement(completion)
    if statement is None:
        return None
    statement = ascii_digits(statement)
    m = _PAREN_LABEL.search(statement) or _BARE_LABEL.match(statement)
    if m:
        return m.group(1).upper()
    return normalise_text(statement) or None


def choice_labels(predicted: str | None, choices: tuple[tuple[str, str], ...]) -> list[str]:
    """The labels a predicted answer names: a label itself, or every choice whose text it is.

    A text names several labels only where a row repeats a choice (43 CommonsenseQA
    training rows do, e.g. 'home' as both A and C); naming that text names either.
    """
    if predicted is None:
        return []
    labels = {label.upper(): label for label, _ in choices}
    if predicted.upper() in labels:
        return [labels[predicted.upper()]]
    said = normalise_text(predicted)
    return [label for label, text in choices if normalise_text(text) == said]


def choice_label(predicted: str | None, choices: tuple[tuple[str, str], ...]) -> str | None:
    """The one label a predicted answer names, or None (no choice, or a text repeated across choices)."""
    hits = choice_labels(predicted, choices)
    return hits[0] if len(hits) == 1 else None


def choice_correct(predicted: str | None, problem_answer: str, choices: tuple[tuple[str, str], ...]) -> bool:
    return problem_answer in choice_labels(predicted, choices)


def normalise_text(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed, outer quotes/punctuation and a leading article removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split()).strip(" .,;:!?\"'`")
    return _ARTICLE.sub("", text)


# --- exact strings and patterns -------------------------------------------------


def extract_text(completion: str) -> str | None:
    """The final statement as said, without a trailing full stop."""
    statement = final_statement(completion)
    return statement.rstrip(".").strip() or None if statement is not None else None


def texts_equal(predicted: str | None, gold: str) -> bool:
    return predicted is not None and normalise_text(predicted) == normalise_text(gold)


def regex_matches(predicted: str | None, pattern: str) -> bool:
    """Whether the whole predicted answer matches the gold regular expression."""
    if predicted is None:
        return False
    try:
        return re.fullmatch(pattern, predicted.strip()) is not None
    except re.error:
        return False
