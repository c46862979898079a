"""Exemplar sets: built from audited rationales or by hand, versions, freezing on use, validation, JSONL."""

from __future__ import annotations

import pytest

import star_core.engine.exemplars as ex
from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError, DatasetError
from star_core.engine.prepare import create_run
from star_core.store import ExemplarItem, QueueFilter, Store
from star_core.store.exemplar_sets import ExemplarSetError, parse_set_ref
from star_core.tasks import get_task

ARITH = get_task("arithmetic")
GOOD = [ExemplarItem("2 + 5", "2 + 5 = 7.", "7"), ExemplarItem("31 + 24", "31 + 24 = 50 + 5 = 55.", "55")]
BAD = ExemplarItem("31 + 24", "31 + 24 = 50 + 6 = 56.", "55")


def sound_ids(store) -> list[int]:
    ids = [a for a in store.audit_queue(QueueFilter(kept=True, order="oldest"))]
    for a in ids:
        store.save_audit(a, "sound", [], "", "ada")
    return ids


def test_build_a_set_from_sound_audited_rationales(seeded):
    store, _ = seeded
    ids = sound_ids(store)[:3]
    set_id = ex.create_set_from_attempts(store, "curated", ids, note="from audits")
    s = store.exemplar_set(set_id)
    assert (s.label, s.task, s.frozen) == ("curated@1", "arithmetic", False)
    assert [it.source_attempt_id for it in s.items] == ids
    assert all("The answer is" not in it.rationale for it in s.items)  # the prompt format adds it back
    assert ex.validate_items(ARITH, s.items) == [None] * 3
    assert list(store.sound_attempts().attempt_id) == sorted(sound_ids(store))


def test_add_from_the_audit_view_appends_without_duplicates(seeded):
    store, _ = seeded
    ids = sound_ids(store)
    first = ex.add_attempts_to_set(store, "picked", ids[:1])
    again = ex.add_attempts_to_set(store, "picked", ids[:2])
    assert first == again and [it.source_attempt_id for it in store.exemplar_set(again).items] == ids[:2]


def test_an_invalid_exemplar_is_rejected_with_the_reason(tmp_path):
    store = Store(tmp_path / "x.duckdb").init()
    with pytest.raises(DatasetError, match=r"exemplar 2: its rationale fails the step check: step 1 '50 \+ 6' makes 56, not 55"):
        ex.create_set(store, "hand", "arithmetic", [GOOD[0], BAD])
    assert store.list_exemplar_sets().empty  # nothing stored
    set_id = ex.create_set(store, "hand", "arithmetic", GOOD)
    with pytest.raises(DatasetError, match="not added: its rationale fails the step check: the chain ends in 4 but the answer given is 5"):
        ex.add_exemplar(store, set_id, ExemplarItem("2 + 2", "2 + 2 = 4.", "5"))
    with pytest.raises(DatasetError, match="must all be filled in"):
        ex.update_exemplar(store, set_id, 0, ExemplarItem("2 + 2", "", "4"))
    assert store.exemplar_set(set_id).items == GOOD


def test_edits_reorder_remove_in_place_until_frozen_then_new_version(tmp_path):
    store = Store(tmp_path / "x.duckdb").init()
    set_id = ex.create_set(store, "hand", "arithmetic", GOOD)
    assert ex.move_exemplar(store, set_id, 1, -1) == set_id
    assert [it.question for it in store.exemplar_set(set_id).items] == ["31 + 24", "2 + 5"]
    assert ex.add_exemplar(store, set_id, ExemplarItem("4 + 4", "4 + 4 = 8.", "8")) == set_id
    assert ex.remove_exemplar(store, set_id, 2) == set_id
    run_id = store.create_run(RunConfig())
    store.use_exemplar_set(run_id, set_id)
    assert store.exemplar_set(set_id).frozen
    new_id = ex.update_exemplar(store, set_id, 0, ExemplarItem("30 + 25", "30 + 25 = 50 + 5 = 55.", "55"))
    assert new_id != set_id
    old, new = store.exemplar_set(set_id), store.exemplar_set(new_id)
    assert (old.label, new.label, new.frozen) == ("hand@1", "hand@2", False)
    assert old.items[0].question == "31 + 24" and new.items[0].question == "30 + 25"  # the run's text is untouched
    assert store.run_exemplar_set_id(run_id) == set_id
    assert store.find_exemplar_set("hand").id == new_id and store.find_exemplar_set("hand@1").id == set_id


