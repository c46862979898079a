"""Few-shot accuracy of candidate arithmetic prompt formats, per model and digits.

The prompt format alone moved SmolLM2's 1-digit accuracy from 4% to 62%
(docs/measurements.md). This script is how the arithmetic task's format and the
default embedded model were chosen; it prints accuracy per format, model and
difficulty.

    python bench/formats.py [--models MODEL ...] [--per-digit 32] [--formats ...]

For the 1-5 digit range: `--max-digits 5 --exemplars long --steps` adds a 4- and a
5-digit exemplar, and prints beside each accuracy how many answers were also
step-verified (what the `verified` filter keeps), for the plain prompt and for the
rationalization prompt (the answer as a hint). The column formats are not what the
task's verifier reads: `column-shrinking` counts as verified when it is the canonical
text; the other column formats always count 0 verified (the verifier reads place sums).
"""

from __future__ import annotations

import argparse
import time

from star_core.core.config import RunConfig
from star_core.core.embedded import EMBEDDED_MODELS
from star_core.model.generate import Decoding, PrefixGenerator
from star_core.model.loading import load_model
from star_core.tasks.arithmetic import ArithmeticTask, place_sums, rationale_for
from star_core.tasks.base import Exemplar, build_prefix, last_answer, rationale_of

EXEMPLAR_PAIRS = [(3, 4), (6, 8), (27, 15), (58, 34), (406, 275), (839, 187)]
# The shipped pairs stop at 3 digits; a 1-5 digit run asks about numbers the prompt never shows.
LONG_PAIRS = EXEMPLAR_PAIRS + [(4729, 3586), (56847, 29375)]
EXEMPLAR_SETS = {"shipped": EXEMPLAR_PAIRS, "long": LONG_PAIRS}


def column_steps(a: int, b: int, carries: bool = True) -> list[str]:
    """Column addition from the ones place: '7 + 5 = 12, write 2, carry 1', ..."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        total = x + y + carry
        step = f"{x} + {y}" + (" + 1" if carry else "") + f" = {total}, write {total % 10}"
        steps.append(step + (", carry 1" if total >= 10 and carries else ""))
        carry = total // 10
    if carry:
        steps.append("write 1")
    return steps


def column_carry(a: int, b: int) -> str:
    return ". ".join(column_steps(a, b)) + "."


def column_no_carry_words(a: int, b: int) -> str:
    return ". ".join(column_steps(a, b, carries=False)) + "."


def place_value_explicit(a: int, b: int) -> str:
    """Like the shipped format, with each place's two parts written out."""
    width = max(len(str(a)), len(str(b)))
    da, db = str(a).zfill(width), str(b).zfill(width)
    parts = [(int(x) * 10 ** (width - 1 - i), int(y) * 10 ** (width - 1 - i)) for i, (x, y) in enumerate(zip(da, db))]
    parts = [(x, y) for x, y in parts if x + y]
    split = " + ".join(f"({x} + {y})" for x, y in parts)
    return f"{a} + {b} = {split} = " + " + ".join(str(x + y) for x, y in parts) + f" = {a + b}."


def place_value_chained(a: int, b: int) -> str:
    """The shipped place sums, then folded from the right one place at a time, so that no step adds more
    than two numbers: 56847 + 29375 = 70000 + 15000 + 1100 + 110 + 12 = 70000 + 15000 + 1100 + 122 = ...
    Every step is a sum equal to a + b, so the task's step check reads it as it is."""
    sums = place_sums(a, b)
    steps = [" + ".join(map(str, sums))] if len(sums) > 1 else []
    while len(sums) > 2:
        sums = sums[:-2] + [sums[-2] + sums[-1]]
        steps.append(" + ".join(map(str, sums)))
    return " = ".join([f"{a} + {b}", *steps, str(a + b)]) + "."


def column_shrinking(a: int, b: int) -> str:
    """Column addition that rewrites the operands without their last digit at each step, with the running
    result, so that every number a step needs is the last digit of something just written:
    624 + 259: 4 + 9 + 0 = 13, so 3 carry 1. 62 + 25: 2 + 5 + 1 = 8, so 83 carry 0. 6 + 2: 6 + 2 + 0 = 8, so 883."""
    width = max(len(str(a)), len(str(b)))
    steps, result, carry = [], "", 0
    for place in range(width):
        ta, tb = a // 10**place, b // 10**place
        total = ta % 10 + tb % 10 + carry
        last = place == width - 1
        result = str(total if last else total % 10) + result
        steps.append(f"{ta} + {tb}: {ta % 10} + {tb % 10} + {carry} = {total}, so {result}"
                     + ("" if last else f" carry {total // 10}") + ".")
        carry = total // 10
    return " ".join(steps)


