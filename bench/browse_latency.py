"""Latency of the app's queries (browse, compare, trajectories) on a database of 1,000,000 attempts.

    python bench/browse_latency.py [--attempts 1000000] [--db /tmp/browse-bench.duckdb] [--keep] [--only TEXT]

Seeds the database with DuckDB SQL (a SELECT FROM range() handed to the store's one insert
function, insert_attempts, which also fills the tables derived from attempts; a minute for
10,000,000 attempts; --keep reuses a file seeded before), then
times each query the browse page makes, through the same Store methods the page
calls (each opens its own read-only connection, as the app does), and the Compare
runs and Trajectories pages' queries with the pure computations they feed. Target:
every query under 200 ms. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from star_core.core.config import RunConfig  # noqa: E402
from star_core.analysis.comparison import RunRef, compare_runs  # noqa: E402
from star_core.store import AttemptFilter, Store  # noqa: E402
from star_core.store.attempts import insert_attempts  # noqa: E402
from star_core.analysis.trajectories import class_counts, grid, question_ids, transitions, with_classes  # noqa: E402

RUNS = 10
PROBLEMS_PER_RUN = 2_000  # 1,500 train + 500 eval


def seed(store: Store, attempts: int) -> None:
    per_run = attempts // RUNS
    with store.db.write() as con:
        for r in range(1, RUNS + 1):
            con.execute(
                "INSERT INTO runs (id, name, task, model, config, status) VALUES (?, ?, 'arithmetic', 'bench', ?, 'done')",
                [r, f"bench {r}", RunConfig(name=f"bench {r}").to_json()],
            )
        con.execute("INSERT INTO prompts (id, sha256, text) VALUES (1, 'x', 'few-shot prefix')")
        con.execute(
            f"""
            INSERT INTO problems
            SELECT r.range AS run_id, 'p' || p.range AS problem_id,
                   CASE WHEN p.range < 1500 THEN 'train' ELSE 'eval' END AS split,
                   1 + p.range % 5 AS difficulty,
                   'Question: ' || (p.range * 37 % 1000) || ' + ' || (p.range * 91 % 1000) || ' = ?' AS question,
                   ((p.range * 37 % 1000) + (p.range * 91 % 1000))::TEXT AS answer, NULL AS choices
            FROM range(1, {RUNS + 1}) r, range({PROBLEMS_PER_RUN}) p
            """
        )
        # Attempts in the order a run writes them: run by run, iteration by iteration.
        # Through the store's one insert function, as every writer: the derived tables come with the attempts.
        insert_attempts(
            con,
            f"""
            SELECT i + 1 AS id, run_id, iteration,
                   'p' || CASE WHEN kind = 'eval' THEN 1500 + k % 500 ELSE k % 1500 END AS problem_id,
                   kind, CASE WHEN kind = 'eval' THEN k // 500 ELSE k // 1500 END AS sample, 1 AS prompt_id,
                   'Question: ...' AS question_prompt, hint,
                   rationale || ' The answer is ' || predicted || '.' AS completion, rationale, predicted, correct, verified,
                   CASE WHEN verified THEN '' ELSE 'step 2 does not hold' END AS verify_reason, used AS used_for_training,
                   40 AS prompt_tokens, 30 AS new_tokens, 0.05 AS seconds,
                   kind = 'rationalized' AND i % 17 = 0 AS hint_leak
            FROM (
                SELECT *,
                       -- k numbers the attempts of one kind within an iteration: problem and sample come from it
                       CASE WHEN iteration = 0 THEN j WHEN kind = 'generated' THEN j // 10 * 5 + j % 10
                            WHEN kind = 'rationalized' THEN j // 10 * 2 + j % 10 - 5 ELSE j // 10 * 3 + j % 10 - 7 END AS k
                FROM (
                    SELECT i, 1 + i // {per_run} AS run_id, (i % {per_run}) // 10000 AS iteration, i % 10000 AS j,
                           CASE WHEN (i % {per_run}) // 10000 = 0 OR i % 10 >= 7 THEN 'eval'
                                WHEN i % 10 >= 5 THEN 'rationalized' ELSE 'generated' END AS kind,
                           CASE WHEN (i % {per_run}) // 10000 > 0 AND i % 10 BETWEEN 5 AND 6
                                THEN '(The answer is ' || (i % 1997) || ')' END AS hint,
                           'Units: ' || (i % 9) || ' + ' || (i * 7 % 9) || ' = ' || (i % 9 + i * 7 % 9) || '. Tens: '
                               || (i % 97) || ' + ' || (i * 13 % 89) || ' + 1 = ' || (i % 97 + i * 13 % 89 + 1) || '.' AS rationale,
                           (i % 1997)::TEXT AS predicted, i % 3 = 0 AS correct, i % 3 = 0 AND i % 4 <> 0 AS verified,
                           i % 3 = 0 AND i % 4 <> 0 AND i % 10 < 7 AND (i % {per_run}) >= 10000 AS used
                    FROM range({attempts}) t(i)
                )
            )
            """,
        )
        con.execute(
            f"INSERT INTO iterations (run_id, iteration, phase, kept, steps, train_loss) "
            f"SELECT r.range, it.range, 'done', 100, 40, 1.0 / (it.range + 1) FROM range(1, {RUNS + 1}) r, range({per_run // 10000}) it"
        )


def _trajectory_page(store: Store, run_id: int):
    """What the trajectories page computes for one run (eval questions), beside drawing it."""
    evals = with_classes(store.question_paths(run_id, "eval"))
    return class_counts(evals), transitions(evals), grid(evals)


def timed(label: str, fn, repeat: int = 5) -> float:
    fn()  # warm the OS cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    median = statistics.median(times)
    extra = ""
    if hasattr(result, "total"):
        extra = f"  ({len(result.rows)} rows of {result.total:,})"
    print(f"  {label:<58} median {median:7.1f} ms   max {max(times):7.1f} ms{extra}")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/browse-bench.duckdb")
    parser.add_argument("--keep", action="store_true", help="reuse the database if it exists")
    parser.add_argument("--only", default="", help="time only the queries whose label contains this text (e.g. compare)")
    args = parser.parse_args()

    path = Path(args.db)
    store = Store(path)
    if not (args.keep and path.exists()):
        for p in (path, path.with_suffix(path.suffix + ".wal")):
            p.unlink(missing_ok=True)
        t = time.perf_counter()
        store.init()
        seed(store, args.attempts)
        print(f"seeded {args.attempts:,} attempts in {time.perf_counter() - t:.1f} s ({path}, "
              f"{path.stat().st_size / 1e6:.0f} MB)")
    store.init()  # as the app does once: later reads skip the schema check
    print(f"{store.attempt_count():,} attempts; query latency (each opens a read-only connection, as the app does):")

    figures = {
        "first page, no filter, newest first": lambda: store.browse_attempts(limit=50),
        "filter run + iteration + kind": lambda: store.browse_attempts(
            AttemptFilter(run_ids=[3], iterations=[4], kinds=["rationalized"]), limit=50),
        "filter correct + verified + used_for_training + difficulty": lambda: store.browse_attempts(
            AttemptFilter(correct=True, verified=False, used_for_training=False, difficulties=[2, 3]), limit=50),
        "filter hint_leak": lambda: store.browse_attempts(AttemptFilter(hint_leak=True), limit=50),
        "search rationale/question text ('+ 88 + 1 =')": lambda: store.browse_attempts(
            AttemptFilter(search="+ 88 + 1 ="), limit=50),
        "search + filter (run 7, 'tens: 5 +')": lambda: store.browse_attempts(
            AttemptFilter(run_ids=[7], search="tens: 5 +"), limit=50),
        "page 1,000 (offset 49,950), no filter": lambda: store.browse_attempts(limit=50, offset=49_950),
        "last page (offset 999,950), no filter": lambda: store.browse_attempts(limit=50, offset=args.attempts - 50),
        "page 100 sorted by difficulty, filter kind=eval": lambda: store.browse_attempts(
            AttemptFilter(kinds=["eval"]), sort="difficulty", descending=False, limit=50, offset=4_950),
        "one attempt in full (row selection)": lambda: store.attempt_detail(args.attempts // 2),
        "one question across iterations (side by side)": lambda: store.question_attempts(5, "p123"),
        "filter options (iterations, difficulties, runs)": lambda: store.browse_options([5]),
        "accuracy per iteration, 10 runs": lambda: store.eval_accuracy(list(range(1, RUNS + 1))),
        "coverage per iteration, 10 runs": lambda: store.coverage(list(range(1, RUNS + 1))),
        "runs overview (list_runs)": lambda: store.list_runs(),
        "compare two runs, last iterations (pairing + statistics)": lambda: compare_runs(store, RunRef(3), RunRef(4)),
        "compare two iterations of one run (0 vs last)": lambda: compare_runs(store, RunRef(5, 0), RunRef(5)),
        "trajectories of one run, all questions (paths + classes)": lambda: with_classes(store.question_paths(5)),
        "trajectories page, eval questions (+ counts, transitions, grid)": lambda: _trajectory_page(store, 5),
        "browse filtered by trajectory class (run 5, learned)": lambda: store.browse_attempts(
            AttemptFilter(run_ids=[5], questions=question_ids(store, [5], ["learned"])), limit=50),
    }
    worst = max(timed(label, fn) for label, fn in figures.items() if args.only.lower() in label.lower())
    print(f"slowest median: {worst:.1f} ms (target < 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