def test_references_and_their_errors(tmp_path):
    store = Store(tmp_path / "x.duckdb").init()
    assert parse_set_ref("a-b@3") == ("a-b", 3) and parse_set_ref("a") == ("a", None)
    with pytest.raises(ExemplarSetError, match="version"):
        parse_set_ref("a@x")
    with pytest.raises(ExemplarSetError, match="name"):
        parse_set_ref("has space")
    with pytest.raises(ExemplarSetError, match="no exemplar set 'nope'"):
        store.find_exemplar_set("nope")
    ex.create_set(store, "hand", "arithmetic", GOOD)
    with pytest.raises(ExemplarSetError, match=r"has no version 7 \(it has 1\)"):
        store.find_exemplar_set("hand@7")
    with pytest.raises(ExemplarSetError, match="is for task arithmetic, not gsm8k"):
        store.create_exemplar_set("hand", "gsm8k", [])


def test_a_run_resolves_freezes_and_records_its_set(tmp_path):
    store = Store(tmp_path / "x.duckdb").init()
    config = dict(model="smollm2-135m", train_size=8, eval_size=4)
    default_run = create_run(store, RunConfig(**config))
    default = store.exemplar_set(store.run_exemplar_set_id(default_run))
    assert (default.label, default.frozen) == ("arithmetic-default@1", True)
    assert [it.exemplar for it in default.items] == ex.load_exemplars(ARITH)
    assert create_run(store, RunConfig(**config)) and store.find_exemplar_set("arithmetic-default").version == 1  # unchanged file: same set
    set_id = ex.create_set(store, "hand", "arithmetic", GOOD)
    ex.create_set(store, "hand", "arithmetic", GOOD[:1])  # hand@2
    pinned = create_run(store, RunConfig(exemplars="hand@1", **config))
    latest = create_run(store, RunConfig(exemplars="hand", **config))
    assert store.run_exemplar_set_id(pinned) == set_id and store.exemplar_set(set_id).frozen
    assert store.exemplar_set(store.run_exemplar_set_id(latest)).label == "hand@2"
    assert ex.exemplars_for_run(store, pinned, ARITH) == [it.exemplar for it in GOOD]
    runs = store.runs_with_exemplar_sets()
    assert list(runs.exemplar_set) == ["arithmetic-default@1", "arithmetic-default@1", "hand@1", "hand@2"]
    with pytest.raises(ConfigError, match="no exemplar set 'missing'") as missing:
        create_run(store, RunConfig(exemplars="missing", **config))
    assert missing.value.field == "exemplars" and isinstance(missing.value.__cause__, ExemplarSetError)
    store.create_exemplar_set("broken", "arithmetic", [BAD])  # written around the checks
    with pytest.raises(ConfigError, match="broken@1 has exemplars that fail") as broken:
        create_run(store, RunConfig(exemplars="broken", **config))
    assert isinstance(broken.value.__cause__, DatasetError)
    assert len(store.list_runs()) == 4  # a refused run stores nothing


def test_jsonl_round_trip_and_a_malformed_line_imports_nothing(tmp_path):
    store = Store(tmp_path / "x.duckdb").init()
    text = ex.to_jsonl(GOOD)
    assert ex.parse_jsonl(text, ARITH) == GOOD
    set_id = ex.import_jsonl(store, "imported", "arithmetic", text)
    assert store.exemplar_set(set_id).items == GOOD
    broken = text + '{"question": "1 + 1", "rationale": "1 + 1 = 2."\n'
    with pytest.raises(DatasetError, match=r"line 3: not valid JSON .*nothing was imported"):
        ex.import_jsonl(store, "other", "arithmetic", broken)
    with pytest.raises(DatasetError, match="line 2: missing answer"):
        ex.import_jsonl(store, "other", "arithmetic", text.splitlines()[0] + '\n{"question": "1 + 1", "rationale": "x"}\n')
    with pytest.raises(DatasetError, match="line 1: its rationale fails the step check"):
        ex.import_jsonl(store, "other", "arithmetic", ex.to_jsonl([BAD]))
    assert list(store.list_exemplar_sets().name) == ["imported"]


def test_prompt_preview_is_the_engines_prefix_and_counts_tokens():
    preview = ex.prompt_preview(ARITH, GOOD)
    assert preview == "Question: 2 + 5 = ?\nAnswer: 2 + 5 = 7. The answer is 7.\n\n" \
                      "Question: 31 + 24 = ?\nAnswer: 31 + 24 = 50 + 5 = 55. The answer is 55.\n\n"
    assert "(The answer is 7.)" in ex.prompt_preview(ARITH, GOOD, with_hints=True)
    n = ex.token_count("smollm2-135m", preview)
    assert 30 < n < 80
    assert ex.load_tokenizer("smollm2-135m") is ex.load_tokenizer("smollm2-135m")  # cached


def test_star_run_exemplars_flag(tmp_path, capsys):
    from star_core.cli.commands import build_parser, main

    args = build_parser().parse_args(["run", "--exemplars", "hand@1"])
    assert args.exemplars == "hand@1"
    db = tmp_path / "cli.duckdb"
    code = main(["run", "--db", str(db), "--exemplars", "hand@3", "--model", "smollm2-135m"])
    assert code == 2 and "no exemplar set 'hand'" in capsys.readouterr().err
    assert Store(db).list_runs().empty
