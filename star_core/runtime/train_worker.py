"""One of the N fine-tuning processes of `--train-processes N` (started by train_processes.py):

    python -m torch.distributed.run --standalone --nproc-per-node N -m star_core.runtime.train_worker JOB_DIR

accelerate sets up the process group from the launcher's environment (gloo on CPU,
NCCL on GPUs, a GPU per process). Each process loads the base model, then runs
finetune.finetune with its share of every step (data_parallel.py). The main process
(rank 0) reports each step as a line of JOB_DIR/progress.jsonl, saves the training
state and, when training ran to its end, the checkpoint with finetune.save_checkpoint,
exactly as a single process would; it writes JOB_DIR/result.json last.

The driver asks the processes to stop by creating JOB_DIR/stop; they also stop when
the driver has died. Either way all of them stop at the same step, after the state
is saved, so that a resume continues from it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..core.processes import alive


def read_job(job_dir: Path) -> dict:
    return json.loads((job_dir / "job.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    job_dir = Path((argv if argv is not None else sys.argv[1:])[0])
    job = read_job(job_dir)
    cpu = job["device"] == "cpu"
    import torch

    if cpu:
        torch.set_num_threads(job["threads"])
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    device = torch.device("cpu") if cpu else torch.device("cuda", state.local_process_index)

    from ..model.finetune import Example, TrainSettings, finetune, save_checkpoint
    from ..model.loading import load_model
    from ..model.distributed.data_parallel import DataParallel

    sharing = DataParallel(state.process_index, state.num_processes, device)
    lm = load_model(job["model"], str(device), for_training=True)
    examples = [Example(**e) for e in job["examples"]]
    settings = TrainSettings(**job["settings"])
    progress = open(job_dir / "progress.jsonl", "a", encoding="utf-8") if sharing.is_main else None
    stop_file, driver = job_dir / "stop", job["driver_pid"]

    def should_stop() -> bool:
        asked = sharing.is_main and (stop_file.exists() or not alive(driver))
        return sharing.agree(asked)

    def on_step(step: int, total: int, loss: float, tokens_per_s: float) -> None:
        if progress is not None:
            progress.write(json.dumps({"step": step, "total": total, "loss": loss, "tokens_per_s": tokens_per_s}) + "\n")
            progress.flush()

    state_dir = Path(job["state_dir"]) if job.get("state_dir") else None
    result = finetune(lm, job["prefix"], examples, settings, on_step=on_step, should_stop=should_stop,
                      state_dir=state_dir, sharing=sharing)
    finished = result.steps == settings.steps
    if sharing.is_main:
        if finished:
            save_checkpoint(lm, Path(job["checkpoint"]))
        partial = job_dir / "result.json.partial"
        partial.write_text(json.dumps({**asdict(result), "finished": finished}), encoding="utf-8")
        partial.replace(job_dir / "result.json")
        progress.close()
    state.wait_for_everyone()
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
