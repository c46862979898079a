"""The paper's scratchpad format of the arithmetic task: its text, the line-by-line step verifier on
hand-written cases, answer extraction, the task key and its shipped exemplars. Pure: no model."""

from __future__ import annotations

import pytest

from star_core.core.config import RunConfig
from star_core.engine.exemplars import default_set_name, load_exemplars
from star_core.engine.judge import judge
from star_core.core.states import AttemptKind
from star_core.tasks import get_task, task_for_key, task_key
from star_core.tasks.base import NO_STEPS, Problem, build_prefix

TASK = get_task("arithmetic", RunConfig(arithmetic_format="scratchpad"))

# The example, written by hand (not by the generator under test).
PAPER_624_259 = """Input:
6 2 4 + 2 5 9
Target:
<scratch>
6 2 4 + 2 5 9 , C: 0
2 + 5 , 3 C: 1
6 + 2 , 8 3 C: 0
, 8 8 3 C: 0
0 8 8 3
</scratch>
8 8 3"""


def problem(a: int, b: int) -> Problem:
    return Problem(f"{a}+{b}", f"{a} + {b}", str(a + b), "train", len(str(max(a, b))))


def completion(*lines: str) -> str:
    return "\n" + "\n".join(lines) + "\n\n"


def test_the_question_and_rationale_are_the_papers_text():
    p = problem(624, 259)
    written = TASK.format_question(p) + TASK.format_completion(_rationale(624, 259), p.answer)
    assert written == PAPER_624_259
    assert TASK.format_question(p, TASK.format_hint(p)) == "Input:\n6 2 4 + 2 5 9\nTarget: 0 8 8 3"


def test_a_stored_completion_used_as_a_rationale_does_not_repeat_its_answer():
    p = problem(624, 259)
    stored = TASK.format_completion(_rationale(624, 259), p.answer).strip()  # as an attempt's rationale is stored
    assert TASK.format_completion(stored, p.answer) == PAPER_624_259[PAPER_624_259.index("\n<scratch>"):]


def _rationale(a, b):
    from star_core.tasks.scratchpad import rationale

    return rationale(a, b)


@pytest.mark.parametrize("a, b", [(3, 4), (8, 6), (0, 0), (47, 85), (95, 17), (624, 259), (999, 999), (40863, 27519)])
def test_every_line_right_is_verified(a, b):
    text = TASK.format_completion(_rationale(a, b), str(a + b)) + "\n\n"
    verdict = TASK.verify_steps(text, problem(a, b))
    assert verdict.ok is True, verdict.reason
    assert TASK.extract_answer(text) == str(a + b)


def test_a_hand_written_six_digit_sum_with_a_carry_on_every_line_is_verified():
    lines = ["9 9 9 9 9 + 1 , C: 0", "9 + 0 , 0 C: 1", "9 + 0 , 0 0 C: 1", "9 + 0 , 0 0 0 C: 1",
             "9 + 0 , 0 0 0 0 C: 1", ", 0 0 0 0 0 C: 1", "1 0 0 0 0 0"]
    text = completion("<scratch>", *lines, "</scratch>", "1 0 0 0 0 0")
    assert TASK.verify_steps(text, problem(99999, 1)).ok is True  # the shorter operand padded with zeros per place
    lines[0] = "9 9 9 9 9 + 0 0 0 0 1 , C: 0"  # the operands are written as the question gives them
    verdict = TASK.verify_steps(completion("<scratch>", *lines, "</scratch>", "1 0 0 0 0 0"), problem(99999, 1))
    assert verdict.reason == ("line 1 '9 9 9 9 9 + 0 0 0 0 1 , C: 0': the digits added should be '9 9 9 9 9 + 1', "
                              "not '9 9 9 9 9 + 0 0 0 0 1'")


def test_one_wrong_carry_is_named_with_its_line():
    text = completion("<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 0", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0",
                      "0 8 8 3", "</scratch>", "8 8 3")
    verdict = TASK.verify_steps(text, problem(624, 259))
    assert verdict.ok is False
    assert verdict.reason == "line 2 '2 + 5 , 3 C: 0': the carry should be '1', not '0'"
    assert TASK.is_correct(TASK.extract_answer(text), problem(624, 259))  # a right answer with a wrong step


