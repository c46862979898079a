"""Attention in bf16, rounded as torch's CPU flash-attention kernel rounds it.

One-prompt `generate` runs sdpa, which on a CPU runs torch's flash-attention kernel. In bf16 that kernel
scores, sums and multiplies by V in float32, but it is not a plain float32 softmax:

  * keys are taken in blocks of 512 with an online softmax: a block's exponentials are taken against the
    largest score seen so far, and the output and sum gathered before it are rescaled when the block holds a
    larger one;
  * each whole vector of a block (16 floats with AVX-512, 8 with AVX2) takes a fast exp (`fexp_u20`), the
    block's last length % lanes keys the exact one;
  * the exponentials are rounded to bf16 for the product with V, the sum is taken before that rounding, and the
    product is multiplied by the sum's reciprocal last.

Done the same way, with each key at its place in the row's own sequence (pads excluded), the shared-prefix
decoder's attention equals sdpa's on the same keys, all but ~0.5% of elements bit for bit
(tests/model/test_exactness.py). With the prefix computed at each question's length (prefix_kv), the decoder
writes what one-prompt `generate` writes on 82 of the default run's 96 eval prompts, against 78 before and 79
for batched `generate`, for about a quarter of its bf16 decoding speed
(docs/measurements.md#2026-12-08-the-bf16-decoder-rounds-as-sdpa-and-reads-the-prefix-of-its-length).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import torch

KV_BLOCK = 512  # the kernel's keys per block (kv_split_size)
KERNEL_READ_FROM = "2.13"  # the torch release whose kernel (ATen/native/cpu/FlashAttentionKernel.cpp) this follows


def _f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


_LOG2E = _f32(0x3FB8AA3B)
_LN_FLT_MIN, _LN_FLT_MAX = _f32(0xC2AEAC50), _f32(0x42B17218)
# The cubic of fexp_u20 (torch's Vectorized<float>), as the float32 constants it uses.
_C0, _C1, _C2, _C3 = (float(torch.tensor(c, dtype=torch.float32)) for c in
                      (0.00010703434948458272, 0.30354260500649682, -0.22433836478672356, -0.079204240219773236))


def vector_lanes() -> int:
    """Floats per vector of the kernel this CPU runs; 0 where its exp is the exact one throughout."""
    return {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), 0)


def _fma(a: torch.Tensor, b, c) -> torch.Tensor:
    """float32 a * b + c rounded once, as a vector FMA. torch's addcmul is one on the CPU (checked against the
    exact float64 result in tests/model/test_exactness.py), at a fifth of the float64 emulation's time."""
    return torch.addcmul(torch.as_tensor(c, dtype=torch.float32), a, torch.as_tensor(b, dtype=torch.float32))


def fexp_u20(x: torch.Tensor) -> torch.Tensor:
    """torch's fast float32 exp for weights rounded to bf16 afterwards: 2**(x log2 e), the fraction of the
    exponent through a cubic, the float assembled from its bits. For x <= 0 (scores less their maximum); larger
    x, keys of a later block the caller drops, come out as garbage."""
    src = x * _LOG2E
    frac = src - torch.floor(src)
    poly = _fma(frac, _C3, _C2)
    poly = _fma(frac, poly, _C1)
    poly = _fma(frac, poly, _C0)
    bits = _fma(src - poly, 2.0**23, 2.0**23 * 127).to(torch.int32)  # the conversion truncates, as cvttps does
    return torch.where(x < _LN_FLT_MIN, 0.0, bits.view(torch.float32))


@dataclass(frozen=True)
class KeyPlaces:
    """Where each key falls in the kernel's work, for the rows of a batch: (B, 1, 1, K) each."""

    exact: torch.Tensor  # the key takes the exact exp (its block's last length % lanes keys), not the fast one
    block: torch.Tensor  # the key's block of KV_BLOCK
    blocks: int


def key_places(positions: torch.Tensor, kv_len: torch.Tensor) -> KeyPlaces:
    """positions: (B, 1, 1, K) each key's place in its row's sequence; kv_len: (B, 1, 1, 1) the row's keys in all,
    as the kernel sees them."""
    lanes = vector_lanes()
    last_block = (kv_len - 1) // KV_BLOCK * KV_BLOCK
    exact_from = kv_len - (kv_len - last_block) % lanes if lanes else torch.zeros_like(kv_len)
    block = positions // KV_BLOCK
    return KeyPlaces(positions >= exact_from, block, int(block.max()) + 1)


def flash_attention_output(scores: torch.Tensor, places: KeyPlaces,
                           product: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """softmax(scores) @ V in float32, rounded on the way as the kernel rounds for `dtype`.

    scores: (B, H, Q, K) float32, scaled, masked keys at a very negative value; places: key_places() of the
    keys; product: weights (B, H, Q, K) -> weights @ V (B, H, Q, D), in float32.
    """

    def weights(shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = scores - shift
        e = torch.where(places.exact, torch.exp(x), fexp_u20(x))
        return e.to(dtype).float(), e

    if places.blocks == 1:
        rounded, e = weights(scores.amax(dim=-1, keepdim=True))
        return product(rounded) * (1 / e.sum(dim=-1, keepdim=True))
    out = total = running = None
    for b in range(places.blocks):  # the online softmax, one block of keys after the other
        inside = places.block == b
        block_max = torch.where(inside, scores, -torch.inf).amax(dim=-1, keepdim=True)
        new_max = block_max if running is None else torch.maximum(running, block_max)
        rounded, e = weights(new_max)
        part_out = product(torch.where(inside, rounded, 0.0))
        part_sum = torch.where(inside, e, 0.0).sum(dim=-1, keepdim=True)
        if out is None:
            out, total = part_out, part_sum
        else:
            rescale = torch.exp(running - new_max)
            out, total = out * rescale + part_out, part_sum + rescale * total
        running = new_max
    return out * (1 / total)
