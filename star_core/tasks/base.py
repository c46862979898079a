"""What a task is: its problems, its prompt format, and pure answer functions.

A task knows nothing about models, the store or the loop. The loop asks it for
problems, builds prompts with it, and judges completions with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

from .key import TaskKey
from .settings import TaskSettings



# The loop stops decoding at the first blank line: that is how every exemplar ends.
STOP_TEXT = "\n\n"


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str  # the gold answer, as text the task's checker accepts
    split: str  # "train" or "eval"
    difficulty: int | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (label, text) for multiple-choice tasks
    solution: str = ""  # the dataset's own worked solution, where it has one (gsm8k): the seed and partial hints


@dataclass(frozen=True)
class Reference:
    """A problem's exact rationale as a completion, cut into its steps: `"".join(steps) + tail` is what the model
    would write after 'Answer:'. The seed trains on the whole; a partial hint gives the first j steps."""

    steps: tuple[str, ...]
    tail: str  # what follows the last step: the answer sentence (or line)

    @property
    def completion(self) -> str:
        return "".join(self.steps) + self.tail

    def prefix(self, given: int) -> str:
        """The first `given` steps, as the model would have written them."""
        return "".join(self.steps[:given])


def given_count(share: float, steps: int) -> int:
    """How many of a reference's steps a partial hint gives at `share`: rounded down, never all of them."""
    return max(0, min(steps - 1, int(share * steps + 1e-9)))


def written_share(rows) -> float | None:
    """The share of steps the model wrote itself over (steps, given_steps) pairs; None without any step.

    The same expression as SQL's `1 - sum(given_steps) / sum(steps)` over v_attempts.
    """
    total = given = 0
    for steps, given_steps in rows:
        if steps:
            total += steps
            given += min(given_steps or 0, steps)
    return None if not total else 1 - given / total


def choices_to_json(choices: tuple[tuple[str, str], ...]) -> str | None:
    """Choices as the store keeps them: JSON [[label, text], ...], or NULL without choices."""
    return json.dumps([list(c) for c in choices]) if choices else None


def choices_from_json(text: str | None) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(c) for c in json.loads(text)) if text else ()


@dataclass(frozen=True)
class Exemplar:
    question: str
    rationale: str
    answer: str
    choices: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The result of checking a rationale's steps: ok is None where the task cannot check steps."""

    ok: bool | None
    reason: str = ""


class Task(Protocol):
    name: str
    can_verify_steps: bool
    key: TaskKey  # set by the registry (get_task): the name and the settings this task's behaviour depends on

    def problems(self, settings: TaskSettings) -> list[Problem]:
        """The train and eval problems; a RunConfig may be passed, and only its TaskSettings fields are read."""
        ...

    def format_question(self, problem: Problem | Exemplar, hint: str | None = None) -> str:
        """The text up to where the model starts writing (ends with 'Answer:')."""
        ...

    def format_hint(self, problem: Problem) -> str: ...

    def format_completion(self, rationale: str, answer: str) -> str:
        """What the model writes after 'Answer:' for a rationale and answer."""
        ...

    def extract_answer(self, completion: str) -> str | None: ...

    def is_correct(self, predicted: str | None, problem: Problem) -> bool: ...

    def verify_steps(self, completion: str, problem: Problem) -> Verdict: ...

    def answer_pattern(self, problem: Problem) -> re.Pattern | None:
        """How a rationale would state the gold answer (for the hint-leak check); None if the question states it."""
        ...


# ---------------------------------------------------------------------------

# How every prompt format states the final answer; extraction reads what follows its last occurrence.
ANSWER_TEXT = "The answer is"
ANSWER_MARKER = re.compile(rf"{ANSWER_TEXT}\s*:?", re.IGNORECASE)


# The step check's reason for a right sum written with no steps where the task has steps to show
# (arithmetic's bare 'a + b = total.'): the Accuracy page counts kept rationales without it.
NO_STEPS = "no steps"


def answer_sentence(shown: str) -> str:
    """The sentence that states an answer, as exemplars end and hints read: 'The answer is 132.'"""
    return f"{ANSWER_TEXT} {shown}."


def after_last(marker: re.Pattern, text: str) -> str | None:
    """The rest of the line after the last match of `marker` (models correct themselves), or None."""
    markers = list(marker.finditer(text))
    if not markers:
        return None
    return text[markers[-1].end() :].split("\n", 1)[0].strip() or None


def last_answer(completion: str) -> str | None:
    """What follows the last ANSWER_TEXT, without the closing full stop."""
    line = after_last(ANSWER_MARKER, completion)
    return line and (line.rstrip(".").strip() or None)


def cut_at_stop(text: str) -> str:
    """A raw completion up to the first blank line, which ends every exemplar."""
    end = text.find(STOP_TEXT)
    return text if end < 0 else text[:end]


def build_prefix(task: Task, exemplars: list[Exemplar], with_hints: bool, answer_only: bool = False) -> str:
    """The few-shot prompt shared by every question of a phase.

    `answer_only`: the exemplars without their rationales (direct mode: the model is prompted,
    trained and evaluated on the final answer alone).
    """
    blocks = []
    for ex in exemplars:
        hint = task.format_hint(_as_problem(ex)) if with_hints else None
        completion = answer_only_completion(task, ex.answer) if answer_only else task.format_completion(ex.rationale, ex.answer)
        blocks.append(task.format_question(ex, hint) + completion + STOP_TEXT)
    return "".join(blocks)


def answer_only_completion(task: Task, answer: str) -> str:
    """What the model writes after 'Answer:' with no rationale: ' The answer is 132.' in the task's format."""
    return " " + task.format_completion("", answer).strip()


def rationale_of(completion: str) -> str:
    """The reasoning a completion gives, without the leading space and final blank line."""
    return cut_at_stop(completion).strip()


def _as_problem(ex: Exemplar) -> Problem:
    return Problem(id="exemplar", question=ex.question, answer=ex.answer, split="exemplar", choices=ex.choices)
