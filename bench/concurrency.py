"""Two runs on one machine: with the run queue, without it, against one alone; and how the app's
Browse and Audit queries answer while a run fine-tunes.

    python bench/concurrency.py [--iterations 1] [--train-size N] [--eval-size N] [--model M] [--run-args "..."]
    python bench/concurrency.py --tiny          # a tiny random model: checks the script works in < 1 min

Each run is `star run` (its defaults unless flags say otherwise) in its own process and database,
in a scratch folder with a private queue folder (STAR_SLOTS), so that nothing else on the machine
queues with them. Scenarios, one after the other (--scenarios picks some):

1. alone: one run alone (its wall time is the unit);
2. queued: two runs started at once, queued: the second waits for the first's slot (goal: <= 2.2x alone);
3. unqueued: the same two runs at once with --no-queue: both at once, each with half the cores;
4. latency: one more run, on fewer training questions so that it reaches fine-tuning sooner; while
   it fine-tunes, the Browse and Audit pages' store queries are timed from this process, as the app
   would make them. It is a scenario of its own because the timing takes CPU from the run: done
   during scenario 1 it made that run's fine-tuning 35% slower (260 against 400 tokens/s), which
   made the unit too long and the queued ratio look better than it is.

Prints a table; asserts nothing. Run it on a quiet machine: anything else on the cores skews every figure.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star_core.store import AttemptFilter, QueueFilter, Store  # noqa: E402

# The scenarios that time whole runs: name, runs started at once, queued, row label.
TIMED_RUNS = (("alone", 1, True, "one run alone"), ("queued", 2, True, "two at once, queued"),
              ("unqueued", 2, False, "two at once, --no-queue"))
SCENARIOS = tuple(name for name, *_ in TIMED_RUNS) + ("latency",)
TINY_FLAGS = ["--train-size", "8", "--eval-size", "4", "--max-new-tokens", "12", "--gen-batch-size", "4",
              "--batch-size", "4", "--min-steps", "30", "--device", "cpu"]


@dataclass
class RunResult:
    db: Path
    wall_s: float
    status: str
    finetune_tokens_per_s: float | None
    accuracy: float | None


@dataclass
class Latencies:
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)


def star_run(db: Path, flags: list[str], env: dict, queue: bool) -> subprocess.Popen:
    log = open(db.with_suffix(".log"), "w")
    cmd = [sys.executable, "-m", "star_core.cli", "run", "--db", str(db), *flags] + ([] if queue else ["--no-queue"])
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))


def result_of(db: Path, wall_s: float) -> RunResult:
    store = Store(db)
    runs = store.list_runs()
    if runs.empty:
        return RunResult(db, wall_s, "no run (see its .log)", None, None)
    run = runs.iloc[-1]
    its = store.iterations(int(run.id))
    trained = its[its.train_seconds.notna() & (its.train_seconds > 0)]
    rate = float((trained.train_tokens / trained.train_seconds).mean()) if not trained.empty else None
    return RunResult(db, wall_s, str(run.status), rate, None if run.latest_accuracy != run.latest_accuracy
                     else float(run.latest_accuracy))


def run_together(folder: Path, name: str, count: int, flags: list[str], env: dict, queue: bool,
                 during_finetune=None) -> tuple[float, list[RunResult]]:
    """Start `count` runs at once; wall time until the last ends, and each run's result."""
    dbs = [folder / f"{name}-{i + 1}.duckdb" for i in range(count)]
    started = time.perf_counter()
    procs = [star_run(db, flags, env, queue) for db in dbs]
    watcher = None
    if during_finetune is not None:
        watcher = threading.Thread(target=during_finetune, args=(dbs[0], procs[0]), daemon=True)
        watcher.start()
    ends: list[float | None] = [None] * count
    while None in ends:
        for i, p in enumerate(procs):
            if ends[i] is None and p.poll() is not None:
                ends[i] = time.perf_counter() - started
        time.sleep(0.2)
    if watcher is not None:
        watcher.join()
    return max(ends), [result_of(db, end) for db, end in zip(dbs, ends)]


def time_queries(latencies: Latencies, phases: tuple[str, ...] = ("finetune",), period_s: float = 0.5):
    """A watcher: while the run is in one of `phases`, time the pages' queries (until it leaves them)."""

    def watch(db: Path, proc: subprocess.Popen) -> None:
        store = None
        while proc.poll() is None:
            if store is None and db.exists():
                store = Store(db, lock_timeout=120)
            if store is None:
                time.sleep(0.5)
                continue
            try:
                runs = store.list_runs()
                if runs.empty or runs.iloc[-1].status != "running" or runs.iloc[-1].cur_phase not in phases:
                    if latencies.samples:  # it has left fine-tuning
                        return
                    time.sleep(0.5)
                    continue
                run_id = int(runs.iloc[-1].id)
                _one_round(store, run_id, latencies)
            except Exception as exc:  # noqa: BLE001 - a bench reports failures, it does not stop on them
                latencies.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(period_s)

    return watch


