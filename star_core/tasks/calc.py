"""A small, safe arithmetic evaluator for calculator annotations like `<<48/2=24>>`.

Model text is never given to `eval` or `ast`: a hand-written tokenizer and
recursive-descent parser accept only numbers, + - * / (also x × ÷), ** or ^,
// (floor division), a trailing % and parentheses, and compute with exact fractions. Every
intermediate result is bounded, so `9**9**9` or a 5,000-digit number is an
error, not a hung process.

Grammar (usual precedence; ** and ^ bind right):

    expr  := term (('+' | '-') term)*
    term  := unary (('*' | 'x' | '×' | '/' | '//' | '÷') unary)*
    unary := ('-' | '+') unary | power
    power := atom (('**' | '^') unary)?
    atom  := NUMBER '%'? | '(' expr ')'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 200  # longer annotations are refused, not parsed
MAX_DIGITS = 30  # a number literal longer than this is refused
MAX_BITS = 400  # every intermediate numerator and denominator stays below 2**400 (~1e120)
MAX_DEPTH = 40  # parentheses and unary signs nested deeper than this are refused

_TOKEN = re.compile(r"\s*(?:(?P<num>[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)|(?P<op>\*\*|//|[-+*/x×÷^%()]))")


class CalcError(ValueError):
    """The expression is not arithmetic this evaluator accepts (or is too large)."""


def evaluate(text: str) -> Fraction:
    """The exact value of an arithmetic expression, or CalcError saying why not."""
    if len(text) > MAX_CHARS:
        raise CalcError(f"longer than {MAX_CHARS} characters")
    tokens = _tokenize(text)
    if not tokens:
        raise CalcError("empty expression")
    parser = _Parser(tokens)
    value = parser.expr(0)
    if parser.pos != len(tokens):
        raise CalcError(f"unexpected {tokens[parser.pos][1]!r}")
    return value


def parse_number(text: str) -> Fraction:
    """A plain number literal ('1,000', '.5', '18.00', '-3'), exactly."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if sign < 0 else text
    if not re.fullmatch(r"[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+", body):
        raise CalcError(f"{text!r} is not a number")
    return sign * _number(body)


def _number(text: str) -> Fraction:
    digits = text.replace(",", "")
    if len(digits.replace(".", "")) > MAX_DIGITS:
        raise CalcError(f"number {text[:20]}... has more than {MAX_DIGITS} digits")
    if "," in text and not re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?", text):
        raise CalcError(f"{text!r} has misplaced thousands separators")
    return Fraction(digits.rstrip(".") or "0")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise CalcError(f"unexpected character {text[pos:].lstrip()[:1]!r}")
        tokens.append(("num", m["num"]) if m["num"] is not None else ("op", m["op"]))
        pos = m.end()
    return tokens


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise CalcError("a result is too large")
    return value


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    pos: int = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op" else None

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            right = self.term(depth)
            value = _bounded(value + right if op == "+" else value - right)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self._peek() in ("*", "x", "×", "/", "//", "÷"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            right = self.unary(depth)
            if op in ("/", "//", "÷"):
                if right == 0:
                    raise CalcError("division by zero")
                value = _bounded(value / right if op != "//" else Fraction(value // right))
            else:
                value = _bounded(value * right)
        return value

    def unary(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise CalcError("nested too deeply")
        if self._peek() in ("-", "+"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            value = self.unary(depth + 1)
            return -value if op == "-" else value
        return self.power(depth)

    def power(self, depth: int) -> Fraction:
        base = self.atom(depth)
        if self._peek() in ("**", "^"):
            self.pos += 1
            exponent = self.unary(depth + 1)
            return _power(base, exponent)
        return base

    def atom(self, depth: int) -> Fraction:
        if self.pos >= len(self.tokens):
            raise CalcError("expression ends too early")
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "num":
            value = _number(text)
            if self._peek() == "%":
                self.pos += 1
                value /= 100
            return value
        if text == "(":
            value = self.expr(depth + 1)
            if self._peek() != ")":
                raise CalcError("unclosed '('")
            self.pos += 1
            return value
        raise CalcError(f"unexpected {text!r}")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalcError("only whole-number exponents are supported")
    e = exponent.numerator
    if base in (0, 1, -1):
        if base == 0 and e < 0:
            raise CalcError("division by zero")
        return base**e if base else Fraction(0 if e else 1)
    # Size check before computing: |numerator|**|e| has about bit_length * |e| bits.
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(e) * max(size - 1, 1) > MAX_BITS:
        raise CalcError("a power is too large")
    return _bounded(base**e)


# ---------------------------------------------------------------------------


def decimals(text: str) -> int:
    """Digits after the decimal point of a number literal."""
    return len(text.split(".", 1)[1]) if "." in text else 0


def matches_shown(value: Fraction, shown: str) -> bool:
    """Whether `shown` is `value`: exactly, or rounded to the decimal places it shows.

    '0.67' shows 2/3 rounded to 2 places; a whole number must be exact, so '3'
    does not show 10/3 (every annotation of GSM8K's training split is exact).
    """
    target = parse_number(shown)
    places = decimals(shown.strip())
    if value == target:
        return True
    return places > 0 and abs(value - target) <= Fraction(1, 2 * 10**places)
