"""How far each way of decoding strays from one-prompt `generate`, in the dtype the model runs in.

On the default run's iteration-0 eval prompts (the embedded model, greedy), three decoders:

  * the shared-prefix decoder, in the loop's batches (`gen_batch_size` questions);
  * transformers' `generate` on left-padded batches of 16, as a user would batch it;
  * `generate` on one unpadded prompt at a time: the reference.

It prints how many completions of the first two are identical to the reference, and the
accuracy of all three. In float32 the shared-prefix decoder is identical to the reference
(tests/model/test_exactness.py); in bf16 no decoder is, since a batch's shape changes how bf16
matmuls round, so the claim there is "no further from the reference than batched `generate`
is, at the same accuracy".

    STAR_BF16=1 python bench/bf16_agreement.py            # bf16 on any CPU (slow without avx512_bf16)
    STAR_BF16=0 python bench/bf16_agreement.py --prompts 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from star_core.core.config import RunConfig
from star_core.engine.exemplars import load_exemplars
from star_core.model.generate import Decoding, PrefixGenerator, encode_piece, encode_prefix
from star_core.model.loading import DEFAULT_MODEL, load_model
from star_core.tasks import get_task
from star_core.tasks.base import STOP_TEXT, build_prefix, cut_at_stop

GENERATE_BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=96, help="eval prompts (the default run has 96)")
    args = parser.parse_args()

    config = RunConfig(device="cpu", eval_size=max(args.prompts, 1))
    task = get_task(config.task, config)
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    problems = [p for p in task.problems(config) if p.split == "eval"][: args.prompts]
    questions = [task.format_question(p) for p in problems]
    lm = load_model(DEFAULT_MODEL, device="cpu")
    dtype = next(lm.model.parameters()).dtype
    cpu = "avx512_bf16" if "avx512_bf16" in Path("/proc/cpuinfo").read_text() else "AVX2 only (no avx512_bf16)"
    print(f"{DEFAULT_MODEL} in {dtype} on a CPU with {cpu}; {len(questions)} eval prompts, "
          f"{config.max_new_tokens} new tokens at most")

    timed = {}
    started = time.perf_counter()
    generator = PrefixGenerator(lm, prefix, Decoding(config.max_new_tokens, 0.0, config.top_p))
    ours = [c.text for i in range(0, len(questions), config.gen_batch_size)
            for c in generator.generate(questions[i : i + config.gen_batch_size])]
    timed["shared-prefix decoder"] = time.perf_counter() - started

    prompts = [encode_prefix(lm, prefix) + encode_piece(lm, q) for q in questions]
    started = time.perf_counter()
    batched = [text for i in range(0, len(prompts), GENERATE_BATCH) for text in generate(lm, prompts[i : i + GENERATE_BATCH])]
    timed[f"generate, left-padded batches of {GENERATE_BATCH}"] = time.perf_counter() - started
    started = time.perf_counter()
    alone = [text for p in prompts for text in generate(lm, [p])]
    timed["generate, one prompt at a time"] = time.perf_counter() - started

    for (name, seconds), texts in zip(timed.items(), (ours, batched, alone)):
        same = sum(cut_at_stop(a) == cut_at_stop(b) for a, b in zip(texts, alone))
        right = sum(task.is_correct(task.extract_answer(t), p) for p, t in zip(problems, texts))
        print(f"  {name:<42} identical to one-prompt generate {same:>3}/{len(texts)}   "
              f"right {right:>3}/{len(texts)}   {seconds:6.1f} s")


def generate(lm, prompts: list[list[int]]) -> list[str]:
    """Greedy `generate` on left-padded prompts, each completion cut at the stop text."""
    width, pad = max(map(len, prompts)), lm.tokenizer.pad_token_id
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    lm.model.set_attn_implementation("sdpa")
    with torch.inference_mode():
        y = lm.model.generate(input_ids=x, attention_mask=mask, max_new_tokens=RunConfig().max_new_tokens,
                              do_sample=False, stop_strings=[STOP_TEXT], tokenizer=lm.tokenizer, pad_token_id=pad)
    return [cut_at_stop(lm.tokenizer.decode(row[width:], skip_special_tokens=True)) for row in y]


if __name__ == "__main__":
    main()
