"""prepare_run: the one way the CLI and the Runs form turn what a user gave into a RunConfig."""

from __future__ import annotations

import pytest

import star_core.cli.commands as cli
from star_core.core.config import RunConfig
from star_core.engine.prepare import InvalidSettings, prepare_run, shown_defaults
from star_core.tasks import suggested_settings

GSM_TOKENS = suggested_settings("gsm8k")["max_new_tokens"]


def test_a_task_suggestion_applies_only_where_the_user_gave_nothing():
    assert GSM_TOKENS != RunConfig().max_new_tokens
    prepared = prepare_run({"task": "gsm8k"})
    assert prepared.config.max_new_tokens == GSM_TOKENS and prepared.suggested == {"max_new_tokens": GSM_TOKENS}
    # The run default is a value like any other: given, it is kept.
    chosen = prepare_run({"task": "gsm8k", "max_new_tokens": RunConfig().max_new_tokens})
    assert chosen.config.max_new_tokens == RunConfig().max_new_tokens and chosen.suggested == {}
    assert prepare_run({}).config == RunConfig() and prepare_run({}).suggested == {}


def test_the_form_shows_the_task_suggestions():
    assert shown_defaults("gsm8k")["max_new_tokens"] == GSM_TOKENS
    assert shown_defaults("arithmetic")["max_new_tokens"] == RunConfig().max_new_tokens
    assert shown_defaults("gsm8k")["task"] == "gsm8k"


def test_every_invalid_field_is_named_at_once():
    with pytest.raises(InvalidSettings) as err:
        prepare_run({"train_size": 0, "temperature": 9.0, "task": "nope", "bogus": 1})
    assert set(err.value.errors) == {"train_size", "temperature", "task", "bogus"}
    assert "at least 1" in err.value.errors["train_size"]


def test_a_rule_between_fields_names_one_of_them():
    with pytest.raises(InvalidSettings) as err:
        prepare_run({"min_difficulty": 3, "max_difficulty": 2})
    assert list(err.value.errors) == ["max_difficulty"]


def test_star_run_reports_every_bad_flag_and_touches_no_file(tmp_path, capsys):
    db = tmp_path / "x.duckdb"
    assert cli.main(["run", "--db", str(db), "--train-size", "0", "--temperature", "9"]) == 2
    err = capsys.readouterr().err
    assert "invalid --train-size: must be at least 1" in err and "invalid --temperature: must be at most 2.0" in err
    assert not db.exists()
