"""Answer extraction, normalisation, the calculator evaluator, the GSM8K step check and the hint-leak rule."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from star_core.tasks.answers import (canonical_number, choice_label, extract_choice, extract_number, extract_text,
                                     number_pattern, numbers_equal, regex_matches, texts_equal)
from star_core.tasks.base import Problem
from star_core.tasks.calc import CalcError, evaluate, matches_shown
from star_core.tasks.commonsenseqa import CommonsenseQATask
from star_core.tasks.gsm8k import GSM8KTask, check_annotations
from star_core.tasks.leak import hint_leak

CHOICES = (("A", "ignore"), ("B", "enforce"), ("C", "authoritarian"), ("D", "yell at"), ("E", "avoid"))


# --- numbers -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["18", "18.00", "$18", "18.", "$18.00", " 18 ", "1,8"[:0] + "18.0", "０18"[1:], "１８"])
def test_forms_of_eighteen_are_equal(text):
    assert numbers_equal(canonical_number(text), "18")


@pytest.mark.parametrize(
    "text, canonical",
    [("1,000", "1000"), ("$1,000.50", "1000.5"), ("-3", "-3"), ("−3", "-3"), (".5", "0.5"), ("0.50", "0.5"),
     ("007", "7"), ("-0", "0"), ("1,234,567", "1234567")],
)
def test_canonical_number(text, canonical):
    assert canonical_number(text) == canonical


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "١٨", "²", "1e5", "nan", "inf", "9" * 61, "--3", "$"])
def test_not_numbers(text):
    assert canonical_number(text) is None


@pytest.mark.parametrize(
    "completion, expected",
    [
        (" 48 / 2 = 24. The answer is 72.\n\n", "72"),
        (" The answer is $1,000.", "1000"),
        (" The answer is 18.00 dollars.", "18"),
        (" So 3 + 4 = 7.\n#### 7", "7"),
        (" The answer is 5. Wait, the answer is 7.", "7"),  # the last marker wins
        (" The answer is 5.\nNo: the answer is 6.", "6"),
        (" The answer is 5 or 7.", "7"),  # the last number after the marker
        (" The answer is: 12", "12"),
        (" the ANSWER is 12", "12"),
        (" The answer is 10-2=8.", "8"),  # a minus between operands is not a sign
        (" The answer is -4 degrees.", "-4"),
        (" The answer is １８.", "18"),  # full-width digits are digits
        (" The answer is 12.\n\nQuestion: x\nAnswer: The answer is 99.", "12"),  # after the stop text is ignored
    ],
)
def test_extract_number(completion, expected):
    assert extract_number(completion) == expected


@pytest.mark.parametrize(
    "completion",
    [" 48 / 2 = 24 and 24 + 48 = 72.", "", " ####", " The answer is", " 72\n\nThe answer is 72."],
)
def test_no_answer(completion):
    assert extract_number(completion) is None


def test_marker_without_number_keeps_the_statement_but_is_wrong():
    assert extract_number(" The answer is eighteen.") == "eighteen"
    assert not numbers_equal("eighteen", "18")
    assert extract_number(" The answer is ١٨.") == "١٨"  # other scripts' digits are not read as numbers
    assert not numbers_equal("١٨", "18")


def test_huge_numbers_are_not_answers_and_do_not_hang():
    start = time.perf_counter()
    assert extract_number(" The answer is " + "9" * 100_000 + ".") != "9" * 100_000
    assert not numbers_equal("9" * 5000, "9" * 5000)
    assert time.perf_counter() - start < 2


@given(st.integers(min_value=-10**15, max_value=10**15))
@settings(deadline=None)  # timing on a shared 2-core machine is not what is tested
def test_number_forms_round_trip(n):
    grouped = f"{n:,}"
    for form in (str(n), grouped, f"{n}.00", f"${grouped}" if n >= 0 else f"-${-n:,}"):
        assert numbers_equal(extract_number(f" The answer is {form}."), str(n)), form
        assert number_pattern(str(n)).search(f"so {form} in all")


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
@settings(deadline=None)
def test_a_different_number_is_wrong(a, b):
    assert numbers_equal(str(a), str(b)) == (a == b)


def test_number_pattern_does_not_match_inside_other_numbers():
    p = number_pattern("72")
    assert p.search("72 clips") and p.search("$72.00") and not p.search("172") and not p.search("7.25") and not p.search("1,072")
    assert number_pattern("1000").search("1,000 apples") and number_pattern("0.5").search("about .5 of it")


# --- choices -------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, predicted, label",
    [
        (" Sanctions push against something. The answer is (A).", "A", "A"),
        (" The answer is (a) ignore.", "A", "A"),
        (" The answer is A.", "A", "A"),
        (" The answer is B) enforce", "B", "B"),
        (" The answer is enforce.", "enforce", "B"),
        (" The answer is yell at", "yell at", "D"),
        (" The answer is: Avoid!", "avoid", "E"),
        (" The answer is A blotter.", "blotter", None),  # 'A' there is an article
        (" The answer is (B). On second thought, the answer is (E).", "E", "E"),
        (" The answer is (F).", "F", None),  # no such choice
        (" The answer is something else.", "something else", None),
    ],
)
def test_extract_choice(completion, predicted, label):
    assert extract_choice(completion) == predicted
    assert choice_label(predicted, CHOICES) == label


def test_choice_without_marker_is_no_answer():
    assert extract_choice(" I think (B) enforce.") is None
    task = CommonsenseQATask()
    problem = Problem("p", "q?", "B", "train", choices=CHOICES)
    assert not task.is_correct(task.extract_answer(" I think (B)."), problem)
    assert task.is_correct(task.extract_answer(" It must be enforced. The answer is (b)."), problem)


def test_choice_text_naming_two_choices_is_ambiguous():
    assert choice_label("x", (("A", "x"), ("B", "x "))) is None


# --- exact and regex -------------------------------------------------------------


def test_exact_and_regex():
    assert extract_text(" It is the capital. The answer is  Paris .") == "Paris"
    assert texts_equal("the  PARIS", "Paris") and not texts_equal("Lyon", "Paris") and not texts_equal(None, "Paris")
    assert regex_matches("colour", r"colou?r") and not regex_matches("colours", r"colou?r")
    assert not regex_matches("x", "(") and not regex_matches(None, "x")


# --- the calculator --------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, value",
    [("48/2", 24), ("2+3*4", 14), ("(2+3)*4", 20), ("10-4-3", 3), ("2**3**2", 512), ("2^10", 1024), ("-3+5", 2),
     ("7//2", 3), ("12/60", Fraction(1, 5)), ("50%*80", 40), ("3 x 4", 12), ("6 × 7", 42), ("8 ÷ 2", 4),
     ("1,000*2", 2000), (".5*4", 2), ("2.50*4", 10), ("--2", 2), ("((((1))))", 1)],
)
def test_evaluate(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize(
    "expr",
    ["9**9**9", "10**1000", "2**-9999", "99999999999999999999999999999999*2", "__import__('os').system('true')",
     "open('/etc/passwd')", "1 if 1 else 2", "a+b", "1/0", "2**0.5", "", "(1+2", "1+", "3 4", "lambda: 1", "1;2",
     "(" * 500 + "1" + ")" * 500, "-" * 500 + "1", "1" + "+1" * 200, "1,00", "2e3", "١+١", "[1]", "1.2.3"],
)
def test_evaluate_refuses(expr):
    start = time.perf_counter()
    with pytest.raises(CalcError):
        evaluate(expr)
    assert time.perf_counter() - start < 1


def test_repeated_squaring_is_bounded():
    with pytest.raises(CalcError):
        evaluate("((((((((2**64)**2)**2)**2)**2)**2)**2)**2)")
    with pytest.raises(CalcError):
        evaluate("999999999999*999999999999*999999999999*999999999999*999999999999*999999999999*999999999999*999999999999*999999999999*999999999999*999999999999")


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.sampled_from("+-*"))
@settings(deadline=None)
def test_evaluate_agrees_with_python_on_integers(a, b, op):
    expected = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert evaluate(f"{a} {op} ({b})") == expected


@given(st.text(alphabet="0123456789+-*/^()x. %", max_size=40))
@settings(max_examples=300, deadline=None)
def test_evaluate_never_raises_anything_but_calcerror(text):
    try:
        evaluate(text)
    except CalcError:
        pass


@pytest.mark.parametrize("value, shown, ok", [(Fraction(2, 3), "0.67", True), (Fraction(2, 3), ".67", True),
                                                (Fraction(10, 3), "3", False), (Fraction(10, 3), "3.33", True),
                                                (Fraction(1, 5), "0.2", True), (Fraction(5), "5.00", True), (Fraction(5), "6", False)])
def test_matches_shown(value, shown, ok):
    assert matches_shown(value, shown) is ok


# --- the GSM8K step check ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok, reason",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips. 48+24 = <<48+24=72>>72 in all.", True, "all 2 annotations hold"),
        ("She earns 12/60 = $<<12/60=0.2>>0.2 a minute.", True, ""),
        ("Each gets 10/3 = <<10/3=3.33>>3.33 cups.", True, ""),
        ("So 2*3 = <<2*3=6*1=6>>6.", True, ""),
        ("Natalia sold 48/2 = <<48/2=25>>25 clips.", False, "is wrong: 48/2 is 24, not 25"),
        ("Natalia sold 48/2 = <<48/2=24>>25 clips.", False, "is followed by 25, not its value 24"),
        ("Natalia sold 48/2 = 24 clips.", False, "no <<expression=value>>"),
        ("Natalia sold <<48/2=24 clips.", False, "is not closed"),
        ("Natalia sold <<48/2<<=24>> clips.", False, "is not closed"),
        ("Natalia sold 48/2=24>> clips.", False, "no opening"),
        ("It is <<24>>24.", False, "has no '='"),
        ("It is <<9**9**9=1>>1.", False, "too large"),
        ("It is <<__import__('os').system('echo hi')=0>>0.", False, "cannot be evaluated"),
        ("It is <<2+2=four>>.", False, "not a number"),
        ("It is <<1/0=0>>0.", False, "division by zero"),
    ],
)
def test_check_annotations(text, ok, reason):
    verdict = check_annotations(text)
    assert verdict.ok is ok and reason in verdict.reason, verdict


def test_gsm8k_task_judges_a_completion():
    task = GSM8KTask()
    problem = Problem("p", "Natalia sold clips to 48 of her friends...", "72", "train")
    good = " She sold 48/2 = <<48/2=24>>24 in May and 48+24 = <<48+24=72>>72 in all. The answer is 72.\n\n"
    assert task.is_correct(task.extract_answer(good), problem) and task.verify_steps(good, problem).ok
    lucky = " She sold 48/2 = <<48/2=20>>20 in May. The answer is 72."
    assert task.is_correct(task.extract_answer(lucky), problem) and task.verify_steps(lucky, problem).ok is False


# --- hint leaks ---------------------------------------------------------------------


def _gsm(answer="72", question="Natalia sold 48 clips in April and half as many in May. How many in all?"):
    return GSM8KTask().answer_pattern(Problem("p", question, answer, "train"))


def _csqa(answer="B"):
    return CommonsenseQATask().answer_pattern(Problem("p", "The sanctions seemed to what the efforts?", answer, "train", choices=CHOICES))


@pytest.mark.parametrize(
    "rationale, pattern, leak",
    [
        ("She sold 48/2 = <<48/2=24>>24 in May and 48+24 = <<48+24=72>>72 in all. The answer is 72.", _gsm(), None),
        ("72 clips were sold. 48+24 = 72. The answer is 72.", _gsm(), "states the answer ('72')"),
        ("The total is $72, because 48+24 = 72. The answer is 72.", _gsm(), "states the answer"),
        ("The answer is 72. She sold 48+24 = 72. The answer is 72.", _gsm(), "says 'the answer is'"),
        ("The answer is 72.", _gsm(), "no reasoning"),
        ("So the answer is 72.", _gsm(), "no reasoning"),
        ("Since the hint says 72, the answer is 72.", _gsm(), "quotes the hint"),
        ("She has 48 clips, so 48 + 24 = 72. The answer is 72.", _gsm(), None),
        # a number the question states is not a leak when mentioned first
        ("48 clips in April. 48 + 0 = 48. The answer is 48.", _gsm("48"), None),
        ("People ignore the efforts once sanctions hit. The answer is (A).", _csqa("A"), "states the answer ('ignore"),
        ("Enforce (CORRECT) is marked. The answer is (B).", _csqa(), "quotes the hint"),
        ("(B) is right. The answer is (B).", _csqa(), "states the answer ('(B)')"),
        ("Sanctions push against the school's efforts. To push rules through is to enforce. The answer is (B).", _csqa(), None),
        ("The answer is (B).", _csqa(), "no reasoning"),
    ],
)
def test_hint_leak(rationale, pattern, leak):
    got = hint_leak(rationale, pattern)
    assert (got is None) if leak is None else (got is not None and leak in got), got


def test_exemplars_do_not_leak():
    """Our own exemplars, read as rationalized rationales, are not flagged."""
    from star_core.core.config import RunConfig
    from star_core.engine.exemplars import load_exemplars
    from star_core.tasks import get_task

    for name, extra in [("gsm8k", {}), ("commonsenseqa", {}), ("arithmetic", {}), ("jsonl", {}), ("jsonl", {"answer_type": "choice"}),
                        ("jsonl", {"answer_type": "exact"})]:
        task = get_task(name, RunConfig(task=name, **extra))
        for ex in load_exemplars(task):
            problem = Problem("x", ex.question, ex.answer, "train", choices=ex.choices)
            completion = task.format_completion(ex.rationale, ex.answer)
            assert hint_leak(completion.strip(), task.answer_pattern(problem)) is None, (name, ex.question)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_readers_accept_any_text(text):
    """Whatever a model writes, the readers return (never raise)."""
    for completion in (text, " The answer is " + text, text + " <<" + text + ">>"):
        extract_number(completion)
        extract_choice(completion)
        extract_text(completion)
        assert check_annotations(completion).ok in (True, False)
        hint_leak(completion, _gsm())
        hint_leak(completion, _csqa())
