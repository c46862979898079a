"""GSM8K grade-school maths word problems, with a calculator-annotation step check.

A GSM8K solution marks each computation as `<<48/2=24>>24`; the step check
evaluates every annotation with a small exact evaluator (calc.py: never `eval`)
and requires each to hold and the number written after it to repeat its value
(RFT checks the same annotations). The exemplars are written the same way, so
the model learns to annotate; a rationale with no annotation has nothing to
check and does not pass the `verified` filter.

Prompt:

    Question: <question>
    Answer: <rationale with <<expr=value>> annotations> The answer is 72.

Hint (as the paper does for arithmetic and GSM8K): the answer in the question,
'Question: ... (The answer is 72.)'.
"""

from __future__ import annotations


import re

from .answers import canonical_number, extract_number, number_pattern, numbers_equal
from .base import Exemplar, Problem, Reference, Verdict, answer_sentence, rationale_of
from .calc import CalcError, evaluate, matches_shown, parse_number
from .datafile import RowError, load_problems, text_value
from .settings import TaskSettings


# Offline, the message names the file to pass with --data instead.
HUB_EXAMPLE = "train.jsonl from github.com/openai/grade-school-math (grade_school_math/data/train.jsonl)"
HUB_ID = "openai/gsm8k"
# GSM8K's gold solutions written as completions are 113 SmolLM2 tokens at the median;
# 192 covers 89% of them (230: 95%). Longer outputs are mostly a small model repeating itself.
SUGGESTED = {"max_new_tokens": 192}

_AFTER = re.compile(r"\s?\$?\s?(-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\.[0-9]+)")


class GSM8KTask:
    name = "gsm8k"
    can_verify_steps = True
    suggested = SUGGESTED

    def __init__(self, settings: TaskSettings | None = None):
        self.report = None

    def problems(self, settings: TaskSettings) -> list[Problem]:
        problems, self.report = load_problems(self.name, TaskSettings.of(settings), parse_row, HUB_ID, "main", HUB_EXAMPLE)
        return problems

    # --- prompt format -------------------------------------------------------

    def format_question(self, problem: Problem | Exemplar, hint: str | None = None) -> str:
        hint_text = f" ({hint})" if hint else ""
        return f"Question: {problem.question}{hint_text}\nAnswer:"

    def format_hint(self, problem: Problem) -> str:
        return answer_sentence(problem.answer)

    def format_completion(self, rationale: str, answer: str) -> str:
        return f" {rationale} {answer_sentence(answer)}"

    def reference(self, problem: Problem) -> Reference | None:
        """The dataset's solution, a step per line (each with its calculator annotations), written as the
        exemplars write a rationale: the lines joined by spaces, then the answer sentence."""
        lines = [" ".join(line.split()) for line in problem.solution.splitlines() if line.strip()]
        if not lines:
            return None
        return Reference(tuple(f" {line}" for line in lines), f" {answer_sentence(problem.answer)}")

    # --- answers -------------------------------------------------------------

    def extract_answer(self, completion: str) -> str | None:
        return extract_number(completion)

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        return numbers_equal(predicted, problem.answer)

    def verify_steps(self, completion: str, problem: Problem) -> Verdict:
        return check_annotations(rationale_of(completion))

    def answer_pattern(self, problem: Problem) -> re.Pattern | None:
        """How a rationale would state the answer; None when the question itself contains it."""
        pattern = number_pattern(problem.answer)
        return None if pattern.search(problem.question) else pattern


def parse_row(row: dict, line: int) -> Problem:
    """A GSM8K row: `question`, and `answer` = worked solution ending in '#### N' (or a bare number)."""
    question = text_value(row, "question", "question")
    solution = text_value(row, "answer", "worked solution")
    answer = gold_answer(solution)
    steps = solution.rsplit("####", 1)[0].strip()
    difficulty = len([s for s in steps.splitlines() if s.strip()]) or None  # solution lines = reasoning steps
    return Problem(id=f"L{line}", question=question, answer=answer, split="", difficulty=difficulty, solution=steps)


def gold_answer(solution: str) -> str:
    """The canonical number after the last '####' of a solution (or the solution itself if it is a number)."""
    if "####" in solution:
        final = solution.rsplit("####", 1)[1].strip()
    elif canonical_number(solution) is not None:
        final = solution
    else:
        raise RowError("the answer has no final '#### N' line")
    number = canonical_number(final)
    if number is None:
        raise RowError(f"the final answer {final[:40]!r} is not a number")
    return number


def check_annotations(text: str) -> Verdict:
    """Every '<<expression=value>>' annotation must hold, and a number written after it must repeat its value."""
    annotations = []
    pos = 0
    while True:
        start = text.find("<<", pos)
        if start < 0:
            break
        end = text.find(">>", start + 2)
        nested = text.find("<<", start + 2)
        if end < 0 or 0 <= nested < end:
            return Verdict(False, f"annotation {len(annotations) + 1} {text[start:start + 30]!r} is not closed with '>>'")
        annotations.append((text[start + 2 : end], text[end + 2 :]))
        pos = end + 2
    if ">>" in text[pos:] or text.count(">>") > len(annotations):
        return Verdict(False, "a '>>' has no opening '<<'")
    if not annotations:
        return Verdict(False, "no <<expression=value>> calculator annotations to check")
    for number, (inner, after) in enumerate(annotations, start=1):
        reason = _check_one(inner, after)
        if reason:
            return Verdict(False, f"annotation {number} <<{inner[:60]}>> {reason}")
    return Verdict(True, f"all {len(annotations)} annotations hold")


def _check_one(inner: str, after: str) -> str:
    """Why one annotation fails, or '' when it holds."""
    parts = inner.split("=")
    if len(parts) < 2:
        return "has no '='"
    try:
        value = evaluate(parts[0])
    except CalcError as exc:
        return f"cannot be evaluated: {exc}"
    for shown in parts[1:]:
        shown = shown.strip().lstrip("$").strip()
        try:
            if not matches_shown(value, shown):
                return f"is wrong: {parts[0].strip()} is {_show(value)}, not {shown}"
        except CalcError:
            try:  # a chain '<<2*3=6*1=6>>': each part must have the same value
                if evaluate(shown) != value:
                    return f"is wrong: {shown} is not {_show(value)}"
            except CalcError as exc:
                return f"has a result that is not a number ({exc})"
    m = _AFTER.match(after)
    if m and canonical_number(m.group(1)) != canonical_number(parts[-1].strip().lstrip("$")):
        try:
            if parse_number(m.group(1)) == parse_number(parts[-1].strip().lstrip("$")):
                return ""
        except CalcError:
            pass
        return f"is followed by {m.group(1)}, not its value {parts[-1].strip()}"
    return ""


def _show(value) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"
