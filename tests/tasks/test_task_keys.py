"""Task keys: what identifies a task's behaviour, stored with runs and exemplar sets; and the jsonl
choice workflow that needs them (a set imported with `star exemplars import`, and one built from a
run's own attempts in the app, each used by a run)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from app_helpers import assert_no_error, open_page
from tiny import tiny_config
import star_core.cli.commands as cli
import star_core.engine.exemplars as ex
from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.store import Store
from star_core.store.connection import migrate
from star_core.store.exemplar_sets import ExemplarSetError
from star_core.store.migrations import MIGRATIONS
from star_core.tasks import TaskKey, task_for_key, task_key

CHOICE_EXEMPLARS = Path(__file__).resolve().parents[2] / "data" / "exemplars" / "jsonl-choice.jsonl"
CHOICE = dict(task="jsonl", data_map="question=q,answer=a,choices=opts", answer_type="choice")


def test_a_key_holds_the_name_and_only_the_settings_the_task_judges_by():
    assert str(task_key(RunConfig())) == "arithmetic"
    assert str(task_key(RunConfig(max_difficulty=5, seed=3))) == "arithmetic"  # which problems, not how they are judged
    key = task_key(RunConfig(task="jsonl", answer_type="choice", data_map="question=q,answer=a"))
    assert str(key) == "jsonl:answer_type=choice"
    assert TaskKey.parse(str(key)) == key
    assert key != task_key(RunConfig(task="jsonl"))
    assert key.describe() == "jsonl (answer_type choice)"


def test_a_task_built_from_a_key_judges_as_the_key_says():
    choice = task_for_key("jsonl:answer_type=choice")
    assert choice.answer_type == "choice" and choice.key == TaskKey.parse("jsonl:answer_type=choice")
    assert task_for_key("jsonl").answer_type == "number"
    with pytest.raises(ConfigError, match="does not depend on"):
        task_for_key("arithmetic:answer_type=choice")
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        task_for_key("nope")


def test_the_shipped_choice_exemplars_pass_for_their_key_and_not_as_numbers():
    items = ex.parse_jsonl(CHOICE_EXEMPLARS.read_text())
    assert ex.validate_items(task_for_key("jsonl:answer_type=choice"), items) == [None] * len(items)
    assert all(ex.validate_items(task_for_key("jsonl:answer_type=number"), items))


def test_the_migration_backfills_keys_from_configs_and_default_set_names(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")
    for number, m in enumerate(MIGRATIONS[:4], start=1):  # a file written before task keys
        m(con)
        con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [number, m.__name__])
    choice_config = RunConfig(**CHOICE, data="x.jsonl").to_json()
    con.execute("INSERT INTO exemplar_sets (name, version, task) VALUES ('jsonl-choice-default', 1, 'jsonl'), "
                "('mine', 1, 'jsonl'), ('picked', 1, 'jsonl'), ('arith', 1, 'arithmetic')")
    con.execute("INSERT INTO runs (name, task, model, config, status, exemplar_set_id) VALUES "
                "('a', 'jsonl', 'm', ?, 'done', 3), ('b', 'arithmetic', 'm', ?, 'done', 4)", [choice_config, RunConfig().to_json()])
    migrate(con, path)
    assert con.execute("SELECT name, task_key FROM exemplar_sets ORDER BY id").fetchall() == [
        ("jsonl-choice-default", "jsonl:answer_type=choice"),
        ("mine", "jsonl:answer_type=number"),  # what name-only validation checked it as
        ("picked", "jsonl:answer_type=choice"),  # the key of the run that used it
        ("arith", "arithmetic"),
    ]
    assert con.execute("SELECT task_key FROM runs ORDER BY id").fetchall() == [("jsonl:answer_type=choice",), ("arithmetic",)]


def _choice_data(tmp_path) -> str:
    rows = [{"q": f"Which one is number {i}?", "opts": [f"x{i}", f"y{i}", f"z{i}"], "a": "ABC"[i % 3]} for i in range(8)]
    path = tmp_path / "choice.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.slow  # two whole runs and an exemplar set built between them: ~7 s
def test_a_jsonl_choice_run_uses_an_imported_set_then_one_built_from_its_own_attempts(tmp_path, tiny_model, monkeypatch, capsys):
    db = tmp_path / "s.duckdb"
    assert cli.main(["exemplars", "import", str(CHOICE_EXEMPLARS), "--name", "mine", "--db", str(db),
                     "--task", "jsonl", "--answer-type", "choice"]) == 0
    assert "for jsonl (answer_type choice)" in capsys.readouterr().out
    store = Store(db)
    assert str(store.find_exemplar_set("mine").task_key) == "jsonl:answer_type=choice"

    data = _choice_data(tmp_path)
    settings = dict(**CHOICE, data=data, train_size=4, eval_size=2, max_new_tokens=6, filter="answer")
    # A set validated for another key is refused with the field and both keys named; nothing is stored.
    with pytest.raises(ConfigError, match=r"validated for task jsonl \(answer_type choice\).*jsonl \(answer_type number\)") as err:
        numbers = tmp_path / "numbers.csv"
        numbers.write_text("q,a\n" + "".join(f"What is {i} and {i}?,{2 * i}\n" for i in range(8)))
        create_run(store, tiny_config(tiny_model, **{**settings, "answer_type": "number", "data": str(numbers),
                                                     "data_map": "question=q,answer=a"}, exemplars="mine"))
    assert err.value.field == "exemplars"
    assert store.list_runs().empty

    first = create_run(store, tiny_config(tiny_model, **settings, exemplars="mine"))
    execute_run(store, first)
    assert store.get_run(first).status == "done"
    assert store.exemplar_set(store.run_exemplar_set_id(first)).label == "mine@1"

    # In the app: open one of the run's attempts on the Browse page and add it to a new set.
    attempt = int(store.browse_attempts().rows.attempt_id.iloc[0])
    at = open_page("pages/browse.py", monkeypatch, db, query={"run": str(first)})
    at.selectbox(key="browse_attempt").set_value(attempt).run()
    names = at.selectbox(key="b_set_name")
    names.options.append("own")  # a typed name: the browser sends it as the value (AppTest only picks listed options)
    names.set_value("own")
    next(b for b in at.button if b.key == "b_add_to_set").click().run()
    assert_no_error(at)
    own = store.find_exemplar_set("own")
    assert (str(own.task_key), [it.source_attempt_id for it in own.items]) == ("jsonl:answer_type=choice", [attempt])

    second = create_run(store, tiny_config(tiny_model, **settings, exemplars="own"))
    execute_run(store, second)
    assert store.get_run(second).status == "done"
    assert store.exemplar_set(store.run_exemplar_set_id(second)).label == "own@1"


def test_star_exemplars_list_and_export_round_trip(tmp_path, capsys):
    db, out = tmp_path / "s.duckdb", tmp_path / "out.jsonl"
    assert cli.main(["exemplars", "import", str(CHOICE_EXEMPLARS), "--name", "mine", "--db", str(db),
                     "--task", "jsonl", "--answer-type", "choice", "--note", "from the docs"]) == 0
    assert cli.main(["exemplars", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "mine@1" in listing and "jsonl:answer_type=choice" in listing
    assert cli.main(["exemplars", "export", "mine@1", "--out", str(out), "--db", str(db)]) == 0
    assert ex.parse_jsonl(out.read_text()) == ex.parse_jsonl(CHOICE_EXEMPLARS.read_text())
    # As numbers they do not pass: the import names the file and line, and stores nothing.
    assert cli.main(["exemplars", "import", str(CHOICE_EXEMPLARS), "--name", "num", "--db", str(db), "--task", "jsonl"]) == 2
    assert f"{CHOICE_EXEMPLARS}:1:" in capsys.readouterr().err
    with pytest.raises(ExemplarSetError):
        Store(db).find_exemplar_set("num")
