"""The seeded loop: partial-solution hints, the model-written share, the curriculum's start and kept rows, and a
tiny-model run that starts from a seed (docs/paper.md#the-seeded-loop)."""

from __future__ import annotations

import pytest

from star_core.core.config import RunConfig
from star_core.core.states import AttemptKind
from star_core.engine import loop as loop_module
from star_core.engine.curriculum import curriculum_top
from star_core.engine.filtering import select_kept
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.engine.seeding import hint_share, seed_problems, training_rows
from star_core.store import Store
from star_core.store.attempts import Candidate
from star_core.tasks import Problem, get_task
from star_core.tasks.base import given_count, written_share
from star_core.tasks.gsm8k import parse_row
from tiny import tiny_config


def _problem(question: str, answer: str, difficulty: int = 1, solution: str = "") -> Problem:
    return Problem(id=question, question=question, answer=answer, split="train", difficulty=difficulty, solution=solution)


# --- partial hints, per task ------------------------------------------------------------------------------


def test_place_value_reference_cuts_the_canonical_rationale_into_place_sums_and_the_total():
    task = get_task("arithmetic")
    p = _problem("194 + 783", "977", 3)
    ref = task.reference(p)
    assert ref.steps == (" 194 + 783 = 800", " + 170", " + 7", " = 977.")
    assert ref.completion == " 194 + 783 = 800 + 170 + 7 = 977. The answer is 977."
    assert task.verify_steps(ref.completion, p).ok is True
    assert ref.prefix(given_count(0.5, len(ref.steps))) == " 194 + 783 = 800 + 170"
    assert ref.prefix(given_count(0.25, len(ref.steps))) == " 194 + 783 = 800"
    assert task.reference(_problem("3 + 4", "7")).steps == (" 3 + 4 = 7.",)  # one place: one step, never given


def test_scratchpad_reference_gives_its_first_lines():
    task = get_task("arithmetic", RunConfig(arithmetic_format="scratchpad"))
    p = _problem("624 + 259", "883", 3)
    ref = task.reference(p)
    assert len(ref.steps) == 5  # the five lines of the paper's 3-digit example (scratchpad.py)
    assert ref.prefix(2) == "\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n2 + 5 , 3 C: 1"
    assert task.verify_steps(ref.completion, p).ok is True
    assert task.extract_answer(ref.completion) == "883"


def test_gsm8k_reference_is_the_datasets_solution_a_step_per_line():
    row = {"question": "Natalia sold clips to 48 friends and half as many in May. How many altogether?",
           "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"}
    p = parse_row(row, 1)
    task = get_task("gsm8k")
    ref = task.reference(p)
    assert ref.prefix(given_count(0.5, len(ref.steps))) == " Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    assert ref.completion.endswith(" clips. The answer is 72.")
    assert task.verify_steps(ref.completion, p).ok is True and task.extract_answer(ref.completion) == "72"


def test_given_count_rounds_down_and_never_gives_every_step():
    assert [given_count(0.5, n) for n in (1, 2, 3, 4, 6)] == [0, 1, 1, 2, 3]
    assert given_count(1.0, 4) == 3 and given_count(0.0, 4) == 0


def test_hint_share_anneals_from_start_to_end():
    assert [hint_share(0.5, 0.25, n, 3) for n in (1, 2, 3)] == [0.5, 0.375, 0.25]
    assert hint_share(0.5, 0.25, 1, 1) == 0.5


# --- the model-written share ------------------------------------------------------------------------------


def test_written_share_on_hand_made_cases():
    assert written_share([(4, 0), (4, 0)]) == 1.0  # self-generated: all its own
    assert written_share([(4, 2), (4, 0)]) == 0.75  # half of one given
    assert written_share([(4, 2), (2, None)]) == pytest.approx(2 / 3)
    assert written_share([(None, None)]) is None and written_share([]) is None
    assert written_share([(3, 5)]) == 0.0  # more given than it has: capped at all


# --- curriculum and kept rows -----------------------------------------------------------------------------


def test_curriculum_starts_past_the_seed_and_extends_at_the_threshold():
    assert curriculum_top(1, 5, 0.9, [], seed_top=2) == 3
    assert curriculum_top(1, 5, 0.9, [{3: 0.9}], seed_top=2) == 3  # at the threshold: not above it
    assert curriculum_top(1, 5, 0.9, [{3: 0.95}], seed_top=2) == 4
    assert curriculum_top(1, 5, 0.9, [{3: 0.95}, {3: 1.0, 4: 0.5}], seed_top=2) == 4
    assert curriculum_top(1, 5, 0.9, [{3: 0.95}, {4: 0.99}, {5: 1.0}], seed_top=2) == 5  # never past the top


