"""The CUDA path, checked on one GPU with no network and no download (a few minutes on one GPU).

On a randomly initialised ~110 M-parameter Llama (hidden 768, 12 layers, the embedded
tokenizer's 49k vocabulary), and on the embedded SmolLM2 too where its package is
installed:

  1. loads it for generation (bf16 on CUDA) and says the dtype and device;
  2. decodes a phase of arithmetic questions with the shared-prefix decoder and with
     `model.generate` on the same token ids (left-padded batches): rows and tokens that
     match, and new tokens/s of each;
  3. fine-tunes it with LoRA and fully (float32 weights, bf16 autocast): a few steps each,
     losses and tokens/s;
  4. saves each checkpoint, reloads it for generation and compares the weights;
  5. runs one tiny STaR iteration end to end on the random model (the loop, the store,
     fine-tuning and evaluation on the device), and one in direct mode, which fine-tunes
     even when a random model keeps no rationale.

    python bench/gpu_check.py                       # on CUDA
    python bench/gpu_check.py --device cpu --small  # the same steps on a small random model only (checks the script)

A random model's greedy tokens have tiny margins, so bf16 decoding paths that round
differently part ways sooner on it than on a trained model; the embedded model's rows are
the meaningful match count.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import tempfile
import time
from pathlib import Path

import torch

import _random_model
from star_core.core.config import RunConfig
from star_core.core.embedded import EMBEDDED_MODELS
from star_core.engine.exemplars import load_exemplars
from star_core.model.finetune import Example, TrainSettings, finetune, save_checkpoint
from star_core.model.generate import Decoding, PrefixGenerator, encode_piece, encode_prefix
from star_core.engine.loop import execute_run
from star_core.engine.prepare import create_run
from star_core.model.loading import load_model
from star_core.store import Store
from star_core.tasks import get_task
from star_core.tasks.arithmetic import rationale_for
from star_core.tasks.base import STOP_TEXT, build_prefix


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phase_questions(n: int, seed: int = 0):
    config = RunConfig(train_size=n, eval_size=1, seed=seed)
    task = get_task(config.task, config)
    problems = sorted((p for p in task.problems(config) if p.split == "train"), key=lambda p: len(p.question))
    return task, problems, build_prefix(task, load_exemplars(task), with_hints=False)


def trim(row: list[int], pad: int, eos: set[int]) -> list[int]:
    """`generate`'s new tokens without the pads after a stop and without EOS (PrefixGenerator keeps neither)."""
    out = []
    for token in row:
        if token in eos:
            break
        out.append(token)
    while out and out[-1] == pad and pad not in eos:
        out.pop()
    return out


def decode_check(spec: str, device: str, questions: int, batch: int, new_tokens: int) -> dict:
    lm = load_model(spec, device)
    dtype = next(lm.model.parameters()).dtype
    task, problems, prefix = phase_questions(questions)
    suffixes = [task.format_question(p) for p in problems]
    tok, pad = lm.tokenizer, lm.tokenizer.pad_token_id
    eos = {tok.eos_token_id} | set(lm.model.generation_config.eos_token_id
                                   if isinstance(lm.model.generation_config.eos_token_id, list)
                                   else [lm.model.generation_config.eos_token_id])
    prefix_ids = encode_prefix(lm, prefix)
    prompts = [prefix_ids + encode_piece(lm, s) for s in suffixes]

    # `generate` on the same ids, left-padded: what a user of transformers would run.
    theirs: list[list[int]] = []
    synchronize(lm.device)
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            rows = prompts[i : i + batch]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=lm.device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=lm.device)
            out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                    pad_token_id=pad, stop_strings=[STOP_TEXT], tokenizer=tok)
            theirs += [trim(row[width:].tolist(), pad, eos) for row in out]
    synchronize(lm.device)
    generate_s = time.perf_counter() - started

    synchronize(lm.device)
    started = time.perf_counter()
    generator = PrefixGenerator(lm, prefix, Decoding(new_tokens))
    ours = []
    for i in range(0, len(suffixes), batch):
        ours += [list(c.token_ids) for c in generator.generate(suffixes[i : i + batch])]
    synchronize(lm.device)
    ours_s = time.perf_counter() - started

    same_rows = sum(a == b for a, b in zip(ours, theirs))
    agreed = sum(_common_start(a, b) for a, b in zip(ours, theirs))
    return dict(dtype=str(dtype).replace("torch.", ""), device=str(lm.device), rows=len(ours), same_rows=same_rows,
                agreed_tokens=agreed, our_tokens=sum(map(len, ours)),
                ours_tps=sum(map(len, ours)) / ours_s, generate_tps=sum(map(len, theirs)) / generate_s)


