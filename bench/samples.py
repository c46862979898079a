"""How many training questions get a step-verified rationale from k samples each.

The `verified` filter keeps a rationale only when its every step holds. Whether sampling
several rationales per question (RunConfig.samples_per_question, at a temperature) gives it
anything to keep above one digit decides whether STaR can learn steps at all. This samples
k rationales for each of a preset run's training questions of the chosen digit counts, with
the plain prompt and with the rationalization hint, and prints per digit count the questions
with at least one right sample, those with at least one step-verified right sample, and the
right and verified samples themselves.

    python bench/samples.py --k 8 --temperature 0.7 --per-digit 16 --digits 2 3
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from star_core.core.config import RunConfig
from star_core.core.presets import preset_values
from star_core.engine.exemplars import load_exemplars
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.model.loading import load_model
from star_core.tasks import get_task
from star_core.tasks.base import build_prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=RunConfig().model)
    parser.add_argument("--preset", default="paper-arithmetic", help="the run whose training questions are sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--per-digit", type=int, default=16)
    parser.add_argument("--digits", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    config = RunConfig(**{**preset_values(args.preset), "seed": args.seed, "model": args.model})
    task = get_task(config.task, config)
    by_digits = defaultdict(list)
    for p in task.problems(config):
        if p.split == "train" and p.difficulty in args.digits:
            by_digits[p.difficulty].append(p)
    problems = [p for d in args.digits for p in by_digits[d][: args.per_digit]]
    lm = load_model(args.model)
    exemplars = load_exemplars(task)
    decoding = Decoding(max_new_tokens=config.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    print(f"{args.model}, {args.preset} seed {args.seed}, k={args.k} at T={args.temperature}, top-p {args.top_p}")
    for hinted in (False, True):
        gen = PrefixGenerator(lm, build_prefix(task, exemplars, with_hints=hinted), decoding)
        prompts = [task.format_question(p, task.format_hint(p) if hinted else None) for p in problems for _ in range(args.k)]
        started = time.perf_counter()
        outs = []
        for i in range(0, len(prompts), args.batch):
            outs += gen.generate(prompts[i : i + args.batch])
        seconds = time.perf_counter() - started
        counts: dict[int, Counter] = defaultdict(Counter)
        reasons: Counter = Counter()
        for j, p in enumerate(problems):
            samples = outs[j * args.k : (j + 1) * args.k]
            right = [task.is_correct(task.extract_answer(s.text), p) for s in samples]
            verdicts = [task.verify_steps(s.text, p) for s in samples]
            verified = [r and v.ok for r, v in zip(right, verdicts)]
            reasons.update(v.reason.split("'")[0].strip() for v in verdicts if not v.ok)
            c = counts[p.difficulty]
            c["questions"] += 1
            c["right q"] += any(right)
            c["verified q"] += any(verified)
            c["right"] += sum(right)
            c["verified"] += sum(verified)
        print(f"{'hint' if hinted else 'plain'} ({seconds:.0f} s)")
        for d, c in sorted(counts.items()):
            print(f"  {d} digits: {c['right q']}/{c['questions']} questions with a right sample, {c['verified q']} with a "
                  f"verified one; samples right {c['right']}, verified {c['verified']} of {c['questions'] * args.k}")
        print("  why the others fail:", ", ".join(f"{reason} {n}" for reason, n in reasons.most_common(4)))


if __name__ == "__main__":
    main()