def _c(attempt_id: int, problem_id: str, kind=AttemptKind.GENERATED) -> Candidate:
    return Candidate(attempt_id, problem_id, kind, 0, "r", "c", True, True)


def test_training_rows_keep_the_seed_and_earlier_rows():
    seed = [_c(1, "a", AttemptKind.SEED)]
    earlier = [[_c(10, "x"), _c(11, "y")], [_c(20, "x")]]
    current = [_c(30, "y"), _c(31, "z")]
    got = [c.attempt_id for c in training_rows(seed, earlier, current, keep_earlier=True)]
    assert got == [1, 20, 30, 31]  # x from its latest iteration; y is the current iteration's own
    assert [c.attempt_id for c in training_rows(seed, earlier, current, keep_earlier=False)] == [1, 30, 31]


def test_seed_problems_take_every_easy_question_and_a_few_longer():
    train = [_problem(f"{i} + 1", str(i + 1), d) for i, d in enumerate([1, 2, 3, 3, 3, 4, None, 2])]
    assert [p.difficulty for p in seed_problems(train, 2, 2)] == [1, 2, 3, 3, 4, 2]
    assert seed_problems(train, 0, 8) == []


# --- a run with a seed, on the tiny model -----------------------------------------------------------------


class _Calls(list):
    """Each fine-tuning call's examples, and in `starts` the checkpoint each went on from."""

    def __init__(self):
        super().__init__()
        self.starts: list[str | None] = []


@pytest.fixture
def recorded(monkeypatch):
    """Every fine-tuning call's examples (and where it started)."""
    calls = _Calls()
    real = loop_module.finetune

    def recording(lm, prefix, examples, settings, **kwargs):
        calls.append(list(examples))
        calls.starts.append(settings.start)
        return real(lm, prefix, examples, settings, **kwargs)

    monkeypatch.setattr(loop_module, "finetune", recording)
    return calls


def test_a_seeded_run_stores_seed_rows_and_never_counts_them_as_the_models(tmp_path, tiny_model, recorded):
    store = Store(tmp_path / "s.duckdb").init()
    config = tiny_config(tiny_model, train_size=12, max_difficulty=3, iterations=1, seed_max_digits=1,
                         seed_per_longer_digit=1, filter="answer")
    run_id = create_run(store, config)
    execute_run(store, run_id)

    assert store.get_run(run_id).status == "done"
    with store.db.read() as con:
        seed = con.execute("SELECT difficulty, used_for_training, verified, given_steps = steps, iteration FROM v_attempts "
                           "WHERE run_id = ? AND kind = 'seed'", [run_id]).fetchall()
        generated = {r[0] for r in con.execute("SELECT DISTINCT problem_id FROM attempts WHERE run_id = ? AND kind = "
                                               "'generated'", [run_id]).fetchall()}
        seeded = {r[0] for r in con.execute("SELECT problem_id FROM attempts WHERE run_id = ? AND kind = 'seed'",
                                            [run_id]).fetchall()}
    assert seed and all(used and verified and all_given and it == 0 for _, used, verified, all_given, it in seed)
    assert sorted({d for d, *_ in seed}) == [1, 2, 3]  # every 1-digit question, one of each longer
    assert not generated & seeded and len(generated) == 12 - len(seeded)  # the loop generates for the rest only
    # iteration 0 is the seed alone: fine-tuned on exactly the seed's rows
    assert len(recorded[0]) == len(seed) and store.iterations(run_id).set_index("iteration").steps[0] > 0
    # iteration 1 trains on the seed again, beside whatever it kept, going on from the seed's model, which is kept
    assert len(recorded[1]) >= len(seed)
    seed_model = store.iteration_checkpoint(run_id, 0)
    assert recorded.starts == [None, str(seed_model)] and seed_model.exists()
    shares = store.written_shares(run_id)
    kept_rows = store.kept_of(run_id, 1)
    assert all(c.kind != AttemptKind.SEED for c in kept_rows)
    assert shares.kept.sum() == 2 * len(kept_rows) or (shares.empty and not kept_rows)  # per-difficulty rows + total
    acc = store.accuracy(run_id)
    assert set(acc[acc.split == "train"].iteration) <= {1}  # no seed row counts as self-solved
    coverage = store.coverage([run_id])
    assert (coverage.iteration >= 1).all()


