"""n-digit addition, the paper's first task (docs/paper.md#the-loop-in-detail), with an exact step verifier.

Prompt format, chosen by measurement (bench/formats.py, SmolLM2-135M few-shot,
1/2/3 digits): the question "Question: 47 + 85 = ?" and a place-value rationale

    Answer: 47 + 85 = 120 + 12 = 132. The answer is 132.

(one sum per decimal place, highest first, skipping places that sum to 0) got
88% / 22% / 3%; a column-by-column scratchpad with carries got 22% / 0% / 0%,
and the answer alone 50% / 25% / 3%.

A second format, `scratchpad` (RunConfig.arithmetic_format), is the STaR paper's own:
space-separated digits and a line per place from the least significant up, with the running
result and the carry (scratchpad.py); its exemplars are data/exemplars/arithmetic-scratchpad.jsonl.

Either way the rationale is fully determined by the problem, so the verifier says exactly
which step is wrong. That matters: with an answer-only filter, rationalized
rationales that copy the hinted answer poison the loop
(docs/measurements.md#2026-12-01-rationalization-poisons-an-answer-only-filter).
"""

from __future__ import annotations


import random
import re

from ..core.errors import ConfigError
from ..core.states import ArithmeticFormat
from . import scratchpad
from .base import (ANSWER_MARKER, ANSWER_TEXT, NO_STEPS, Exemplar, Problem, Reference, Verdict, answer_sentence,
                   last_answer, rationale_of)
from .settings import TaskSettings



