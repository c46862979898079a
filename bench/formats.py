"""Few-shot accuracy of candidate arithmetic prompt formats, per model and digits.

The prompt format alone moved SmolLM2's 1-digit accuracy from 4% to 62%
(docs/measurements.md). This script is how the arithmetic task's format and the
default embedded model were chosen; it prints accuracy per format, model and
difficulty.

    python bench/formats.py [--models MODEL ...] [--per-digit 32] [--formats ...]
"""

from __future__ import annotations

import argparse
import time

from star_core.config import RunConfig
from star_core.embedded import EMBEDDED_MODELS
from star_core.generate import Decoding, PrefixGenerator
from star_core.model import load_model
from star_core.tasks.arithmetic import ArithmeticTask, rationale_for
from star_core.tasks.base import Exemplar, build_prefix, last_answer, rationale_of

EXEMPLAR_PAIRS = [(3, 4), (6, 8), (27, 15), (58, 34), (406, 275), (839, 187)]


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


FORMATS = {
    "column+carry": column_carry,
    "column": column_no_carry_words,
    "place-value (shipped)": rationale_for,
    "place-value-explicit": place_value_explicit,
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
    args = parser.parse_args()
    task = FormatTask()
    n = args.per_digit * args.max_digits
    problems = task.problems(RunConfig(train_size=n, eval_size=1, max_difficulty=args.max_digits, seed=123))[:n]
    print(f"{'model':14} {'format':20} " + " ".join(f"{d}-digit" for d in range(1, args.max_digits + 1)) + "  overall  tok/s")
    for spec in args.models:
        lm = load_model(spec)
        for name in args.formats:
            rationale = FORMATS[name]
            exemplars = [Exemplar(f"{a} + {b}", rationale(a, b), str(a + b)) for a, b in EXEMPLAR_PAIRS]
            gen = PrefixGenerator(lm, build_prefix(task, exemplars, with_hints=False), Decoding(max_new_tokens=64))
            started = time.perf_counter()
            outs = []
            for i in range(0, n, 64):
                outs += gen.generate([task.format_question(p) for p in problems[i : i + 64]])
            seconds = time.perf_counter() - started
            right = [task.is_correct(last_answer(rationale_of(o.text)), p) for o, p in zip(outs, problems)]
            by_digit = [sum(r for r, p in zip(right, problems) if p.difficulty == d) / args.per_digit for d in range(1, args.max_digits + 1)]
            tps = sum(o.new_tokens for o in outs) / seconds
            print(f"{spec:14} {name:20} " + " ".join(f"{x:7.0%}" for x in by_digit) + f"  {sum(right) / n:7.0%}  {tps:5.0f}", flush=True)


if __name__ == "__main__":
    main()
