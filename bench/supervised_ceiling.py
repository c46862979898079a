"""How well the model writes an arithmetic format's rationales after fine-tuning on the exact ones.

STaR's `verified` filter can only keep rationales the model writes right by itself. This gives
the upper end of that: fine-tune on the canonical rationale of every training problem (what the
verifier would accept, not what the model wrote), with the loop's own fine-tuning (LoRA, rows
without the few-shot prefix), then ask fresh questions without a prefix and count per digit
count the right answers and those with every step verified.

    python bench/supervised_ceiling.py --format place-value --max-digits 5 --rows 512 --steps 600

SmolLM2-135M needs about that many steps: 200 taught 2-digit place sums once in 16, 600 taught
90% of 1-5 digit questions with every step verified, in 26 minutes of training on a 2-core bf16 CPU
(docs/measurements.md, 2026-12-06).
"""

from __future__ import annotations

import argparse
import random
import time

from star_core.core.config import FINETUNE_METHODS, RunConfig
from star_core.core.states import ArithmeticFormat
from star_core.model.finetune import Example, TrainSettings, finetune
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.model.loading import load_model
from star_core.tasks import scratchpad
from star_core.tasks.arithmetic import ArithmeticTask, rationale_for
from star_core.tasks.base import STOP_TEXT, Problem, rationale_of
from star_core.tasks.settings import TaskSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", default=ArithmeticFormat.PLACE_VALUE.value, choices=[f.value for f in ArithmeticFormat])
    parser.add_argument("--max-digits", type=int, default=5, help="train on 1..this many digits (asked: 1-5)")
    parser.add_argument("--rows", type=int, default=512, help="training problems, spread evenly over the digit counts")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--method", default="lora", choices=FINETUNE_METHODS, help="LoRA adapters or every weight")
    parser.add_argument("--lora-rank", type=int, default=16, help="with --method lora")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step")
    parser.add_argument("--per-digit", type=int, default=16, help="questions asked per digit count")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--show", type=int, default=3, help="completions printed per digit count")
    args = parser.parse_args()
    task = ArithmeticTask(TaskSettings.of(RunConfig(arithmetic_format=args.format)))
    canonical = scratchpad.rationale if task.is_scratchpad else rationale_for
    rng = random.Random(11)  # training pairs; the questions asked come from seed 123, so the two rarely meet

    def pair(digits: int) -> tuple[int, int]:
        lo = 0 if digits == 1 else 10 ** (digits - 1)
        return rng.randrange(lo, 10**digits), rng.randrange(lo, 10**digits)

    pairs = [pair(1 + i % args.max_digits) for i in range(args.rows)]
    rows = [Example(task.format_question(Problem("train", f"{a} + {b}", str(a + b), "train")),
                    task.format_completion(canonical(a, b), str(a + b)) + STOP_TEXT) for a, b in pairs]
    lm = load_model(args.model, for_training=True)
    started = time.perf_counter()
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                             method=args.method, lora_rank=args.lora_rank)
    result = finetune(lm, "", rows, settings)
    trained = f"LoRA rank {args.lora_rank}" if args.method == "lora" else "full fine-tuning"
    print(f"{args.format}: {len(rows)} canonical rows of 1-{args.max_digits} digits, {args.steps} steps of "
          f"{args.batch_size}, {trained}, lr {args.learning_rate:g}, "
          f"{time.perf_counter() - started:.0f} s, final loss {result.final_loss:.3f}", flush=True)
    if args.method == "lora":
        lm.model = lm.model.merge_and_unload()
    lm.model.eval()
    n = args.per_digit * 5
    problems = task.problems(RunConfig(train_size=n, eval_size=1, max_difficulty=5, seed=123))[:n]
    generator = PrefixGenerator(lm, "", Decoding(max_new_tokens=160 if task.is_scratchpad else 96))
    completions = generator.generate([task.format_question(p) for p in problems])
    for digits in range(1, 6):
        asked = [(c, p) for c, p in zip(completions, problems) if p.difficulty == digits]
        right = [task.is_correct(task.extract_answer(c.text), p) for c, p in asked]
        verdicts = [task.verify_steps(c.text, p) for c, p in asked]
        verified = sum(r and v.ok for r, v in zip(right, verdicts))
        print(f"{digits} digit(s): right {sum(right)}/{len(asked)}, every step verified {verified}", flush=True)
        for (c, p), v in list(zip(asked, verdicts))[: args.show]:
            print(f"    {p.question}: {' / '.join(rationale_of(c.text).splitlines())[:150]}  [{v.reason}]")


if __name__ == "__main__":
    main()
