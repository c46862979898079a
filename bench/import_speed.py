"""Rows per second `star import verl` stores from a synthetic 1,000,000-line verl dump.

    python bench/import_speed.py [--lines 1000000] [--samples 8] [--keep] [--dir /tmp/import-bench]

Writes one step file in the layout verl's trainer dumps (input, output, gts, score, step, acc, pred per line;
`--samples` rollouts of each prompt, as verl repeats them), then imports it into a new database through the
same function the command calls, then imports it again (which must add nothing). Goal: at least 20,000 rows/s.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from star_core.engine.importing import import_run  # noqa: E402
from star_core.store import Store  # noqa: E402


def write_dump(path: Path, lines: int, samples: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(lines):
            q = i // samples
            a, b = q % 9973, q // 9973
            said = a + b + (i % 3 == 0)
            f.write(json.dumps({"input": f"Question: {a} + {b} = ?\nAnswer:", "output": f" {a} + {b} = {said}. The answer is {said}.",
                                "gts": str(a + b), "score": float(said == a + b), "step": 1, "acc": said == a + b,
                                "pred": str(said)}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=8, help="rollouts per prompt (default 8)")
    parser.add_argument("--dir", default="/tmp/import-bench")
    parser.add_argument("--keep", action="store_true", help="keep the dump and the database")
    args = parser.parse_args()
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    dump = folder / "rollout" / "1.jsonl"
    started = time.perf_counter()
    write_dump(dump, args.lines, args.samples)
    print(f"wrote {args.lines:,} lines ({dump.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f} s")

    store = Store(folder / "bench.duckdb").init()
    started = time.perf_counter()
    outcome = import_run(store, "verl", folder / "rollout")
    took = time.perf_counter() - started
    print(f"import: {outcome.rows:,} rows in {took:.1f} s = {outcome.rows / took:,.0f} rows/s (goal: 20,000 rows/s)")
    started = time.perf_counter()
    again = import_run(store, "verl", folder / "rollout")
    print(f"re-import: {again.rows:,} rows added in {time.perf_counter() - started:.1f} s")
    with store.db.read() as con:
        print("stored:", con.execute("SELECT count(*), count(DISTINCT problem_id) FROM attempts").fetchall()[0],
              "attempts, problems;", f"database {store.path.stat().st_size / 1e6:,.0f} MB")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
