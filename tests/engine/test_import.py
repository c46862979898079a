"""`star import`: TRL GRPO, verl and Inspect generations become runs (docs/import.md).

The fixtures under tests/data/import/ and how each was made (scripts/make_import_fixtures.py regenerates them):
- trl/completions/completions_0000{1,2}.parquet: written by a real TRL 1.16.0 GRPOTrainer run on CPU with the
  embedded SmolLM2-135M (its local dequantized folder, nothing from a hub), 4 arithmetic prompts x 4 completions,
  2 steps, log_completions=True, report_to="none", two reward functions (right_answer, states_an_answer) and the
  gold answer and question logged beside each completion with log_extra:
  `python3 scripts/make_import_fixtures.py trl`.
- inspect/sums.eval: written by a real Inspect eval (inspect_ai.eval; inspect-ai 0.3.285, in a venv of its own:
  installing it here would downgrade fsspec) with the mockllm/model provider's custom outputs (two sums right,
  one wrong, one no number) and a match() scorer, 4 samples x 2 epochs. Inspect writes .eval members
  zstd-compressed: read here with zstandard (the `import` and `test` extras):
  `python3 scripts/make_import_fixtures.py inspect --inspect-python VENV/bin/python` (VENV: a venv with inspect-ai).
- verl/{rollout,validation}/*.jsonl: DOCUMENTED KEYS, NOT THE REAL WRITER. verl does not install here without
  changing transformers, so the lines are written from the keys its trainer's `_dump_generations` writes
  (input, output, gts, score, step, then the reward function's extras acc and pred; validation lines add reward):
  `python3 scripts/make_import_fixtures.py verl`.
The counts are checked against the files read here with pandas, json and zipfile, not through the importer.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from app_helpers import one_error_line
import star_core.engine.exemplars as ex
from star_core.cli import main
from star_core.core.config import RunConfig
from star_core.core.errors import ImportInputError
from star_core.engine.importing import inspect_rows, parse_correct_rule, problem_id, trl_rows, verl_rows
from star_core.engine.prepare import create_run
from star_core.store import AttemptRow, Store
from star_core.tasks import get_task
from star_core.tasks.base import Problem

DATA = Path(__file__).resolve().parents[1] / "data" / "import"
TRL = DATA / "trl"
VERL = DATA / "verl"
INSPECT = DATA / "inspect" / "sums.eval"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["import", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def dump(db: Path) -> dict:
    """Every table's rows, to show that a refused import changed nothing."""
    if not db.exists():
        return {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()]
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}
    finally:
        con.close()


def attempts(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM v_attempts ORDER BY attempt_id").df()
    finally:
        con.close()


def texts(column: pd.Series) -> list:
    return [v if isinstance(v, str) else None for v in column]


def trl_table() -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((TRL / "completions").glob("*.parquet"))], ignore_index=True)


def verl_lines() -> list[dict]:
    return [json.loads(line) for p in sorted(VERL.rglob("*.jsonl")) for line in p.read_text().splitlines()]


def zip_json(path: Path, name: str) -> dict:
    """A member of an .eval log, read here with zipfile and zstandard (Inspect compresses members with zstd)."""
    import zstandard

    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = path.read_bytes()
    header = raw[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    data = raw[start:start + info.compress_size]
    return json.loads(data if info.compress_type == 0 else zstandard.ZstdDecompressor().decompress(data, max_output_size=info.file_size))


def inspect_samples() -> list[dict]:
    with zipfile.ZipFile(INSPECT) as z:
        names = [n for n in z.namelist() if n.startswith("samples/") and n.endswith(".json")]
    return [zip_json(INSPECT, n) for n in names]


# --- the pure parts -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, column, op, threshold", [
    ("acc>0.5", "acc", ">", 0.5), ("reward >= 1", "reward", ">=", 1.0), ("match==1", "match", "==", 1.0),
    ("right_answer<0", "right_answer", "<", 0.0), ("acc=true", "acc", "=", 1.0), ("score <= -2e-1", "score", "<=", -0.2),
])
def test_a_correct_rule_is_read(text, column, op, threshold):
    rule = parse_correct_rule(text)
    assert (rule.column, rule.op, rule.threshold) == (column, op, threshold)


