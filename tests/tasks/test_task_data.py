"""Loading dataset files: the reference GSM8K and CommonsenseQA files, field maps, bad rows, splits, config checks."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError, DatasetError
from star_core.store import Store
from star_core.tasks import TaskSettings, get_task
from star_core.tasks.base import Problem
from star_core.tasks.commonsenseqa import CommonsenseQATask
from star_core.tasks.commonsenseqa import parse_row as csqa_row
from star_core.tasks.datafile import load_file
from star_core.tasks.gsm8k import GSM8KTask, check_annotations
from star_core.tasks.gsm8k import parse_row as gsm_row


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def gsm_completion(solution: str) -> str:
    """A gold solution as the model would write it: no blank line (it is the stop text), '#### N' as 'The answer is N.'."""
    steps, _, final = solution.rpartition("####")
    body = " ".join(line.strip() for line in steps.splitlines() if line.strip())
    return f" {body} The answer is {final.strip()}.\n\n"


# --- the reference datasets -------------------------------------------------------


def test_every_gsm8k_row_loads_and_its_gold_solution_passes(reference_data, capsys):
    path = reference_data.path("gsm8k")
    problems, report = load_file(path, gsm_row, skip_bad=False)
    assert report.rows == len(problems) == reference_data.rows["gsm8k"] and not report.skipped
    task = GSM8KTask()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    answer_fail, raw_fail, step_fail = [], [], Counter()
    examples: dict[str, int] = {}
    for problem, row in zip(problems, rows):
        completion = gsm_completion(row["answer"])
        if not task.is_correct(task.extract_answer(completion), problem):
            answer_fail.append(problem.id)
        if not task.is_correct(task.extract_answer(" " + row["answer"]), problem):
            raw_fail.append(problem.id)  # the raw text: cut at a blank line, as a completion would be
        verdict = task.verify_steps(completion, problem)
        if not verdict.ok:
            why = "no annotations" if "no <<" in verdict.reason else verdict.reason
            step_fail[why] += 1
            examples.setdefault(why, problem.id)
    with capsys.disabled():
        print(f"\nGSM8K gold: {len(problems)} rows; answer check fails {len(answer_fail)} "
              f"(raw text with a blank line before '####': {len(raw_fail)} {raw_fail}); step check fails {sum(step_fail.values())}:")
        for why, n in step_fail.most_common():
            print(f"  {n:5d}  {why}  (e.g. {examples[why]})")
    assert not answer_fail
    assert len(raw_fail) <= 10  # these four solutions hold a blank line; the model cannot write one (stop text)
    assert set(step_fail) <= {"no annotations"}  # every annotation in the training split holds
    assert step_fail["no annotations"] < 200


def test_every_commonsenseqa_row_loads_and_its_gold_letter_passes(reference_data, capsys):
    path = reference_data.path("commonsenseqa")
    problems, report = load_file(path, csqa_row, skip_bad=False)
    assert report.rows == len(problems) == reference_data.rows["commonsenseqa"] and not report.skipped
    task = CommonsenseQATask()
    failed = [p.id for p in problems if not task.is_correct(task.extract_answer(task.format_completion("x.", p.answer)), p)]
    by_text = [p.id for p in problems
               if not task.is_correct(task.extract_answer(f" The answer is {dict(p.choices)[p.answer]}."), p)]
    labels = Counter(len(p.choices) for p in problems)
    with capsys.disabled():
        print(f"\nCommonsenseQA gold: {len(problems)} rows, choices per row {dict(labels)}; gold letter fails {len(failed)}; "
              f"gold choice text (no letter) fails {len(by_text)}")
    assert not failed and labels == {5: len(problems)}
    assert not by_text  # 43 rows repeat a choice's text: naming it names either label


def test_reference_splits_are_deterministic_and_disjoint(reference_data):
    config = RunConfig(task="gsm8k", data=str(reference_data.path("gsm8k")), train_size=20, eval_size=10, seed=3)
    a, b = GSM8KTask().problems(config), GSM8KTask().problems(config)
    assert a == b
    train = {p.id for p in a if p.split == "train"}
    evals = {p.id for p in a if p.split == "eval"}
    assert len(train) == 20 and len(evals) == 10 and not train & evals
    other = GSM8KTask().problems(RunConfig(task="gsm8k", data=config.data, train_size=20, eval_size=10, seed=4))
    assert {p.id for p in other} != train | evals


def test_commonsenseqa_through_the_jsonl_task(reference_data):
    config = RunConfig(task="jsonl", data=str(reference_data.path("commonsenseqa")), answer_type="choice",
                       data_map="question=question.stem,answer=answerKey,choices=question.choices,id=id",
                       train_size=5, eval_size=5)
    problems = get_task("jsonl", config).problems(config)
    assert len(problems) == 10 and all(len(p.choices) == 5 and p.answer in "ABCDE" for p in problems)


# --- formats ------------------------------------------------------------------------


GOOD = {"question": "Sam has 3 apples and buys 4. How many?", "answer": "He has 3 + 4 = <<3+4=7>>7.\n#### 7"}


def test_gsm8k_bad_rows_name_file_and_line(tmp_path):
    lines = [json.dumps(GOOD), json.dumps({"question": "q", "answer": "no final line"})]
    path = write(tmp_path / "g.jsonl", lines)
    with pytest.raises(DatasetError, match=r"g\.jsonl:2: the answer has no final '#### N' line"):
        load_file(path, gsm_row, skip_bad=False)
    for bad, why in [({"question": "q", "answer": "x\n#### seven"}, "is not a number"),
                     ({"question": "q"}, "missing field 'answer'"),
                     ({"question": "", "answer": "#### 1"}, "is empty"),
                     ({"question": ["q"], "answer": "#### 1"}, "not text")]:
        path = write(tmp_path / "g.jsonl", [json.dumps(GOOD), "", json.dumps(bad)])
        with pytest.raises(DatasetError, match=rf"g\.jsonl:3: .*{why}"):
            load_file(path, gsm_row, skip_bad=False)


def test_malformed_json_and_skipping_with_a_count(tmp_path):
    path = write(tmp_path / "g.jsonl", [json.dumps(GOOD), '{"question": "q", "answer": ', "[1, 2]", json.dumps(GOOD)])
    with pytest.raises(DatasetError, match=r"g\.jsonl:2: not valid JSON"):
        load_file(path, gsm_row, skip_bad=False)
    problems, report = load_file(path, gsm_row, skip_bad=True)
    assert len(problems) == 2 and [n for n, _ in report.skipped] == [2, 3]
    assert "2 bad rows skipped" in report.summary() and "line 3: a JSON list" in report.summary()


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_file(tmp_path / "nope.jsonl", gsm_row, skip_bad=False)
    with pytest.raises(DatasetError, match="no usable rows"):
        load_file(write(tmp_path / "e.jsonl", [""]), gsm_row, skip_bad=False)
    with pytest.raises(DatasetError, match="is a folder"):
        load_file(tmp_path, gsm_row, skip_bad=False)


def test_commonsenseqa_unknown_label(tmp_path):
    row = {"id": "x", "answerKey": "F", "question": {"stem": "s?", "choices": [{"label": c, "text": c.lower()} for c in "ABCDE"]}}
    path = write(tmp_path / "c.jsonl", [json.dumps(row)])
    with pytest.raises(DatasetError, match=r"c\.jsonl:1: answer 'F' is not one of the choice labels A, B, C, D, E"):
        load_file(path, csqa_row, skip_bad=False)
    hub = {"id": "y", "answerKey": "B", "question": "s?", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}}
    problems, _ = load_file(write(tmp_path / "h.jsonl", [json.dumps(hub)]), csqa_row, skip_bad=False)  # the hub's layout
    assert problems[0].choices[1] == ("B", "w") and problems[0].answer == "B"


def test_repeated_ids_are_an_error(tmp_path):
    row = {"id": "x", "answerKey": "A", "question": {"stem": "s?", "choices": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}]}}
    with pytest.raises(DatasetError, match=r":2: id 'x' repeats line 1"):
        load_file(write(tmp_path / "c.jsonl", [json.dumps(row)] * 2), csqa_row, skip_bad=False)


def jsonl_task(**kw):
    config = RunConfig(task="jsonl", train_size=2, eval_size=1, **kw)
    return get_task("jsonl", config), config


def test_jsonl_csv_with_a_map_and_number_answers(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text('q,a,level,key\n"How many legs, in all, have 2 cats?","8",1,k1\n"What is 1,000 + 1?","1,001",2,k2\nHalf of 9?,4.50,1,k3\n')
    task, config = jsonl_task(data=str(path), data_map="question=q,answer=a,difficulty=level,id=key")
    problems = task.problems(config)
    by_id = {p.id: p for p in problems}
    assert set(by_id) == {"k1", "k2", "k3"} and by_id["k2"].answer == "1001" and by_id["k3"].answer == "4.5"
    assert by_id["k1"].question == "How many legs, in all, have 2 cats?" and by_id["k2"].difficulty == 2
    assert task.is_correct(task.extract_answer(" 2 * 4 = 8. The answer is 8.00."), by_id["k1"])


@pytest.mark.parametrize(
    "content, error",
    [
        ("q,a\nfine,1\nbroken\n", r"qa\.csv:3: fewer cells"),
        ("q,a\nfine,1\nx,1,extra\n", r"qa\.csv:3: 3 cells for 2 columns"),
        ("q,a\nfine,1\nx,one\n", r"qa\.csv:3: answer 'one' is not a number"),
        ("q,a\nfine,1\n,1\n", r"qa\.csv:3: field 'q' \(question\) is empty"),
        ('q,a\nfine,1\n"x,1\n', r"qa\.csv:3: "),
        ("question,answer\nfine,1\n", r"qa\.csv:2: missing field 'q'"),
    ],
)
def test_jsonl_csv_errors_name_the_line(tmp_path, content, error):
    path = tmp_path / "qa.csv"
    path.write_text(content)
    task, config = jsonl_task(data=str(path), data_map="question=q,answer=a")
    with pytest.raises(DatasetError, match=error):
        task.problems(config)


def test_jsonl_choice_types(tmp_path):
    rows = [
        {"q": "Which flies?", "opts": ["dog", "bird", "cow"], "a": "B"},
        {"q": "Which swims?", "opts": {"1": "fish", "2": "cat"}, "a": "fish"},  # gold given as text
        {"q": "Which barks?", "opts": "cat|dog|cow", "a": "(B)"},
    ]
    path = write(tmp_path / "c.jsonl", [json.dumps(r) for r in rows])
    task, config = jsonl_task(data=path, data_map="question=q,answer=a,choices=opts", answer_type="choice")
    problems = sorted(task.problems(config), key=lambda p: p.id)
    assert [p.answer for p in problems] == ["B", "1", "B"]
    assert problems[1].choices == (("1", "fish"), ("2", "cat"))
    assert "(1) fish (CORRECT) (2) cat" in task.format_question(problems[1], task.format_hint(problems[1]))
    assert task.is_correct(task.extract_answer(" Fish live in water. The answer is (1)."), problems[1])
    assert task.is_correct(task.extract_answer(" Birds have wings. The answer is bird."), problems[0])
    bad = write(tmp_path / "b.jsonl", [json.dumps(rows[0]), json.dumps({"q": "x", "opts": ["a", "b"], "a": "C"})])
    with pytest.raises(DatasetError, match=r"b\.jsonl:2: answer 'C' is not one of the choice labels A, B"):
        task.problems(RunConfig(**{**config.__dict__, "data": bad}))
    one = write(tmp_path / "o.jsonl", [json.dumps({"q": "x", "opts": ["a"], "a": "A"})])
    with pytest.raises(DatasetError, match=r"o\.jsonl:1: fewer than 2 choices"):
        task.problems(RunConfig(**{**config.__dict__, "data": one}))


def test_jsonl_exact_and_regex(tmp_path):
    rows = [{"question": "Capital of Italy?", "answer": "Rome"}, {"question": "Spell colour", "answer": "colou?r"},
            {"question": "x", "answer": "y"}]
    path = write(tmp_path / "t.jsonl", [json.dumps(r) for r in rows])
    task, config = jsonl_task(data=path, answer_type="exact")
    rome = next(p for p in task.problems(config) if p.answer == "Rome")
    assert task.is_correct(task.extract_answer(" Rome is the seat of government. The answer is rome."), rome)
    task, config = jsonl_task(data=path, answer_type="regex")
    colour = next(p for p in task.problems(config) if p.answer == "colou?r")
    assert task.is_correct(task.extract_answer(" The answer is color."), colour)
    bad = write(tmp_path / "r.jsonl", [json.dumps({"question": "x", "answer": "(unclosed"})])
    with pytest.raises(DatasetError, match=r"r\.jsonl:1: answer '\(unclosed' is not a valid regular expression"):
        task.problems(RunConfig(**{**config.__dict__, "data": bad}))


def test_jsonl_without_data_and_too_large_splits(tmp_path):
    task, config = jsonl_task()
    with pytest.raises(ConfigError, match="pass --data"):
        task.problems(config)
    path = write(tmp_path / "t.jsonl", [json.dumps({"question": "q", "answer": "1"})])
    task, config = jsonl_task(data=path)
    with pytest.raises(ConfigError, match="exceeds the 1 usable rows"):
        task.problems(config)


def test_hub_fallback_says_which_file_to_pass(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    for name in ("gsm8k", "commonsenseqa"):
        with pytest.raises(DatasetError, match=r"pass a local file with --data .*'datasets' package is not installed"):
            get_task(name).problems(RunConfig(task=name))


@pytest.mark.parametrize(
    "data_map, error",
    [("question", "is not ROLE=FIELD"), ("question=", "is not ROLE=FIELD"), ("prompt=q", "unknown role 'prompt'"),
     ("question=a,question=b", "mapped twice")],
)
def test_data_map_is_validated(data_map, error):
    with pytest.raises(ConfigError, match=error) as info:
        RunConfig(task="jsonl", data_map=data_map)
    assert info.value.field == "data_map"


def test_data_map_defaults_and_answer_type_choices():
    assert TaskSettings.of(RunConfig(data_map=" question = q.text , id=k ")).field_map() == {"question": "q.text", "answer": "answer", "id": "k"}
    with pytest.raises(ConfigError, match="answer_type"):
        RunConfig(answer_type="fuzzy")


def test_a_bad_file_stores_no_run(tmp_path, tiny_model):
    """The data is loaded and checked before the run row is created."""
    from star_core.engine.prepare import create_run

    store = Store(tmp_path / "s.duckdb").init()
    path = write(tmp_path / "g.jsonl", [json.dumps(GOOD), "{oops"])
    with pytest.raises(ConfigError, match=r"g\.jsonl:2") as refused:
        create_run(store, RunConfig(task="gsm8k", data=path, model=tiny_model, train_size=1, eval_size=1))
    assert refused.value.field == "data" and isinstance(refused.value.__cause__, DatasetError)
    assert store.list_runs().empty


def test_problem_ids_and_difficulty_from_gsm8k_rows():
    p = gsm_row(GOOD, 12)
    # The solution (its text before "#### N") is the seed's and the partial hints' reference.
    assert p == Problem(id="L12", question=GOOD["question"], answer="7", split="", difficulty=1,
                        solution=GOOD["answer"].split("####")[0].strip())
    assert check_annotations(GOOD["answer"]).ok


# --- the command line ----------------------------------------------------------------


def test_cli_runs_a_jsonl_file_with_a_map(tmp_path, tiny_model, capsys):
    from star_core.cli.commands import main

    path = tmp_path / "qa.csv"
    path.write_text("q,a\n" + "".join(f"What is {i} doubled?,{2 * i}\n" for i in range(4)))
    db = str(tmp_path / "s.duckdb")
    common = ["run", "--db", db, "--model", tiny_model, "--device", "cpu", "--train-size", "2", "--eval-size", "1",
              "--iterations", "0", "--max-new-tokens", "4"]
    assert main(common + ["--task", "jsonl", "--data", str(path), "--map", "question=q,answer=a", "--answer-type", "number"]) == 0
    assert "qa.csv: 4 rows loaded" in capsys.readouterr().err
    assert main(common + ["--task", "jsonl", "--data", str(path), "--map", "question=q,answer"]) == 2
    assert "invalid --data-map: 'answer' is not ROLE=FIELD" in capsys.readouterr().err
    path.write_text("q,a\nfine,1\nbad,two\n")
    assert main(common + ["--task", "jsonl", "--data", str(path), "--map", "question=q,answer=a"]) == 2
    assert "qa.csv:3: answer 'two' is not a number" in capsys.readouterr().err
    assert len(Store(db).list_runs()) == 1  # the bad file created no run
