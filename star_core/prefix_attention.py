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
`shared_prefix=[(k, v) per layer]` to its forward. Without `shared_prefix` the
function falls back to ordinary sdpa attention, so the prefix itself is computed
by the same model.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTENTION = "star_shared_prefix"

PrefixKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (1, kv_heads, P, head_dim) keys and values


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (B, H, q, D)
    key: torch.Tensor,  # (B, Hkv, L, D): the rows' own keys (suffix and new tokens)
    value: torch.Tensor,  # (B, Hkv, L, D)
    attention_mask: torch.Tensor | None,  # additive (B, 1, q, >=L)
    scaling: float,
    dropout: float = 0.0,
    shared_prefix: PrefixKV | None = None,
    **kwargs,
):
    if shared_prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    prefix_k, prefix_v = shared_prefix[module.layer_idx]
    batch, heads, q_len, dim = query.shape
    kv_heads, row_len, prefix_len = key.shape[1], key.shape[2], prefix_k.shape[2]
    group = heads // kv_heads
    # Query heads h = kv * group + j share kv head `kv`: fold the group into the query axis. The scaling goes on
    # the queries, so the additive mask is added to scaled scores, as in sdpa and eager attention.
    q = (query * scaling).reshape(batch, kv_heads, group * q_len, dim)  # (B, Hkv, g*q, D)

    q_flat = q.transpose(0, 1).reshape(kv_heads, batch * group * q_len, dim)  # (Hkv, B*g*q, D)
    prefix_scores = torch.bmm(q_flat, prefix_k[0].transpose(1, 2))  # (Hkv, B*g*q, P)
    prefix_scores = prefix_scores.reshape(kv_heads, batch, group * q_len, prefix_len).transpose(0, 1)
    row_scores = torch.matmul(q, key.transpose(2, 3))  # (B, Hkv, g*q, L)
    if attention_mask is not None:
        mask = attention_mask[:, :, :, -row_len:].to(row_scores.dtype)  # (B, 1, q, L)
        row_scores = (row_scores.view(batch, kv_heads, group, q_len, row_len) + mask[:, :, None]).view_as(row_scores)

    scores = torch.cat([prefix_scores, row_scores], dim=-1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    prefix_probs, row_probs = probs[..., :prefix_len], probs[..., prefix_len:]

    p_flat = prefix_probs.transpose(0, 1).reshape(kv_heads, batch * group * q_len, prefix_len)
    out = torch.bmm(p_flat, prefix_v[0]).reshape(kv_heads, batch, group * q_len, dim).transpose(0, 1)
    out = out + torch.matmul(row_probs, value)  # (B, Hkv, g*q, D)
    out = out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()  # (B, q, H, D)
    return out, None


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


def prefix_kv(model: PreTrainedModel, prefix_ids: list[int]) -> PrefixKV:
    """The prefix's per-layer keys and values (with gradients when grad is enabled)."""
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix_ids], device=device), cache=cache, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]
