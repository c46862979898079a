"""Direct fine-tuning mode, stopping by patience or the time budget, and the curriculum, in the loop.

Completions are canned (PrefixGenerator replaced, as in test_task_loop.py) so that each test
knows exactly which answers are right; the tiny random model still loads and fine-tunes.
"""

from __future__ import annotations

import re

import pytest

from tiny import tiny_config
from star_core.engine import loop
from star_core.engine.curriculum import curriculum_top, in_range
from star_core.engine.exemplars import load_exemplars
from star_core.model.generate import Completion
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.store import Store
from star_core.tasks.arithmetic import ArithmeticTask, rationale_for
from star_core.tasks.base import build_prefix

QUESTION = re.compile(r"Question: (\d+) \+ (\d+) = \?")


class Script:
    """Which canned answers are right: eval questions by rank and iteration, training questions by difficulty."""

    eval_right: dict[int, int] = {}  # iteration -> how many eval questions (in sorted order) are answered right
    eval_questions: list[str] = []
    train_right_digits: set[int] = {1, 2, 3, 4, 5}
    answer_only = False
    prefixes: list[str] = []
    seen: list[tuple[int, str]] = []  # (iteration, question prompt)
    iteration = 0  # of the phase being decoded


class ScriptedGenerator:
    def __init__(self, lm, prefix, decoding, seed=0):
        self.iteration = Script.iteration  # the phase's iteration, noted by the fixture's _decode
        Script.prefixes.append(prefix)

    def generate(self, questions, seed=None):
        return [Completion(self._answer(q), 5, 10, 0.01) for q in questions]

    def _answer(self, question: str) -> str:
        Script.seen.append((self.iteration, question))
        a, b = (int(x) for x in QUESTION.search(question).groups())
        if question in Script.eval_questions:
            right = Script.eval_questions.index(question) < Script.eval_right.get(self.iteration, 0)
        else:
            right = len(str(max(a, b))) in Script.train_right_digits
        total = a + b if right else a + b + 1
        if Script.answer_only:
            return f" The answer is {total}.\n\n"
        return f" {rationale_for(a, b)[:-1] if right else f'{a} + {b} = {total}'}. The answer is {total}.\n\n"


@pytest.fixture
def scripted(monkeypatch):
    Script.eval_right, Script.eval_questions, Script.prefixes, Script.seen = {}, [], [], []
    Script.train_right_digits, Script.answer_only = {1, 2, 3, 4, 5}, False
    monkeypatch.setattr(loop, "PrefixGenerator", ScriptedGenerator)
    real_decode = loop._Runner._decode

    def decode(self, n, *args, **kwargs):
        Script.iteration = n
        return real_decode(self, n, *args, **kwargs)

    monkeypatch.setattr(loop._Runner, "_decode", decode)
    return Script


def started(tmp_path, config):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = create_run(store, config)
    task = ArithmeticTask()
    Script.eval_questions = sorted(task.format_question(p) for p in store.load_problems(run_id) if p.split == "eval")
    return store, run_id


class Messages:
    def __init__(self):
        self.lines: list[str] = []

    def phase(self, iteration, phase, total): pass

    def advance(self, done, total, tokens_per_s, note=""): pass

    def message(self, text):
        self.lines.append(text)


def eval_accuracy(store, run_id) -> dict[int, float]:
    acc = store.accuracy(run_id)
    overall = acc[(acc.split == "eval") & acc.difficulty.isna()]
    return dict(zip(overall.iteration, overall.accuracy))


# --- direct fine-tuning --------------------------------------------------------------


