"""A run keeps its best iteration's checkpoint beside its latest, says which is which, and exports the best
model as a folder transformers loads, which answers the eval questions as the stored evaluation did."""

from __future__ import annotations

import json
import shutil

import pytest

from app_helpers import one_error_line, open_page, texts, unescaped
from tiny import star, tiny_config
from star_core.core.states import AttemptKind
from star_core.engine.loop import _Runner, execute_run
from star_core.engine.prepare import create_run
from star_core.store import Store

# Right eval answers (of 4) per iteration: iteration 1 is the best, iteration 3 ties it (a tie is no improvement),
# so patience 2 stops the run after iteration 3, its best two iterations old.
EVAL_RIGHT = {0: 1, 1: 3, 2: 2, 3: 3, 4: 4, 5: 4}


def _script_verdicts(monkeypatch, eval_right: dict[int, int] | None) -> None:
    """Every rationale judged right, so that every iteration fine-tunes; eval answers judged as `eval_right` says
    (None: by the task, as in a real run)."""
    real = _Runner._attempt

    def attempt(self, n, kind, problem, *args):
        row = real(self, n, kind, problem, *args)
        if kind != AttemptKind.EVAL:
            row.correct = True
        elif eval_right is not None:
            row.correct = sorted(p.id for p in self.eval).index(problem.id) < eval_right[n]
        return row

    monkeypatch.setattr(_Runner, "_attempt", attempt)


@pytest.fixture(scope="module")
def patience_run(tmp_path_factory, tiny_model):
    """A database with one run (id 1) that patience stopped after iteration 3; its best iteration is 1."""
    db = tmp_path_factory.mktemp("patience") / "p.duckdb"
    store = Store(db).init()
    with pytest.MonkeyPatch.context() as mp:
        _script_verdicts(mp, EVAL_RIGHT)
        # A high learning rate, so that fine-tuning changes what the tiny model writes.
        run_id = create_run(store, tiny_config(tiny_model, iterations=5, patience=2, filter="answer",
                                               learning_rate=0.05, min_steps=4))
        execute_run(store, run_id)
    return db


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_a_run_patience_stopped_keeps_its_best_and_latest_checkpoints(patience_run):
    store = Store(patience_run)
    assert store.iteration_phases(1) == {0: "done", 1: "done", 2: "done", 3: "done"}  # stopped by patience
    folders = sorted(p.name for p in store.run_folder(1).iterdir() if p.is_dir())
    assert folders == ["iteration-1", "iteration-3"]  # the best (the earliest of the tie) and the latest
    assert store.iteration_checkpoint(1, 1).exists() and not store.iteration_checkpoint(1, 2).exists()


