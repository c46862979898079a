"""Presets: named RunConfig values; given > preset > task suggestion > default, in star run and the Runs form."""

from __future__ import annotations

import pytest

from app_helpers import assert_no_error, open_page
import star_core.cli.commands as cli
from star_core.core import presets
from star_core.core.config import RunConfig
from star_core.core.errors import ConfigError
from star_core.core.settings_spec import given_settings
from star_core.engine.prepare import InvalidSettings, prepare_run, shown_defaults
from star_core.tasks import suggested_settings

GSM_TOKENS = suggested_settings("gsm8k")["max_new_tokens"]


@pytest.mark.parametrize("name", presets.preset_names())
def test_every_preset_is_a_valid_run(name):
    config = prepare_run({}, name).config
    for key, value in presets.preset_values(name).items():
        assert getattr(config, key) == value, key


def test_paper_arithmetic_is_the_papers_range_with_patience_and_its_filter():
    config = prepare_run({}, "paper-arithmetic").config
    assert (config.task, config.min_difficulty, config.max_difficulty) == ("arithmetic", 1, 5)
    assert config.patience > 0 and config.iterations >= 16 and config.mode == "star" and config.rationalize
    assert config.filter == "answer" and not config.curriculum  # what measured best on 1-5 digits


@pytest.fixture
def two_presets(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "gsm-short", {"task": "gsm8k", "train_size": 11, "temperature": 0.5})
    monkeypatch.setitem(presets.PRESETS, "any-task", {"eval_size": 7})


def test_order_given_then_preset_then_task_suggestion_then_default(two_presets):
    config = prepare_run({}, "gsm-short").config
    assert config.task == "gsm8k" and config.train_size == 11 and config.temperature == 0.5  # the preset's
    assert config.max_new_tokens == GSM_TOKENS  # not in the preset: the task's suggestion
    assert config.eval_size == RunConfig().eval_size  # in neither: the default
    config = prepare_run({"train_size": 3, "max_new_tokens": 20}, "gsm-short").config
    assert config.train_size == 3 and config.max_new_tokens == 20 and config.temperature == 0.5  # given wins
    # a value given equal to the default still overrides the preset
    assert prepare_run({"train_size": RunConfig().train_size}, "gsm-short").config.train_size == RunConfig().train_size
    assert prepare_run({"task": "arithmetic"}, "gsm-short").config.task == "arithmetic"
    assert prepare_run({}, "gsm-short").suggested == {"max_new_tokens": GSM_TOKENS}


def test_a_preset_value_wins_over_the_task_suggestion(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "gsm-long", {"task": "gsm8k", "max_new_tokens": 300})
    prepared = prepare_run({}, "gsm-long")
    assert prepared.config.max_new_tokens == 300 and prepared.suggested == {}


def test_shown_defaults_follow_the_same_order(two_presets):
    shown = shown_defaults("gsm8k", "gsm-short")
    assert shown["train_size"] == 11 and shown["max_new_tokens"] == GSM_TOKENS and shown["task"] == "gsm8k"
    assert shown_defaults("arithmetic", "any-task")["eval_size"] == 7
    assert shown_defaults("arithmetic") == shown_defaults("arithmetic", None)


def test_presets_for_a_task(two_presets):
    assert "gsm-short" in presets.presets_for("gsm8k") and "gsm-short" not in presets.presets_for("arithmetic")
    assert "any-task" in presets.presets_for("gsm8k") and "any-task" in presets.presets_for("arithmetic")
    assert "paper-arithmetic" in presets.presets_for("arithmetic")


def test_an_unknown_preset_names_the_field():
    with pytest.raises(ConfigError) as err:
        prepare_run({}, "nope")
    assert err.value.field == "preset" and "paper-arithmetic" in str(err.value)


def test_describe_writes_flags():
    text = presets.describe("paper-arithmetic")
    assert "--max-difficulty 5" in text and "--no-curriculum" in text and "--rationalize" in text and "True" not in text


# --- star run --preset ----------------------------------------------------------------


def test_star_run_takes_a_preset_and_flags_beside_it_win():
    args = cli.build_parser().parse_args(["run", "--preset", "paper-arithmetic", "--max-difficulty", "3", "--seed", "7"])
    config = prepare_run(given_settings(args), args.preset).config
    assert config.max_difficulty == 3 and config.seed == 7  # given
    assert config.train_size == presets.PRESETS["paper-arithmetic"]["train_size"] and config.filter == "answer"  # the preset's


def test_star_run_help_lists_the_presets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--preset NAME" in capsys.readouterr().out.replace("\n", " ")
    with pytest.raises(SystemExit):
        cli.main(["run", "--preset", "no-such-preset"])
    assert "paper-arithmetic" in capsys.readouterr().err


def test_a_bad_flag_beside_a_preset_touches_no_file(tmp_path, capsys):
    db = tmp_path / "x.duckdb"
    assert cli.main(["run", "--db", str(db), "--preset", "paper-arithmetic", "--min-difficulty", "6"]) == 2
    assert "invalid --max-difficulty" in capsys.readouterr().err  # 6 > the preset's max_difficulty 5
    assert not db.exists()
    with pytest.raises(InvalidSettings):
        prepare_run({"patience": -1}, "paper-arithmetic")


# --- the Runs form ----------------------------------------------------------------------


def test_the_form_prefills_a_preset_and_forgets_it_for_another_task(tmp_path, monkeypatch):
    at = open_page("pages/runs.py", monkeypatch, tmp_path / "r.duckdb")
    assert at.selectbox(key="cfg_preset").value == ""
    assert at.number_input(key="cfg_max_difficulty").value == RunConfig().max_difficulty
    at.selectbox(key="cfg_preset").set_value("paper-arithmetic").run()
    assert_no_error(at)
    assert at.number_input(key="cfg_max_difficulty").value == 5
    assert at.number_input(key="cfg_patience").value == presets.PRESETS["paper-arithmetic"]["patience"]
    assert at.selectbox(key="cfg_filter").value == "answer"
    at.selectbox(key="cfg_task").set_value("gsm8k").run()  # the arithmetic preset does not fit gsm8k
    assert_no_error(at)
    assert at.selectbox(key="cfg_preset").value == ""
    assert at.number_input(key="cfg_max_difficulty").value == RunConfig().max_difficulty
    assert at.selectbox(key="cfg_filter").value == RunConfig().filter