def test_direct_mode_trains_on_gold_answers_without_rationales_and_reads_answers_at_eval(tmp_path, tiny_model, scripted,
                                                                                          monkeypatch):
    trained = []
    real_finetune = loop.finetune

    def recording_finetune(lm, prefix, examples, settings, **kw):
        trained.append((prefix, list(examples), settings))
        return real_finetune(lm, prefix, examples, settings, **kw)

    monkeypatch.setattr(loop, "finetune", recording_finetune)
    scripted.answer_only = True
    scripted.eval_right = {0: 1, 1: 3}
    store, run_id = started(tmp_path, tiny_config(tiny_model, mode="direct", iterations=1, train_size=6, eval_size=4))
    execute_run(store, run_id)

    assert store.get_run(run_id).status == "done"
    task = ArithmeticTask()
    answer_only = build_prefix(task, load_exemplars(task), with_hints=False, answer_only=True)
    assert set(scripted.prefixes) == {answer_only}  # prompted answer-only at iterations 0 and 1
    assert answer_only.count("Answer: The answer is") == len(load_exemplars(task)) and " = " not in answer_only.replace(" = ?", "")

    # one fine-tuning, on every training question's gold answer and nothing else, in the answer-only prompt
    (prefix, examples, settings), = trained
    train = [p for p in store.load_problems(run_id) if p.split == "train"]
    assert prefix == answer_only
    assert sorted((e.prompt, e.completion) for e in examples) == sorted(
        (task.format_question(p), f" The answer is {p.answer}.\n\n") for p in train)
    assert settings.steps == tiny_config(tiny_model).steps_for(1, len(train))
    iterations = store.iterations(run_id).set_index("iteration")
    assert int(iterations.kept[1]) == len(train) == 6

    with store.db.read() as con:
        kinds = dict(con.execute("SELECT kind, count(*) FROM attempts WHERE run_id = ? GROUP BY kind", [run_id]).fetchall())
        evals = con.execute("SELECT a.iteration, a.predicted, p.answer, a.correct FROM attempts a JOIN problems p "
                            "USING (run_id, problem_id) WHERE a.run_id = ? ORDER BY a.iteration", [run_id]).fetchall()
    assert kinds == {"eval": 8}  # no generate or rationalize phase
    for iteration, predicted, gold, correct in evals:  # the answer is read from ' The answer is X.'
        assert predicted is not None and correct == (predicted == gold)
    assert eval_accuracy(store, run_id) == {0: 0.25, 1: 0.75}


def test_answer_only_few_shot_is_direct_mode_with_no_iterations(tmp_path, tiny_model, scripted):
    scripted.answer_only = True
    scripted.eval_right = {0: 2}
    store, run_id = started(tmp_path, tiny_config(tiny_model, mode="direct", iterations=0, eval_size=4))
    execute_run(store, run_id)
    assert store.get_run(run_id).status == "done"
    assert eval_accuracy(store, run_id) == {0: 0.5}
    assert all("Answer: The answer is" in p for p in scripted.prefixes)
    assert {it for it, _ in scripted.seen} == {0}