@pytest.mark.slow  # four iterations, killed, then resumed to the end: ~9 s
def test_a_run_killed_before_its_clean_up_cleans_up_when_resumed(tmp_path, tiny_model, monkeypatch):
    """Killed after iteration 3 was evaluated, before the checkpoints it outdates were deleted: the resume
    deletes them, and going on still finds the latest."""
    _script_verdicts(monkeypatch, EVAL_RIGHT)
    real = _Runner._keep_best_and_latest

    def killed_after_iteration_3(self):
        if self._phase(3) == "done":
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(_Runner, "_keep_best_and_latest", killed_after_iteration_3)
    store = Store(tmp_path / "k.duckdb").init()
    run_id = create_run(store, tiny_config(tiny_model, iterations=5, patience=2, filter="answer"))
    with pytest.raises(KeyboardInterrupt):
        execute_run(store, run_id)
    assert sorted(p.name for p in store.run_folder(run_id).iterdir() if p.is_dir()) == ["iteration-1", "iteration-2", "iteration-3"]

    monkeypatch.setattr(_Runner, "_keep_best_and_latest", real)
    execute_run(store, run_id)
    assert store.get_run(run_id).status == "done"
    assert sorted(p.name for p in store.run_folder(run_id).iterdir() if p.is_dir()) == ["iteration-1", "iteration-3"]


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_star_runs_names_the_best_and_the_latest_iteration(patience_run, capsys):
    code, out, _ = star(capsys, "runs", "--db", str(patience_run), "--run", "1")
    assert code == 0
    lines = out.splitlines()
    best = next(line for line in lines if line.strip().startswith("best:"))
    latest = next(line for line in lines if line.strip().startswith("latest:"))
    assert "iteration 1, eval 75.0% (3/4)" in best and "checkpoint on disk" in best
    assert "iteration 3, eval 75.0% (3/4)" in latest and "checkpoint on disk" in latest


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_star_runs_says_when_a_checkpoint_is_gone(patience_run, tmp_path, capsys):
    db = tmp_path / "copy.duckdb"
    shutil.copy(patience_run, db)  # its checkpoints are recorded where the original's are; none is beside the copy
    code, out, _ = star(capsys, "runs", "--db", str(db), "--run", "1")
    assert code == 0
    assert "checkpoint on disk" in out
    Store(db).set_iteration_phase(1, 1, "done", checkpoint=str(tmp_path / "gone"))
    code, out, _ = star(capsys, "runs", "--db", str(db), "--run", "1")
    best = next(line for line in out.splitlines() if line.strip().startswith("best:"))
    assert "checkpoint deleted" in best and "star export --model" not in out


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_the_runs_page_names_the_best_and_the_latest_model(patience_run, tmp_path, monkeypatch):
    at = open_page("pages/runs.py", monkeypatch, patience_run, query={"run": "1"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    page = unescaped(texts(at))
    assert "best: iteration 1, eval 75.0% (3/4); checkpoint on disk" in page
    assert "latest: iteration 3, eval 75.0% (3/4); checkpoint on disk" in page


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_export_model_writes_the_best_iteration_as_a_folder_transformers_loads(patience_run, tmp_path, capsys,
                                                                                 tiny_model):
    from transformers import AutoModelForCausalLM

    from star_core.engine.reevaluate import reevaluate

    out = tmp_path / "best"
    code, printed, err = star(capsys, "export", "--model", "--db", str(patience_run), "--run", "1", "--out", str(out))
    assert code == 0, err
    assert "iteration 1 (its best" in printed
    assert json.loads((out / "star-export.json").read_text())["iteration"] == 1
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not hasattr(model, "peft_config")  # merged: no adapter to apply
    # It is iteration 1's model: it writes iteration 1's stored eval completions, character for character.
    again = reevaluate(Store(patience_run), 1, 1, str(out))
    assert again.same_completions == again.n == 4
    assert reevaluate(Store(patience_run), 1, 1, tiny_model).same_completions < 4  # the base model writes others


def test_the_exported_model_reproduces_the_stored_eval_accuracy(tmp_path, tiny_model, monkeypatch, capsys):
    """Judged by the task, as in a real run: the exported model answers every eval question as iteration 1 did."""
    from transformers import AutoModelForCausalLM

    from star_core.engine.reevaluate import reevaluate

    _script_verdicts(monkeypatch, None)
    db = tmp_path / "r.duckdb"
    store = Store(db).init()
    # A high learning rate, so that fine-tuning changes what the tiny model writes.
    run_id = create_run(store, tiny_config(tiny_model, iterations=1, eval_size=8, filter="answer", learning_rate=0.05,
                                           min_steps=4))
    execute_run(store, run_id)
    answers = {n: store.eval_answers(run_id, n).set_index("problem_id").completion for n in (0, 1)}
    assert (answers[0] != answers[1][answers[0].index]).any(), "fine-tuning changed nothing: the test would prove nothing"

    out = tmp_path / "iteration-1-model"
    code, _, err = star(capsys, "export", "--model", "--db", str(db), "--run", str(run_id), "--iteration", "1",
                        "--out", str(out))
    assert code == 0, err
    AutoModelForCausalLM.from_pretrained(out)
    again = reevaluate(store, run_id, 1, str(out))
    assert (again.correct, again.n) == (again.stored_correct, 8)
    assert again.same_completions == 8  # greedy decoding of the same weights: the same text
    base = reevaluate(store, run_id, 1, tiny_model)  # the check can fail: the base model writes other answers
    assert base.same_completions < 8


@pytest.mark.xdist_group("patience-run")  # one test process runs patience_run once
def test_export_model_refuses_what_it_cannot_write_in_one_line(patience_run, tmp_path, capsys):
    db = str(patience_run)
    cases = [
        (["--run", "42"], ["there is no run 42"]),
        (["--run", "1", "--iteration", "2"], ["iteration 2", "is gone", "--iteration 3"]),
        (["--run", "1", "--iteration", "0"], ["is the base model", "few-shot baseline", "--iteration 3"]),
        (["--run", "1", "--iteration", "9"], ["no evaluated iteration 9"]),
        (["--run", "1", "--format", "parquet"], ["--format is for the kept rationales"]),
    ]
    for args, phrases in cases:
        code, _, err = star(capsys, "export", "--model", "--db", db, *args, "--out", str(tmp_path / "m"))
        assert code == 2
        one_error_line(err, *phrases)
    assert not (tmp_path / "m").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, _, err = star(capsys, "export", "--model", "--db", db, "--run", "1", "--out", str(full))
    one_error_line(err, "not empty")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    code, _, err = star(capsys, "export", "--db", db, "--run", "1", "--iteration", "1", "--out", str(tmp_path / "k.jsonl"))
    one_error_line(err, "--iteration", "--model")
