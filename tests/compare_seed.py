"""A database of three runs whose outcomes are set by hand, for the comparison and trajectory tests.

Run 1 (iterations 0-2) and run 2 (iterations 0-1, and a partial iteration 2) evaluate the same
questions e1..e7; both also have an 'e8' id, but with different questions, and run 2 has e9
too, so they share 7 eval questions (run 1 answered 8, run 2 answered 9). Run 3's questions
are all different. Every outcome below is hand-set; the tests compute the expected figures
from these tables.
"""

from __future__ import annotations

from pathlib import Path

from star_core.core.config import RunConfig
from star_core.store import AttemptRow, Store
from star_core.tasks.base import Problem

T, F = True, False

# Run 1's eval outcomes at iterations 0, 1, 2 and the trajectory class each path is.
RUN1_EVAL = {
    "e1": ([F, T, T], "learned"),
    "e2": ([T, T, F], "forgotten"),
    "e3": ([T, T, T], "always right"),
    "e4": ([F, F, F], "never right"),
    "e5": ([T, F, T], "unstable"),
    "e6": ([F, T, F], "forgotten"),
    "e7": ([F, F, T], "learned"),
    "e8": ([F, T, T], "learned"),
}
# Run 1's training questions at iterations 1, 2: self-generated right, rationalized right, kept; class.
RUN1_TRAIN = {
    "t1": ([F, T], [T, F], [T, T], "learned"),
    "t2": ([T, T], [F, F], [T, T], "always right"),
    "t3": ([F, F], [T, F], [T, F], "never right"),
    "t4": ([T, F], [F, F], [T, F], "forgotten"),
}
# Run 2's eval outcomes at iterations 0, 1 (and 2 for the first three: an evaluation still running).
RUN2_EVAL = {
    "e1": [F, T, T], "e2": [F, F, F], "e3": [T, T, T], "e4": [F, T], "e5": [F, F], "e6": [T, T], "e7": [F, T],
    "e8": [T, T], "e9": [F, F],
}
DIFFICULTY = {"e1": 1, "e2": 1, "e3": 1, "e4": 1, "e5": 2, "e6": 2, "e7": 2, "e8": 2, "e9": 2,
              "t1": 1, "t2": 1, "t3": 2, "t4": 2}


def _question(pid: str, run: int) -> Problem:
    # e8 is a different question in run 2: same id, other text and answer, so it is not shared.
    n = int(pid[1:]) + (100 if (pid == "e8" and run == 2) or run == 3 else 0)
    split = "eval" if pid.startswith("e") else "train"
    return Problem(id=pid if run != 3 else f"x{pid}", question=f"{n} + {n + 1}", answer=str(2 * n + 1), split=split,
                   difficulty=DIFFICULTY[pid])


def _row(run_id, iteration, problem: Problem, kind, correct, prompt_id) -> AttemptRow:
    answer = problem.answer if correct else str(int(problem.answer) + 1)
    hint = f"(The answer is {problem.answer})" if kind == "rationalized" else None
    rationale = f"{problem.question} = {answer}. (run {run_id}, iteration {iteration}, {kind})"
    return AttemptRow(
        run_id=run_id, iteration=iteration, problem_id=problem.id, kind=kind, sample=0, prompt_id=prompt_id,
        question_prompt=problem.question, hint=hint, completion=f" {rationale} The answer is {answer}.",
        rationale=rationale, predicted=answer, correct=correct, verified=None, verify_reason="", prompt_tokens=10,
        new_tokens=10, seconds=0.01)


def seed(path: str | Path) -> Store:
    store = Store(path).init()
    prompt = store.prompt_id("Question: 1 + 2 = ?\nAnswer: 3.\n\n")
    one = store.create_run(RunConfig(name="with hints", rationalize=True, iterations=2))
    two = store.create_run(RunConfig(name="no hints", rationalize=False, iterations=2))
    three = store.create_run(RunConfig(name="other questions", seed=7, iterations=1))
    assert (one, two, three) == (1, 2, 3)

    p1 = {pid: _question(pid, 1) for pid in [*RUN1_EVAL, *RUN1_TRAIN]}
    store.save_problems(1, list(p1.values()))
    for it in range(3):
        store.add_attempts([_row(1, it, p1[pid], "eval", path_[it], prompt) for pid, (path_, _) in RUN1_EVAL.items()])
        if it:
            rows = []
            for pid, (gen, rat, keep, _) in RUN1_TRAIN.items():
                rows.append(_row(1, it, p1[pid], "generated", gen[it - 1], prompt))
                if not gen[it - 1]:
                    rows.append(_row(1, it, p1[pid], "rationalized", rat[it - 1], prompt))
            store.add_attempts(rows)
            by_pid = {c.problem_id: c for kind in ("generated", "rationalized") for c in store.attempts_of(1, it, kind)
                      if c.correct}
            kept = [by_pid[pid].attempt_id for pid, (_, _, keep, _) in RUN1_TRAIN.items() if keep[it - 1] and pid in by_pid]
            store.mark_training(1, it, kept)
        store.set_iteration_phase(1, it, "done")

    p2 = {pid: _question(pid, 2) for pid in RUN2_EVAL}
    store.save_problems(2, list(p2.values()))
    for it in range(3):
        store.add_attempts([_row(2, it, p2[pid], "eval", path_[it], prompt) for pid, path_ in RUN2_EVAL.items()
                            if it < len(path_)])
        store.set_iteration_phase(2, it, "done" if it < 2 else "evaluate")

    p3 = {pid: _question(pid, 3) for pid in ("e1", "e2", "e3")}
    store.save_problems(3, list(p3.values()))
    store.add_attempts([_row(3, 0, p, "eval", True, prompt) for p in p3.values()])
    store.set_iteration_phase(3, 0, "done")
    return store