@pytest.mark.parametrize("text", ["acc", "acc>", ">0.5", "acc>>1", "acc>high"])
def test_a_rule_that_is_not_one_says_the_form(text):
    with pytest.raises(ImportInputError, match="COLUMN>THRESHOLD|not a number"):
        parse_correct_rule(text)


def test_rules_compare_as_written():
    assert parse_correct_rule("x>0.5").holds(0.6) and not parse_correct_rule("x>0.5").holds(0.5)
    assert parse_correct_rule("x>=0.5").holds(0.5) and parse_correct_rule("x<1").holds(0) and parse_correct_rule("x==1").holds(1)


def verl_line(**over) -> dict:
    line = {"input": "What is 2 + 2?", "output": " 4", "gts": "4", "score": 1.0, "step": 3}
    line.update(over)
    return {k: v for k, v in line.items() if v is not ...}


def test_verl_lines_map_to_rows():
    rows = verl_rows([verl_line(acc=True, pred="4"), verl_line(output=" 5", score=0.0, acc=False, pred="5"),
                      verl_line(reward=1.0, step="4")], "f.jsonl", 1, None)
    assert rows.step.tolist() == [3, 3, 4]
    assert rows.kind.tolist() == ["generated", "generated", "eval"]  # validation lines carry reward
    assert rows.file_correct.tolist() == [True, False, True]  # acc where there is one, else score > 0
    assert texts(rows.predicted) == ["4", "5", None] and rows.gold.tolist() == ["4", "4", "4"]
    assert rows.completion.tolist() == [" 4", " 5", " 4"]


@pytest.mark.parametrize("line, phrase", [
    (verl_line(input=...), "f.jsonl:7: no 'input' key"),
    (verl_line(score=...), "f.jsonl:7: no 'score' key"),
    (verl_line(step="three"), "f.jsonl:7: 'step' is 'three'"),
    ([1, 2], "f.jsonl:7: not a JSON object"),
])
def test_a_bad_verl_line_is_named(line, phrase):
    with pytest.raises(ImportInputError, match=phrase):
        verl_rows([verl_line(), line], "f.jsonl", 6, None)


def test_a_verl_rule_column_is_read_and_must_be_there():
    rows = verl_rows([verl_line(acc=0.7), verl_line(acc=0.2)], "f.jsonl", 1, parse_correct_rule("acc>0.5"))
    assert rows.rule_value.tolist() == [0.7, 0.2]
    with pytest.raises(ImportInputError, match="f.jsonl:1: no 'accuracy' key for --correct"):
        verl_rows([verl_line()], "f.jsonl", 1, parse_correct_rule("accuracy>0.5"))
    with pytest.raises(ImportInputError, match="f.jsonl:2: column 'acc' holds 'high'"):
        verl_rows([verl_line(acc=1), verl_line(acc="high")], "f.jsonl", 1, parse_correct_rule("acc>0.5"))


