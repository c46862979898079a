"""Shared fixtures: a tiny randomly initialised model saved as a real checkpoint folder.

Engine, loop and app tests use it so that they exercise the real code path
(load_model from a local folder, shared-prefix generation, fine-tuning) in
seconds. Its tokenizer is the embedded default's, so prompts tokenize as in a
real run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from dataclasses import dataclass

# A sample of each reference dataset ships in tests/data (tests/data/README.md: the rows and their licences).
SAMPLE_DATASETS = Path(__file__).resolve().parent / "data"
# A folder with the full training splits (gsm8k/train.jsonl, commonsenseqa/train.jsonl): the same tests then
# run on them too. Unset, they run on the sample alone.
DATASETS_ENV = "STAR_DATASETS_DIR"
FULL_ROWS = {"gsm8k": 7473, "commonsenseqa": 9741}


def build_tiny_model(folder: Path, layers: int = 2, seed: int = 0, initializer_range: float = 0.02) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from star_core.model.loading import _dequantized_cache, embedded_gguf_path

    gguf = embedded_gguf_path("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(_dequantized_cache(str(gguf.parent), gguf.name))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True, initializer_range=initializer_range,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a tiny random Llama checkpoint (a `model` value for RunConfig)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    # The dequantized-model cache stays where the user's is, so it is built once per machine.
    # The suite's pytest-xdist processes (pyproject's addopts) split the cores between them.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // workers))
    yield


def pytest_collection_modifyitems(items):
    # The slow tests run whole models in other processes, and two model processes on a 2-core machine
    # slow each other many times over (docs/measurements.md): so they run one after another in one
    # test process, started first, while the other test process takes the quick ones.
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("slow"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _keep_the_main_module():
    # AppTest leaves a page's script as sys.modules["__main__"]; a child started with the "spawn"
    # method afterwards re-runs __main__'s file, so it would run that page and die (NoSessionContext).
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True, scope="session")
def _own_run_queue(tmp_path_factory):
    # The tests' runs (and their workers, which inherit the environment) queue among themselves,
    # not behind the real runs of this machine (star_core/engine/run_queue.py).
    os.environ["STAR_SLOTS"] = str(tmp_path_factory.mktemp("slots"))
    yield


@dataclass(frozen=True)
class ReferenceData:
    """A folder holding gsm8k/train.jsonl and commonsenseqa/train.jsonl, and how many rows each has."""

    folder: Path
    rows: dict

    def path(self, dataset: str) -> Path:
        return self.folder / dataset / "train.jsonl"


def reference_data_sets() -> list[ReferenceData]:
    """The shipped sample, and the full files where STAR_DATASETS_DIR names them (a wrong folder fails, never skips)."""
    sets = [ReferenceData(SAMPLE_DATASETS, {"gsm8k": 40, "commonsenseqa": 40})]
    if os.environ.get(DATASETS_ENV):
        folder = Path(os.environ[DATASETS_ENV]).expanduser()
        missing = [str(folder / d / "train.jsonl") for d in FULL_ROWS if not (folder / d / "train.jsonl").is_file()]
        assert not missing, f"{DATASETS_ENV}={folder} lacks {', '.join(missing)}"
        sets.append(ReferenceData(folder, FULL_ROWS))
    return sets


def pytest_generate_tests(metafunc):
    # A test that takes `reference_data` runs once per data set: always the sample, the full files when given.
    if "reference_data" in metafunc.fixturenames:
        sets = reference_data_sets()
        metafunc.parametrize("reference_data", sets, ids=["sample", "full"][: len(sets)])


def tiny_config(model: str, **overrides):
    """A RunConfig small enough for a loop test to finish in seconds."""
    from star_core.core.config import RunConfig

    # No seed unless a test asks for one, and the prompt in training rows and after training as before the seeded
    # defaults: the loop tests check the paper's loop, iteration 0 few-shot.
    values = dict(model=model, train_size=8, eval_size=4, iterations=1, max_new_tokens=12, min_steps=2,
                  epochs=0.1, gen_batch_size=4, batch_size=4, device="cpu", seed_max_digits=0, train_prefix=True,
                  prompt_trained=True)
    values.update(overrides)
    return RunConfig(**values)


# tiny_config's values as `star run` flags.
TINY_FLAGS = ["--train-size", "8", "--eval-size", "4", "--iterations", "1", "--max-new-tokens", "12", "--min-steps", "2",
              "--epochs", "0.1", "--gen-batch-size", "4", "--batch-size", "4", "--device", "cpu", "--seed-max-digits", "0",
              "--train-prefix", "--prompt-trained"]


def star(capsys, *args: str) -> tuple[int, str, str]:
    """`star ARGS` in this process: its exit code, stdout and stderr."""
    from star_core.cli.commands import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
