"""A fine-tuned iteration's eval questions asked with and without the few-shot prefix.

RunConfig.prompt_trained chooses whether a fine-tuned model is prompted with the exemplars
(the default) or with the question alone (the paper's --no_prompt). This decodes one stored
run's eval questions with its latest checkpoint both ways and prints accuracy and the share
with every step verified, per difficulty, and the new tokens/s of each.

    python bench/trained_prompt.py --db star.duckdb --run 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from star_core.engine.exemplars import exemplars_for_run
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.engine.judge import judge
from star_core.model.loading import load_model
from star_core.core.states import AttemptKind
from star_core.store import Store
from star_core.tasks import get_task
from star_core.tasks.base import build_prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    store = Store(args.db)
    config = store.get_run(args.run).config
    task = get_task(config.task, config)
    rows = store.iterations(args.run)
    rows = rows[rows.checkpoint.notna() & (rows.checkpoint != "")].sort_values("iteration")
    if rows.empty:
        raise SystemExit(f"run {args.run} has no fine-tuned checkpoint")
    iteration, checkpoint = int(rows.iteration.iloc[-1]), rows.checkpoint.iloc[-1]
    problems = sorted((p for p in store.load_problems(args.run) if p.split == "eval"), key=lambda p: len(p.question))
    prefix = build_prefix(task, exemplars_for_run(store, args.run, task), with_hints=False)
    lm = load_model(config.model, config.device, checkpoint=checkpoint)
    print(f"run {args.run}, iteration {iteration}'s checkpoint, {len(problems)} eval questions, key {task.key}")
    for label, shown in (("few-shot prefix", prefix), ("question alone", "")):
        generator = PrefixGenerator(lm, shown, Decoding(config.max_new_tokens))
        started = time.perf_counter()
        right, verified, total = defaultdict(int), defaultdict(int), defaultdict(int)
        new_tokens = 0
        for start in range(0, len(problems), args.batch):
            chunk = problems[start : start + args.batch]
            for p, c in zip(chunk, generator.generate([task.format_question(p) for p in chunk])):
                j = judge(task, p, AttemptKind.EVAL, c.text)
                total[p.difficulty] += 1
                right[p.difficulty] += j.correct
                verified[p.difficulty] += bool(j.correct and j.verified)
                new_tokens += c.new_tokens
        seconds = time.perf_counter() - started
        cells = " ".join(f"{d}:{right[d] / total[d]:.0%}/{verified[d] / total[d]:.0%}" for d in sorted(total))
        print(f"  {label}: right {sum(right.values()) / len(problems):.1%}, right with every step verified "
              f"{sum(verified.values()) / len(problems):.1%}; per digit right/verified {cells}; "
              f"{seconds:.0f} s, {new_tokens / seconds:.0f} new tokens/s", flush=True)


if __name__ == "__main__":
    main()
