"""Attention over a shared prefix that is stored once, not once per row.

Every prompt of a phase starts with the same few-shot prefix (~300 tokens), and
the per-question part is short (~20 tokens + the rationale). Copying the
prefix's keys and values into every row makes decoding memory-bound: on a
2-core CPU each step re-copies batch x prefix x layers of cache (measured:
~4 ms per row per step, 60% of the time in cat/copy). Here the prefix K/V live
once per layer, shape (1, kv_heads, P, head_dim); each row's queries attend to
them through one GEMM for the whole batch, and to the row's own keys through a
small batched matmul, with a single softmax over both.

Use: register once (`register()`), switch a model to ATTENTION, and pass
`shared_prefix=prefix_kv(...)` to its forward. Without `shared_prefix` the
function falls back to ordinary sdpa attention (or the model's own eager one where
it softcaps or has sinks, which sdpa lacks), so the prefix itself is computed by
the same model.

The model's attention options are honoured, each tested against plain attention
on a tiny model of the family that uses it (tests/model/test_exactness.py): sliding
windows (Gemma 2 and 3: prefix keys a window or more behind the query are masked;
the row's own keys come masked by the model), logit softcapping (Gemma 2) and
attention sinks (gpt-oss).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from ..core.errors import ModelLoadError

ATTENTION = "star_shared_prefix"


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix's keys and values, per layer (1, kv_heads, stored, head_dim), and its length in tokens.

    A sliding-window layer's cache keeps only the prefix's last window - 1 tokens, so `stored` can be less
    than `length`; stored key i sits at position length - stored + i.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    length: int


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, q, D)
    key: torch.Tensor,  # (B, Hkv, L, D): the rows' own keys (suffix and new tokens)
    value: torch.Tensor,  # (B, Hkv, L, D)
    attention_mask: torch.Tensor | None,  # additive (B, 1, q, >=L); a sliding layer's mask already has its window
    scaling: float,
    dropout: float = 0.0,
    shared_prefix: SharedPrefix | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    s_aux: torch.Tensor | None = None,  # attention sinks (gpt-oss): one logit per query head, outside every key
    **kwargs,
):
    options = {"sliding_window": sliding_window, "softcap": softcap, "s_aux": s_aux}
    if shared_prefix is None:
        if softcap is not None or s_aux is not None:  # sdpa has neither: the model's own eager function does both
            return _eager(module)(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                  **options, **kwargs)
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      sliding_window=sliding_window, **kwargs)
    out_dtype = query.dtype
    # Scores and both halves of the output accumulate in float32, as sdpa's kernel does (_softmax_as_sdpa says how
    # the weights are rounded). Autocast would send the matmuls back to bf16, so it is off in here.
    with torch.autocast(query.device.type, enabled=False):
        out = _attend(module, query.float(), key.float(), value.float(), attention_mask, scaling, dropout,
                      shared_prefix, sliding_window, softcap, s_aux, kwargs.get("position_ids"), out_dtype)
    return out.to(out_dtype), None


def _attend(module, query, key, value, attention_mask, scaling, dropout, shared_prefix, sliding_window, softcap, s_aux,
            position_ids, weights_dtype):
    prefix_k, prefix_v = shared_prefix.layers[module.layer_idx]  # float32 already (prefix_kv)
    batch, heads, q_len, dim = query.shape
    kv_heads, row_len, stored = key.shape[1], key.shape[2], prefix_k.shape[2]
    group = heads // kv_heads
    # Query heads h = kv * group + j share kv head `kv`: fold the group into the query axis. The scaling goes on
    # the queries, so the additive mask is added to scaled scores, as in sdpa and eager attention.
    q = (query * scaling).reshape(batch, kv_heads, group * q_len, dim)  # (B, Hkv, g*q, D)

    q_flat = q.transpose(0, 1).reshape(kv_heads, batch * group * q_len, dim)  # (Hkv, B*g*q, D)
    prefix_scores = torch.bmm(q_flat, prefix_k[0].transpose(1, 2))  # (Hkv, B*g*q, P)
    prefix_scores = prefix_scores.reshape(kv_heads, batch, group * q_len, stored).transpose(0, 1)
    row_scores = torch.matmul(q, key.transpose(2, 3))  # (B, Hkv, g*q, L)
    if softcap is not None:  # Gemma 2: capped before the mask, as in its eager attention
        prefix_scores = torch.tanh(prefix_scores / softcap) * softcap
        row_scores = torch.tanh(row_scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, :, -row_len:].to(row_scores.dtype)  # (B, 1, q, L)
        row_scores = (row_scores.view(batch, kv_heads, group, q_len, row_len) + mask[:, :, None]).view_as(row_scores)
    if sliding_window is not None:
        prefix_scores = _outside_window_masked(prefix_scores, shared_prefix.length, stored, sliding_window,
                                               position_ids, group)

    parts = [prefix_scores, row_scores]
    if s_aux is not None:  # one more logit per query head, dropped after the softmax
        sinks = s_aux.float().reshape(1, kv_heads, group, 1, 1).expand(batch, -1, -1, q_len, 1)
        parts.append(sinks.reshape(batch, kv_heads, group * q_len, 1))
    weights, total = _softmax_as_sdpa(torch.cat(parts, dim=-1), weights_dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    prefix_probs, row_probs = weights[..., :stored], weights[..., stored : stored + row_len]

    p_flat = prefix_probs.transpose(0, 1).reshape(kv_heads, batch * group * q_len, stored)
    out = torch.bmm(p_flat, prefix_v[0]).reshape(kv_heads, batch, group * q_len, dim).transpose(0, 1)
    out = out + torch.matmul(row_probs, value)  # (B, Hkv, g*q, D)
    if total is not None:
        out = out / total
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()  # (B, q, H, D)


def _softmax_as_sdpa(scores: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention weights to multiply V by, and what to divide the product by (None: nothing), from float32
    scores.

    In a reduced dtype, as torch's CPU flash-attention kernel (the one sdpa runs under `generate`) does: float32
    exponentials and their sum, the exponentials rounded to the dtype for the product with V, the division last.
    Measured on SmolLM2 in bf16, 16 eval prompts: 14 of 16 completions identical to one-prompt `generate` this way,
    12 with every step in float32, 11 for batched `generate`
    (docs/measurements.md#2026-12-03-bf16-decoding-and-training). In float32 the rounding is
    none, and a normalized softmax matches eager attention's gradients to 1e-5 where dividing last does not.
    """
    if dtype == torch.float32:
        return torch.softmax(scores, dim=-1), None
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return weights.to(dtype).float(), weights.sum(dim=-1, keepdim=True)