def test_trl_tables_map_to_rows_with_text_steps_and_chats():
    frame = pd.DataFrame({"step": ["2", "2"], "prompt": [[{"role": "user", "content": "2 + 2?"}], "3 + 3?"],
                          "completion": [[{"role": "assistant", "content": "4"}], "7"], "right": [1.0, 0.0],
                          "format": [0.5, 0.5], "answer": ["4", "6"], "advantage": [0.8, -0.8]})
    rows = trl_rows(frame, "c.parquet", 0, None)
    assert rows.step.tolist() == [2, 2]  # older TRL wrote the step as text
    assert rows.prompt.tolist() == ["2 + 2?", "3 + 3?"] and rows.completion.tolist() == ["4", "7"]
    assert rows.reward.tolist() == [1.5, 0.5]  # the reward functions' sum, the gold answer is no reward
    assert rows.gold.tolist() == ["4", "6"] and rows.advantage.tolist() == [0.8, -0.8]
    with pytest.raises(ImportInputError, match="c.parquet: no 'completion' column: not a TRL completions table"):
        trl_rows(frame.drop(columns="completion"), "c.parquet", 0, None)
    with pytest.raises(ImportInputError, match="c.parquet: no column 'rigth' for --correct; its columns are step"):
        trl_rows(frame, "c.parquet", 0, parse_correct_rule("rigth>0"))
    with pytest.raises(ImportInputError, match="c.parquet: row 12, column 'step': 'x'"):
        trl_rows(frame.assign(step=["2", "x"]), "c.parquet", 10, None)


def test_inspect_samples_map_to_rows():
    samples = [{"id": 1, "epoch": 1, "input": "2 + 2?", "target": "4", "output": {"completion": "4"},
                "scores": {"match": {"value": "C", "answer": "4"}}},
               {"id": 2, "epoch": 1, "input": [{"role": "user", "content": "3 + 3?"}], "target": ["6", "six"],
                "output": {"completion": "7"}, "scores": {"match": {"value": "I", "answer": "7"}}}]
    rows = inspect_rows(samples, "l.eval", 0, None)
    assert rows.kind.tolist() == ["eval", "eval"] and rows.file_correct.tolist() == [True, False]
    assert rows.prompt.tolist() == ["2 + 2?", "3 + 3?"] and rows.gold.tolist() == ["4", "6 | six"]
    assert rows.predicted.tolist() == ["4", "7"]
    assert inspect_rows(samples, "l.eval", 0, parse_correct_rule("match>0.5")).rule_value.tolist() == [1.0, 0.0]
    with pytest.raises(ImportInputError, match="l.eval: sample 1 epoch 1: no scorer 'includes' for --correct"):
        inspect_rows(samples, "l.eval", 0, parse_correct_rule("includes>0"))


# --- the fixtures, through the command ------------------------------------------------------------------------------

def test_trl_fixture_imports_with_the_counts_of_its_files(tmp_path, capsys):
    db = tmp_path / "t.duckdb"
    code, out, err = run_cli(capsys, "trl-grpo", TRL, "--db", db, "--correct", "right_answer>0.5")
    assert code == 0 and "new run 1" in out, err
    table, stored = trl_table(), attempts(db)
    assert len(stored) == len(table)
    assert stored.iteration.nunique() == table.step.nunique() == 2
    assert stored.problem_id.nunique() == table.prompt.nunique() == 4  # a prompt at two steps is one problem
    assert set(stored.kind) == {"generated"}
    assert int(stored.correct.sum()) == int((table.right_answer > 0.5).sum())
    per_step = table.groupby(["step", "prompt"]).size()
    assert sorted(stored.groupby(["iteration", "problem_id"]).size().tolist()) == sorted(per_step.tolist())
    assert sorted(stored["sample"].unique()) == list(range(per_step.max()))
    run = Store(db).imported_run(1)
    assert (run.format, run.framework, run.source) == ("trl-grpo", "TRL", str(TRL.resolve()))


def test_verl_fixture_imports_with_the_counts_of_its_files(tmp_path, capsys):
    db = tmp_path / "v.duckdb"
    code, out, err = run_cli(capsys, "verl", VERL, "--db", db)
    assert code == 0, err
    lines, stored = verl_lines(), attempts(db)
    assert len(stored) == len(lines)
    assert sorted(stored.iteration.unique()) == sorted({line["step"] for line in lines})
    assert stored.problem_id.nunique() == len({("reward" in x, x["input"]) for x in lines})
    assert (stored.kind == "eval").sum() == sum("reward" in x for x in lines)
    assert int(stored.correct.sum()) == sum(bool(x["acc"]) for x in lines)
    assert stored.gold_answer.tolist() == [x["gts"] for x in lines]


