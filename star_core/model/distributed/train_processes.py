"""Fine-tuning in N processes (`star run --train-processes N`), launched and followed by the run's process.

The run's process writes the job (model, prefix, examples, settings, where the state and
the checkpoint go) to a folder, starts N processes with torch's launcher (each runs
`star_core.runtime.worker train`), and follows them: each step the main worker reports becomes an `on_step` call here (the
store and the progress bar see the same steps as with one process), a cancel becomes a
stop file, and the result comes back as the FinetuneResult one process would return.
The checkpoint is written by the main worker in the format one process writes.

Each worker gets an equal share of this run's CPU threads, or a GPU of its own
(cuda:0 .. cuda:N-1 of the GPUs the run's process sees: CUDA_VISIBLE_DEVICES chooses them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ...core.errors import StarError
from ..finetune import Example, FinetuneResult, TrainSettings

POLL_S = 0.2
LOG_LINES_SHOWN = 25


class TrainProcessesError(StarError):
    """The fine-tuning processes failed."""


def worker_device(device: str) -> str:
    """'cpu' or 'cuda' for the workers, from the run's --device (auto: CUDA when the run's process sees one)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def threads_each(threads: int, processes: int) -> int:
    return max(1, threads // processes)


def launch_command(processes: int, job_dir: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "star_core.runtime.worker", "train", str(job_dir)]


def _die_with_parent() -> None:
    """In the launcher's child: get SIGTERM when the run's process dies (Linux), so that no orphan keeps training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the workers notice the run's process is gone at their next step


class _Tail:
    """The complete lines appended to a file since the last call."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def lines(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def finetune_in_processes(
    model: str,
    device: str,
    processes: int,
    prefix: str,
    examples: list[Example],
    settings: TrainSettings,
    job_dir: Path,
    checkpoint: Path,
    on_step: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    state_dir: Path | None = None,
) -> FinetuneResult:
    """finetune.finetune in `processes` processes; the checkpoint is saved to `checkpoint` when training ran to
    its end (not when `should_stop` stopped it). `job_dir` is removed once the result is read."""
    import torch

    device = worker_device(device)
    if device == "cuda" and torch.cuda.device_count() < processes:
        raise TrainProcessesError(f"--train-processes {processes} puts each process on a GPU of its own, but this "
                                  f"machine shows {torch.cuda.device_count()}")
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    threads = threads_each(torch.get_num_threads(), processes)
    job = dict(model=model, device=device, threads=threads, prefix=prefix, examples=[asdict(e) for e in examples],
               settings=asdict(settings), state_dir=str(state_dir) if state_dir else None, checkpoint=str(checkpoint),
               driver_pid=os.getpid())
    (job_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log_path = job_dir / "log.txt"
    progress = _Tail(job_dir / "progress.jsonl")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(launch_command(processes, job_dir), stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    try:
        while True:
            for line in progress.lines():
                if on_step:
                    on_step(line["step"], line["total"], line["loss"], line["tokens_per_s"])
            if should_stop and should_stop():
                (job_dir / "stop").touch()
            code = proc.poll()
            if code is not None:
                break
            time.sleep(POLL_S)
        for line in progress.lines():  # the last steps, written just before the processes ended
            if on_step:
                on_step(line["step"], line["total"], line["loss"], line["tokens_per_s"])
    except BaseException:  # an interrupt or a failing callback: the processes save their state and stop
        (job_dir / "stop").touch()
        _stop(proc)
        raise
    result_file = job_dir / "result.json"
    if code != 0 or not result_file.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_LINES_SHOWN:]
        kept = job_dir.with_name(job_dir.name + ".failed.log")
        shutil.copyfile(log_path, kept)
        raise TrainProcessesError(f"fine-tuning in {processes} processes failed (exit status {code}); the end of its "
                                  f"log ({kept}):\n" + "\n".join(tail))
    values = json.loads(result_file.read_text(encoding="utf-8"))
    values.pop("finished")
    shutil.rmtree(job_dir, ignore_errors=True)
    return FinetuneResult(**values)


def _stop(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    try:
        proc.wait(timeout=grace_s)  # they stop at their next step, after saving the state
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
