"""CommonsenseQA: five-way multiple choice (A-E); chance accuracy is 20%.

Prompt (the choices on one line, as the paper's prompts show them):

    Question: Where would you put a plate after washing it?
    Choices: (A) oven (B) cupboard (C) table (D) sink (E) floor
    Answer: <rationale> The answer is (B).

Hint, as the paper does: ' (CORRECT)' after the right choice, '(B) cupboard (CORRECT)'.
The answer is read as the label after the last 'The answer is' ('(B)', 'B', 'b)'),
or, when no label is given, as the one choice whose text it names. Steps cannot
be checked, so the `verified` filter falls back to the answer (the paper's filter).
"""

from __future__ import annotations


import re

from .answers import choice_correct, extract_choice
from .base import Exemplar, Problem, Verdict, answer_sentence
from .datafile import field_value, gold_label, load_problems, parse_choices, text_value
from .settings import TaskSettings


# Offline, the message names the file to pass with --data instead.
HUB_EXAMPLE = "train_rand_split.jsonl from the CommonsenseQA site (www.tau-nlp.org/commonsenseqa)"
HUB_ID = "tau/commonsense_qa"
CHANCE = 0.2
HINT = "(CORRECT)"
SUGGESTED = {"max_new_tokens": 64}  # a commonsense rationale is one to three short sentences


def format_choice_question(problem: Problem | Exemplar, hint: str | None) -> str:
    """'Question: ...' and the lettered choices on one line, the hint after the right choice."""
    marks = [f"({label}) {text}" + (f" {hint}" if hint and label == problem.answer else "") for label, text in problem.choices]
    return f"Question: {problem.question}\nChoices: {' '.join(marks)}\nAnswer:"


def choice_answer_pattern(problem: Problem) -> re.Pattern | None:
    """The right label as '(B)' and, unless the question already says it, the right choice's text."""
    forms = [rf"\(\s*{re.escape(problem.answer)}\s*\)"]
    text = dict(problem.choices).get(problem.answer, "")
    if text and not re.search(rf"(?<!\w){re.escape(text)}(?!\w)", problem.question, re.IGNORECASE):
        forms.append(rf"(?<!\w){re.escape(text)}(?!\w)")
    return re.compile("|".join(forms), re.IGNORECASE)


class CommonsenseQATask:
    name = "commonsenseqa"
    can_verify_steps = False
    chance = CHANCE
    suggested = SUGGESTED

    def __init__(self, settings: TaskSettings | None = None):
        self.report = None

    def problems(self, settings: TaskSettings) -> list[Problem]:
        problems, self.report = load_problems(self.name, TaskSettings.of(settings), parse_row, HUB_ID, None, HUB_EXAMPLE)
        return problems

    def format_question(self, problem: Problem | Exemplar, hint: str | None = None) -> str:
        return format_choice_question(problem, hint)

    def format_hint(self, problem: Problem) -> str:
        return HINT

    def format_completion(self, rationale: str, answer: str) -> str:
        return f" {rationale} {answer_sentence(f'({answer})')}"

    def extract_answer(self, completion: str) -> str | None:
        return extract_choice(completion)

    def is_correct(self, predicted: str | None, problem: Problem) -> bool:
        return choice_correct(predicted, problem.answer, problem.choices)

    def verify_steps(self, completion: str, problem: Problem) -> Verdict:
        return Verdict(None, "commonsense rationales cannot be checked step by step")

    def answer_pattern(self, problem: Problem) -> re.Pattern | None:
        return choice_answer_pattern(problem)


def parse_row(row: dict, line: int) -> Problem:
    """A CommonsenseQA row, in the original layout (question.stem, question.choices) or the hub's (question, choices)."""
    question = field_value(row, "question")
    if isinstance(question, dict):
        stem = text_value(question, "stem", "question stem")
        choices = parse_choices(field_value(question, "choices"))
    else:
        stem = text_value(row, "question", "question")
        choices = parse_choices(field_value(row, "choices"))
    answer = gold_label(text_value(row, "answerKey", "answer key"), choices)
    row_id = str(row.get("id") or f"L{line}")
    return Problem(id=row_id, question=stem, answer=answer, split="", choices=choices)