def test_inspect_fixture_imports_with_the_counts_of_its_log(tmp_path, capsys):
    db = tmp_path / "i.duckdb"
    code, out, err = run_cli(capsys, "inspect", INSPECT, "--db", db)
    assert code == 0, err
    samples, stored = inspect_samples(), attempts(db)
    assert len(stored) == len(samples) and set(stored.kind) == {"eval"} and set(stored.iteration) == {0}
    assert stored.problem_id.nunique() == len({s["id"] for s in samples})
    assert stored["sample"].nunique() == len({s["epoch"] for s in samples})  # epochs are samples
    right = sum(next(iter(s["scores"].values()))["value"] == "C" for s in samples)
    assert 0 < right < len(samples) and int(stored.correct.sum()) == right
    version = zip_json(INSPECT, "header.json")["eval"]["packages"]["inspect_ai"]
    assert Store(db).imported_run(1).framework_version == version


def test_with_a_task_the_trl_fixture_gets_our_verdicts(tmp_path, capsys):
    db = tmp_path / "t.duckdb"
    code, out, err = run_cli(capsys, "trl-grpo", TRL, "--db", db, "--task", "arithmetic")
    assert code == 0, err
    task, table, stored = get_task("arithmetic"), trl_table(), attempts(db)
    expected = [task.is_correct(task.extract_answer(c), Problem("p", q, a, "train"))
                for c, q, a in zip(table.completion, table.question, table.answer)]
    assert stored.correct.tolist() == expected
    steps = [task.verify_steps(c, Problem("p", q, a, "train")).ok for c, q, a in zip(table.completion, table.question, table.answer)]
    assert stored.verified.tolist() == steps and stored.verified.notna().all()
    assert stored.question.tolist() == table.question.tolist()  # the question the reward function logged


# --- re-imports, cut files, bad input -------------------------------------------------------------------------------

def test_reimporting_adds_nothing_and_a_new_step_file_adds_only_its_step(tmp_path, capsys):
    folder = tmp_path / "rollout"
    folder.mkdir()
    shutil.copy(VERL / "rollout" / "1.jsonl", folder / "1.jsonl")
    db = tmp_path / "v.duckdb"
    assert run_cli(capsys, "verl", folder, "--db", db)[0] == 0
    before = dump(db)
    code, out, _ = run_cli(capsys, "verl", folder, "--db", db)
    assert code == 0 and "nothing new" in out and dump(db) == before
    shutil.copy(VERL / "rollout" / "2.jsonl", folder / "2.jsonl")
    assert run_cli(capsys, "verl", folder, "--db", db)[0] == 0
    stored = attempts(db)
    assert stored.run_id.unique().tolist() == [1]
    first = before["attempts"]
    assert len(stored[stored.iteration == 1]) == len(first) and len(stored[stored.iteration == 2]) == 6


def test_a_file_cut_mid_line_imports_its_whole_lines_and_the_rest_later(tmp_path, capsys):
    whole = (VERL / "rollout" / "1.jsonl").read_bytes()
    lines = whole.splitlines(keepends=True)
    cut = b"".join(lines[:4]) + lines[4][:20]
    path = tmp_path / "1.jsonl"
    path.write_bytes(cut)
    db = tmp_path / "v.duckdb"
    code, out, err = run_cli(capsys, "verl", path, "--db", db)
    assert code == 0 and "4 completions" in out
    assert f"{path}:5: the last line is cut short" in err
    assert len(attempts(db)) == 4
    path.write_bytes(whole)  # the trainer finished the file
    code, out, err = run_cli(capsys, "verl", path, "--db", db)
    stored = attempts(db)
    assert code == 0 and len(stored) == len(lines) and "cut short" not in err
    assert stored.groupby("problem_id")["sample"].apply(sorted).tolist() == [[0, 1]] * 3