def _common_start(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def train_check(spec: str, device: str, method: str, steps: int, batch: int, folder: Path) -> dict:
    task, problems, prefix = phase_questions(4 * batch, seed=1)
    examples = [Example(task.format_question(p), task.format_completion(rationale_for(*map(int, p.question.split(" + "))),
                                                                        p.answer) + STOP_TEXT) for p in problems]
    lm = load_model(spec, device, for_training=True)
    rate = 2e-4 if method == "lora" else 2e-5
    result = finetune(lm, prefix, examples, TrainSettings(steps, batch, rate, method, 16, seed=0))
    checkpoint = save_checkpoint(lm, folder / f"{method}-checkpoint")
    trained = lm.model.merge_and_unload() if method == "lora" else lm.model
    expected = {k: v.detach().float().cpu() for k, v in trained.state_dict().items()}
    reloaded = load_model(spec, device, checkpoint=checkpoint)
    got = {k: v.detach().float().cpu() for k, v in reloaded.model.state_dict().items()}
    worst = max((expected[k] - got[k]).abs().max().item() / (expected[k].abs().max().item() or 1.0) for k in got)
    size = sum(f.stat().st_size for f in checkpoint.iterdir()) / 2**20
    return dict(first_loss=result.losses[0], last_loss=result.losses[-1], finite=all(map(math.isfinite, result.losses)),
                tps=result.tokens / result.seconds, computed_tps=result.computed_tokens / result.seconds,
                checkpoint_mb=size, same_keys=expected.keys() == got.keys(), worst_relative=worst,
                reloaded_dtype=str(next(reloaded.model.parameters()).dtype).replace("torch.", ""))


def loop_check(spec: str, device: str, folder: Path, **settings) -> dict:
    store = Store(folder / f"loop-{settings.get('mode', 'star')}.duckdb").init()
    config = RunConfig(model=spec, device=device, train_size=16, eval_size=8, iterations=1, max_new_tokens=24,
                       min_steps=4, gen_batch_size=8, batch_size=4, **settings)
    run_id = create_run(store, config)
    started = time.perf_counter()
    execute_run(store, run_id)
    row = store.iterations(run_id).set_index("iteration")
    return dict(status=str(store.get_run(run_id).status), seconds=time.perf_counter() - started,
                kept=int(row.kept.get(1, 0) or 0), steps=int(row.steps.get(1, 0) or 0),
                attempts=int(store.generation_stats(run_id).questions.sum()))


def embedded_present(name: str) -> bool:
    return importlib.util.find_spec(EMBEDDED_MODELS[name].module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--small", action="store_true", help="a ~7 M-parameter random model and fewer questions")
    parser.add_argument("--embedded", action=argparse.BooleanOptionalAction, default=None,
                        help="check the embedded model too, where it is installed (default: yes, but not with --small)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU is visible to torch; use --device cpu --small to check the script on a CPU")
    questions, batch, new_tokens, steps = (32, 16, 32, 4) if args.small else (256, 64, 96, 20)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__} on {where}; {questions} questions in batches of {batch}, {new_tokens} new tokens "
          f"at most; {steps} fine-tuning steps of 8 rows", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        random_model = str(_random_model.build_random_model(
            folder / "random", _random_model.SMALL if args.small else _random_model.M100))
        models = [("random", random_model)]
        embedded = args.embedded if args.embedded is not None else not args.small
        if embedded and embedded_present("smollm2-135m"):
            models.append(("smollm2-135m", "smollm2-135m"))
        print(f"random model: {_random_model.parameters(Path(random_model)) / 1e6:.0f} M parameters", flush=True)
        for name, spec in models:
            d = decode_check(spec, args.device, questions, batch, new_tokens)
            print(f"\n[{name}] loaded as {d['dtype']} on {d['device']}")
            print(f"  decode: {d['same_rows']}/{d['rows']} rows and {d['agreed_tokens']}/{d['our_tokens']} tokens as "
                  f"`generate` gives them (tokens counted up to a row's first difference)")
            print(f"  new tokens/s: shared-prefix decoder {d['ours_tps']:,.0f}, generate {d['generate_tps']:,.0f} "
                  f"({d['ours_tps'] / d['generate_tps']:.1f}x)", flush=True)
            for method in ("lora", "full"):
                t = train_check(spec, args.device, method, steps, 8, folder / name)
                print(f"  {method:4} fine-tuning: loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}"
                      f"{'' if t['finite'] else ' (NOT FINITE)'}; {t['tps']:,.0f} tokens/s as a plain trainer counts "
                      f"them ({t['computed_tps']:,.0f} computed: the prefix once per step); checkpoint {t['checkpoint_mb']:.1f} MB reloads as {t['reloaded_dtype']} with "
                      f"{'the same' if t['same_keys'] else 'DIFFERENT'} weights, largest relative difference "
                      f"{t['worst_relative']:.1e}", flush=True)
        for mode in ("star", "direct"):
            r = loop_check(random_model, args.device, folder, mode=mode)
            print(f"\none tiny STaR iteration ({mode} mode, random model): {r['status']} in {r['seconds']:.1f} s; "
                  f"{r['attempts']} questions decoded, {r['kept']} kept, {r['steps']} fine-tuning steps", flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
