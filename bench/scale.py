"""How a run's throughput grows with Ray workers and training processes, and what the one DuckDB writer ingests.

Prints, in one run on this machine:

  * one generation phase (the default run's iteration-1 questions, greedy) decoded in this
    process, by 1 Ray worker and by 2, each on one core: new tokens/s and the ratios;
  * fine-tuning steps in 1 and in 2 processes, each on one core: tokens/s and the ratio;
  * Store.add_attempts ingest rate, in batches of 32 (a phase's batch) and of 1,000.

Model start-up is timed apart from the work (a warm-up batch loads each worker's model).

    python bench/scale.py            # the embedded default model, the default run's sizes
    python bench/scale.py --tiny     # a tiny random model and small sizes: checks the script (~1-2 min)

Run it on a quiet machine: the workers and processes compete with anything else on the cores.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from star_core.model.batch_decoder import DecodeBatch, LocalDecoder, batch_seed, plan_batches
from star_core.core.config import RunConfig
from star_core.engine.exemplars import load_exemplars
from star_core.model.finetune import Example, TrainSettings
from star_core.model.generate import Decoding
from star_core.model.loading import load_model
from star_core.core.states import AttemptKind
from star_core.store import AttemptRow, Store
from star_core.tasks import get_task
from star_core.tasks.arithmetic import rationale_for
from star_core.tasks.base import STOP_TEXT, build_prefix


def phase_batches(config: RunConfig, task, problems) -> list[DecodeBatch]:
    """The iteration-1 generate phase's batches, planned as the loop plans them."""
    ordered = sorted(problems, key=lambda p: len(p.question))
    return [DecodeBatch(i, batch_seed(config.seed, 1, AttemptKind.GENERATED.value, i),
                        tuple(task.format_question(p) for p in chunk))
            for i, chunk in plan_batches(ordered, config.gen_batch_size, lambda p: False)]


def timed_phase(decoder, prefix: str, decoding: Decoding, batches: list[DecodeBatch]) -> tuple[float, int, list]:
    started = time.perf_counter()
    results = list(decoder.decode(prefix, decoding, batches))
    seconds = time.perf_counter() - started
    return seconds, sum(c.new_tokens for _, cs in results for c in cs), results


def generation(config: RunConfig, model: str) -> dict:
    import ray

    from star_core.model.distributed.ray_generation import RayDecoderPool

    task = get_task(config.task, config)
    problems = [p for p in task.problems(config) if p.split == "train"]
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    decoding = Decoding(config.max_new_tokens, 0.0, config.top_p)
    batches = phase_batches(config, task, problems)
    warmup = [DecodeBatch(-1, 0, batches[0].questions[:2])]
    out = {}

    torch.set_num_threads(1)
    started = time.perf_counter()
    local = LocalDecoder(load_model(model, "cpu"))
    list(local.decode(prefix, decoding, warmup))
    out["in-process start"] = time.perf_counter() - started
    seconds, new_tokens, expected = timed_phase(local, prefix, decoding, batches)
    out["in-process"] = new_tokens / seconds
    del local

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        for workers in (1, 2):
            pool = RayDecoderPool(RunConfig(model=model, device="cpu", workers=workers), cpus_per_worker=1)
            decoder = pool.for_checkpoint(None)
            started = time.perf_counter()
            list(decoder.decode(prefix, decoding, [DecodeBatch(-1 - w, 0, warmup[0].questions) for w in range(workers)]))
            out[f"{workers} worker start"] = time.perf_counter() - started
            seconds, new_tokens, results = timed_phase(decoder, prefix, decoding, batches)
            out[f"{workers} worker"] = new_tokens / seconds
            same = sum(a == b for (_, x), (_, y) in zip(expected, results) for a, b in
                       zip((c.text for c in x), (c.text for c in y)))
            out[f"{workers} worker same"] = f"{same}/{sum(len(b.questions) for b in batches)}"
            pool.release()
    finally:
        ray.shutdown()
    out["questions"], out["batches"] = len(problems), len(batches)
    return out


