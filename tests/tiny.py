"""A tiny random Llama with the embedded model's tokenizer, run settings small enough for seconds, and `star`
in this process: what tests in every folder (and scripts/soak.py, bench/concurrency.py) build on."""

from __future__ import annotations

from pathlib import Path

import torch


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


# A run that fine-tunes until stopped, whatever the random tiny model answers: it keeps none of its own rationales
# (on either dtype), so only the seed's exact rationales make its first fine-tuning happen, and never end.
TRAINS_UNTIL_STOPPED = dict(seed_max_digits=1, min_steps=100_000)


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
