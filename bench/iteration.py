"""One default STaR iteration on the embedded model, timed phase by phase.

Prints wall seconds per phase, generation tokens/s (prompt and new tokens
separately), fine-tuning tokens/s, and, in the same run, the same questions
decoded by plain `model.generate`, one prompt at a time (naive) and in
left-padded batches of the same size (the fair baseline), as ratios.
Targets (issue 2): a default iteration under 5 minutes, generation >= 400 new
tokens/s, fine-tuning >= 500 tokens/s.

    python bench/iteration.py [--model MODEL] [--naive-questions 32]

Run it on a quiet machine: two processes sharing the 2 cores each run ~10x slower.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from star_core.core.config import RunConfig
from star_core.engine.exemplars import load_exemplars
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.model.loading import load_model
from star_core.store import Store
from star_core.tasks import get_task
from star_core.tasks.base import STOP_TEXT, build_prefix


class PhaseClock:
    """A Reporter that records when each phase starts."""

    def __init__(self):
        self.marks: list[tuple[str, float]] = []

    def phase(self, iteration: int, phase: str, total: int) -> None:
        self.marks.append((f"iteration {iteration} {phase}", time.perf_counter()))

    def advance(self, done, total, tokens_per_s, note=""):
        pass

    def message(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def durations(self, end: float) -> list[tuple[str, float]]:
        stamps = [t for _, t in self.marks[1:]] + [end]
        return [(name, stop - start) for (name, start), stop in zip(self.marks, stamps)]


def run_one_iteration(config: RunConfig, folder: Path) -> tuple[Store, int, PhaseClock, float]:
    store = Store(folder / "bench.duckdb").init()
    run_id = create_run(store, config)
    clock = PhaseClock()
    started = time.perf_counter()
    execute_run(store, run_id, clock)
    end = time.perf_counter()
    return store, run_id, clock, end - started


@dataclass
class Baselines:
    questions: int
    naive: float  # new tokens/s of one `generate` call per prompt
    batched: float  # new tokens/s of `generate` on left-padded batches of gen_batch_size prompts
    ours: float  # new tokens/s of PrefixGenerator on the same batches


def _new_tokens(row: list[int], pad: int) -> int:
    """New tokens of one generated row, without the pads `generate` appends once a row has stopped."""
    while row and row[-1] == pad:
        row = row[:-1]
    return len(row)


def baselines(config: RunConfig, n: int) -> Baselines:
    """New tokens/s of plain `generate` (one prompt at a time, and batched) and of PrefixGenerator, same questions."""
    task = get_task(config.task, config)
    problems = [p for p in task.problems(config) if p.split == "eval"][:n]
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    lm = load_model(config.model, config.device)
    tok, pad = lm.tokenizer, lm.tokenizer.pad_token_id
    prompts = [prefix + task.format_question(p) for p in problems]
    questions = [task.format_question(p) for p in problems]
    greedy = dict(max_new_tokens=config.max_new_tokens, do_sample=False, stop_strings=[STOP_TEXT], tokenizer=tok,
                  pad_token_id=pad)

    started = time.perf_counter()
    naive_new = 0
    with torch.inference_mode():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt").to(lm.device)
            out = lm.model.generate(**ids, **greedy)
            naive_new += _new_tokens(out[0, ids.input_ids.shape[1]:].tolist(), pad)
    naive_rate = naive_new / (time.perf_counter() - started)

    # The baseline a user would write: the full prompt (prefix + question), left-padded batches.
    side, tok.padding_side = tok.padding_side, "left"
    started = time.perf_counter()
    batched_new = 0
    try:
        with torch.inference_mode():
            for i in range(0, len(prompts), config.gen_batch_size):
                ids = tok(prompts[i : i + config.gen_batch_size], return_tensors="pt", padding=True).to(lm.device)
                out = lm.model.generate(**ids, **greedy)
                batched_new += sum(_new_tokens(row[ids.input_ids.shape[1]:].tolist(), pad) for row in out)
    finally:
        tok.padding_side = side
    batched_rate = batched_new / (time.perf_counter() - started)

    started = time.perf_counter()
    generator = PrefixGenerator(lm, prefix, Decoding(config.max_new_tokens))
    completions = []
    for i in range(0, len(questions), config.gen_batch_size):
        completions += generator.generate(questions[i : i + config.gen_batch_size])
    ours_rate = sum(c.new_tokens for c in completions) / (time.perf_counter() - started)
    return Baselines(len(questions), naive_rate, batched_rate, ours_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=RunConfig().model)
    parser.add_argument("--naive-questions", type=int, default=32, help="questions for the plain-generate comparison")
    args = parser.parse_args()
    config = RunConfig(model=args.model, iterations=1, name="bench")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {config.model}; "
          f"train {config.train_size}, eval {config.eval_size}, {config.finetune} fine-tuning")

    with tempfile.TemporaryDirectory() as tmp:
        store, run_id, clock, total = run_one_iteration(config, Path(tmp))
        print("\nwall seconds per phase")
        for name, seconds in clock.durations(clock.marks[0][1] + total):
            print(f"  {name:28} {seconds:7.1f}")
        iteration_1 = sum(s for name, s in clock.durations(clock.marks[0][1] + total) if name.startswith("iteration 1"))
        print(f"  {'one STaR iteration (1)':28} {iteration_1:7.1f}   (target < 300)")

        print("\ngeneration (the shared few-shot prefix is computed once per phase, not counted per question)")
        stats = store.generation_stats(run_id)
        for row in stats.itertuples():
            print(f"  iteration {row.iteration} {row.kind:13} {row.questions:4} questions  prompt {row.prompt_tokens / row.seconds:7.0f} tok/s  "
                  f"new {row.new_tokens / row.seconds:6.0f} tok/s   (target new >= 400)")

        it = store.iterations(run_id).set_index("iteration").loc[1]
        if it.train_seconds and it.train_seconds > 0:
            print(f"\nfine-tuning: {int(it.steps)} steps on {int(it.kept)} rationales in {it.train_seconds:.1f} s: "
                  f"{it.train_tokens / it.train_seconds:.0f} tok/s (each row counted with its prefix, as a plain "
                  f"trainer would process it; target >= 500)")
        accuracy = store.accuracy(run_id)
        overall = accuracy[(accuracy.split == "eval") & accuracy.difficulty.isna()].set_index("iteration").accuracy
        print(f"\neval accuracy: iteration 0 {overall.get(0, float('nan')):.1%}, iteration 1 {overall.get(1, float('nan')):.1%}")

    b = baselines(config, args.naive_questions)
    print(f"\nsame {b.questions} eval questions, greedy, new tokens/s:")
    print(f"  generate, one prompt at a time          {b.naive:7.0f}")
    print(f"  generate, left-padded batches of {config.gen_batch_size:<5} {b.batched:7.0f}")
    print(f"  shared-prefix decoder, same batches     {b.ours:7.0f}   {b.ours / b.naive:.1f}x one at a time, "
          f"{b.ours / b.batched:.1f}x batched generate")


if __name__ == "__main__":
    main()