def test_direct_mode_on_the_tiny_model_end_to_end(tmp_path, tiny_model):
    store = Store(tmp_path / "s.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, mode="direct", train_size=4, eval_size=2, max_new_tokens=6))
    execute_run(store, run_id)
    assert store.get_run(run_id).status == "done"
    assert store.iteration_phases(run_id) == {0: "done", 1: "done"}
    assert store.training_examples(run_id).empty  # nothing of the model's own is trained on


def test_a_direct_run_cannot_use_the_curriculum():
    from star_core.core.config import RunConfig
    from star_core.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        RunConfig(mode="direct", curriculum=True)
    assert err.value.field == "curriculum"


# --- stopping by patience ---------------------------------------------------------------


@pytest.mark.slow
def test_patience_stops_the_run_when_eval_accuracy_plateaus(tmp_path, tiny_model, scripted):
    # eval accuracy 1/4, 2/4, 2/4, 1/4, (4/4): best at iteration 1, no improvement in 2 and 3 -> stop after 3
    scripted.eval_right = {0: 1, 1: 2, 2: 2, 3: 1, 4: 4}
    store, run_id = started(tmp_path, tiny_config(tiny_model, iterations=5, patience=2, eval_size=4))
    messages = Messages()
    execute_run(store, run_id, messages)

    assert store.get_run(run_id).status == "done"
    assert store.iteration_phases(run_id) == {0: "done", 1: "done", 2: "done", 3: "done"}
    assert eval_accuracy(store, run_id) == {0: 0.25, 1: 0.5, 2: 0.5, 3: 0.25}
    assert max(it for it, _ in scripted.seen) == 3  # iteration 4 never decoded anything
    said = [m for m in messages.lines if m.startswith("stopping")]
    assert len(said) == 1 and "after iteration 3" in said[0] and "patience 2" in said[0] and "--iterations 5" in said[0]


def test_without_patience_every_iteration_runs(tmp_path, tiny_model, scripted):
    scripted.eval_right = {0: 2, 1: 1, 2: 1}
    store, run_id = started(tmp_path, tiny_config(tiny_model, iterations=2, eval_size=4))
    execute_run(store, run_id)
    assert store.iteration_phases(run_id) == {0: "done", 1: "done", 2: "done"}


def test_a_spent_time_budget_starts_no_further_iteration(tmp_path, tiny_model, scripted):
    # 0.06 ms: iteration 0 alone spends it, so iteration 1 would end past it
    scripted.eval_right = {0: 1, 1: 2}
    store, run_id = started(tmp_path, tiny_config(tiny_model, iterations=3, eval_size=4, time_budget_minutes=1e-6))
    messages = Messages()
    execute_run(store, run_id, messages)

    assert store.get_run(run_id).status == "done"
    assert store.iteration_phases(run_id) == {0: "done"}
    said = [m for m in messages.lines if m.startswith("stopping")]
    assert len(said) == 1 and "before iteration 1" in said[0] and "time budget" in said[0]


def test_a_time_budget_with_room_runs_every_iteration(tmp_path, tiny_model, scripted):
    scripted.eval_right = {0: 2, 1: 1, 2: 1}
    store, run_id = started(tmp_path, tiny_config(tiny_model, iterations=2, eval_size=4, time_budget_minutes=600))
    execute_run(store, run_id)
    assert store.iteration_phases(run_id) == {0: "done", 1: "done", 2: "done"}


# --- the curriculum ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, threshold, solved, top",
    [
        (1, 5, 0.8, [], 2),  # iteration 1: min .. min + 1
        (1, 1, 0.8, [], 1),  # a one-difficulty range cannot widen
        (3, 5, 0.8, [], 4),
        (1, 5, 0.8, [{1: 1.0, 2: 0.9}], 3),  # above the threshold on the top difficulty: add one
        (1, 5, 0.8, [{1: 1.0, 2: 0.8}], 2),  # exactly the threshold is not above it
        (1, 5, 0.8, [{1: 0.2, 2: 0.9}], 3),  # only the top difficulty counts
        (1, 5, 0.8, [{1: 1.0, 2: 0.9}, {1: 1.0, 2: 1.0, 3: 0.5}, {3: 0.85}], 4),
        (1, 5, 0.5, [{2: 0.6}, {3: 0.6}, {4: 0.6}, {5: 0.9}], 5),  # never past max_difficulty
        (1, 5, 0.8, [{1: 1.0}], 3),  # no training question of the top difficulty: nothing holds it back
        (1, 5, 1.0, [{2: 1.0}], 2),  # threshold 1.0: never widens on data
        # Self-Improving Transformers' threshold: 25 of 26 solved (0.96) holds the range, all 26 widen it
        (1, 5, 0.99, [{1: 1.0, 2: 25 / 26}], 2),
        (1, 5, 0.99, [{1: 1.0, 2: 25 / 26}, {1: 1.0, 2: 1.0}], 3),
        (1, 5, 0.99, [{2: 1.0}, {3: 1.0}, {1: 0.5, 4: 0.995}], 5),  # earlier digits falling back do not narrow it
    ],
)
def test_curriculum_top(low, high, threshold, solved, top):
    assert curriculum_top(low, high, threshold, solved) == top


def test_in_range():
    assert in_range(2, 2) and in_range(1, 2) and not in_range(3, 2) and in_range(None, 1)