def _trl_without_completion(tmp_path: Path) -> Path:
    folder = tmp_path / "bad-trl"
    folder.mkdir()
    pd.read_parquet(TRL / "completions" / "completions_00001.parquet").drop(columns="completion").to_parquet(
        folder / "completions_00001.parquet")
    return folder


def _verl_with_a_bad_middle_line(tmp_path: Path) -> Path:
    lines = (VERL / "rollout" / "2.jsonl").read_text().splitlines()
    lines[2] = lines[2][:30]
    path = tmp_path / "bad" / "2.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


BAD = [
    (lambda tmp: ["trl", TRL], ["unknown format 'trl'", "trl-grpo"]),
    (lambda tmp: ["trl-grpo", _trl_without_completion(tmp)], ["completions_00001.parquet", "no 'completion' column"]),
    (lambda tmp: ["verl", TRL], ["no verl step file ({step}.jsonl"]),  # another framework's files
    (lambda tmp: ["inspect", VERL / "rollout" / "1.jsonl"], ["1.jsonl: not an Inspect .eval log"]),
    (lambda tmp: ["trl-grpo", TRL, "--correct", "right>0.5"], ["completions_00001.parquet", "no column 'right' for --correct"]),
    (lambda tmp: ["verl", _verl_with_a_bad_middle_line(tmp)], ["2.jsonl:3: not a JSON line"]),
    (lambda tmp: ["verl", tmp / "missing"], ["missing: no such file or folder"]),
    (lambda tmp: ["trl-grpo", TRL, "--task", "nosuch"], ["unknown task 'nosuch'"]),
]


@pytest.mark.parametrize("make, phrases", BAD)
def test_bad_input_is_one_clear_line_and_changes_nothing(tmp_path, capsys, make, phrases):
    db = tmp_path / "keep.duckdb"
    assert run_cli(capsys, "inspect", INSPECT, "--db", db)[0] == 0  # something already stored
    before = dump(db)
    code, out, err = run_cli(capsys, *make(tmp_path), "--db", db)
    assert code == 2
    one_error_line(err, *phrases)
    assert dump(db) == before


def test_an_imported_run_is_never_resumed(tmp_path, capsys):
    db = tmp_path / "v.duckdb"
    assert run_cli(capsys, "verl", VERL, "--db", db)[0] == 0
    before = dump(db)
    assert main(["run", "--db", str(db), "--resume", "1"]) == 2
    one_error_line(capsys.readouterr().err, "run 1 was imported from verl files", "star import")
    assert dump(db) == before


def test_the_same_prompt_is_the_same_problem_in_two_imports():
    assert problem_id("train", "What is 3 + 4?") == problem_id("train", "What is 3 + 4?")
    assert problem_id("train", "What is 3 + 4?") != problem_id("eval", "What is 3 + 4?")


# --- an imported run beside ours: Compare pairs on the question, Exemplars take its audited rationales ---------------

# Our run's eval outcomes and the imported run's (judged by --task arithmetic from its completions); three shared.
OURS = {"3 + 4": True, "12 + 5": False, "23 + 41": True, "30 + 12": False, "7 + 8": True}
THEIRS = {"3 + 4": True, "12 + 5": True, "23 + 41": False, "30 + 12": False, "50 + 50": True}
FEW_SHOT = "Question: 1 + 1 = ?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"


def total(question: str) -> int:
    return sum(int(n) for n in question.split(" + "))


