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

On a CPU in bf16 the decoder rounds as torch's flash kernel (flash_rounding.py),
and since that kernel's work, and so the prefix's keys, depend on the whole
prompt's length, a batch may hold several variants of the prefix, each computed
before questions of one length, every row reading its own (SharedPrefix.variant).
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from ..core.errors import ModelLoadError
from .flash_rounding import KeyPlaces, flash_attention_output, key_places

ATTENTION = "star_shared_prefix"


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix's keys and values, per layer (variants, kv_heads, stored, head_dim), and its length in tokens.

    A sliding-window layer's cache keeps only the prefix's last window - 1 tokens, so `stored` can be less
    than `length`; stored key i sits at position length - stored + i. With several variants (the prefix as
    computed before prompts of different lengths, prefix_kv's `followed_by`), `variant` says which one each row
    of the batch reads, the rows of one variant next to each other; None: one for all.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    length: int
    variant: tuple[int, ...] | None = None

    @staticmethod
    def stacked(variants: list["SharedPrefix"], variant: list[int]) -> "SharedPrefix":
        """One prefix holding `variants`, row i reading variants[variant[i]] (rows of one variant together)."""
        if len(variants) == 1:
            return variants[0]
        if list(variant) != sorted(variant):
            raise ValueError("the rows of one prefix variant must be next to each other")
        layers = [tuple(torch.cat(parts) for parts in zip(*same_layer)) for same_layer in
                  zip(*(v.layers for v in variants))]
        return SharedPrefix(layers, variants[0].length, tuple(variant))

    def rows(self, keep: list[int]) -> "SharedPrefix":
        """The same prefix for the rows `keep` (ascending) of the batch: the ones still decoding."""
        if self.variant is None:
            return self
        return SharedPrefix(self.layers, self.length, tuple(self.variant[i] for i in keep))

    @cached_property
    def spans(self) -> list[tuple[int, int, int]]:
        """(variant, first row, row after the last) of each variant the batch reads; (0, 0, None): all rows."""
        if self.variant is None:
            return [(0, 0, None)]
        starts = [i for i, v in enumerate(self.variant) if i == 0 or v != self.variant[i - 1]]
        return [(self.variant[i], i, end) for i, end in zip(starts, starts[1:] + [len(self.variant)])]


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
    # Scores and both halves of the output accumulate in float32, as sdpa's kernel does (flash_rounding and
    # _softmax_as_sdpa say how the weights are rounded). Autocast would send the matmuls back to bf16: off in here.
    with torch.autocast(query.device.type, enabled=False):
        out = _attend(module, query.float(), key.float(), value.float(), attention_mask, scaling, dropout,
                      shared_prefix, sliding_window, softcap, s_aux, kwargs.get("position_ids"), out_dtype)
    return out.to(out_dtype), None


def _attend(module, query, key, value, attention_mask, scaling, dropout, shared_prefix, sliding_window, softcap, s_aux,
            position_ids, weights_dtype):
    prefix_k, prefix_v = shared_prefix.layers[module.layer_idx]  # float32 already (prefix_kv); one per variant
    batch, heads, q_len, dim = query.shape
    kv_heads, row_len, stored = key.shape[1], key.shape[2], prefix_k.shape[2]
    group = heads // kv_heads
    # Query heads h = kv * group + j share kv head `kv`: fold the group into the query axis. The scaling goes on
    # the scores, before the additive mask, as in sdpa's kernel and eager attention.
    q = query.reshape(batch, kv_heads, group * q_len, dim)  # (B, Hkv, g*q, D)

    spans = shared_prefix.spans
    prefix_scores = _per_variant(spans, q, lambda rows, v: _by_kv_head(rows, prefix_k[v].transpose(1, 2))) * scaling
    row_scores = torch.matmul(q, key.transpose(2, 3)) * scaling  # (B, Hkv, g*q, L)
    if softcap is not None:  # Gemma 2: capped before the mask, as in its eager attention
        prefix_scores = torch.tanh(prefix_scores / softcap) * softcap
        row_scores = torch.tanh(row_scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, :, -row_len:].to(row_scores.dtype)  # (B, 1, q, L)
        row_scores = (row_scores.view(batch, kv_heads, group, q_len, row_len) + mask[:, :, None]).view_as(row_scores)
    if sliding_window is not None:
        prefix_scores = _outside_window_masked(prefix_scores, shared_prefix.length, stored, sliding_window,
                                               position_ids, group)

    def product(weights):  # weights over (prefix, row) keys -> weights @ V, the prefix's half one GEMM per variant
        out = _per_variant(spans, weights[..., :stored], lambda rows, v: _by_kv_head(rows, prefix_v[v]))
        return out + torch.matmul(weights[..., stored : stored + row_len], value)  # (B, Hkv, g*q, D)

    if (weights_dtype != torch.float32 and softcap is None and s_aux is None and query.device.type == "cpu"
            and not torch.is_grad_enabled()):
        # Decoding, where one-prompt `generate` runs torch's CPU flash kernel: rounded as it rounds, each key at its
        # place (its fast exp has no gradient; training keeps the rounding below)
        places = _key_places(shared_prefix, stored, row_len, position_ids, batch, query.device)
        out = flash_attention_output(torch.cat([prefix_scores, row_scores], dim=-1), places, product, weights_dtype)
        return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()

    parts = [prefix_scores, row_scores]
    if s_aux is not None:  # one more logit per query head, dropped after the softmax
        sinks = s_aux.float().reshape(1, kv_heads, group, 1, 1).expand(batch, -1, -1, q_len, 1)
        parts.append(sinks.reshape(batch, kv_heads, group * q_len, 1))
    weights, total = _softmax_as_sdpa(torch.cat(parts, dim=-1), weights_dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = product(weights)
    if total is not None:
        out = out / total
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()  # (B, q, H, D)


def _by_kv_head(rows: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """rows (B, Hkv, n, m) @ right (Hkv, m, k) for every row, as one GEMM per kv head: (B, Hkv, n, k)."""
    batch, kv_heads, n, m = rows.shape
    flat = rows.transpose(0, 1).reshape(kv_heads, batch * n, m)
    return torch.bmm(flat, right).reshape(kv_heads, batch, n, right.shape[-1]).transpose(0, 1)


def _per_variant(spans, rows: torch.Tensor, compute) -> torch.Tensor:
    """compute(rows of one variant, variant) for each variant's rows, in the batch's order."""
    parts = [compute(rows[start:end], variant) for variant, start, end in spans]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


# key_places of the last forward pass, by its position_ids tensor: every layer of one pass is given the same one.
_last_places: list = [lambda: None, None, None]  # [weak reference to position_ids, shape, KeyPlaces]


def _key_places(shared_prefix, stored, row_len, position_ids, batch, device) -> KeyPlaces:
    """key_places of the prefix's keys and the rows' own: the prefix's stored keys end at its length, a row's own
    keys end at its last query (the pads before them are masked)."""
    shape = (shared_prefix.length, stored, row_len, batch)
    if position_ids is not None and _last_places[0]() is position_ids and _last_places[1] == shape:
        return _last_places[2]
    if position_ids is None:  # no pads to skip: the rows are as long as their keys
        kv_len = torch.full((batch,), shared_prefix.length + row_len, device=device)
    else:
        kv_len = position_ids[:, -1].to(device) + 1
    prefix_pos = torch.arange(shared_prefix.length - stored, shared_prefix.length, device=device).expand(batch, -1)
    row_pos = kv_len[:, None] - row_len + torch.arange(row_len, device=device)
    places = key_places(torch.cat([prefix_pos, row_pos], dim=-1)[:, None, None, :], kv_len[:, None, None, None])
    if position_ids is not None:
        _last_places[:] = [weakref.ref(position_ids), shape, places]
    return places


def _softmax_as_sdpa(scores: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention weights to multiply V by, and what to divide the product by (None: nothing), from float32
    scores.

    In a reduced dtype, where flash_rounding does not stand in (training, softcapping, sinks, other devices), as
    torch's flash-attention kernel does in outline: float32 exponentials and their sum, the exponentials rounded to
    the dtype for the product with V, the division last.
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


def prefix_kv(model: PreTrainedModel, prefix_ids: list[int], followed_by: int = 0) -> SharedPrefix:
    """The prefix's per-layer keys and values (with gradients when grad is enabled), as the model computes them
    with `followed_by` more tokens after the prefix: a CPU's bf16 attention kernel cuts its work by the whole
    sequence's length, so the prefix's keys from layer 1 on depend on it (the filler tokens themselves do not
    matter: no prefix token sees them)."""
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    ids = prefix_ids + prefix_ids[-1:] * followed_by
    model(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True)
    if followed_by and any(layer.keys.shape[2] < len(ids) for layer in cache.layers):
        return prefix_kv(model, prefix_ids)  # a sliding window let go of prefix keys the rows still read
    stored = [layer.keys.shape[2] - followed_by for layer in cache.layers]  # followed by none, a window may cut
    # In float32 once, as the attention reads them, not once per layer and step.
    return SharedPrefix([(layer.keys[:, :, :n].float(), layer.values[:, :, :n].float())
                         for layer, n in zip(cache.layers, stored)], len(prefix_ids))
