"""The STaR filter (filtering.select_kept) on many small hand-made cases, and the pieces around it."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from star_core.engine.filtering import Candidate, FilterRule, passes, select_kept
from star_core.engine.judge import judge
from star_core.engine.phase_clock import PhaseClock
from star_core.core.states import AttemptKind, Phase
from star_core.tasks import get_task
from star_core.tasks.base import Problem

G, R = AttemptKind.GENERATED, AttemptKind.RATIONALIZED
ANSWER = FilterRule(require_steps=False)
STEPS = FilterRule(require_steps=True)
_ids = iter(range(1, 10**9))


def cand(problem="p1", kind=G, correct=True, verified=None, rationale="r", sample=0, leak=None) -> Candidate:
    return Candidate(next(_ids), problem, kind, sample, rationale, rationale + " The answer is 1.", correct, verified, leak)


def kept(generated, rationalized=(), rule=ANSWER):
    return [(c.problem_id, c.kind, c.rationale) for c in select_kept(generated, rationalized, rule)]


# --- which single rationale passes --------------------------------------------------

@pytest.mark.parametrize("correct, verified, require_steps, expected", [
    (True, None, False, True),     # answer filter: right answer is enough
    (False, None, False, False),   # wrong answer never passes
    (True, False, False, True),    # answer filter ignores the step check
    (True, True, True, True),      # verified filter: right and every step holds
    (True, False, True, False),    # right answer, broken steps
    (True, None, True, False),     # verified filter, steps not checked: not verified
    (False, True, True, False),    # steps hold but the answer is wrong
])
def test_a_rationale_passes_by_answer_and_steps(correct, verified, require_steps, expected):
    assert passes(cand(correct=correct, verified=verified), FilterRule(require_steps=require_steps)) is expected


@pytest.mark.parametrize("leak, keep_leaks, expected", [(True, False, False), (True, True, True), (False, False, True), (None, False, True)])
def test_hint_leaks_are_dropped_unless_kept_on_purpose(leak, keep_leaks, expected):
    assert passes(cand(kind=R, leak=leak), FilterRule(False, keep_hint_leaks=keep_leaks)) is expected


# --- the kept set ----------------------------------------------------------------------

def test_nothing_in_nothing_out():
    assert select_kept([], [], ANSWER) == []


def test_self_generated_is_preferred_over_rationalized_for_the_same_question():
    assert kept([cand("p1", rationale="own")], [cand("p1", R, rationale="hinted")]) == [("p1", G, "own")]


def test_rationalization_fills_in_only_for_questions_not_solved_alone():
    generated = [cand("p1", rationale="own"), cand("p2", correct=False, rationale="wrong")]
    rationalized = [cand("p2", R, rationale="hinted")]
    assert kept(generated, rationalized) == [("p1", G, "own"), ("p2", R, "hinted")]


def test_a_question_whose_own_rationales_all_fail_takes_its_hinted_ones():
    generated = [cand("p1", verified=False, rationale="bad steps")]
    rationalized = [cand("p1", R, verified=True, rationale="good")]
    assert kept(generated, rationalized, STEPS) == [("p1", R, "good")]
    assert kept(generated, rationalized, ANSWER) == [("p1", G, "bad steps")]


def test_identical_rationales_count_once_up_to_case_and_whitespace():
    generated = [cand(rationale="2 + 3 = 5.", sample=0), cand(rationale="2  +  3 =\n5.", sample=1),
                 cand(rationale="2 + 3 = 5.".upper(), sample=2), cand(rationale="3 + 2 = 5.", sample=3)]
    out = select_kept(generated, [], ANSWER)
    assert [c.sample for c in out] == [0, 3]  # the first of the identical ones is kept


def test_the_same_text_on_two_questions_is_not_a_duplicate():
    assert len(select_kept([cand("p1", rationale="x"), cand("p2", rationale="x")], [], ANSWER)) == 2


def test_a_failing_duplicate_does_not_shadow_a_passing_copy():
    generated = [cand(rationale="same", correct=False, sample=0), cand(rationale="same", correct=True, sample=1)]
    assert [c.sample for c in select_kept(generated, [], ANSWER)] == [1]


@pytest.mark.parametrize("cap, expected", [(1, [0]), (2, [0, 1]), (4, [0, 1, 2]), (10, [0, 1, 2])])
def test_at_most_the_cap_per_question_after_de_duplication(cap, expected):
    generated = [cand(rationale=f"r{i}", sample=i) for i in range(3)] + [cand(rationale="r0", sample=3)]
    out = select_kept(generated, [], FilterRule(False, max_per_question=cap))
    assert [c.sample for c in out] == expected


def test_the_cap_is_per_question_and_applies_to_rationalized_ones_too():
    rule = FilterRule(False, max_per_question=1)
    generated = [cand("p1", rationale="a"), cand("p1", rationale="b"), cand("p2", correct=False)]
    rationalized = [cand("p2", R, rationale="c"), cand("p2", R, rationale="d")]
    assert kept(generated, rationalized, rule) == [("p1", G, "a"), ("p2", R, "c")]


def test_leaks_skipped_then_the_next_hinted_rationale_is_kept():
    rationalized = [cand("p1", R, rationale="leaky", leak=True), cand("p1", R, rationale="honest", leak=False)]
    assert kept([cand("p1", correct=False)], rationalized, FilterRule(False, max_per_question=1)) == [("p1", R, "honest")]


candidates = st.lists(
    st.builds(cand, problem=st.sampled_from(["p1", "p2", "p3"]), correct=st.booleans(),
              verified=st.sampled_from([None, True, False]), rationale=st.sampled_from(["a", "A", "b", " a "]),
              sample=st.integers(0, 3), leak=st.sampled_from([None, True, False])),
    max_size=12,
)


@given(candidates, candidates, st.booleans(), st.integers(1, 3))
def test_kept_rationales_always_pass_are_unique_capped_and_prefer_own(generated, hinted, steps, cap):
    hinted = [Candidate(c.attempt_id, c.problem_id, R, c.sample, c.rationale, c.completion, c.correct, c.verified, c.hint_leak)
              for c in hinted]
    rule = FilterRule(steps, max_per_question=cap)
    out = select_kept(generated, hinted, rule)
    assert all(passes(c, rule) for c in out)
    keys = [(c.problem_id, " ".join(c.rationale.casefold().split())) for c in out]
    assert len(keys) == len(set(keys))
    for p in {c.problem_id for c in out}:
        mine = [c for c in out if c.problem_id == p]
        assert len(mine) <= cap
        assert len({c.kind for c in mine}) == 1  # never both kinds for one question
        if mine[0].kind == R:
            assert not any(passes(c, rule) for c in generated if c.problem_id == p)


# --- the judge and the phase clock -----------------------------------------------------

def test_the_judge_reads_the_answer_checks_it_and_its_steps():
    task, problem = get_task("arithmetic"), Problem("p", "27 + 15", "42", "train", 2)
    good = judge(task, problem, G, " 27 + 15 = 30 + 12 = 42. The answer is 42.\n\n")
    assert (good.rationale, good.predicted, good.correct, good.verified, good.hint_leak) == \
        ("27 + 15 = 30 + 12 = 42. The answer is 42.", "42", True, True, None)
    slip = judge(task, problem, R, " 27 + 15 = 30 + 11 = 42. The answer is 42.")
    assert (slip.correct, slip.verified, slip.verify_reason) == (True, False, "step 1 '30 + 11' makes 41, not 42")
    assert slip.hint_leak is False  # rationalized attempts get the leak check
    wrong = judge(task, problem, AttemptKind.EVAL, " 27 + 15 = 41. The answer is 41.")
    assert (wrong.predicted, wrong.correct) == ("41", False)


def test_the_clock_counts_only_this_process_work_for_the_eta(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    clock = PhaseClock(1, Phase.GENERATE, total=100, done=40)  # resumed with 40 already stored
    assert clock.eta_s() is None and clock.tokens_per_s() is None
    now[0] += 10.0
    clock.done, clock.new_tokens = 50, 500
    assert clock.eta_s() == pytest.approx(50.0)  # 10 questions in 10 s, 50 left
    assert clock.tokens_per_s() == pytest.approx(50.0)
    values = clock.values(tokens_per_s=7.0)
    assert (values["phase"], values["done"], values["total"], values["tokens_per_s"]) == ("generate", 50, 100, 7.0)
