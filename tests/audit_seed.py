"""Seed a database with attempts for audit and exemplar tests, without a model.

Used by the audit/exemplar tests and the browser test (`python tests/audit_seed.py DB`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from star_core.core.config import RunConfig
from star_core.store import AttemptRow, Store
from star_core.tasks.arithmetic import ArithmeticTask, rationale_for
from star_core.tasks.base import Problem

TASK = ArithmeticTask()


def _attempt(run_id: int, iteration: int, kind: str, p: Problem, rationale: str, prompt_id: int) -> AttemptRow:
    completion = f" {rationale}\n\n"
    verdict = TASK.verify_steps(completion, p)
    predicted = TASK.extract_answer(completion)
    hint = TASK.format_hint(p) if kind == "rationalized" else None
    return AttemptRow(
        run_id=run_id, iteration=iteration, problem_id=p.id, kind=kind, sample=0, prompt_id=prompt_id,
        question_prompt=TASK.format_question(p, hint), hint=hint, completion=completion, rationale=rationale,
        predicted=predicted, correct=TASK.is_correct(predicted, p), verified=verdict.ok, verify_reason=verdict.reason,
        prompt_tokens=100, new_tokens=20, seconds=0.1,
    )


def seed(path: str | Path, problems_per_iteration: int = 12, iterations: int = 2) -> tuple[Store, int]:
    """One arithmetic run: per iteration, generated attempts (sound, lucky and wrong) and rationalized ones
    (some that copy the hint); the right-and-verified ones marked as kept. Returns (store, run id)."""
    store = Store(path).init()
    run_id = store.create_run(RunConfig(name="seeded", train_size=problems_per_iteration, eval_size=4))
    problems = [
        Problem(id=f"{a}+{b}", question=f"{a} + {b}", answer=str(a + b), split="train", difficulty=len(str(max(a, b))))
        for a, b in [(12 + 7 * i, 35 + 11 * i) for i in range(problems_per_iteration)]
    ]
    store.save_problems(run_id, problems)
    prompt_id = store.prompt_id("Question: 3 + 4 = ?\nAnswer: 3 + 4 = 7. The answer is 7.\n\n")
    for n in range(1, iterations + 1):
        rows = []
        for i, p in enumerate(problems):
            a, b = (int(x) for x in p.question.split(" + "))
            s = a + b
            if i % 3 == 0:  # sound
                rows.append(_attempt(run_id, n, "generated", p, f"{rationale_for(a, b)} The answer is {s}.", prompt_id))
            elif i % 3 == 1:  # a right answer after wrong steps (lucky guess)
                rows.append(_attempt(run_id, n, "generated", p, f"{a} + {b} = {s + 10}. The answer is {s}.", prompt_id))
            else:  # wrong, then rationalized copying the hint
                rows.append(_attempt(run_id, n, "generated", p, f"{a} + {b} = {s + 1}. The answer is {s + 1}.", prompt_id))
                text = f"{rationale_for(a, b)} The answer is {s}." if i % 2 else f"{a} + {b} = 7. The answer is {s}."
                rows.append(_attempt(run_id, n, "rationalized", p, text, prompt_id))
        store.add_attempts(rows)
        kept = [c.attempt_id for kind in ("generated", "rationalized") for c in store.attempts_of(run_id, n, kind)
                if c.correct and c.verified]
        store.mark_training(run_id, n, kept)
    return store, run_id


if __name__ == "__main__":
    _, rid = seed(sys.argv[1], *(int(x) for x in sys.argv[2:]))
    print(f"seeded run {rid} in {sys.argv[1]}")