class ArithmeticTask:
    name = "arithmetic"
    can_verify_steps = True
    key_fields = ("arithmetic_format",)  # the format changes every prompt, exemplar and verdict
    # Keys stored before the format was a setting say 'arithmetic': the default format keeps that key.
    key_defaults = {"arithmetic_format": ArithmeticFormat.PLACE_VALUE.value}

    def __init__(self, settings: TaskSettings | None = None):
        # Problems come from the seed and sizes, read in problems(); only the format is the task's own.
        self.format = ArithmeticFormat(settings.arithmetic_format if settings is not None else ArithmeticFormat.PLACE_VALUE)
        self.is_scratchpad = self.format == ArithmeticFormat.SCRATCHPAD
        self.exemplar_file = "arithmetic-scratchpad" if self.is_scratchpad else "arithmetic"

    def problems(self, settings: TaskSettings) -> list[Problem]:
        """Train and eval problems drawn from the seed, spread evenly over the digit counts.

        No question is in both splits. A digit count with too few distinct problems
        (1-digit has only 100) gives its share to the larger ones.
        """
        settings = TaskSettings.of(settings)  # a RunConfig works too: the task reads these fields only
        rng = random.Random(settings.seed)
        digits = list(range(settings.min_difficulty, settings.max_difficulty + 1))
        capacity = {d: _distinct_pairs(d) for d in digits}
        if settings.train_size + settings.eval_size > sum(capacity.values()):
            raise ConfigError(
                "train_size",
                f"train_size + eval_size = {settings.train_size + settings.eval_size} exceeds the {sum(capacity.values())} "
                f"distinct problems of {digits[0]}-{digits[-1]} digits; widen the difficulty range or ask for fewer",
            )
        eval_quota = _spread(settings.eval_size, capacity)
        room = {d: capacity[d] - eval_quota[d] for d in digits}
        train_quota = _spread(settings.train_size, room)
        out: list[Problem] = []
        by_split: dict[str, list[Problem]] = {"train": [], "eval": []}
        for d in digits:
            lo = 0 if d == 1 else 10 ** (d - 1)
            width = 10**d - lo
            # Distinct (a, b) pairs as distinct indices into the d-digit square.
            indices = rng.sample(range(width * width), eval_quota[d] + train_quota[d])
            for i, index in enumerate(indices):
                a, b = lo + index // width, lo + index % width
                split = "eval" if i < eval_quota[d] else "train"
                by_split[split].append(Problem(id=f"{a}+{b}", question=f"{a} + {b}", answer=str(a + b), split=split, difficulty=d))
        for split in ("train", "eval"):
            rng.shuffle(by_split[split])
            out += by_split[split]
        return out

    def format_question(self, problem: Problem | Exemplar, hint: str | None = None) -> str:
        if self.is_scratchpad:
            operands = _operands(problem.question)
            if operands is not None:
                return scratchpad.question_text(*operands, hint)
        hint_text = f" ({hint})" if hint else ""
        return f"Question: {problem.question} = ?{hint_text}\nAnswer:"

    def format_hint(self, problem: Problem) -> str:
        # The paper puts the answer in the question for arithmetic.
        operands = _operands(problem.question) if self.is_scratchpad else None
        return scratchpad.hint_text(*operands) if operands else answer_sentence(problem.answer)

    def format_completion(self, rationale: str, answer: str) -> str:
        if self.is_scratchpad:
            return scratchpad.completion(rationale, answer)
        return f" {rationale} {answer_sentence(answer)}"

    def reference(self, problem: Problem) -> Reference | None:
        """The canonical rationale cut into steps: place-value, each place sum then the total
        (' 47 + 85 = 120', ' + 12', ' = 132.'); scratchpad, each line of the <scratch> block."""
        operands = _operands(problem.question)
        if operands is None:
            return None
        a, b = operands
        if self.is_scratchpad:
            lines = scratchpad.scratch_lines(a, b)
            steps = (f"\n{scratchpad.OPEN}\n{lines[0]}", *(f"\n{line}" for line in lines[1:]))
            return Reference(steps, f"\n{scratchpad.CLOSE}\n{scratchpad.spaced(a + b)}")
        sums = place_sums(a, b)
        if len(sums) == 1:
            steps = (f" {a} + {b} = {a + b}.",)
        else:
            steps = (f" {a} + {b} = {sums[0]}", *(f" + {s}" for s in sums[1:]), f" = {a + b}.")
        return Reference(steps, f" {answer_sentence(str(a + b))}")

    def extract_answer(self, completion: str) -> str | None:
        if self.is_scratchpad:
            return scratchpad.extract(completion)
        answer = last_answer(rationale_of(completion))
        if answer is None:
            return None
        number = answer.replace(",", "").strip()
        return number if re.fullmatch(r"-?\d+", number) else answer

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        return predicted is not None and predicted.lstrip("0") == problem.answer.lstrip("0")

    def answer_pattern(self, problem: Problem) -> re.Pattern | None:
        """How a rationale states the sum (for the hint-leak check): the number, not inside a longer one."""
        operands = _operands(problem.question) if self.is_scratchpad else None
        if operands is not None:
            return scratchpad.answer_pattern(*operands)
        pattern = re.compile(rf"(?<![0-9]){problem.answer}(?![0-9])")
        return None if pattern.search(problem.question) else pattern  # '7 + 0': the question states it

    def verify_steps(self, completion: str, problem: Problem) -> Verdict:
        """The rationale carries the place-value scratchpad, every step of its chain holds, and the
        answer is the chain's total.

        The chain is 'a + b = ... = total'; each step is a sum of whole numbers equal to a + b.
        Where a + b has more than one place to add (47 + 85: 120 + 12), one step must be those
        place sums (in any order): a bare 'a + b = total.' is a right answer with no reasoning in
        it, and gets the reason NO_STEPS ('no steps'). The model writes such bare sums after a
        first iteration (docs/measurements.md#2026-12-01-the-step-check-accepted-a-bare-sum); keeping them
        teaches it to skip the scratchpad.
        A problem whose place sums are one number (every 1-digit problem, and 40 + 50) may state
        the sum directly: there is nothing to decompose, and the exemplars write it that way.

        What the chain check itself rejects is the rationalization failure of
        docs/measurements.md#2026-12-01-rationalization-poisons-an-answer-only-filter: arithmetic that is wrong
        but whose final answer copies the hint.
        """
        operands = _operands(problem.question)
        if operands is None:  # e.g. an exemplar typed or imported for another task
            return Verdict(False, f"the question {problem.question!r} is not an addition 'a + b'")
        a, b = operands
        if self.is_scratchpad:
            return scratchpad.verify(completion, a, b)
        text = rationale_of(completion)
        marker = ANSWER_MARKER.search(text)
        if marker is None:
            return Verdict(False, f"gives no final answer ('{ANSWER_TEXT} ...')")
        body = text[: marker.start()]
        parts = [p.strip() for p in body.strip().rstrip(".").split("=")]
        if len(parts) < 2 or sorted(_terms(parts[0]) or []) != sorted([a, b]):
            return Verdict(False, f"does not start from '{a} + {b} = ...'")
        for number, part in enumerate(parts[1:], start=1):
            terms = _terms(part)
            if terms is None:
                return Verdict(False, f"step {number} '{part}' is not a sum of whole numbers")
            if sum(terms) != a + b:
                return Verdict(False, f"step {number} '{part}' makes {sum(terms)}, not {a + b}")
        if len(_terms(parts[-1])) != 1:  # every part parsed above
            return Verdict(False, "the chain does not end in a single number")
        answer = self.extract_answer(completion)
        if answer is not None and answer != parts[-1]:
            return Verdict(False, f"the chain ends in {parts[-1]} but the answer given is {answer}")
        sums = place_sums(a, b)
        if len(sums) == 1:
            return Verdict(True, "states the sum directly (one place to add)" if len(parts) == 2
                           else f"all {len(parts) - 1} steps hold")
        if len(parts) == 2:
            return Verdict(False, NO_STEPS)
        wanted = sorted(sums)
        if not any(sorted(t for t in _terms(p) if t) == wanted for p in parts[1:-1]):
            return Verdict(False, f"the steps hold but none is the place sums {' + '.join(map(str, sums))}")
        return Verdict(True, f"all {len(parts) - 1} steps hold (place sums)")