def _outside_window_masked(scores, prefix_len, stored, window, position_ids, group):
    """Prefix scores with the keys at `window` or more positions behind their query masked, as the model's own
    sliding-window mask does for keys in the cache (key position > query position - window)."""
    if position_ids is None:
        raise ModelLoadError(
            "shared-prefix attention needs the queries' positions for a sliding-window layer, and this model does "
            "not pass position_ids to its attention; run it with attention 'sdpa' instead"
        )
    key_pos = torch.arange(prefix_len - stored, prefix_len, device=scores.device)  # (P,)
    query_pos = position_ids.to(scores.device).repeat(1, group)  # (B, g*q): the folded layout, group-major
    outside = key_pos[None, None, :] <= query_pos[:, :, None] - window  # (B, g*q, P)
    return scores.masked_fill(outside[:, None], torch.finfo(scores.dtype).min)


def _eager(module: torch.nn.Module):
    """The eager attention function of the module's own model family (it knows its softcap or sinks)."""
    return sys.modules[type(module).__module__].eager_attention_forward


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        AttentionInterface.register(ATTENTION, shared_prefix_attention)
        AttentionMaskInterface.register(ATTENTION, eager_mask)
        _registered = True


def use_shared_prefix_attention(model: PreTrainedModel) -> None:
    register()
    model.set_attn_implementation(ATTENTION)


def prefix_kv(model: PreTrainedModel, prefix_ids: list[int]) -> SharedPrefix:
    """The prefix's per-layer keys and values (with gradients when grad is enabled)."""
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix_ids], device=device), cache=cache, use_cache=True)
    # In float32 once, as the attention reads them, not once per layer and step.
    return SharedPrefix([(layer.keys.float(), layer.values.float()) for layer in cache.layers], len(prefix_ids))
