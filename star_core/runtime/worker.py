"""The background processes' one entry point (besides `star` itself):

    python -m star_core.runtime.worker run RUN_ID --db PATH [--no-queue]
    python -m star_core.runtime.worker experiment EXPERIMENT_ID --db PATH
    python -m torch.distributed.run ... -m star_core.runtime.worker train JOB_DIR

`run` and `experiment` are launched detached by jobs.py (the app's Start and Resume) and
log to the worker.log beside their pid file; `train` is one of the N fine-tuning processes
of `--train-processes N`, launched by the run's own process (train_processes.py).
Each subcommand imports what it needs, so that a fine-tuning process loads no store.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from ..core.settings_spec import NO_QUEUE_HELP


class LogReporter:
    """Progress lines for the worker log (the app reads live progress from the store)."""

    def __init__(self):
        self._last = 0.0

    def phase(self, iteration: int, phase: str, total: int) -> None:
        self._say(f"iteration {iteration}: {phase} ({total})")

    def advance(self, done: int, total: int, tokens_per_s: float | None, note: str = "") -> None:
        if time.monotonic() - self._last > 10 or done >= total:
            rate = f", {tokens_per_s:,.0f} tok/s" if tokens_per_s else ""
            self._say(f"  {done}/{total}{rate}{', ' + note if note else ''}")

    def message(self, text: str) -> None:
        self._say(text)

    def _say(self, text: str) -> None:
        self._last = time.monotonic()
        print(f"{datetime.now():%H:%M:%S} {text}", flush=True)


def run(run_id: int, db: str, queue: bool) -> int:
    """Run (or resume) one stored run."""
    from ..core.errors import StarError
    from ..engine.loop import Cancelled, execute_run
    from ..store import Store

    reporter = LogReporter()
    store = Store.patient(db, on_wait=reporter.message)
    try:
        execute_run(store, run_id, reporter, queue=queue)
    except Cancelled:
        print(f"run {run_id} cancelled", flush=True)
        return 1
    except StarError as exc:  # recorded in the store by execute_run (or refused before it claimed the run)
        print(f"error: {exc}", flush=True)
        return 1
    print(f"run {run_id} done", flush=True)
    return 0


def experiment(experiment_id: int, db: str) -> int:
    """Run (or resume) the arms of one stored experiment in order, or an exemplar comparison's two runs."""
    from ..core.errors import StarError
    from ..core.states import ExperimentKind
    from ..analysis.comparison import p_clause
    from ..engine import exemplar_compare
    from ..engine.experiments import experiment_table, format_table, run_experiment
    from ..engine.loop import Cancelled
    from ..store import Store

    reporter = LogReporter()
    store = Store.patient(db, on_wait=reporter.message)
    on_arm = lambda label, run_id: reporter.message(f"arm '{label}': run {run_id}")  # noqa: E731
    try:
        if store.get_experiment(experiment_id).config.get("kind") == ExperimentKind.EXEMPLARS:
            exemplar_compare.run(store, experiment_id, reporter, on_arm=on_arm)
            found = exemplar_compare.result(store, experiment_id).comparison
            print(f"exemplar comparison {experiment_id} done: B - A {found.overall.difference:+.1%} "
                  f"({p_clause(found.overall.p_value)})", flush=True)
            return 0
        run_experiment(store, experiment_id, reporter, on_arm=on_arm)
    except Cancelled:
        print(f"experiment {experiment_id}: an arm was cancelled; resume the experiment to continue", flush=True)
        return 1
    except StarError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    table = experiment_table(store.experiment_summary(experiment_id), store.experiment_accuracy(experiment_id))
    print(f"experiment {experiment_id} done\n{format_table(table)}", flush=True)
    return 0


def train(job_dir: Path) -> int:
    """One of the N fine-tuning processes: its share of every step of JOB_DIR/job.json's fine-tuning.

    accelerate sets up the process group from the launcher's environment (gloo on CPU, NCCL on
    GPUs, a GPU per process). The main process (rank 0) reports each step as a line of
    JOB_DIR/progress.jsonl, saves the training state and, when training ran to its end, the
    checkpoint, exactly as a single process would; it writes JOB_DIR/result.json last. The
    driver asks the processes to stop by creating JOB_DIR/stop; they also stop when the driver
    has died. Either way all of them stop at the same step, after the state is saved, so that a
    resume continues from it.
    """
    import json
    from dataclasses import asdict

    from ..core.processes import alive

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    cpu = job["device"] == "cpu"
    import torch

    if cpu:
        torch.set_num_threads(job["threads"])
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    device = torch.device("cpu") if cpu else torch.device("cuda", state.local_process_index)

    from ..model.distributed.data_parallel import DataParallel
    from ..model.finetune import Example, TrainSettings, finetune, save_checkpoint
    from ..model.loading import load_model

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m star_core.runtime.worker",
                                     description="A background process of STaR Studio.")
    sub = parser.add_subparsers(dest="command", required=True)
    one_run = sub.add_parser("run", help="run (or resume) one stored run")
    one_run.add_argument("run_id", type=int)
    one_run.add_argument("--db", required=True)
    one_run.add_argument("--no-queue", action="store_true", help=NO_QUEUE_HELP)
    arms = sub.add_parser("experiment", help="run (or resume) the arms of one stored experiment")
    arms.add_argument("experiment_id", type=int)
    arms.add_argument("--db", required=True)
    share = sub.add_parser("train", help="one of the --train-processes fine-tuning processes (torch's launcher starts it)")
    share.add_argument("job_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.run_id, args.db, queue=not args.no_queue)
    if args.command == "experiment":
        return experiment(args.experiment_id, args.db)
    return train(args.job_dir)


if __name__ == "__main__":
    sys.exit(main())
