"""A run's best model exported (`star export --model`) and asked its eval questions again.

Exports the run's best iteration (or --iteration K) to a new folder, loads it with
`AutoModelForCausalLM.from_pretrained` as a user would, then decodes the run's eval questions with
the folder as the model, exactly as the iteration's evaluation did (engine/reevaluate.py), and
prints the stored and the reproduced accuracy, how many completions are identical, the folder's
size and the wall times.

    python bench/export_roundtrip.py --db star.duckdb --run 1 --out /tmp/best-model
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from star_core.engine.model_export import export_model
from star_core.engine.reevaluate import reevaluate
from star_core.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--out", required=True, help="a new folder")
    parser.add_argument("--iteration", type=int, help="default: the run's best")
    args = parser.parse_args()
    store = Store(args.db)

    started = time.perf_counter()
    done = export_model(store, args.run, Path(args.out), args.iteration)
    export_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"exported run {args.run}, iteration {done.iteration.iteration} ({'best' if done.best else 'not the best'}), "
          f"{done.dtype}, {size / 1e6:.0f} MB, in {export_s:.1f} s")

    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.out)
    print(f"AutoModelForCausalLM.from_pretrained: {type(model).__name__}, {model.dtype}, "
          f"{time.perf_counter() - started:.1f} s")
    del model

    started = time.perf_counter()
    again = reevaluate(store, args.run, done.iteration.iteration, args.out)
    print(f"eval questions asked again in {time.perf_counter() - started:.1f} s: stored {again.stored_correct}/{again.n} "
          f"({again.stored_accuracy:.1%}), reproduced {again.correct}/{again.n} ({again.accuracy:.1%}), "
          f"{again.same_completions}/{again.n} completions identical")


if __name__ == "__main__":
    main()
