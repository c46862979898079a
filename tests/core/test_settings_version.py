"""Stored settings carry a version and are upgraded on read, so that renaming a setting keeps every older
database readable; an unknown key at the current version is still a clear error."""

from __future__ import annotations

import json
from dataclasses import field, fields, make_dataclass

import pytest

import star_core.cli.commands as cli
import star_core.core.config as config_module
import star_core.store.runs as store_runs
from star_core.core.config import VERSION_KEY, RunConfig, settings_version
from star_core.core.errors import ConfigError, StoreError
from star_core.store import Store


def _renamed_run_config(old: str, new: str):
    """RunConfig as it would be after renaming field `old` to `new` (same defaults, checks and methods)."""
    spec = [(new if f.name == old else f.name, f.type, field(default=f.default, metadata=f.metadata))
            for f in fields(RunConfig)]
    methods = {k: v for k, v in vars(RunConfig).items() if k in ("__post_init__", "validate", "steps_for", "to_json",
                                                                 "from_dict", "from_json", "parse_values")}
    return make_dataclass("RunConfig", spec, namespace=methods)


def _rename(old: str, new: str):
    def step(values: dict) -> dict:
        values = dict(values)
        if old in values:
            values[new] = values.pop(old)
        return values
    return step


@pytest.fixture
def old_db(tmp_path):
    """A database written by today's code: one run stored with today's version, one as runs were stored before
    settings had a version (no version key)."""
    store = Store(tmp_path / "old.duckdb").init()
    versioned = store.create_run(RunConfig(name="versioned", gen_batch_size=7))
    unversioned = store.create_run(RunConfig(name="before versions", gen_batch_size=5))
    legacy = {k: v for k, v in json.loads(RunConfig(name="before versions", gen_batch_size=5).to_json()).items()
              if k != VERSION_KEY}
    with store.db.write() as con:
        con.execute("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(legacy), unversioned])
    return store.db.path, versioned, unversioned


def test_settings_are_stored_with_their_version():
    stored = json.loads(RunConfig().to_json())
    assert stored[VERSION_KEY] == settings_version() == len(config_module.UPGRADES) + 1
    assert RunConfig.from_json(RunConfig(seed=3).to_json()) == RunConfig(seed=3)


def test_an_old_database_still_reads_after_a_setting_is_renamed(old_db, monkeypatch):
    path, versioned, unversioned = old_db
    renamed = _renamed_run_config("gen_batch_size", "decode_batch_size")
    monkeypatch.setattr(config_module, "UPGRADES", [*config_module.UPGRADES, _rename("gen_batch_size", "decode_batch_size")])
    monkeypatch.setattr(store_runs, "RunConfig", renamed)
    store = Store(path)
    assert list(store.list_runs().name) == ["versioned", "before versions"]
    assert store.get_run(versioned).config.decode_batch_size == 7
    assert store.get_run(unversioned).config.decode_batch_size == 5
    assert not hasattr(store.get_run(versioned).config, "gen_batch_size")
    # A run stored after the rename carries the new version and reads back as written.
    written = store.create_run(renamed(name="after", decode_batch_size=3))
    with store.db.read() as con:
        assert json.loads(con.execute("SELECT config FROM runs WHERE id = ?", [written]).fetchone()[0])[VERSION_KEY] == 2
    assert store.get_run(written).config.decode_batch_size == 3


def test_an_unknown_key_at_the_current_version_is_a_clear_error(old_db, capsys):
    path, versioned, _ = old_db
    store = Store(path)
    bad = {**json.loads(RunConfig().to_json()), "decode_batch_size": 7}
    with store.db.write() as con:
        con.execute("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(bad), versioned])
    with pytest.raises(StoreError, match=f"run {versioned}'s stored settings .* decode_batch_size: is not a RunConfig "
                                         f"field at settings version {settings_version()}"):
        store.get_run(versioned)
    assert cli.main(["run", "--db", str(path), "--resume", str(versioned)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "decode_batch_size" in lines[0], err


@pytest.mark.parametrize("version", [settings_version() + 1, 0, "2", True])
def test_a_version_this_code_does_not_know_is_refused_by_name(version):
    with pytest.raises(ConfigError, match="is not a settings version this STaR Studio reads") as err:
        RunConfig.from_dict({VERSION_KEY: version})
    assert err.value.field == VERSION_KEY