def _our_run(store: Store) -> int:
    """One of our runs, stored directly (no model): its eval questions answered at iteration 0."""
    task = get_task("arithmetic")
    run_id = store.create_run(RunConfig(name="ours", iterations=1))
    problems = [Problem(q.replace(" ", ""), q, str(total(q)), "eval", difficulty=len(q.split()[0])) for q in OURS]
    store.save_problems(run_id, problems)
    prompt = store.prompt_id(FEW_SHOT)
    rows = []
    for p in problems:
        answer = p.answer if OURS[p.question] else str(int(p.answer) + 1)
        rows.append(AttemptRow(run_id, 0, p.id, "eval", 0, prompt, task.format_question(p), None,
                               f" {p.question} = {answer}. The answer is {answer}.", f"{p.question} = {answer}.", answer,
                               OURS[p.question], None, "", 10, 10, 0.01))
    store.add_attempts(rows)
    store.set_iteration_phase(run_id, 0, "done")
    return run_id


def _verl_validation(folder: Path) -> Path:
    """A verl validation dump of our prompt format (one prompt after a few-shot exemplar, two asking 3 + 4)."""
    folder.mkdir()
    lines = []
    for q, right in THEIRS.items():
        answer = total(q) if right else total(q) + 10
        for prefix in ("", FEW_SHOT) if q == "3 + 4" else ("",):
            lines.append({"input": f"{prefix}Question: {q} = ?\nAnswer:", "output": f" {q} = {answer}. The answer is {answer}.",
                          "gts": str(total(q)), "score": float(right), "reward": float(right), "step": 0})
    (folder / "0.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_an_imported_run_pairs_with_ours_on_the_questions_both_asked(tmp_path, capsys):
    db = tmp_path / "both.duckdb"
    assert _our_run(Store(db).init()) == 1
    assert run_cli(capsys, "verl", _verl_validation(tmp_path / "val"), "--db", db, "--task", "arithmetic")[0] == 0
    assert main(["compare", "--db", str(db), "1", "2", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    shared = [q for q in OURS if q in THEIRS]
    cells = (result["shared"], result["both_right"], result["only_a"], result["only_b"], result["both_wrong"])
    assert cells == (len(shared), 1, 1, 1, 1)
    assert result["b"]["answered"] == len(THEIRS) + 1  # 3 + 4 asked by two prompts, paired once
    disc = {d["question"]: d["right_side"] for d in result["discordant"]}
    assert disc == {q: "A" if OURS[q] else "B" for q in shared if OURS[q] != THEIRS[q]} == {"23 + 41": "A", "12 + 5": "B"}
    assert {d["difficulty"] for d in result["by_difficulty"]} == {1, 2}  # our run's difficulties
    assert main(["compare", "--db", str(db), "2", "1", "--format", "json"]) == 0
    swapped = json.loads(capsys.readouterr().out)
    assert (swapped["only_a"], swapped["only_b"], swapped["shared"]) == (1, 1, len(shared))
    assert {d["difficulty"] for d in swapped["by_difficulty"]} == {1, 2}


def test_an_audited_rationale_of_an_imported_run_goes_into_an_exemplar_set(tmp_path, capsys):
    db = tmp_path / "t.duckdb"
    assert run_cli(capsys, "trl-grpo", TRL, "--db", db, "--task", "arithmetic")[0] == 0
    stored = attempts(db)
    chosen = int(stored[stored.correct & stored.verified.eq(True)].attempt_id.iloc[0])
    store = Store(db)
    store.save_audit(chosen, "sound", [], "", "ada")
    assert list(store.sound_attempts().attempt_id) == [chosen]
    set_id = ex.add_attempts_to_set(store, "from-grpo", [chosen])
    s = store.exemplar_set(set_id)
    row = stored[stored.attempt_id == chosen].iloc[0]
    assert (s.task, [it.source_attempt_id for it in s.items]) == ("arithmetic", [chosen])
    assert (s.items[0].question, s.items[0].answer) == (row.question, row.gold_answer)
    assert s.items[0].rationale == ex.strip_final_answer(row.rationale)
    run_id = create_run(store, RunConfig(exemplars="from-grpo", model="smollm2-135m", train_size=8, eval_size=4))
    assert store.run_exemplar_set_id(run_id) == set_id  # one of our runs prompts with it