# Formats whose steps the arithmetic task's verifier does not read are checked by being the canonical text.
EXACT_ONLY = {"column-shrinking"}
# Formats that group a step's terms in brackets: verified with the brackets dropped.
GROUPED = {"place-value-explicit"}

FORMATS = {
    "column-shrinking": column_shrinking,
    "column+carry": column_carry,
    "column": column_no_carry_words,
    "place-value (shipped)": rationale_for,
    "place-value-explicit": place_value_explicit,
    "place-value-chained": place_value_chained,
    "direct": lambda a, b: "",
}


class FormatTask(ArithmeticTask):
    def format_completion(self, rationale: str, answer: str) -> str:
        return f" {rationale} The answer is {answer}." if rationale else f" The answer is {answer}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(EMBEDDED_MODELS))
    parser.add_argument("--per-digit", type=int, default=32)
    parser.add_argument("--max-digits", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--exemplars", default="shipped", choices=list(EXEMPLAR_SETS))
    parser.add_argument("--steps", action="store_true",
                        help="also count step-verified answers, with the plain and with the hinted prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    task = FormatTask()
    n = args.per_digit * args.max_digits
    problems = task.problems(RunConfig(train_size=n, eval_size=1, max_difficulty=args.max_digits, seed=123))[:n]
    digits = range(1, args.max_digits + 1)
    prompts = [False, True] if args.steps else [False]
    print(f"exemplars: {args.exemplars}; " + ("each cell: right answers / of them step-verified" if args.steps else "right answers"))
    print(f"{'model':14} {'format':20} {'prompt':7} " + " ".join(f"{d}-digit".rjust(9) for d in digits) + "    overall  tok/s")
    for spec in args.models:
        lm = load_model(spec)
        for name in args.formats:
            rationale = FORMATS[name]
            exemplars = [Exemplar(f"{a} + {b}", rationale(a, b), str(a + b)) for a, b in EXEMPLAR_SETS[args.exemplars]]
            for hinted in prompts:
                prefix = build_prefix(task, exemplars, with_hints=hinted)
                gen = PrefixGenerator(lm, prefix, Decoding(max_new_tokens=args.max_new_tokens))
                started = time.perf_counter()
                outs = []
                for i in range(0, n, 32):
                    chunk = problems[i : i + 32]
                    outs += gen.generate([task.format_question(p, task.format_hint(p) if hinted else None) for p in chunk])
                seconds = time.perf_counter() - started
                right = [task.is_correct(last_answer(rationale_of(o.text)), p) for o, p in zip(outs, problems)]
                steps = [r and verified(name, rationale, o.text, p) for r, o, p in zip(right, outs, problems)]
                scored = list(zip(problems, right, steps))
                cells = [score([s for s in scored if s[0].difficulty == d], args.steps) for d in digits]
                tps = sum(o.new_tokens for o in outs) / seconds
                print(f"{spec:14} {name:20} {'hint' if hinted else 'plain':7} " + " ".join(c.rjust(9) for c in cells)
                      + f"  {score(scored, args.steps):>9}  {tps:5.0f}", flush=True)


def verified(name: str, rationale, completion: str, problem) -> bool:
    """Whether a completion's steps hold: the task's verifier for the place-value formats, else the exact text."""
    if name in EXACT_ONLY:
        a, b = (int(x) for x in problem.question.split(" + "))
        return rationale(a, b) in rationale_of(completion)
    if name in GROUPED:  # '(20 + 10) + (7 + 5)' is the sum 20 + 10 + 7 + 5 to the verifier, which reads no brackets
        completion = completion.replace("(", "").replace(")", "")
    return FormatTask().verify_steps(completion, problem).ok


def score(scored: list, with_steps: bool) -> str:
    """'right%', or 'right%/step-verified%', over (problem, right, verified) rows."""
    right = f"{sum(r for _, r, _ in scored) / len(scored):.0%}"
    return f"{right}/{sum(bool(v) for _, _, v in scored) / len(scored):.0%}" if with_steps else right


if __name__ == "__main__":
    main()