def place_sums(a: int, b: int) -> list[int]:
    """The sum of each decimal place of a + b, highest place first, places summing to 0 left out."""
    width = max(len(str(a)), len(str(b)))
    da, db = str(a).zfill(width), str(b).zfill(width)
    sums = [(int(x) + int(y)) * 10 ** (width - 1 - i) for i, (x, y) in enumerate(zip(da, db))]
    return [s for s in sums if s] or [0]


def rationale_for(a: int, b: int) -> str:
    """The canonical rationale for a + b, as the exemplars write it."""
    sums = place_sums(a, b)
    middle = " = " + " + ".join(map(str, sums)) if len(sums) > 1 else ""
    return f"{a} + {b}{middle} = {a + b}."


def _operands(question: str) -> tuple[int, int] | None:
    """(a, b) of a question 'a + b', or None for anything else."""
    match = re.fullmatch(r"\s*(\d{1,30}) \+ (\d{1,30})\s*", question)
    return (int(match[1]), int(match[2])) if match else None


def _terms(text: str) -> list[int] | None:
    """The whole numbers of 'x + y + ...', or None when the text is anything else."""
    pieces = [t.strip() for t in text.split("+")]
    if not all(re.fullmatch(r"\d{1,30}", t) for t in pieces):
        return None
    return [int(t) for t in pieces]


def _spread(total: int, capacity: dict[int, int]) -> dict[int, int]:
    """`total` (at most the capacities' sum) split as evenly as they allow, the remainder to the larger keys."""
    quota = dict.fromkeys(capacity, 0)
    left = total
    while left:
        open_keys = [k for k in capacity if quota[k] < capacity[k]]
        share, extra = divmod(left, len(open_keys))
        for i, k in enumerate(open_keys):
            want = share + (1 if i >= len(open_keys) - extra else 0)
            got = min(want, capacity[k] - quota[k])
            quota[k] += got
            left -= got
    return quota


def _distinct_pairs(digits: int) -> int:
    count = 10 if digits == 1 else 9 * 10 ** (digits - 1)
    return count * count
