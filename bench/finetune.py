"""Fine-tuning the same kept rows for the same steps four ways, timed in one process.

1. ours: this project's trainer, the few-shot prefix computed once per step and shared by the rows;
2. TRL's SFTTrainer with the same LoRA, the prefix in every row (prompt = prefix + question);
3. SFTTrainer on rows without the prefix (prompt = question);
4. ours on short rows (RunConfig.train_prefix off: no prefix, plain attention).

The kept rows are the arithmetic task's canonical rationales (what a `verified` filter keeps) for
problems of 1..max digits, in the chosen format. Prints wall seconds, the tokens each computed
(sequence tokens run through the model: TRL's from the rows it was given, ours as counted by the
trainer) and tokens/s, and each arm's wall against ours.

    python bench/finetune.py [--format scratchpad] [--rows 48] [--steps 6] [--batch-size 8] [--arms ours,ours-short]
    python bench/finetune.py --tiny      # a random 2-layer model, 2 steps: checks the script runs

Needs TRL (`pip install 'star-studio[bench]'`). Run it alone on the machine: two model processes on
2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from star_core.core.config import RunConfig
from star_core.engine.exemplars import load_exemplars
from star_core.model.finetune import Example, TrainSettings, finetune
from star_core.model.loading import load_model
from star_core.tasks import get_task
from star_core.tasks.arithmetic import rationale_for
from star_core.tasks.base import STOP_TEXT, build_prefix
from star_core.tasks.scratchpad import rationale as scratch_rationale


@dataclass
class Arm:
    name: str
    seconds: float
    tokens: int  # sequence tokens run through the model over all steps
    final_loss: float


def kept_rows(fmt: str, rows: int, max_digits: int, seed: int) -> tuple[str, list[Example]]:
    config = RunConfig(arithmetic_format=fmt, max_difficulty=max_digits, train_size=rows, eval_size=1, seed=seed)
    task = get_task("arithmetic", config)
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    examples = []
    for p in (p for p in task.problems(config) if p.split == "train"):
        a, b = (int(x) for x in p.question.split(" + "))
        rationale = scratch_rationale(a, b) if task.is_scratchpad else rationale_for(a, b)
        examples.append(Example(task.format_question(p), task.format_completion(rationale, p.answer) + STOP_TEXT))
    return prefix, examples


def ours(model: str, prefix: str, examples: list[Example], settings: TrainSettings, name: str) -> Arm:
    lm = load_model(model, "cpu", for_training=True)
    result = finetune(lm, prefix, examples, settings)
    return Arm(name, result.seconds, result.computed_tokens, result.final_loss)


def trl_sft(model: str, prefix: str, examples: list[Example], settings: TrainSettings, name: str) -> Arm:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    lm = load_model(model, "cpu", for_training=True)
    rows = [{"prompt": prefix + ex.prompt, "completion": ex.completion} for ex in examples]
    lengths = [len(lm.tokenizer(r["prompt"] + r["completion"], add_special_tokens=True).input_ids) for r in rows]
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, warmup_steps=max(1, settings.steps // 10), lr_scheduler_type="linear",
            weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
            bf16=lm.bf16, seed=settings.seed, completion_only_loss=True, max_length=None, packing=False,
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # TRL's default recomputes activations; ours does not, so neither here
        )
        # The same adapters as ours (finetune._with_lora): every linear layer, alpha = 2 x rank, no dropout.
        lora = LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank, target_modules="all-linear",
                          lora_dropout=0.0, task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=lm.tokenizer, peft_config=lora)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tail = losses[-max(1, len(losses) // 10):] or [float("nan")]
    # Rows are drawn without padding waste counted: the mean row length times the rows trained on.
    tokens = round(sum(lengths) / len(lengths) * settings.steps * settings.batch_size)
    return Arm(name, seconds, tokens, sum(tail) / len(tail))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--format", default="scratchpad", choices=("scratchpad", "place-value"))
    parser.add_argument("--rows", type=int, default=48, help="kept rows (training problems of 1..max digits)")
    parser.add_argument("--max-digits", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--arms", default="ours,trl-prefix,trl-short,ours-short",
                        help="which of ours, trl-prefix, trl-short, ours-short to run, in that order (comma list)")
    parser.add_argument("--tiny", action="store_true", help="a random 2-layer model and 2 steps")
    args = parser.parse_args()
    tmp = None
    if args.tiny:
        from _random_model import TINY, build_random_model

        tmp = tempfile.TemporaryDirectory()
        args.model = str(build_random_model(Path(tmp.name), TINY))
        args.steps, args.rows = 2, 16
    torch.manual_seed(0)
    random.seed(0)
    prefix, examples = kept_rows(args.format, args.rows, args.max_digits, seed=0)
    settings = TrainSettings(args.steps, args.batch_size, args.learning_rate, "lora", args.lora_rank, seed=0)
    print(f"{args.model}, {args.format} rows: {len(examples)} kept rows, prefix {len(prefix)} characters, "
          f"{args.steps} steps of {args.batch_size} rows, LoRA rank {args.lora_rank}, {torch.get_num_threads()} threads",
          flush=True)
    plan = {
        "ours": lambda: ours(args.model, prefix, examples, settings, "ours (shared prefix)"),
        "trl-prefix": lambda: trl_sft(args.model, prefix, examples, settings, "TRL SFTTrainer, prefix in every row"),
        "trl-short": lambda: trl_sft(args.model, "", examples, settings, "TRL SFTTrainer, no prefix"),
        "ours-short": lambda: ours(args.model, "", examples, settings, "ours, short rows (no prefix)"),
    }
    chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in plan]
    if unknown or not chosen:
        parser.error(f"--arms: unknown {', '.join(unknown) or 'nothing chosen'}; choose from {', '.join(plan)}")
    arms = []
    for name in chosen:
        arms.append(plan[name]())
        print(f"  {arms[-1]}", flush=True)
    base = arms[0].seconds  # the first arm chosen (ours, by default)
    print(f"\n| trainer | wall | tokens computed | tokens/s | wall / {arms[0].name} | final loss |\n|---|---|---|---|---|---|")
    for arm in arms:
        print(f"| {arm.name} | {arm.seconds:.1f} s | {arm.tokens:,} | {arm.tokens / arm.seconds:.0f} | "
              f"{arm.seconds / base:.2f}x | {arm.final_loss:.3f} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
