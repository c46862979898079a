"""Regenerate the import fixtures under tests/data/import/ with the real software (opt-in, slow).

    flock /tmp/star-cpu.lock python3 scripts/make_import_fixtures.py trl      # needs `pip install trl` (the bench extra)
    python3 scripts/make_import_fixtures.py inspect --inspect-python PYTHON   # a Python with inspect-ai installed
    python3 scripts/make_import_fixtures.py verl                              # documented keys, not verl's writer

trl: a real GRPOTrainer run on CPU with the embedded SmolLM2-135M (its local dequantized folder, nothing from a
hub): 4 arithmetic prompts in the arithmetic task's own format, 4 completions each, 2 steps,
log_completions=True, report_to="none". It writes completions/completions_00001.parquet and _00002.parquet.
inspect: a real Inspect eval (inspect_ai.eval, as `inspect eval` runs it) with the mockllm/model provider, its
custom outputs (two sums right, one wrong, one no number) and a match() scorer over 4 samples x 2 epochs.
verl: verl does not install here without changing transformers, so its dump is written from the keys its
trainer's `_dump_generations` writes (input, output, gts, score, step, then the reward function's extra keys).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "import"
# The arithmetic task's prompt: Question: a + b = ?\nAnswer:, after one exemplar so the model follows the format.
EXEMPLAR = "Question: 47 + 85 = ?\nAnswer: 47 + 85 = 120 + 12 = 132. The answer is 132.\n\n"
SUMS = [(3, 4), (12, 5), (23, 41), (8, 9)]


def make_trl() -> None:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from star_core.model.loading import _dequantized_cache, embedded_gguf_path
    from star_core.tasks import get_task
    from star_core.tasks.base import Problem

    gguf = embedded_gguf_path("smollm2-135m")
    folder = _dequantized_cache(str(gguf.parent), gguf.name)
    task = get_task("arithmetic")
    rows = [{"prompt": EXEMPLAR + f"Question: {a} + {b} = ?\nAnswer:", "question": f"{a} + {b}", "answer": str(a + b)}
            for a, b in SUMS]

    def right_answer(prompts, completions, question, answer, log_extra=None, **_):
        # The gold answer and the question go beside each completion (TRL's log_extra).
        if log_extra is not None:
            log_extra("question", list(question))
            log_extra("answer", list(answer))
        return [float(task.is_correct(task.extract_answer(c), Problem("p", q, a, "train")))
                for c, q, a in zip(completions, question, answer)]

    def states_an_answer(completions, **_):
        return [0.5 if "The answer is" in c else 0.0 for c in completions]

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, max_steps=2, per_device_train_batch_size=16, num_generations=4,
                          max_completion_length=24, learning_rate=1e-5, logging_steps=1, log_completions=True,
                          report_to="none", use_cpu=True, bf16=False, save_strategy="no", seed=0,
                          temperature=1.0)
        trainer = GRPOTrainer(model=folder, reward_funcs=[right_answer, states_an_answer], args=args,
                              train_dataset=Dataset.from_list(rows))
        trainer.train()
        target = FIXTURES / "trl" / "completions"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in sorted((Path(out) / "completions").glob("*.parquet")):
            shutil.copy(path, target / path.name)
            print("wrote", target / path.name, path.stat().st_size, "bytes")


INSPECT_TASK = '''
from inspect_ai import Task, eval, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import match
from inspect_ai.solver import generate

# What the mock model says to each question: two sums right, one wrong, one question answered off the point.
SAYS = {"What is 3 + 4?": "3 + 4 = 7. The answer is 7", "What is 12 + 5?": "12 + 5 = 16. The answer is 16",
        "What is 23 + 41?": "23 + 41 = 64. The answer is 64", "What is 8 + 9?": "I cannot add."}


def says(messages, tools, tool_choice, config):
    # The usage is given so that mockllm does not count tokens with a tokenizer it would download.
    output = ModelOutput.from_content(model="mockllm", content=SAYS[messages[-1].text])
    output.usage = ModelUsage(input_tokens=8, output_tokens=8, total_tokens=16)
    return output


@task
def sums():
    return Task(dataset=[Sample(input=q, target=str(sum(int(t) for t in q[8:-1].split(" + "))), id=f"s{i}")
                         for i, q in enumerate(SAYS, start=1)],
                solver=generate(), scorer=match(location="end"))


if __name__ == "__main__":
    eval(sums(), model=get_model("mockllm/model", custom_outputs=says), log_dir="logs", epochs=2)
'''


def make_inspect(python: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "sums.py").write_text(INSPECT_TASK)
        subprocess.run([python, "sums.py"], cwd=work, check=True)
        logs = sorted((Path(work) / "logs").glob("*.eval"))
        target = FIXTURES / "inspect"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy(logs[-1], target / "sums.eval")
        print("wrote", target / "sums.eval", logs[-1].stat().st_size, "bytes")


def make_verl() -> None:
    """Two training steps and one validation, in the layout verl's trainer dumps (documented keys)."""
    target = FIXTURES / "verl"
    shutil.rmtree(target, ignore_errors=True)
    prompts = [("What is 3 + 4? Answer:", "7"), ("What is 12 + 5? Answer:", "17"), ("What is 23 + 41? Answer:", "64")]
    outputs = {1: ["7", "8", "17", "17", "60", "64"], 2: ["7", "7", "17", "15", "64", "64"]}
    for step, said in outputs.items():
        lines = []
        for i, text in enumerate(said):
            question, gold = prompts[i // 2]  # two rollouts per prompt, one after the other, as verl repeats them
            right = text == gold
            lines.append({"input": question, "output": f" {text}", "gts": gold, "score": 1.0 if right else 0.0,
                          "step": step, "acc": right, "pred": text})
        _write_jsonl(target / "rollout" / f"{step}.jsonl", lines)
    validation = [("What is 30 + 12? Answer:", "42", "42"), ("What is 9 + 9? Answer:", "18", "19")]
    _write_jsonl(target / "validation" / "2.jsonl",
                 [{"input": q, "output": f" {said}", "gts": gold, "score": float(said == gold), "step": 2,
                   "reward": float(said == gold), "acc": said == gold, "pred": said} for q, gold, said in validation])


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    print("wrote", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("trl", "inspect", "verl"))
    parser.add_argument("--inspect-python", default=sys.executable, help="a Python with inspect-ai installed")
    args = parser.parse_args()
    {"trl": make_trl, "verl": make_verl, "inspect": lambda: make_inspect(args.inspect_python)}[args.which]()


if __name__ == "__main__":
    main()
