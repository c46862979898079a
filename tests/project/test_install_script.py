"""scripts/install.sh's torch step: the CPU build from PyTorch's CPU index where no NVIDIA GPU is present, the
plain install where one is (or where that index cannot be reached), nothing where torch is installed. Run with
a stand-in Python that records each pip call, and PATHs that hold a fake nvidia-smi or none."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu --timeout 15 --retries 0"
PLAIN = "torch==2.13.0"


def _machine(tmp_path: Path, gpu_tool: bool = False, torch_installed: bool = False, cpu_index_up: bool = True):
    """A PATH (dirname, and nvidia-smi if asked), a stand-in Python logging its arguments, and a missing driver dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    if gpu_tool:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    log = tmp_path / "calls.log"
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in
    "-c import torch") exit {0 if torch_installed else 1} ;;
    *--index-url*) exit {0 if cpu_index_up else 1} ;;
esac
exit 0
""")
    python.chmod(0o755)
    env = {"PATH": str(bin_dir), "PYTHON": str(python), "STAR_NVIDIA_DRIVER_DIR": str(tmp_path / "no-driver"),
           "HOME": str(tmp_path)}
    return env, log


def _install(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "install.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _pip_calls(log: Path) -> list[str]:
    prefix = "-m pip install --disable-pip-version-check -q "
    return [line[len(prefix):] for line in log.read_text().splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("machine, expected", [
    ({}, [CPU, PLAIN]),
    ({"gpu_tool": True}, [PLAIN]),
    ({"driver_dir": True}, [PLAIN]),
    ({"torch_installed": True}, []),
    ({"torch_installed": True, "gpu_tool": True}, []),
])
def test_the_torch_step_is_chosen_by_the_machine(machine, expected, tmp_path):
    env, _ = _machine(tmp_path, machine.get("gpu_tool", False), machine.get("torch_installed", False))
    if machine.get("driver_dir"):
        (tmp_path / "no-driver").mkdir()  # as /proc/driver/nvidia is where the NVIDIA driver is loaded
    done = _install(env, "--print-torch-command")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def test_without_a_gpu_the_cpu_index_is_used_and_nothing_else_is_tried(tmp_path):
    env, log = _machine(tmp_path)
    done = _install(env)
    assert done.returncode == 0, done.stderr
    calls = _pip_calls(log)
    assert calls[0] == CPU and PLAIN not in calls and calls[1] == "-e ." and "note:" not in done.stderr


def test_where_the_cpu_index_cannot_be_reached_the_plain_install_follows_and_says_so(tmp_path):
    env, log = _machine(tmp_path, cpu_index_up=False)
    done = _install(env)
    assert done.returncode == 0, done.stderr
    assert _pip_calls(log)[:3] == [CPU, PLAIN, "-e ."]
    assert "could not be used" in done.stderr


def test_installed_torch_is_left_alone(tmp_path):
    env, log = _machine(tmp_path, torch_installed=True)
    assert _install(env).returncode == 0
    assert not [c for c in _pip_calls(log) if c.startswith("torch")]