@pytest.mark.slow
def test_the_curriculum_widens_the_training_range_and_keeps_the_full_eval(tmp_path, tiny_model, scripted):
    scripted.train_right_digits = {1, 2}  # 3-digit training questions are never solved
    config = tiny_config(tiny_model, iterations=3, curriculum=True, curriculum_threshold=0.5, min_difficulty=1,
                         max_difficulty=4, train_size=12, eval_size=4)
    store, run_id = started(tmp_path, config)
    messages = Messages()
    execute_run(store, run_id, messages)

    with store.db.read() as con:
        rows = con.execute("SELECT a.iteration, a.kind, p.difficulty, count(*) FROM attempts a JOIN problems p "
                           "USING (run_id, problem_id) WHERE a.run_id = ? GROUP BY ALL", [run_id]).fetchall()
    generated = {(it, d): n for it, kind, d, n in rows if kind == "generated"}
    evaluated = {(it, d) for it, kind, d, n in rows if kind == "eval"}
    # iteration 1: digits 1-2; all right, so iteration 2 adds 3; 3-digit is never solved, so iteration 3 stays at 1-3
    assert {d for it, d in generated if it == 1} == {1, 2}
    assert {d for it, d in generated if it == 2} == {1, 2, 3}
    assert {d for it, d in generated if it == 3} == {1, 2, 3}
    assert generated[(1, 1)] == generated[(2, 1)] == 3  # every training question of a difficulty in range
    for it in range(4):
        assert {d for i, d in evaluated if i == it} == {1, 2, 3, 4}  # the eval set spans the full range
    said = [m for m in messages.lines if "curriculum" in m]
    assert said == ["iteration 1: curriculum: difficulty 1-2, 6 of 12 training questions",
                    "iteration 2: curriculum: difficulty 1-3, 9 of 12 training questions",
                    "iteration 3: curriculum: difficulty 1-3, 9 of 12 training questions"]


# --- rows and prompts without the few-shot prefix ------------------------------------------


@pytest.mark.slow
def test_prefix_free_training_rows_hold_no_exemplar_text_and_a_trained_model_is_asked_without_it(
        tmp_path, tiny_model, scripted, monkeypatch):
    trained = []
    real_finetune = loop.finetune

    def recording_finetune(lm, prefix, examples, settings, **kw):
        trained.append((prefix, list(examples)))
        return real_finetune(lm, prefix, examples, settings, **kw)

    monkeypatch.setattr(loop, "finetune", recording_finetune)
    scripted.train_right_digits = {1}  # 2-digit questions go to rationalization
    config = tiny_config(tiny_model, iterations=2, train_prefix=False, prompt_trained=False, max_difficulty=2,
                         train_size=8, eval_size=4)
    store, run_id = started(tmp_path, config)
    execute_run(store, run_id)

    exemplars = load_exemplars(ArithmeticTask())
    few_shot = build_prefix(ArithmeticTask(), exemplars, with_hints=False)
    assert [prefix for prefix, _ in trained] == ["", ""]
    rows = [ex.prompt + ex.completion for _, examples in trained for ex in examples]
    assert rows and all(r.startswith("Question: ") and r.count("Question: ") == 1 for r in rows)
    for e in exemplars:  # neither an exemplar's question nor its rationale is in any row
        assert not any(f"Question: {e.question} = ?" in r or e.rationale in r for r in rows)
    assert all("(The answer is" not in r for r in rows)  # nor a hint
    with store.db.read() as con:
        prompts = dict(con.execute("SELECT a.iteration || '/' || a.kind, p.text FROM attempts a JOIN prompts p "
                                   "ON p.id = a.prompt_id WHERE a.run_id = ? GROUP BY ALL", [run_id]).fetchall())
    assert prompts["0/eval"] == few_shot  # the base model is asked few-shot
    assert prompts["1/generated"] == few_shot  # iteration 1 decodes with the base model
    assert prompts["1/eval"] == prompts["2/generated"] == prompts["2/eval"] == ""  # fine-tuned: the question alone
    assert prompts["1/rationalized"] == prompts["2/rationalized"] != ""  # the hinted exemplars stay