def training(config: RunConfig, model: str, steps: int, folder: Path) -> dict:
    from star_core.model.distributed.train_processes import finetune_in_processes

    task = get_task(config.task, config)
    problems = [p for p in task.problems(config) if p.split == "train"]
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    # Exact place-value rationales stand in for kept ones: the format and length of a run's kept set.
    examples = [Example(task.format_question(p), task.format_completion(rationale_for(*map(int, p.question.split(" + "))),
                                                                        p.answer) + STOP_TEXT) for p in problems]
    settings = TrainSettings(steps, config.batch_size, config.learning_rate, config.finetune, config.lora_rank, seed=1)
    out = {}
    for processes in (1, 2):
        torch.set_num_threads(processes)  # one core each
        started = time.perf_counter()
        result = finetune_in_processes(model, "cpu", processes, prefix, examples, settings, folder / f"job-{processes}",
                                       folder / f"checkpoint-{processes}")
        out[f"{processes} process wall"] = time.perf_counter() - started
        out[f"{processes} process"] = result.tokens / result.seconds
        out[f"{processes} process losses"] = result.losses
    return out


def ingest(folder: Path, rows_total: dict[int, int]) -> dict:
    store = Store(folder / "ingest.duckdb").init()
    run_id = store.create_run(RunConfig())
    prompt_id = store.prompt_id("a few-shot prefix")
    completion = " 123 + 456: 3 + 6 = 9, 2 + 5 = 7, 1 + 4 = 5. The answer is 579.\n\n"
    out = {}
    for batch, total in rows_total.items():
        made = 0
        started = time.perf_counter()
        while made < total:
            rows = [AttemptRow(run_id=run_id, iteration=batch, problem_id=f"p{made + i}", kind="generated", sample=0,
                               prompt_id=prompt_id, question_prompt="Question: 123 + 456 = ?\nAnswer:", hint=None,
                               completion=completion, rationale=completion.strip(), predicted="579", correct=True,
                               verified=True, verify_reason="", prompt_tokens=14, new_tokens=40, seconds=0.01)
                    for i in range(batch)]
            store.add_attempts(rows, progress=dict(iteration=batch, phase="generate", done=made, total=total,
                                                   tokens_per_s=None, eta_s=None))
            made += batch
        out[batch] = made / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and small sizes (checks the script)")
    parser.add_argument("--model", default="", help="model spec (default: the embedded default; --tiny: a random one)")
    parser.add_argument("--steps", type=int, default=0, help="fine-tuning steps timed (default: 20; --tiny: 6)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.tiny:
            import _random_model

            model = args.model or str(_random_model.build_random_model(folder / "tiny", _random_model.TINY))
            config = RunConfig(model=model, train_size=32, gen_batch_size=4, max_new_tokens=24, batch_size=4)
            steps, rows = args.steps or 6, {32: 3_200, 1000: 20_000}
        else:  # the arithmetic task: its exact rationales stand in for a kept set
            config = RunConfig(**({"model": args.model} if args.model else {}))
            model = config.model
            steps, rows = args.steps or 20, {32: 32_000, 1000: 200_000}
        print(f"model {model}; {config.train_size} questions, batches of {config.gen_batch_size}, "
              f"{config.max_new_tokens} new tokens at most; {torch.get_num_threads()} torch threads here", flush=True)

        gen = generation(config, model)
        print(f"\ngeneration, one phase of {gen['questions']} questions ({gen['batches']} batches), greedy, one core each:")
        print(f"  in this process: {gen['in-process']:8.1f} new tokens/s   (model start {gen['in-process start']:.1f} s)")
        for w in (1, 2):
            print(f"  {w} Ray worker{'s' if w > 1 else ' '}:   {gen[f'{w} worker']:8.1f} new tokens/s   "
                  f"(start {gen[f'{w} worker start']:.1f} s; completions as in this process: {gen[f'{w} worker same']})")
        print(f"  2 workers / 1 worker: {gen['2 worker'] / gen['1 worker']:.2f}x;  "
              f"1 worker / in this process: {gen['1 worker'] / gen['in-process']:.2f}x", flush=True)

        train = training(config, model, steps, folder)
        print(f"\nfine-tuning, {steps} steps of {config.batch_size} rows ({config.finetune}), one core per process:")
        for n in (1, 2):
            print(f"  {n} process{'es' if n > 1 else '  '}: {train[f'{n} process']:8.1f} tokens/s   "
                  f"(wall with start-up {train[f'{n} process wall']:.1f} s)")
        diff = max(abs(a - b) for a, b in zip(train["1 process losses"], train["2 process losses"]))
        print(f"  2 processes / 1 process: {train['2 process'] / train['1 process']:.2f}x;  "
              f"largest loss difference between them: {diff:.2e}", flush=True)

        rates = ingest(folder, rows)
        print("\nDuckDB ingest (Store.add_attempts, one transaction per batch, with the run's progress):")
        for batch, rate in rates.items():
            print(f"  batches of {batch:>5,}: {rate:10,.0f} attempts/s")


if __name__ == "__main__":
    main()
