"""Batched decoding that computes the shared few-shot prefix once.

Every question of a phase is prompted with the same few-shot prefix, and the
prefix is most of the prompt. So the prefix's key/value cache is computed once
per phase and copied into each batch; only the short per-question suffixes and
the new tokens go through the model. Rows leave the batch as soon as they have
written their stop text, so finished rows cost nothing (no padding waste).

Row layout inside a batch (P prefix tokens, suffixes left-padded to S tokens):

    [prefix ... P][pad ... pad | suffix tokens][new tokens ...]
     attended       masked       attended        attended

Position ids skip the pads, so each row sees exactly the positions it would see
alone: the result matches one-prompt-at-a-time decoding.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .loading import LoadedModel
from .prefix_attention import SharedPrefix, prefix_kv, use_shared_prefix_attention
from ..tasks.base import STOP_TEXT


# Prefix variants kept between batches (PrefixGenerator._shared_prefix): ~12 MB each for SmolLM2 and 256 tokens.
MAX_VARIANTS = 16


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0


@dataclass
class Completion:
    text: str  # the new text, up to and including the stop text when it was written
    prompt_tokens: int  # this question's own prompt tokens (the shared prefix is counted once per phase)
    new_tokens: int
    seconds: float  # this row's share of its batch's wall time
    token_ids: tuple[int, ...] = ()  # the new tokens themselves (the stop text's included, EOS not)


@dataclass
class GenerationStats:
    prefix_tokens: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "GenerationStats") -> None:
        self.prefix_tokens += other.prefix_tokens
        self.prompt_tokens += other.prompt_tokens
        self.new_tokens += other.new_tokens
        self.seconds += other.seconds


def autocast(lm: LoadedModel):
    """bf16 autocast for float32 weights where the model runs in bf16 (model.use_bf16); a no-op context elsewhere."""
    if lm.bf16 and next(lm.model.parameters()).dtype == torch.float32:
        return torch.autocast(lm.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_prefix(lm: LoadedModel, prefix: str) -> list[int]:
    """Prefix token ids, with the tokenizer's BOS token where it uses one."""
    return lm.tokenizer(prefix, add_special_tokens=True).input_ids


def encode_piece(lm: LoadedModel, text: str) -> list[int]:
    """Token ids of a piece that follows other text (no BOS)."""
    return lm.tokenizer(text, add_special_tokens=False).input_ids


