"""A finished exemplar comparison without a model: `star exemplars compare`'s two runs stored as it stores
them, with eval outcomes set by hand (used by the exemplar-comparison and page tests)."""

from __future__ import annotations

from pathlib import Path

from star_core.engine import exemplar_compare
import star_core.engine.exemplars as ex
from star_core.engine.exemplars import default_exemplar_path
from star_core.core.states import Phase, RunStatus
from star_core.store import AttemptRow, Store
from star_core.tasks import get_task

EVAL_SIZE = 12
# Which eval questions (by position) each set gets right: A 7 of 12, B 5; only A: 0, 1, 6, 9; only B: 4, 11.
RIGHT_A = {0, 1, 2, 3, 6, 8, 9}
RIGHT_B = {2, 3, 4, 8, 11}
MINUS_ONE = "arithmetic-minus-one"


def seed(path: str | Path) -> tuple[Store, int]:
    """The default set and the same without its last exemplar, compared on EVAL_SIZE questions; (store, experiment id)."""
    store = Store(path).init()
    task = get_task("arithmetic")
    lines = default_exemplar_path(task).read_text().splitlines()
    store.create_exemplar_set(MINUS_ONE, task.key, ex.parse_jsonl("\n".join(lines[:-1]), task, source="seed"))
    experiment_id = exemplar_compare.create(store, "arithmetic-default", MINUS_ONE, {"eval_size": EVAL_SIZE})
    found = exemplar_compare.result(store, experiment_id)
    prompt = store.prompt_id("Question: 3 + 4 = ?\nAnswer: 3 + 4 = 7. The answer is 7.\n\n")
    for run_id, right in ((found.run_a, RIGHT_A), (found.run_b, RIGHT_B)):
        problems = [p for p in store.load_problems(run_id) if p.split == "eval"]
        assert len(problems) == EVAL_SIZE
        rows = []
        for i, p in enumerate(sorted(problems, key=lambda p: p.id)):
            answer = p.answer if i in right else str(int(p.answer) + 1)
            rows.append(AttemptRow(
                run_id=run_id, iteration=0, problem_id=p.id, kind="eval", sample=0, prompt_id=prompt,
                question_prompt=task.format_question(p), hint=None, completion=f" {p.question} = {answer}.",
                rationale=f"{p.question} = {answer}. The answer is {answer}.", predicted=answer, correct=i in right,
                verified=None, verify_reason="", prompt_tokens=50, new_tokens=9, seconds=0.1))
        store.claim_run(run_id)
        store.add_attempts(rows)
        store.set_iteration_phase(run_id, 0, Phase.DONE)
        store.finish_run(run_id, RunStatus.DONE)
    return store, experiment_id
