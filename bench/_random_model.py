"""A randomly initialised Llama model saved as a checkpoint folder, for the benchmarks that need no trained weights.

Its tokenizer is the embedded default's, so prompts tokenize as in a real run and nothing
is downloaded. A random model's completions are noise, but they cost what real ones cost:
the same shapes go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


TINY = Size(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64)  # as the tests' model
SMALL = Size(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384)  # ~7 M parameters with the 49k vocabulary
# ~100 M parameters with SmolLM2's 49,152-token vocabulary (tied embeddings: 38 M of them), GPT-2-small-like depth.
M100 = Size(hidden=768, layers=12, heads=12, kv_heads=4, intermediate=2048)


def build_random_model(folder: Path, size: Size, seed: int = 0, tokenizer_of: str = "smollm2-135m") -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from star_core.model.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_of)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.intermediate,
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
        max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def parameters(folder: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())