@pytest.mark.parametrize("wrong, index, reason", [
    ("2 + 5 , 4 C: 1", 2, "the running result should be '3', not '4'"),
    ("2 + 6 , 3 C: 1", 2, "the digits added should be '2 + 5', not '2 + 6'"),
    (", 8 8 4 C: 0", 4, "the running result should be '8 8 3', not '8 8 4'"),
    ("0 8 8 4", 5, "should be '0 8 8 3'"),
    ("6 2 4 + 2 5 9 C: 0", 1, "should be '6 2 4 + 2 5 9 , C: 0'"),
])
def test_the_first_wrong_field_is_named(wrong, index, reason):
    lines = ["6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0", "0 8 8 3"]
    lines[index - 1] = wrong
    verdict = TASK.verify_steps(completion("<scratch>", *lines, "</scratch>", "8 8 3"), problem(624, 259))
    assert verdict == type(verdict)(False, f"line {index} {wrong!r}: {reason}")


def test_a_bare_answer_has_no_steps():
    for text in (completion("8 8 3"), " 8 8 3\n\n", "\n883\n\n"):
        verdict = TASK.verify_steps(text, problem(624, 259))
        assert (verdict.ok, verdict.reason) == (False, NO_STEPS)
        assert TASK.extract_answer(text) == "883"
    one_digit = TASK.verify_steps(completion("7"), problem(3, 4))  # even one digit writes its scratchpad
    assert (one_digit.ok, one_digit.reason) == (False, NO_STEPS)


@pytest.mark.parametrize("lines, reason", [
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", ", 3 3 3 3 3 3 3"],  # ran on without closing
     "line 3 ', 3 3 3 3 3 3 3': should be '6 + 2 , 8 3 C: 0'"),
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1"], "the scratchpad is not closed ('</scratch>')"),
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", "</scratch>", "8 8 3"],
     "the scratchpad stops after line 2 of 5 (next: '6 + 2 , 8 3 C: 0')"),
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0", "0 8 8 3",
      "0 8 8 3", "</scratch>", "8 8 3"], "line 6 '0 8 8 3' is past the 5 lines the sum takes"),
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0", "0 8 8 3",
      "</scratch>", "8 8 4"], "the scratchpad ends in '0 8 8 3' but the answer given is '8 8 4'"),
    (["<scratch>", "6 2 4 + 2 5 9 , C: 0", "2 + 5 , 3 C: 1", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0", "0 8 8 3",
      "</scratch>"], "gives no answer after the scratchpad"),
    (["8 8 3", "<scratch>", "</scratch>", "8 8 3"], "writes '8 8 3' before the scratchpad"),
    ([], "gives no scratchpad and no answer"),
])
def test_what_else_fails_is_said(lines, reason):
    assert TASK.verify_steps(completion(*lines), problem(624, 259)) == type(TASK.verify_steps("", problem(1, 1)))(
        False, reason)


def test_spacing_inside_a_line_does_not_matter_and_an_open_scratchpad_gives_no_answer():
    text = completion("<scratch>", "6 2 4 +  2 5 9 ,  C: 0 ", "2 + 5 , 3 C: 1", "6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0",
                      "0 8 8 3", "</scratch>", " 8 8 3 ")
    assert TASK.verify_steps(text, problem(624, 259)).ok is True
    assert TASK.extract_answer(completion("<scratch>", "6 2 4 + 2 5 9 , C: 0")) is None
    assert TASK.extract_answer(completion("<scratch>", "</scratch>", "eight")) == "eight"


def test_the_format_is_part_of_the_task_key_and_the_default_keeps_the_old_key():
    assert str(task_key(RunConfig())) == "arithmetic"
    assert str(TASK.key) == "arithmetic:arithmetic_format=scratchpad"
    again = task_for_key(str(TASK.key))
    assert again.is_scratchpad and again.key == TASK.key
    assert not task_for_key("arithmetic").is_scratchpad


def test_the_shipped_exemplars_pass_the_verifier_and_prompt_in_the_papers_format():
    exemplars = load_exemplars(TASK)  # every one passes the answer and step checks, or this raises
    assert {len(e.answer) for e in exemplars} >= {1, 2, 3, 4, 5}
    assert default_set_name(TASK) == "arithmetic-scratchpad-default"
    prefix = build_prefix(TASK, exemplars, with_hints=False)
    assert prefix.startswith("Input:\n") and "The answer is" not in prefix and "\n\n\n" not in prefix
    place_value = get_task("arithmetic", RunConfig())
    assert load_exemplars(place_value)[0].rationale == "3 + 4 = 7."  # the other format keeps its own file


def test_a_rationalized_scratchpad_is_no_hint_leak():
    p = problem(624, 259)
    text = TASK.format_completion(_rationale(624, 259), p.answer) + "\n\n"
    judged = judge(TASK, p, AttemptKind.RATIONALIZED, text)
    assert judged.correct and judged.verified and judged.hint_leak is False