def _one_round(store: Store, run_id: int, latencies: Latencies) -> None:
    def timed(name, fn):
        t = time.perf_counter()
        value = fn()
        latencies.add(name, time.perf_counter() - t)
        return value

    # Browse: the filters' options, a page of the table, an opened attempt (pages/browse.py).
    timed("browse: run list", store.run_labels)
    timed("browse: filter options", lambda: store.browse_options([run_id]))
    page = timed("browse: table page (50 rows)", lambda: store.browse_attempts(AttemptFilter(run_ids=[run_id]), limit=50))
    rows = getattr(page, "rows", page)
    ids = list(rows.attempt_id) if hasattr(rows, "attempt_id") else []
    if ids:
        timed("browse: open an attempt", lambda: store.attempt_detail(int(ids[0])))
    # Audit: the queue, its progress, an item, a label saved (pages/audit.py).
    queue = timed("audit: queue", lambda: store.audit_queue(QueueFilter(run_id=run_id, order="oldest")))
    if queue:
        timed("audit: audited among the queue", lambda: store.audited_among(queue))
        timed("audit: open an item", lambda: store.audit_item(queue[0]))
        rating = ("sound", "flawed", "wrong")[len(latencies.samples.get("audit: save a label (write)", [])) % 3]
        timed("audit: save a label (write)", lambda: store.save_audit(queue[0], rating, [], "", "bench"))


def print_tables(results: dict, latencies: Latencies, phases: tuple[str, ...], timed: bool) -> None:
    unit = results["alone"][0] if "alone" in results else None

    def rates(runs):
        return " / ".join(f"{r.finetune_tokens_per_s:,.0f}" if r.finetune_tokens_per_s else "–" for r in runs)

    def statuses(runs):
        return " / ".join(r.status for r in runs)

    print()
    print(f"{'scenario':<28} {'wall s':>8} {'x alone':>8}  {'each run ends at (s)':<22} {'fine-tune tok/s':<18} status")
    for key, _, _, name in TIMED_RUNS:
        if key not in results:
            continue
        wall, runs = results[key]
        ratio = f"{wall / unit:>8.2f}" if unit else f"{'–':>8}"
        ends = " / ".join(f"{r.wall_s:,.1f}" for r in runs)
        print(f"{name:<28} {wall:>8.1f} {ratio}  {ends:<22} {rates(runs):<18} {statuses(runs)}")
    print("goal: two queued runs in <= 2.2x the wall time of one alone")
    print()
    if latencies.samples:
        print(f"{'query while a run ' + ('runs' if len(phases) > 1 else 'fine-tunes'):<34} {'n':>4} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
        for name, values in latencies.samples.items():
            ms = sorted(v * 1000 for v in values)
            p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
            print(f"{name:<34} {len(ms):>4} {statistics.median(ms):>10.1f} {p95:>8.1f} {ms[-1]:>8.1f}")
    elif timed:
        print(f"no query was timed (the run was never seen in {'/'.join(phases)})")
    if latencies.errors:
        print(f"{len(latencies.errors)} query errors, first: {latencies.errors[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=None, help="default: star run's")
    parser.add_argument("--eval-size", type=int, default=None, help="default: star run's")
    parser.add_argument("--model", default=None, help="default: star run's (the embedded model)")
    parser.add_argument("--run-args", default="", help="more `star run` flags, quoted, e.g. \"--min-steps 10\"")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and tiny runs: checks the script")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"which to run, comma-separated (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--folder", default=None, help="where the databases and logs go (default: a temp folder)")
    args = parser.parse_args()
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    folder = Path(args.folder or tempfile.mkdtemp(prefix="star-concurrency-"))
    folder.mkdir(parents=True, exist_ok=True)
    flags = ["--iterations", str(args.iterations)]
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny import build_tiny_model  # the tests' tiny random Llama (the embedded model's tokenizer)

        flags += ["--model", str(build_tiny_model(folder / "tiny-model"))] + TINY_FLAGS
    elif args.model:
        flags += ["--model", args.model]
    for flag, value in (("--train-size", args.train_size), ("--eval-size", args.eval_size)):
        if value is not None:
            flags += [flag, str(value)]
    flags += shlex.split(args.run_args)
    print(f"runs: star run {' '.join(flags)}")
    print(f"databases and logs in {folder}")

    def env_for(scenario: str) -> dict:
        env = dict(os.environ, PYTHONPATH=str(ROOT), STAR_SLOTS=str(folder / f"slots-{scenario}"))
        return env

    latencies = Latencies()
    # A tiny random model keeps no rationale, so it never fine-tunes: time the queries in whatever it does.
    phases = ("generate", "rationalize", "finetune", "evaluate") if args.tiny else ("finetune",)
    results = {}
    for name, count, queue, label in TIMED_RUNS:
        if name in scenarios:
            results[name] = run_together(folder, name, count, flags, env_for(name), queue=queue)
            print(f"{label}: {results[name][0]:.1f} s", flush=True)
    if "latency" in scenarios:
        probe_flags = flags + ([] if args.tiny else ["--train-size", "64", "--eval-size", "16"])
        run_together(folder, "latency", 1, probe_flags, env_for("latency"), queue=True,
                     during_finetune=time_queries(latencies, phases))
    print_tables(results, latencies, phases, timed="latency" in scenarios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