class PrefixGenerator:
    """Decode many suffixes that all follow one shared prefix."""

    def __init__(self, lm: LoadedModel, prefix: str, decoding: Decoding, seed: int = 0):
        self.lm = lm
        self.decoding = decoding
        self.prefix_ids = encode_prefix(lm, prefix)
        self.generator = torch.Generator(device=lm.device).manual_seed(seed)
        self.stats = GenerationStats(prefix_tokens=len(self.prefix_ids))
        tok = lm.tokenizer
        self._newline_ids = {i for t, i in tok.get_vocab().items() if "\n" in tok.convert_tokens_to_string([t])}
        self._eos_ids = _eos_ids(lm)
        use_shared_prefix_attention(lm.model)
        self._per_length = prefix_depends_on_length(lm)
        self._variants: dict[int, SharedPrefix] = {}  # question length -> the prefix computed before it
        self._prefix = None
        if self.prefix_ids and not self._per_length:  # no prefix (no exemplars, no BOS): plain attention
            started = time.perf_counter()
            with torch.inference_mode():
                self._prefix = prefix_kv(lm.model, self.prefix_ids)
            self.stats.seconds += time.perf_counter() - started

    def generate(self, suffixes: list[str], seed: int | None = None) -> list[Completion]:
        """One completion per suffix. `seed` reseeds sampling first, so that a batch's samples depend on
        its own seed only, not on the batches decoded before it (greedy decoding uses no randomness)."""
        if not suffixes:
            return []
        if seed is not None:
            self.generator.manual_seed(seed)
        started = time.perf_counter()
        ids = [encode_piece(self.lm, s) for s in suffixes]
        # Rows reading one prefix variant go next to each other (SharedPrefix.stacked); each row decodes alone.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if self._per_length else list(range(len(ids)))
        with torch.inference_mode():
            decoded = self._decode([ids[i] for i in order])
        rows = [decoded[order.index(i)] for i in range(len(ids))]
        elapsed = time.perf_counter() - started
        out = []
        total_new = sum(len(r[1]) for r in rows) or 1
        for suffix_ids, new_ids in rows:
            text = self.lm.tokenizer.decode(new_ids, skip_special_tokens=True)
            out.append(Completion(text, len(suffix_ids), len(new_ids), elapsed * len(new_ids) / total_new, tuple(new_ids)))
        self.stats.add(GenerationStats(0, sum(len(r[0]) for r in rows), sum(len(r[1]) for r in rows), elapsed))
        return out

    # -----------------------------------------------------------------------

    def _decode(self, suffix_ids: list[list[int]]) -> list[tuple[list[int], list[int]]]:
        device, model = self.lm.device, self.lm.model
        batch, prefix_len = len(suffix_ids), len(self.prefix_ids)
        width = max(len(s) for s in suffix_ids)
        pad = self.lm.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffix_ids], device=device)  # (B, S)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffix_ids], device=device)  # (B, S)
        # Positions continue after the prefix and skip the pads.
        positions = (prefix_len + mask.cumsum(dim=1) - 1).clamp(min=prefix_len)  # (B, S)
        cache = DynamicCache(config=model.config)  # the rows' own keys only; the prefix is shared
        alive = list(range(batch))  # original row index of each row still decoding
        new_ids: list[list[int]] = [[] for _ in range(batch)]
        next_pos = positions[:, -1:] + 1  # (B, 1)
        shared = self._shared_prefix([len(s) for s in suffix_ids])

        logits = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, shared_prefix=shared
        ).logits[:, -1, :]
        for _ in range(self.decoding.max_new_tokens):
            tokens = self._pick(logits)  # (B_alive,)
            finished = set()
            for row, token in enumerate(tokens.tolist()):
                original = alive[row]
                if token in self._eos_ids:
                    finished.add(row)
                    continue
                new_ids[original].append(token)
                if token in self._newline_ids and STOP_TEXT in self.lm.tokenizer.decode(new_ids[original][-8:]):
                    finished.add(row)
            if len(finished) == len(alive):
                break
            if finished:
                keep = [r for r in range(len(alive)) if r not in finished]
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
                shared = shared.rows(keep) if shared is not None else None
                alive = [alive[r] for r in keep]
            mask = torch.cat([mask, torch.ones(len(alive), 1, dtype=mask.dtype, device=device)], dim=1)
            logits = model(
                input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos, cache=cache, shared_prefix=shared
            ).logits[:, -1, :]
            next_pos = next_pos + 1
        return list(zip(suffix_ids, new_ids))

    def _shared_prefix(self, lengths: list[int]) -> SharedPrefix | None:
        """The prefix the batch's rows read, of questions `lengths` tokens long: one for all, or a variant each."""
        if not self.prefix_ids or not self._per_length:
            return self._prefix
        wanted = sorted(set(lengths))
        for n in wanted:
            if n not in self._variants:
                self._variants[n] = prefix_kv(self.lm.model, self.prefix_ids, followed_by=n)
        for n in [n for n in self._variants if n not in wanted][: max(len(self._variants) - MAX_VARIANTS, 0)]:
            del self._variants[n]  # the oldest first: a bound on memory where question lengths vary (GSM8K)
        return SharedPrefix.stacked([self._variants[n] for n in wanted], [wanted.index(n) for n in lengths])

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token per row: greedy at temperature 0, else nucleus sampling."""
        if self.decoding.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / self.decoding.temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.decoding.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=self.generator)
        return order.gather(-1, choice).squeeze(-1)


def prefix_depends_on_length(lm: LoadedModel) -> bool:
    """On a CPU in bf16 the prefix's keys depend on the whole prompt's length (prefix_kv): one variant per question
    length, each row reading its own, makes them the keys one-prompt `generate` computes (measured on SmolLM2:
    82 of 96 completions identical to it this way, 78 with one prefix; docs/measurements.md)."""
    return lm.bf16 and lm.device.type == "cpu"


def _eos_ids(lm: LoadedModel) -> set[int]:
    eos = lm.model.generation_config.eos_token_id if lm.model.generation_config else None
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if lm.tokenizer.eos_token_id is not None:
        ids.add(lm.tokenizer.eos_token_id)
    return ids