def test_partial_hints_give_the_first_steps_and_the_training_row_carries_no_hint(tmp_path, tiny_model, monkeypatch,
                                                                                   recorded):
    from star_core.tasks.arithmetic import ArithmeticTask

    # Every answer is judged right and only the hinted attempts are kept, so every question is rationalized.
    monkeypatch.setattr(ArithmeticTask, "is_correct", lambda self, predicted, problem: True)
    store = Store(tmp_path / "s.duckdb").init()
    config = tiny_config(tiny_model, train_size=12, min_difficulty=2, max_difficulty=3, iterations=1, seed_max_digits=0,
                         filter="answer", partial_hint_start=0.5, partial_hint_end=0.5)
    run_id = create_run(store, config)
    monkeypatch.setattr(loop_module._Runner, "_kept", _only_rationalized)
    execute_run(store, run_id)
    with store.db.read() as con:
        rows = con.execute("SELECT question, hint, given_text, given_steps, steps, completion, used_for_training "
                           "FROM v_attempts WHERE run_id = ? AND kind = 'rationalized'", [run_id]).fetchall()
    assert rows
    task = get_task("arithmetic")
    for question, hint, given, given_steps, steps, completion, _ in rows:
        a, b = (int(x) for x in question.split(" + "))
        ref = task.reference(_problem(question, str(a + b)))
        assert steps == len(ref.steps) and given_steps == len(ref.steps) // 2
        assert given == ref.prefix(given_steps) and completion.startswith(given)
        assert hint == "The answer is " + str(a + b) + "."
    assert sum(r[3] >= 1 for r in rows) >= len(rows) - 1  # a sum with one place sum has no step to give
    trained = recorded[-1]
    kept = [r for r in rows if r[6]]
    assert kept and len(trained) == len(kept)
    for example in trained:
        assert "(The answer is" not in example.prompt and example.prompt.endswith("Answer:")
        assert any(example.completion.startswith(r[2]) and r[2] for r in kept)


def _only_rationalized(self, n, rationalized=True):
    hinted = self.store.attempts_of(self.run_id, n, AttemptKind.RATIONALIZED) if rationalized else []
    return select_kept([], hinted, self.rule)


def test_browse_splits_the_given_steps_from_the_models_own():
    from star_core.analysis.present import given_and_own

    rationale = "194 + 783 = 800 + 170 + 7 = 977. The answer is 977."
    assert given_and_own(rationale, " 194 + 783 = 800 + 170") == ("194 + 783 = 800 + 170", "+ 7 = 977. The answer is 977.")
    assert given_and_own(rationale, None) == ("", rationale)
    assert given_and_own(rationale, " 12 + 3 = 10") == ("", rationale)  # not its prefix: shown whole


def _stored(tmp_path):
    """A run with one seed row and one rationalized attempt written after 2 of its 4 steps were given."""
    from star_core.store import AttemptRow

    store = Store(tmp_path / "b.duckdb").init()
    run_id = store.create_run(RunConfig(name="seeded"))
    task = get_task("arithmetic")
    seed_p, hinted_p = _problem("47 + 85", "132", 2), _problem("194 + 783", "977", 3)
    store.save_problems(run_id, [seed_p, hinted_p])
    prompt_id = store.prompt_id("")

    def row(p, kind, iteration, given, completion, given_steps):
        return AttemptRow(run_id=run_id, iteration=iteration, problem_id=p.id, kind=kind, sample=0, prompt_id=prompt_id,
                          question_prompt=task.format_question(p), hint=None, completion=completion,
                          rationale=completion.strip(), predicted=p.answer, correct=True, verified=True, verify_reason="",
                          prompt_tokens=1, new_tokens=1, seconds=0.1, given_text=given, given_steps=given_steps,
                          steps=len(task.reference(p).steps))

    seed_completion = task.reference(seed_p).completion
    given = task.reference(hinted_p).prefix(2)
    store.add_attempts([row(seed_p, "seed", 0, seed_completion, seed_completion, 3),
                        row(hinted_p, "rationalized", 1, given, given + " + 7 = 977. The answer is 977.", 2)])
    with store.db.read() as con:
        ids = dict(con.execute("SELECT kind, id FROM attempts").fetchall())
    return store, ids


def test_browse_shows_the_given_steps_apart_and_a_seed_row_as_the_tasks(tmp_path, monkeypatch):
    from app_helpers import open_page, texts

    store, ids = _stored(tmp_path)
    at = open_page("pages/browse.py", monkeypatch, tmp_path / "b.duckdb", query={"attempt": str(ids["rationalized"])})
    assert not at.exception and not at.error
    codes = [c.value for c in at.code]
    assert "194 + 783 = 800 + 170" in codes and "+ 7 = 977. The answer is 977." in codes
    assert "Given in the hint (the reference's first steps, not the model's)" in texts(at)
    at = open_page("pages/browse.py", monkeypatch, tmp_path / "b.duckdb", query={"attempt": str(ids["seed"])})
    assert not at.exception and not at.error
    assert any("Seed row" in i.value for i in at.info)


def test_audit_shows_the_given_steps_apart(tmp_path):
    store, ids = _stored(tmp_path)
    item = store.audit_item(ids["rationalized"])
    assert item.given_text == " 194 + 783 = 800 + 170"
