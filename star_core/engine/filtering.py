"""The STaR filter: which rationales an iteration fine-tunes on (docs/paper.md#the-loop-in-detail, step 3).

A pure function over stored candidates, so that the scientific core of the loop
can be tested on many small cases without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..core.config import RunConfig
from ..core.states import AttemptKind
from ..store.attempts import Candidate
from ..tasks.base import NO_STEPS


@dataclass(frozen=True)
class FilterRule:
    require_steps: bool  # the `verified` filter on a task that can check steps: right answer *and* every step holds
    keep_hint_leaks: bool = False  # a rationale that restates its hint teaches copying, not reasoning
    max_per_question: int = 4  # keeps easy questions from dominating the kept set


def rule_for(config: RunConfig, can_verify_steps: bool) -> FilterRule:
    """The filter a run's settings describe: the loop keeps by it, and Browse explains a verdict by it."""
    return FilterRule(
        require_steps=config.filter == "verified" and can_verify_steps,
        keep_hint_leaks=config.keep_hint_leaks,
        max_per_question=config.max_kept_per_question,
    )


def passes(c: Candidate, rule: FilterRule) -> bool:
    """Whether one rationale may be trained on, before de-duplication and the cap."""
    if not c.correct:
        return False
    if rule.require_steps and c.verified is not True:
        return False
    return rule.keep_hint_leaks or not c.hint_leak


def same_rationale_key(c: Candidate) -> tuple[str, str]:
    """Two rationales of a question are the same when equal after case-folding and collapsing whitespace."""
    return c.problem_id, " ".join(c.rationale.casefold().split())


def select_kept(generated: Iterable[Candidate], rationalized: Iterable[Candidate], rule: FilterRule) -> list[Candidate]:
    """The rationales an iteration trains on, self-generated first.

    Candidates come in stored order (a question's samples in sample order). Per
    question: the passing self-generated rationales, de-duplicated (the first of
    identical ones is kept) and capped at `max_per_question`. A question
    with none gets its passing rationalized rationales instead, the same way: as in
    the paper, rationalization only fills in for questions the model could not solve.
    Order: the self-generated ones in the order given, then the rationalized ones.
    """
    own = _dedupe_and_cap(generated, rule)
    solved = {c.problem_id for c in own}
    hinted = _dedupe_and_cap((c for c in rationalized if c.problem_id not in solved), rule)
    return own + hinted


def _dedupe_and_cap(candidates: Iterable[Candidate], rule: FilterRule) -> list[Candidate]:
    seen: set[tuple[str, str]] = set()
    per_question: dict[str, int] = {}
    kept: list[Candidate] = []
    for c in candidates:
        key = same_rationale_key(c)
        if not passes(c, rule) or key in seen or per_question.get(c.problem_id, 0) >= rule.max_per_question:
            continue
        seen.add(key)
        per_question[c.problem_id] = per_question.get(c.problem_id, 0) + 1
        kept.append(c)
    return kept


def why_kept(attempt: dict, rule: FilterRule) -> str:
    """One sentence on why an attempt went into fine-tuning or did not, by the rule its run filtered with.

    Under the `answer` filter an unverified step is no reason to reject, so the sentence follows the
    same order of checks as `filtering.passes`, not the step verdict alone.
    """
    kind = attempt.get("kind")
    if kind == AttemptKind.EVAL:
        return "Evaluation attempt: scored for accuracy, never trained on."
    if kind == AttemptKind.SEED:
        return ("Seed row: an exact reference rationale written by the task, trained on before iteration 1 and in every "
                "iteration; never counted as the model's.")
    correct, verified = attempt.get("correct"), attempt.get("verified")
    reason = (attempt.get("verify_reason") or "").strip()
    if attempt.get("used_for_training"):
        how = "self-generated" if kind == AttemptKind.GENERATED else "rationalized (written with the answer as a hint)"
        if attempt.get("given_steps"):
            how = (f"rationalized (written with the answer and the first {attempt['given_steps']} of its "
                   f"{attempt.get('steps')} reference steps as a hint)")
        checked = " and its steps verified" if verified is True else ""
        return f"Kept for fine-tuning: {how}, its final answer is correct{checked}."
    if not correct:
        return "Rejected: the extracted answer is not the gold answer."
    if rule.require_steps and verified is not True:
        if reason == NO_STEPS:
            return "Rejected: the answer is right but the rationale shows no steps (a bare sum)."
        return f"Rejected: the answer is right but a step does not hold ({reason or 'verification failed'})."
    if attempt.get("hint_leak") and not rule.keep_hint_leaks:
        return "Rejected: the rationale restates the hint instead of reasoning (hint leak)."
    if kind == AttemptKind.RATIONALIZED:
        return ("Not kept: correct, but the question was already solved without a hint, "
                "or the iteration has not been filtered yet.")
    return ("Not kept: correct, but a duplicate rationale, beyond the cap per question, "
            "or the iteration has not been filtered yet.")
