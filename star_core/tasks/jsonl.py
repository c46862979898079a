"""Any JSONL or CSV file as a task: a field mapping (RunConfig.data_map) and an answer type.

    star run --task jsonl --data qa.csv --map question=q,answer=a --answer-type number

Answer types (RunConfig.answer_type):
- number: compared numerically after normalising ('1,000', '$1000', '1000.00' are equal);
- choice: the row has choices (a list, {label: text}, or 'a|b|c' in CSV); the gold
  answer is a label or one choice's text; prompt and hint as for CommonsenseQA;
- exact: the text after 'The answer is', compared case- and space-insensitively;
- regex: the gold answer is a regular expression the whole stated answer must match
  (the hint then shows the pattern itself: rationalization is of little use).

Prompt: 'Question: ...\\nAnswer: <rationale> The answer is X.' (choices as CommonsenseQA).
The default exemplars, written by us, are data/exemplars/jsonl.jsonl (number answers),
jsonl-choice.jsonl (choice) and jsonl-text.jsonl (exact and regex); an exemplar set
(RunConfig.exemplars) replaces them.
Steps cannot be checked in general, so `verified` falls back to the answer filter.
"""

from __future__ import annotations


import re

from ..core.config import RunConfig
from .answers import (canonical_number, choice_correct, extract_choice, extract_number, extract_text, number_pattern,
                      numbers_equal, regex_matches, texts_equal)
from .base import Exemplar, Problem, Verdict, answer_sentence
from .commonsenseqa import choice_answer_pattern, format_choice_question
from .datafile import RowError, field_value, gold_label, load_file, parse_choices, split, text_value
from .settings import TaskSettings


CHOICE_HINT = "(CORRECT)"


class JsonlTask:
    name = "jsonl"
    can_verify_steps = False
    key_fields = ("answer_type",)  # how answers are compared changes prompts' exemplars and every verdict

    def __init__(self, settings: TaskSettings | None = None):
        if settings is None:
            settings = TaskSettings.of(RunConfig(task="jsonl"))
        self.answer_type = settings.answer_type
        self.fields = settings.field_map()
        self.exemplar_file = {"number": "jsonl", "choice": "jsonl-choice"}.get(self.answer_type, "jsonl-text")
        # exact and regex share a file, but are different keys: each gets a default set of its own
        self.default_set = {"number": "jsonl", "choice": "jsonl-choice", "exact": "jsonl-text"}.get(self.answer_type, "jsonl-regex")
        self.report = None

    def problems(self, settings: TaskSettings) -> list[Problem]:
        if not settings.data:
            from ..core.errors import ConfigError

            raise ConfigError("data", "the jsonl task reads a file: pass --data PATH (a .jsonl or .csv file)")
        problems, self.report = load_file(settings.data, self.parse_row, settings.skip_bad_lines)
        return split(problems, TaskSettings.of(settings))

    def parse_row(self, row: dict, line: int) -> Problem:
        f = self.fields
        question = text_value(row, f["question"], "question")
        raw_answer = field_value(row, f["answer"])
        if isinstance(raw_answer, (dict, list)) or raw_answer is None or not str(raw_answer).strip():
            raise RowError(f"field {f['answer']!r} (answer) is missing or not a single value")
        answer = str(raw_answer).strip()
        choices: tuple[tuple[str, str], ...] = ()
        if self.answer_type == "choice":
            choices = parse_choices(field_value(row, f.get("choices", "choices")))
            answer = gold_label(answer, choices)
        elif self.answer_type == "number":
            number = canonical_number(answer)
            if number is None:
                raise RowError(f"answer {answer[:40]!r} is not a number (answer type 'number')")
            answer = number
        elif self.answer_type == "regex":
            try:
                re.compile(answer)
            except re.error as exc:
                raise RowError(f"answer {answer[:40]!r} is not a valid regular expression ({exc})") from None
        row_id = str(field_value(row, f["id"])).strip() if "id" in f else f"L{line}"
        if not row_id:
            raise RowError(f"field {f['id']!r} (id) is empty")
        difficulty = None
        if "difficulty" in f:
            value = field_value(row, f["difficulty"])
            try:
                difficulty = int(str(value).strip())
            except ValueError:
                raise RowError(f"difficulty {value!r} is not a whole number") from None
        return Problem(id=row_id, question=question, answer=answer, split="", difficulty=difficulty, choices=choices)

    # --- prompt format -------------------------------------------------------

    def format_question(self, problem: Problem | Exemplar, hint: str | None = None) -> str:
        if self.answer_type == "choice":
            return format_choice_question(problem, hint)
        hint_text = f" ({hint})" if hint else ""
        return f"Question: {problem.question}{hint_text}\nAnswer:"

    def format_hint(self, problem: Problem) -> str:
        return CHOICE_HINT if self.answer_type == "choice" else answer_sentence(problem.answer)

    def format_completion(self, rationale: str, answer: str) -> str:
        shown = f"({answer})" if self.answer_type == "choice" else answer
        return f" {rationale} {answer_sentence(shown)}"

    # --- answers -------------------------------------------------------------

    def extract_answer(self, completion: str) -> str | None:
        if self.answer_type == "number":
            return extract_number(completion)
        if self.answer_type == "choice":
            return extract_choice(completion)
        return extract_text(completion)

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        if self.answer_type == "number":
            return numbers_equal(predicted, problem.answer)
        if self.answer_type == "choice":
            return choice_correct(predicted, problem.answer, problem.choices)
        if self.answer_type == "exact":
            return texts_equal(predicted, problem.answer)
        return regex_matches(predicted, problem.answer)

    def verify_steps(self, completion: str, problem: Problem) -> Verdict:
        return Verdict(None, "steps of a generic dataset cannot be checked")

    def answer_pattern(self, problem: Problem) -> re.Pattern | None:
        if self.answer_type == "choice":
            return choice_answer_pattern(problem)
        if self.answer_type == "number":
            pattern = number_pattern(problem.answer)
        elif self.answer_type == "exact":
            pattern = re.compile(rf"(?<!\w){re.escape(problem.answer)}(?!\w)", re.IGNORECASE)
        else:
            return None
        return None if pattern.search(problem.question) else pattern
