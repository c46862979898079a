"""One spec for the run settings: each RunConfig field's label, section and help are written once, in its
metadata, and both `star run`'s flags and the Runs form's widgets carry them (core/settings_spec.py)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from app_helpers import ROOT, open_page
from star_core.cli.commands import build_parser
from star_core.core.config import Group, RunConfig, field_value
from star_core.core.errors import ConfigError
from star_core.core.presets import paper_experiment_preset
from star_core.core.settings_spec import NO_QUEUE_HELP, sections

# Read from the dataclass itself, not through the spec: a spec that dropped or rewrote a field's words fails here.
FIELDS = fields(RunConfig)
PAGE = "pages/runs.py"
# The Runs form's sections as they were before the spec, in their order ("Run" is not folded away).
FORM_SECTIONS = ["Curriculum over difficulties", "Seed and partial hints", "Dataset file (gsm8k, commonsenseqa, jsonl)", "Filtering",
                 "Decoding", "Fine-tuning", "Machine", "Other"]
WIDGETS = ("text_input", "number_input", "selectbox", "checkbox")


def _command(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _flags(*path: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _command(*path)._actions}


def f_meta(name: str) -> dict:
    return next(f.metadata for f in FIELDS if f.name == name)


def test_every_field_has_a_label_a_section_and_help():
    labels = []
    for f in FIELDS:
        assert f.metadata.get("label") and f.metadata.get("help"), f.name
        assert isinstance(f.metadata.get("group"), Group), f.name
        assert "_" not in f.metadata["label"], f.name  # words, not the field's name
        labels.append(f.metadata["label"])
    duplicated = sorted({x for x in labels if labels.count(x) > 1})
    assert not duplicated, duplicated  # the browser tests find a field by its label


def test_star_run_has_a_flag_for_every_field_with_its_help():
    flags = _flags("run")
    for f in FIELDS:
        assert f.name in flags, f"star run has no flag for {f.name}"
        action = flags[f.name]
        assert "--" + f.name.replace("_", "-") in action.option_strings, (f.name, action.option_strings)
        assert f.metadata["help"] in action.help.replace("%%", "%"), (f.name, action.help)
        assert f"(default: {f.default!r})" in action.help.replace("%%", "%"), (f.name, action.help)
        assert action.default is None, f.name  # not given: the preset's, the task's or RunConfig's value applies
    assert flags["data_map"].option_strings == ["--data-map", "--map"]
    assert flags["ray_address"].option_strings == ["--ray-address", "--ray"]
    assert flags["task"].choices == f_meta("task")["choices"]
    assert flags["rationalize"].option_strings == ["--rationalize", "--no-rationalize"]


def test_star_run_help_prints_every_fields_help():
    out = subprocess.run([sys.executable, "-m", "star_core.cli", "run", "--help"], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "100000"}).stdout
    for f in FIELDS:
        assert f.metadata["help"] in out, f.name


def test_experiment_paper_takes_every_field_but_those_telling_its_arms_apart():
    flags = _flags("experiment", "paper")
    for f in FIELDS:
        if f.name in ("mode", "rationalize"):
            assert f.name not in flags, f.name
        else:
            assert f.metadata["help"] in flags[f.name].help.replace("%%", "%"), f.name


@pytest.mark.parametrize("path", [("run",), ("exemplars", "compare"), ("experiment", "paper")])
def test_no_queue_says_the_same_everywhere(path):
    assert _flags(*path)["no_queue"].help == NO_QUEUE_HELP


def _keys(node) -> list[str]:
    """The keys of the widgets under an AppTest node, in page order."""
    out = []
    for child in getattr(node, "children", {}).values():
        if getattr(child, "type", None) in WIDGETS and getattr(child, "key", None):
            out.append(child.key)
        out += _keys(child)
    return out


def test_runs_form_shows_every_field_with_its_label_and_help(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "r.duckdb")
    # The form's widgets (the paper comparison below it has a Seed of its own).
    widgets = [w for kind in WIDGETS for w in getattr(at, kind) if (w.key or "").startswith("cfg_")]
    for f in FIELDS:
        found = [w for w in widgets if w.label == f.metadata["label"]]
        assert len(found) == 1, (f.name, f.metadata["label"], [w.label for w in found])
        assert found[0].help == f.metadata["help"], f.name
        assert found[0].key == f"cfg_{f.name}", f.name
    assert at.checkbox(key="cfg_no_queue").help == NO_QUEUE_HELP


def test_runs_form_keeps_its_sections_in_their_order(tmp_path, monkeypatch):
    at = open_page(PAGE, monkeypatch, tmp_path / "r.duckdb")
    shown = [e for e in at.expander if e.label in [g.value for g in Group]]
    assert [e.label for e in shown] == FORM_SECTIONS
    for expander in shown:
        assert sorted(_keys(expander)) == sorted(f"cfg_{n}" for n in sections()[expander.label]), expander.label
    in_sections = {f"cfg_{n}" for names in sections().values() for n in names}
    assert in_sections == {f"cfg_{f.name}" for f in FIELDS}


def test_text_and_numbers_become_the_fields_types():
    assert field_value("train_size", "12") == 12
    converted = field_value("epochs", 2)
    assert converted == 2.0 and isinstance(converted, float)  # a number widget may give an int for a float field
    assert field_value("rationalize", "False") is False and field_value("rationalize", "True") is True
    assert field_value("name", "12") == "12"
    assert field_value("seed", True) is True  # left for RunConfig to refuse: a flag where a number belongs
    with pytest.raises(ConfigError) as err:
        field_value("train_size", "many")
    assert err.value.field == "train_size" and "'many' is not a int" in err.value.message
    with pytest.raises(ConfigError) as err:
        RunConfig.parse_values({"no_such": "1"})
    assert err.value.field == "no_such"
    assert RunConfig.parse_values({"temperature": "0.5", "curriculum": "True"}) == {"temperature": 0.5, "curriculum": True}


def test_a_config_error_names_its_fields():
    assert ConfigError("seed", "must be at least 0").field_messages() == {"seed": "must be at least 0"}
    from star_core.engine.prepare import InvalidSettings

    both = InvalidSettings({"seed": "bad", "model": "must name a model"})
    assert both.field_messages() == {"seed": "bad", "model": "must name a model"}


def test_the_paper_experiments_default_preset():
    assert paper_experiment_preset() == "paper-arithmetic"  # RunConfig's default task
    assert paper_experiment_preset("arithmetic") == "paper-arithmetic"
    assert paper_experiment_preset("gsm8k") is None
    assert paper_experiment_preset("arithmetic", "none") is None
    assert paper_experiment_preset("gsm8k", "paper-arithmetic") == "paper-arithmetic"


def test_the_spec_loads_without_streamlit():
    code = "import sys, star_core.core.settings_spec, star_core.cli.commands; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
