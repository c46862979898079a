"""The STaR loop on the dataset tasks: the tiny random model end to end, and canned completions for
de-duplication, the per-question cap and the hint-leak flag."""

from __future__ import annotations

import json

import pytest

from tiny import tiny_config
from star_core.engine import loop
from star_core.model.generate import Completion
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.store import Store

GSM_ROWS = [
    {"question": f"Alpha{i} has {i} apples and buys 3 more. How many apples?", "answer": f"{i}+3=<<{i}+3={i + 3}>>{i + 3}\n#### {i + 3}"}
    for i in range(2, 8)
]
CSQA_ROWS = [
    {"id": f"c{i}", "answerKey": "ABCDE"[i % 5],
     "question": {"stem": f"Where is thing {i} kept?", "choices": [{"label": c, "text": f"place {c.lower()}{i}"} for c in "ABCDE"]}}
    for i in range(6)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def v_attempts(store: Store, run_id: int):
    with store.db.read() as con:
        return con.execute("SELECT * FROM v_attempts WHERE run_id = ? ORDER BY attempt_id", [run_id]).df()


# --- the tiny random model, one run per task ---------------------------------------


@pytest.mark.parametrize("task", ["gsm8k", "commonsenseqa", "jsonl-number", "jsonl-choice"])
def test_each_task_runs_an_iteration_and_stores_its_attempts(tmp_path, tiny_model, task):
    if task == "gsm8k":
        settings = dict(task="gsm8k", data=write_jsonl(tmp_path / "g.jsonl", GSM_ROWS))
    elif task == "commonsenseqa":
        settings = dict(task="commonsenseqa", data=write_jsonl(tmp_path / "c.jsonl", CSQA_ROWS))
    elif task == "jsonl-number":  # a CSV file with numeric answers
        path = tmp_path / "n.csv"
        path.write_text("q,a\n" + "".join(f"What is {i} and {i}?,{2 * i}\n" for i in range(6)))
        settings = dict(task="jsonl", data=str(path), data_map="question=q,answer=a", answer_type="number")
    else:
        rows = [{"q": f"Pick {i}", "opts": [f"x{i}", f"y{i}", f"z{i}"], "a": "B"} for i in range(6)]
        settings = dict(task="jsonl", data=write_jsonl(tmp_path / "c.jsonl", rows), data_map="question=q,answer=a,choices=opts",
                        answer_type="choice")
    store = Store(tmp_path / "s.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, train_size=4, eval_size=2, max_new_tokens=6, filter="answer", **settings))
    execute_run(store, run_id)

    assert store.get_run(run_id).status == "done"
    df = v_attempts(store, run_id)
    counts = df.groupby(["iteration", "kind"]).size().to_dict()
    assert counts[(0, "eval")] == 2 and counts[(1, "eval")] == 2 and counts[(1, "generated")] == 4
    rationalized = df[df.kind == "rationalized"]
    assert len(rationalized) >= 3  # a random model is (almost) always wrong
    assert rationalized.hint_leak.notna().all() and df[df.kind != "rationalized"].hint_leak.isna().all()
    if "choice" in task or task == "commonsenseqa":
        assert df.choices.notna().all()  # the browse view can show the choices
        assert rationalized.question_prompt.str.contains(r"\(CORRECT\)", regex=True).all()
        assert not df[df.kind != "rationalized"].question_prompt.str.contains("CORRECT").any()
    else:
        assert rationalized.question_prompt.str.contains("(The answer is", regex=False).all()


# --- canned completions: k samples, de-duplication, the cap, hint leaks --------------


class CannedGenerator:
    """Stands in for PrefixGenerator: a completion chosen by the question and the hint."""

    calls: list[list[str]] = []
    alpha2 = 0

    def __init__(self, lm, prefix, decoding, seed=0):
        self.hinted = "(The answer is" in prefix

    def generate(self, questions, seed=None):
        CannedGenerator.calls.append(questions)
        return [Completion(self._answer(q), 5, 10, 0.01) for q in questions]

    def _answer(self, question: str) -> str:
        hinted = "(The answer is" in question
        if "Alpha2 " in question and not hinted:  # right, and three samples of which two are the same but for case and space
            CannedGenerator.alpha2 += 1
            n = (CannedGenerator.alpha2 - 1) % 3
            return [" 2 + 3 = <<2+3=5>>5. The answer is 5.\n\n", " 2  + 3 = <<2+3=5>>5. the answer is 5.\n\n",
                    " 3 + 2 = <<3+2=5>>5. The answer is 5.\n\n"][n]
        if not hinted:
            return " I do not know. The answer is 0.\n\n"
        if "Alpha3 " in question:  # copies the hint: states the answer first
            return " 6 apples. 3 + 3 = <<3+3=6>>6. The answer is 6.\n\n"
        if "Alpha4 " in question:  # quotes the hint
            return " The hint says 7, and 4 + 3 = <<4+3=7>>7. The answer is 7.\n\n"
        number = int(question.split("Alpha", 1)[1].split()[0])
        return f" {number} + 3 = <<{number}+3={number + 3}>>{number + 3}. The answer is {number + 3}.\n\n"


@pytest.fixture
def canned(monkeypatch):
    CannedGenerator.calls, CannedGenerator.alpha2 = [], 0
    monkeypatch.setattr(loop, "PrefixGenerator", CannedGenerator)


def canned_run(tmp_path, tiny_model, **overrides):
    store = Store(tmp_path / "s.duckdb").init()
    rows = GSM_ROWS[:5]  # Alpha2..Alpha6
    config = tiny_config(tiny_model, task="gsm8k", data=write_jsonl(tmp_path / "g.jsonl", rows), train_size=4, eval_size=1,
                         samples_per_question=3, temperature=0.7, gen_batch_size=6, seed=4, **overrides)  # seed 4: Alpha5 is eval
    run_id = create_run(store, config)
    execute_run(store, run_id)
    return store, run_id, v_attempts(store, run_id)


def test_samples_are_all_stored_deduplicated_capped_and_leaks_flagged(tmp_path, tiny_model, canned):
    store, run_id, df = canned_run(tmp_path, tiny_model)
    train_ids = set(df[df.kind == "generated"].problem_id)
    generated = df[df.kind == "generated"]
    assert len(generated) == 3 * len(train_ids) and set(generated["sample"]) == {0, 1, 2}  # every sample stored

    alpha2 = generated[generated.question.str.startswith("Alpha2 ")]
    assert len(alpha2) == 3 and alpha2.correct.all() and alpha2.verified.all()
    assert alpha2.used_for_training.sum() == 2  # two distinct rationales out of three samples

    rationalized = df[df.kind == "rationalized"].set_index(df[df.kind == "rationalized"].question.str.split().str[0])
    assert rationalized.hint_leak.notna().all()
    assert sorted(rationalized.index) == ["Alpha3", "Alpha4", "Alpha6"]
    for name, leak in (("Alpha3", True), ("Alpha4", True), ("Alpha6", False)):
        row = rationalized.loc[name]
        assert bool(row.hint_leak) is leak and bool(row.correct) and bool(row.verified)
        assert bool(row.used_for_training) is (not leak)  # a leak is not kept by default
    assert generated.hint_leak.isna().all()
    kept = store.iterations(run_id).set_index("iteration").kept[1]
    assert kept == int(df.used_for_training.sum())


def test_the_cap_and_keep_hint_leaks(tmp_path, tiny_model, canned):
    store, run_id, df = canned_run(tmp_path, tiny_model, max_kept_per_question=1, keep_hint_leaks=True)
    used = df[df.used_for_training]
    assert used.groupby("problem_id").size().max() == 1 and len(used) == 4  # Alpha2 once, Alpha3, 4 (leaks) and 6
    leaks = df[(df.kind == "rationalized") & (df.hint_leak == True)]  # noqa: E712
    assert len(leaks) == 2 and leaks.used_for_training.all()


def test_export_of_a_choice_run_shows_the_choices(tmp_path, tiny_model, monkeypatch):
    from star_core.analysis.export import export_kept
    from star_core.tasks.commonsenseqa import CommonsenseQATask

    monkeypatch.setattr(CommonsenseQATask, "is_correct", lambda self, predicted, problem: True)
    store = Store(tmp_path / "s.duckdb").init()
    config = tiny_config(tiny_model, task="commonsenseqa", data=write_jsonl(tmp_path / "c.jsonl", CSQA_ROWS), train_size=2,
                         eval_size=1, max_new_tokens=4)
    run_id = create_run(store, config)
    execute_run(store, run_id)
    out = tmp_path / "kept.jsonl"
    assert export_kept(store, run_id, out, "jsonl") == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("\nChoices: (A) place a" in r["prompt"] and "CORRECT" not in r["prompt"] for r in rows)
