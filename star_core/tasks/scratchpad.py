"""The STaR paper's addition scratchpad (ezelikman/STaR, arithmetic/gen_sums.py), written and checked
(docs/measurements.md#2026-12-03-the-papers-scratchpad-on-the-embedded-models-and-prefix-free-fine-tuning).

Digits are space-separated (one token each for most tokenizers) and the scratchpad runs from
the least significant digit up; every line carries the running result and the carry into
the place it adds:

    Input:
    6 2 4 + 2 5 9
    Target:
    <scratch>
    6 2 4 + 2 5 9 , C: 0
    2 + 5 , 3 C: 1
    6 + 2 , 8 3 C: 0
    , 8 8 3 C: 0
    0 8 8 3
    </scratch>
    8 8 3

As in the paper, the lowest place has no line of its own (its digit is the first line's
running result), and the line before `</scratch>` is the final carry followed by the result.
Every line is determined by the problem, so the verifier compares each with the line the sum
takes and names the first field that differs (the digits added, the running result, the carry).
"""

from __future__ import annotations

import re

from .base import NO_STEPS, Verdict, rationale_of

OPEN, CLOSE = "<scratch>", "</scratch>"
# A place line '2 + 5 , 3 C: 1' (the first line adds whole numbers, the last-but-one none).
_LINE = re.compile(r"(?P<pair>.*?)\s*,\s*(?P<result>[0-9 ]*?)\s*C:\s*(?P<carry>\S*)")


def spaced(number: int | str) -> str:
    """'883' as '8 8 3'."""
    return " ".join(str(number).replace(" ", ""))


def question_text(a: int, b: int, hint: str | None = None) -> str:
    """The prompt up to where the model writes; the paper puts the hint right after 'Target:'."""
    return f"Input:\n{spaced(a)} + {spaced(b)}\nTarget:" + (f" {hint}" if hint else "")


def hint_text(a: int, b: int) -> str:
    """The paper's hint: the scratchpad's last line, the final carry then the result ('0 8 8 3')."""
    return scratch_lines(a, b)[-1]


def scratch_lines(a: int, b: int) -> list[str]:
    """The lines between <scratch> and </scratch> for a + b, exactly as the paper's generator writes them.

    Operands of different lengths are zero-padded to the same width place by place (the paper only
    generates equal lengths; its zip would drop the longer one's top digits).
    """
    width = max(len(str(a)), len(str(b)))
    places = list(zip(str(a).zfill(width), str(b).zfill(width)))[::-1]  # least significant first
    lines = [f"{spaced(a)} + {spaced(b)} , C: 0"]
    carry, result = 0, ""
    for i, (x, y) in enumerate(places):
        if i:
            lines.append(f"{x} + {y} , {result}C: {carry}")
        total = int(x) + int(y) + carry
        carry, result = total // 10, f"{total % 10} {result}"
    lines.append(f", {result}C: {carry}")
    lines.append(f"{carry} {result}".strip())
    return lines


def rationale(a: int, b: int) -> str:
    """The scratchpad block, as an exemplar's rationale holds it."""
    return "\n".join([OPEN, *scratch_lines(a, b), CLOSE])


def completion(rationale_text: str, answer: str) -> str:
    """What the model writes after 'Target:'; a bare answer with no rationale is the answer line alone.

    A rationale taken from a stored completion still has its answer line after </scratch>: the format
    writes the answer itself, so that line is dropped rather than repeated.
    """
    shown = spaced(answer) if re.fullmatch(r"[0-9 ]+", answer.strip()) else answer.strip()
    body = rationale_text.strip()
    if CLOSE in body:
        body = body.rsplit(CLOSE, 1)[0] + CLOSE
    return f"\n{body}\n{shown}" if body else f"\n{shown}"


def answer_line(completion_text: str) -> str | None:
    """The line that states the answer: the first after </scratch>, or the first line where there is no
    scratchpad; None for a scratchpad left open (the model ran out of tokens inside it)."""
    text = rationale_of(completion_text)
    if CLOSE in text:
        text = text.rsplit(CLOSE, 1)[1]
    elif OPEN in text:
        return None
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[0] if lines else None


def extract(completion_text: str) -> str | None:
    """The answer as digits ('8 8 3' -> '883'), or the answer line as written when it is not a number."""
    line = answer_line(completion_text)
    if line is None:
        return None
    digits = line.replace(" ", "")
    return digits if re.fullmatch(r"[0-9]+", digits) else line


def answer_pattern(a: int, b: int) -> re.Pattern | None:
    """How a rationale states the sum: its spaced digits, not inside a longer spaced number."""
    pattern = re.compile(rf"(?<![0-9])(?<![0-9] ){re.escape(spaced(a + b))}(?! ?[0-9])")
    return None if pattern.search(question_text(a, b)) else pattern


def verify(completion_text: str, a: int, b: int) -> Verdict:
    """Every line of the scratchpad is the line a + b takes, and the answer after it is the sum.

    A right answer with no scratchpad is NO_STEPS. The first line that differs is named with the
    field that differs, e.g. "line 2 '2 + 5 , 3 C: 0': the carry should be 1, not 0".
    """
    text = rationale_of(completion_text)
    if OPEN not in text:
        return Verdict(False, NO_STEPS if answer_line(completion_text) else "gives no scratchpad and no answer")
    before, _, rest = text.partition(OPEN)
    if before.strip():
        return Verdict(False, f"writes {before.strip()!r} before the scratchpad")
    body, closed, after = rest.partition(CLOSE)
    got = [" ".join(line.split()) for line in body.splitlines() if line.strip()]
    want = scratch_lines(a, b)
    # The lines first: a scratchpad left open is most often one that went wrong and then ran on.
    for number, (line, expected) in enumerate(zip(got, want), start=1):
        if line != expected:
            return Verdict(False, f"line {number} {line!r}: {_difference(line, expected)}")
    if not closed:
        return Verdict(False, f"the scratchpad is not closed ('{CLOSE}')")
    if len(got) < len(want):
        return Verdict(False, f"the scratchpad stops after line {len(got)} of {len(want)} (next: {want[len(got)]!r})")
    if len(got) > len(want):
        return Verdict(False, f"line {len(want) + 1} {got[len(want)]!r} is past the {len(want)} lines the sum takes")
    answer = next((" ".join(line.split()) for line in after.splitlines() if line.strip()), None)
    if answer is None:
        return Verdict(False, "gives no answer after the scratchpad")
    if answer != spaced(a + b):
        return Verdict(False, f"the scratchpad ends in {want[-1]!r} but the answer given is {answer!r}")
    return Verdict(True, f"all {len(want)} scratchpad lines hold")


def _difference(line: str, expected: str) -> str:
    """Which field of a wrong line differs from the expected line's."""
    got, want = _LINE.fullmatch(line), _LINE.fullmatch(expected)
    if got is None or want is None:
        return f"should be {expected!r}"
    for field, name in (("pair", "the digits added"), ("result", "the running result"), ("carry", "the carry")):
        if got[field] != want[field]:
            return f"{name} should be {want[field].strip() or 'empty'!r}, not {got[field].strip() or 'empty'!r}"
    return f"should be {expected!r}"  # the same fields, other spacing or punctuation
