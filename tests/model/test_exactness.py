"""The fast paths compute exactly what the plain ones do.

Three hand-written pieces produce every figure STaR Studio prints: the batched
shared-prefix decoder, the shared-prefix attention under it, and the
completion-only fine-tuning loss with the prefix computed once. Each is checked
here against the reference a user would trust: `transformers`' own `generate`
on the concatenated prompt, ordinary attention over the concatenated keys and
values, and the plain causal-LM loss on full sequences.

The models are tiny, random and float32, built in the test. Their weights are
drawn with a large initializer range so that greedy outputs differ from row to
row (with the usual 0.02 a random model repeats one token forever, and any
decoder would "match"); each test checks that its outputs are diverse before
comparing them.
"""

from __future__ import annotations

import types

import pytest
import torch

from star_core.model.finetune import IGNORE, Example, _encode, _loss, _with_lora
from star_core.model import generate as generate_module
from star_core.model.flash_rounding import KERNEL_READ_FROM, _fma
from star_core.model.generate import Decoding, PrefixGenerator, encode_piece, encode_prefix
from star_core.model.loading import (BF16_ENV, DEFAULT_MODEL, LoadedModel, cpu_has_fast_bf16, load_model,
                                     load_tokenizer)
from star_core.model.prefix_attention import (SharedPrefix, prefix_kv, shared_prefix_attention,
                                              use_shared_prefix_attention)
from star_core.tasks.base import STOP_TEXT, cut_at_stop

PREFIX = (
    "Question: 2 + 3 = ?\nAnswer: 2 + 3 = 5. The answer is 5.\n\n"
    "Question: 14 + 21 = ?\nAnswer: 14 + 21 = 30 + 5 = 35. The answer is 35.\n\n"
)
# Different lengths, so the batch is left-padded.
SUFFIXES = [
    "Question: 5 + 3 = ?\nAnswer:",
    "Question: 123 + 4567 = ?\nAnswer:",
    "Question: 7 + 80 = ?\nAnswer:",
    "Question: what is 19 plus 23, written out in words?\nAnswer:",
    "Question: 10 + 200 = ?\nAnswer:",
]
NEW_TOKENS = 20

# (layers, attention heads, key/value heads): grouped-query attention with groups of 2 and 4, and plain multi-head.
CONFIGS = [(3, 4, 2), (2, 4, 4), (4, 8, 2)]


@pytest.fixture(scope="module")
def tokenizer():
    tok = load_tokenizer(DEFAULT_MODEL)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_lm(tokenizer, layers: int, heads: int, kv_heads: int, seed: int = 0, initializer_range: float = 0.3) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        # Untied, so the output rows of EOS and of the stop text can be steered without touching the inputs.
        tie_word_embeddings=False, initializer_range=initializer_range,
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec="tiny", device=torch.device("cpu"))


# --- references --------------------------------------------------------------


def eos_ids(lm: LoadedModel) -> set[int]:
    eos = lm.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) | {lm.tokenizer.eos_token_id}


def apply_stop_rule(lm: LoadedModel, ids: list[int]) -> list[int]:
    """A completion as the decoder reports it: up to EOS (excluded) or the first stop text (included)."""
    out: list[int] = []
    for token in ids:
        if token in eos_ids(lm):
            break
        out.append(token)
        if STOP_TEXT in lm.tokenizer.decode(out):
            break
    return out


def generate_one_by_one(lm: LoadedModel, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """transformers' greedy `generate`, one unpadded prompt at a time."""
    lm.model.set_attn_implementation("sdpa")
    out = []
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            y = lm.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                                  do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
            out.append(apply_stop_rule(lm, y[0, x.shape[1]:].tolist()))
    return out


def generate_batched(lm: LoadedModel, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """transformers' greedy `generate` on the whole batch, left-padded as a user would batch it."""
    lm.model.set_attn_implementation("sdpa")
    width, pad = max(map(len, prompts)), lm.tokenizer.pad_token_id
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        y = lm.model.generate(input_ids=x, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
    return [apply_stop_rule(lm, row[width:].tolist()) for row in y]


def steer(lm: LoadedModel, target: int, like: int, margin: float = 1.05) -> None:
    """Make `target` the greedy choice wherever `like` was: its output row becomes `like`'s, slightly longer.

    `like`'s logit is positive where it wins the argmax over ~49k tokens, so the scaled copy wins there by
    5% of a logit: far above float32 noise, so no comparison hangs on a near tie.
    """
    with torch.no_grad():
        head = lm.model.get_output_embeddings().weight
        head[target] = head[like] * margin


def with_early_stops(lm: LoadedModel, prompts: list[list[int]]) -> None:
    """Steer the random model so that one row writes the stop text and another EOS, at different steps."""
    free = generate_one_by_one(lm, prompts, NEW_TOKENS)
    stop_id = lm.tokenizer.convert_tokens_to_ids(lm.tokenizer.tokenize(STOP_TEXT))
    assert len(stop_id) == 1, "the stop text is one token in this vocabulary"
    # A token row 1 writes for the first time at step 5 becomes the stop text; one row 3 first writes at step 10, EOS.
    steer(lm, stop_id[0], _first_new(free[1], 5))
    steer(lm, lm.tokenizer.eos_token_id, _first_new(free[3], 10))


def _first_new(ids: list[int], step: int) -> int:
    return next(t for i, t in enumerate(ids) if i >= step and t not in ids[:i])


def assert_diverse(lm: LoadedModel, completions: list[list[int]]) -> None:
    """The comparison has teeth: rows differ, some stop early (by the stop text and by EOS), some run to the end."""
    assert len({tuple(c) for c in completions}) == len(completions), completions
    texts = [lm.tokenizer.decode(c) for c in completions]
    assert any(t.endswith(STOP_TEXT) and len(c) < NEW_TOKENS for t, c in zip(texts, completions)), texts
    assert any(not t.endswith(STOP_TEXT) and len(c) < NEW_TOKENS for t, c in zip(texts, completions)), texts  # EOS
    assert any(len(c) == NEW_TOKENS for c in completions), completions
    assert len({len(c) for c in completions}) >= 3


# --- the decoder -----------------------------------------------------------------


@pytest.mark.parametrize("layers, heads, kv_heads", CONFIGS)
def test_prefix_decoder_matches_generate_token_for_token(tokenizer, layers, heads, kv_heads):
    lm = tiny_lm(tokenizer, layers, heads, kv_heads, seed=layers)
    prefix_ids = encode_prefix(lm, PREFIX)
    prompts = [prefix_ids + encode_piece(lm, s) for s in SUFFIXES]
    assert len({len(p) for p in prompts}) == len(prompts)  # every row padded differently
    with_early_stops(lm, prompts)
    one_by_one = generate_one_by_one(lm, prompts, NEW_TOKENS)
    batched = generate_batched(lm, prompts, NEW_TOKENS)
    assert_diverse(lm, one_by_one)

    completions = PrefixGenerator(lm, PREFIX, Decoding(max_new_tokens=NEW_TOKENS)).generate(SUFFIXES)

    ours = [list(c.token_ids) for c in completions]
    assert ours == one_by_one
    assert ours == batched
    assert [c.text for c in completions] == [tokenizer.decode(ids, skip_special_tokens=True) for ids in one_by_one]
    assert [c.new_tokens for c in completions] == [len(ids) for ids in one_by_one]
    assert [c.prompt_tokens for c in completions] == [len(p) - len(prefix_ids) for p in prompts]


def test_prefix_decoder_matches_generate_batch_after_batch(tokenizer):
    """One generator serves a phase's batches in turn; the shared prefix is not disturbed by earlier ones."""
    lm = tiny_lm(tokenizer, 3, 4, 2, seed=11)
    prompts = [encode_prefix(lm, PREFIX) + encode_piece(lm, s) for s in SUFFIXES]
    with_early_stops(lm, prompts)
    reference = generate_one_by_one(lm, prompts, NEW_TOKENS)
    assert len({tuple(c) for c in reference}) == len(reference)

    generator = PrefixGenerator(lm, PREFIX, Decoding(max_new_tokens=NEW_TOKENS))
    ours = [list(c.token_ids) for c in generator.generate(SUFFIXES[:2]) + generator.generate(SUFFIXES[2:])]
    assert ours == reference


# --- the attention ---------------------------------------------------------------


def reference_attention(query, key, value, mask, scaling):
    """softmax(Q K^T * scaling + mask) V over the whole sequence, key/value heads repeated for their query heads."""
    group = query.shape[1] // key.shape[1]
    k, v = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    scores = query @ k.transpose(2, 3) * scaling + mask
    return (torch.softmax(scores, dim=-1) @ v).transpose(1, 2)  # (B, q, H, D), as attention functions return it


def padded_causal_mask(pads: list[int], q_len: int, row_len: int) -> torch.Tensor:
    """HF's additive mask over a row's own keys: left pads and future keys at the dtype's minimum, others 0."""
    minimum = torch.finfo(torch.float32).min
    mask = torch.zeros(len(pads), 1, q_len, row_len)
    for b, pad in enumerate(pads):
        mask[b, :, :, :pad] = minimum
    query_pos = torch.arange(row_len - q_len, row_len)[:, None]  # the queries are the last q_len positions
    mask.masked_fill_(torch.arange(row_len)[None, :] > query_pos, minimum)
    return mask


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (8, 2), (6, 1)])
@pytest.mark.parametrize("q_len", [1, 5])
@pytest.mark.parametrize("mask_kind", ["padded", "additive", "none"])
def test_shared_prefix_attention_equals_attention_over_concatenated_keys(heads, kv_heads, q_len, mask_kind):
    torch.manual_seed(heads * 100 + kv_heads * 10 + q_len)
    batch, prefix_len, row_len, dim, layers = 3, 11, 7, 16, 2
    scaling = dim**-0.5
    query = torch.randn(batch, heads, q_len, dim)
    key, value = torch.randn(batch, kv_heads, row_len, dim), torch.randn(batch, kv_heads, row_len, dim)
    shared = [(torch.randn(1, kv_heads, prefix_len, dim), torch.randn(1, kv_heads, prefix_len, dim)) for _ in range(layers)]
    if mask_kind == "padded":
        mask = padded_causal_mask([0, 2, 5], q_len, row_len)
    elif mask_kind == "additive":  # any additive bias, not only 0 / -inf: it is added after scaling, as in sdpa
        mask = torch.randn(batch, 1, q_len, row_len) * 3
    else:
        mask = None
    module = types.SimpleNamespace(layer_idx=1, training=False)

    out, _ = shared_prefix_attention(module, query, key, value, mask, scaling=scaling,
                                    shared_prefix=SharedPrefix(shared, prefix_len))

    prefix_k, prefix_v = (t.expand(batch, -1, -1, -1) for t in shared[1])
    full_k, full_v = torch.cat([prefix_k, key], dim=2), torch.cat([prefix_v, value], dim=2)
    row_mask = mask if mask is not None else torch.zeros(batch, 1, q_len, row_len)
    full_mask = torch.cat([torch.zeros(batch, 1, q_len, prefix_len), row_mask], dim=-1)  # the prefix is always seen
    expected = reference_attention(query, full_k, full_v, full_mask, scaling)
    assert out.shape == expected.shape == (batch, q_len, heads, dim)
    assert (out - expected).abs().max().item() < 1e-5
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        query, full_k, full_v, attn_mask=full_mask, scale=scaling, enable_gqa=True
    ).transpose(1, 2)
    assert (out - sdpa).abs().max().item() < 1e-5
    # The prefix matters: the same rows without it attend differently.
    assert (out - reference_attention(query, key, value, row_mask, scaling)).abs().max().item() > 1e-2


# (prefix keys, the longest row's own keys, queries): one block of keys; keys in two and three of the kernel's
# blocks of 512; a prefill of 6 queries at once.
BF16_SHAPES = [(300, 30, 1), (300, 300, 1), (700, 400, 1), (300, 30, 6)]


@pytest.mark.parametrize("prefix_len, row_len, q_len", BF16_SHAPES)
def test_shared_prefix_attention_in_bf16_rounds_as_sdpa(prefix_len, row_len, q_len):
    """In bf16 the decoder's attention equals sdpa's on each row's own keys (prefix + the row's, without pads),
    all but a few elements bit for bit: sdpa's kernel scores and sums in float32 and rounds its weights to bf16
    before the product with V, and the decoder does so the same way."""
    torch.manual_seed(prefix_len + row_len + q_len)
    batch, heads, kv_heads, dim = 3, 6, 2, 64
    pads = [0, 7, row_len // 3]  # left pads of each row, masked
    query = (torch.randn(batch, heads, q_len, dim) * 1.5).bfloat16()
    key = (torch.randn(batch, kv_heads, row_len, dim) * 1.5).bfloat16()
    value = torch.randn(batch, kv_heads, row_len, dim).bfloat16()
    prefix_k = (torch.randn(1, kv_heads, prefix_len, dim) * 1.5).bfloat16()
    prefix_v = torch.randn(1, kv_heads, prefix_len, dim).bfloat16()
    minimum = torch.finfo(torch.float32).min
    mask = torch.zeros(batch, 1, q_len, row_len)  # the model's additive mask: pads and future keys at the minimum
    for b, pad in enumerate(pads):
        mask[b, :, :, :pad] = minimum
    mask.masked_fill_(torch.arange(row_len)[None, :] > torch.arange(row_len - q_len, row_len)[:, None], minimum)
    real = torch.tensor([row_len - pad for pad in pads])
    positions = prefix_len + real[:, None] - q_len + torch.arange(q_len)  # the queries' places, pads skipped
    module = types.SimpleNamespace(layer_idx=0, training=False)

    with torch.inference_mode():
        out, _ = shared_prefix_attention(module, query, key, value, mask, scaling=dim**-0.5, position_ids=positions,
                                         shared_prefix=SharedPrefix([(prefix_k.float(), prefix_v.float())], prefix_len))
        same, worst = 0, 0.0
        for b, pad in enumerate(pads):  # sdpa on the row alone, as one-prompt `generate` runs it
            k = torch.cat([prefix_k[0], key[b, :, pad:]], dim=1)[None]
            v = torch.cat([prefix_v[0], value[b, :, pad:]], dim=1)[None]
            queries = torch.cat([torch.zeros(1, heads, k.shape[2] - q_len, dim, dtype=query.dtype), query[b : b + 1]], 2)
            expected = torch.nn.functional.scaled_dot_product_attention(
                queries, k, v, scale=dim**-0.5, is_causal=True, enable_gqa=True
            ).transpose(1, 2)[:, -q_len:]
            same += (out[b : b + 1] == expected).sum().item()
            worst = max(worst, ((out[b : b + 1].float() - expected.float()).abs() / expected.float().abs().clamp(min=1e-2)).max().item())
    assert out.dtype == torch.bfloat16 and out.shape == (batch, q_len, heads, dim)
    assert worst < 2**-7, worst  # every element within one bf16 step
    if not torch.__version__.startswith(KERNEL_READ_FROM):
        pytest.skip(f"flash_rounding reproduces torch {KERNEL_READ_FROM}'s kernel; torch {torch.__version__}'s may "
                    "round otherwise (only the one-step bound above holds for any)")
    # Rounded any other way (each half's output rounded to bf16 and summed: ~70% equal; plain float32 weights: ~70%;
    # exact exp in place of the kernel's fast one: ~93%), far fewer elements are equal.
    assert same / out.numel() > 0.995, same / out.numel()


def test_fma_rounds_once_as_a_vector_fma():
    """flash_rounding's a * b + c is rounded once, as the kernel's FMA: equal to the float64 result rounded."""
    torch.manual_seed(0)
    a, b, c = torch.randn(100_000) * 4, torch.randn(100_000), torch.randn(100_000)
    exact = (a.double() * b.double() + c.double()).float()
    assert torch.equal(_fma(a, b, c), exact)
    assert not torch.equal(a * b + c, exact)  # rounded twice, some differ: the check can tell


def test_prefix_variants_spans_and_rows():
    layer = (torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8))
    one = SharedPrefix([layer], 4)
    assert SharedPrefix.stacked([one], [0, 0, 0]) is one and one.spans == [(0, 0, None)] and one.rows([1]) is one
    stacked = SharedPrefix.stacked([one, one, one], [0, 0, 1, 1, 1, 2])
    assert stacked.layers[0][0].shape == (3, 2, 4, 8)
    assert stacked.spans == [(0, 0, 2), (1, 2, 5), (2, 5, 6)]
    assert stacked.rows([1, 4, 5]).spans == [(0, 0, 1), (1, 1, 2), (2, 2, 3)]
    assert stacked.rows([2, 3]).spans == [(1, 0, 2)]
    with pytest.raises(ValueError, match="next to each other"):
        SharedPrefix.stacked([one, one], [0, 1, 0])


def test_shared_prefix_keys_are_the_models_own(tokenizer):
    """prefix_kv gives the keys and values the model caches for the prefix in a plain forward."""
    from transformers import DynamicCache

    lm = tiny_lm(tokenizer, 3, 4, 2)
    ids = encode_prefix(lm, PREFIX)
    use_shared_prefix_attention(lm.model)
    with torch.inference_mode():
        shared = prefix_kv(lm.model, ids)
        lm.model.set_attn_implementation("eager")
        cache = DynamicCache(config=lm.model.config)
        lm.model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
    assert len(shared.layers) == len(cache.layers) == 3 and shared.length == len(ids)
    for (k, v), layer in zip(shared.layers, cache.layers):
        assert k.shape == (1, 2, len(ids), 16)
        assert (k - layer.keys).abs().max().item() < 1e-5
        assert (v - layer.values).abs().max().item() < 1e-5


def test_prefix_kv_followed_by_gives_the_prefixs_keys_inside_a_longer_prompt(tokenizer):
    """prefix_kv(followed_by=k): what the model caches for the prefix inside a prompt k tokens longer, bit for bit
    (whatever the k tokens are: no prefix token sees them)."""
    from transformers import DynamicCache

    lm = tiny_lm(tokenizer, 3, 4, 2)
    ids, question = encode_prefix(lm, PREFIX), encode_piece(lm, SUFFIXES[1])
    use_shared_prefix_attention(lm.model)
    with torch.inference_mode():
        shared = prefix_kv(lm.model, ids, followed_by=len(question))
        lm.model.set_attn_implementation("sdpa")
        cache = DynamicCache(config=lm.model.config)
        lm.model(input_ids=torch.tensor([ids + question]), cache=cache, use_cache=True)
    assert shared.length == len(ids)
    for (k, v), layer in zip(shared.layers, cache.layers):
        assert k.shape == (1, 2, len(ids), 16)
        assert torch.equal(k, layer.keys[:, :, : len(ids)].float()) and torch.equal(v, layer.values[:, :, : len(ids)].float())


def test_prefix_kv_followed_by_is_the_plain_prefix_where_a_window_cuts_it(tokenizer):
    """A sliding layer's cache lets go of the prefix's first keys when more tokens follow: no variant then."""
    lm = tiny_family(tokenizer, "gemma3")
    ids = encode_prefix(lm, PREFIX)
    use_shared_prefix_attention(lm.model)
    with torch.inference_mode():
        plain, followed = prefix_kv(lm.model, ids), prefix_kv(lm.model, ids, followed_by=5)
    assert min(k.shape[2] for k, _ in plain.layers) < len(ids)  # the window cuts into the prefix
    for (k, v), (k2, v2) in zip(plain.layers, followed.layers):
        assert torch.equal(k, k2) and torch.equal(v, v2)


def test_prefix_decoder_with_a_prefix_per_question_length_matches_generate(tokenizer, monkeypatch):
    """Where the prefix's keys depend on the prompt's length (bf16 on a CPU), each row reads the prefix computed
    before a question of its own length: rows grouped by length and put back in order, variants beyond
    MAX_VARIANTS let go, and still what `generate` writes for each prompt alone."""
    monkeypatch.setattr(generate_module, "prefix_depends_on_length", lambda lm: True)
    monkeypatch.setattr(generate_module, "MAX_VARIANTS", 2)
    lm = tiny_lm(tokenizer, 3, 4, 2, seed=5)
    prompts = [encode_prefix(lm, PREFIX) + encode_piece(lm, s) for s in SUFFIXES]
    with_early_stops(lm, prompts)
    reference = generate_one_by_one(lm, prompts, NEW_TOKENS)
    assert_diverse(lm, reference)
    lengths = [len(encode_piece(lm, s)) for s in SUFFIXES]
    assert lengths[:4] != sorted(lengths[:4])  # the first batch is reordered by length

    generator = PrefixGenerator(lm, PREFIX, Decoding(max_new_tokens=NEW_TOKENS))
    first = generator.generate(SUFFIXES[:4])
    assert sorted(generator._variants) == sorted(lengths[:4])  # one per length, all kept while a batch needs them
    ours = [list(c.token_ids) for c in first + generator.generate(SUFFIXES[4:])]
    assert ours == reference
    assert len(generator._variants) == 2 and lengths[4] in generator._variants


# --- fine-tuning -----------------------------------------------------------------

EXAMPLES = [
    Example("Question: 5 + 3 = ?\nAnswer:", " 5 + 3 = 8. The answer is 8.\n\n"),
    Example("Question: 123 + 456 = ?\nAnswer:", " 123 + 456 = 500 + 70 + 9 = 579. The answer is 579.\n\n"),
    Example("Question: 7 + 80 = ?\nAnswer:", " 87.\n\n"),
    Example("Question: what is 19 plus 23?\nAnswer:", " 19 + 23 = 30 + 12 = 42. The answer is 42.\n\n"),
]


def plain_loss(lm: LoadedModel, prefix_ids: list[int], rows: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """The causal-LM loss of full sequences (prefix + question + completion), ordinary attention, right padding,
    labels -100 over the prefix, the question and the padding."""
    width, pad = max(len(prefix_ids) + len(ids) for ids, _ in rows), lm.tokenizer.pad_token_id
    ids = [prefix_ids + row for row, _ in rows]
    labels = [[IGNORE] * len(prefix_ids) + lab for _, lab in rows]
    out = lm.model(
        input_ids=torch.tensor([x + [pad] * (width - len(x)) for x in ids]),
        attention_mask=torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
        labels=torch.tensor([y + [IGNORE] * (width - len(y)) for y in labels]),
    )
    return out.loss


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("layers, heads, kv_heads", [(3, 4, 2), (2, 4, 4)])
def test_shared_prefix_loss_and_gradients_equal_full_sequences(tokenizer, method, layers, heads, kv_heads):
    lm = tiny_lm(tokenizer, layers, heads, kv_heads, seed=5, initializer_range=0.1)
    use_shared_prefix_attention(lm.model)
    if method == "lora":
        lm.model = _with_lora(lm.model, rank=4)
        with torch.no_grad():  # LoRA's B starts at zero, which would leave A's gradients zero on both sides
            for name, p in lm.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    lm.model.train()
    prefix_ids = encode_prefix(lm, PREFIX)
    rows = [_encode(lm, ex) for ex in EXAMPLES]
    assert len({len(ids) for ids, _ in rows}) == len(rows)

    loss, tokens = _loss(lm, prefix_ids, rows)
    loss.backward()
    ours = _gradients(lm.model)
    assert tokens == sum(len(ids) for ids, _ in rows)

    base = lm.model.get_base_model() if method == "lora" else lm.model
    base.set_attn_implementation("sdpa")
    expected = plain_loss(lm, prefix_ids, rows)
    expected.backward()
    reference = _gradients(lm.model)

    assert abs(loss.item() - expected.item()) < 1e-5, (loss.item(), expected.item())
    assert ours.keys() == reference.keys()
    trained = [n for n in reference if "lora_" in n] if method == "lora" else list(reference)
    assert len(trained) == len(reference) and trained
    for name in reference:
        assert reference[name].abs().max().item() > 0, f"{name} gets no gradient: the comparison would be empty"
        assert (ours[name] - reference[name]).abs().max().item() < 1e-5, (name, reference[name].abs().max().item())


# --- other model families: sliding windows, softcapping, sinks --------------------

WINDOW = 16  # shorter than the few-shot prefix (~60 tokens) and than a row with its new tokens


def tiny_family(tokenizer, family: str, seed: int = 3) -> LoadedModel:
    """A tiny random model of a family whose attention has an option Llama's lacks, every other layer sliding."""
    import transformers

    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"] * 2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
        initializer_range=0.3,
    )
    config, model_class = {
        "gemma3": (lambda: transformers.Gemma3TextConfig(**common, query_pre_attn_scalar=16), "Gemma3ForCausalLM"),
        # Softcapping scores at 50 would leave a random model's small scores untouched: cap them where they live.
        "gemma2": (lambda: transformers.Gemma2Config(**common, query_pre_attn_scalar=16, attn_logit_softcapping=2.0,
                                                     final_logit_softcapping=None), "Gemma2ForCausalLM"),
        "gpt_oss": (lambda: transformers.GptOssConfig(**common, num_local_experts=2, num_experts_per_tok=1),
                    "GptOssForCausalLM"),
    }[family]
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config()).to(torch.float32).eval()
    if family == "gpt_oss":
        with torch.no_grad():  # sinks that take a real share of the softmax, so that dropping them would show
            for layer in model.model.layers:
                layer.self_attn.sinks.normal_(0, 2.0)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=family, device=torch.device("cpu"))


FAMILIES = ["gemma3", "gemma2", "gpt_oss"]
# sdpa has no softcap nor sinks: those families' reference is their own eager attention.
REFERENCE_ATTENTION = {"gemma3": "sdpa", "gemma2": "eager", "gpt_oss": "eager"}


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_decoder_matches_generate_with_the_familys_attention_options(tokenizer, family, monkeypatch):
    lm = tiny_family(tokenizer, family)
    prefix_ids = encode_prefix(lm, PREFIX)
    assert len(prefix_ids) > 2 * WINDOW  # the window cuts into the prefix, not only into the rows
    prompts = [prefix_ids + encode_piece(lm, s) for s in SUFFIXES]
    real_set = lm.model.set_attn_implementation  # the references switch to the family's reference attention
    monkeypatch.setattr(lm.model, "set_attn_implementation",
                        lambda name: real_set(REFERENCE_ATTENTION[family] if name == "sdpa" else name))
    with_early_stops(lm, prompts)
    one_by_one = generate_one_by_one(lm, prompts, NEW_TOKENS)
    assert_diverse(lm, one_by_one)

    ours = [list(c.token_ids) for c in PrefixGenerator(lm, PREFIX, Decoding(max_new_tokens=NEW_TOKENS)).generate(SUFFIXES)]

    assert ours == one_by_one
    assert ours == generate_batched(lm, prompts, NEW_TOKENS)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_loss_equals_full_sequences_with_the_familys_attention_options(tokenizer, family):
    lm = tiny_family(tokenizer, family)
    lm.model.config.initializer_range = 0.1
    use_shared_prefix_attention(lm.model)
    lm.model.train()
    prefix_ids = encode_prefix(lm, PREFIX)
    rows = [_encode(lm, ex) for ex in EXAMPLES]
    assert len(prefix_ids) > 2 * WINDOW and max(len(ids) for ids, _ in rows) > WINDOW

    loss, _ = _loss(lm, prefix_ids, rows)
    loss.backward()
    ours = _gradients(lm.model)
    lm.model.set_attn_implementation(REFERENCE_ATTENTION[family])
    expected = plain_loss(lm, prefix_ids, rows)
    expected.backward()
    reference = _gradients(lm.model)

    assert abs(loss.item() - expected.item()) < 1e-5, (loss.item(), expected.item())
    for name in reference:
        if "router" in name or "experts" in name:
            continue  # gpt-oss routes each token to one expert: an expert a row never reached has no gradient
        assert reference[name].abs().max().item() > 0, name
        assert (ours[name] - reference[name]).abs().max().item() < 1e-5, (name, reference[name].abs().max().item())


# --- the embedded model ----------------------------------------------------------


def embedded_iteration_0(prompts: int):
    """The default run's task, its iteration-0 prefix and `prompts` of its eval questions, every difficulty."""
    from star_core.core.config import RunConfig
    from star_core.engine.exemplars import load_exemplars
    from star_core.tasks import get_task
    from star_core.tasks.base import build_prefix

    config = RunConfig(device="cpu")
    task = get_task(config.task, config)
    prefix = build_prefix(task, load_exemplars(task), with_hints=False)
    evals = sorted((p for p in task.problems(config) if p.split == "eval"), key=lambda p: len(p.question))
    problems = evals[:: max(1, len(evals) // prompts)][:prompts]  # every difficulty, in the order the loop batches them
    return config, task, prefix, problems


def generate_texts(lm: LoadedModel, prompts: list[list[int]], new_tokens: int) -> list[str]:
    """`generate` on left-padded prompts (one prompt: no padding), stopped at the stop text, as text."""
    width, pad = max(map(len, prompts)), lm.tokenizer.pad_token_id
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    lm.model.set_attn_implementation("sdpa")
    with torch.inference_mode():
        y = lm.model.generate(input_ids=x, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                              stop_strings=[STOP_TEXT], tokenizer=lm.tokenizer, pad_token_id=pad)
    return [cut_at_stop(lm.tokenizer.decode(apply_stop_rule(lm, row[width:].tolist()), skip_special_tokens=True))
            for row in y]


# In float32 the decoder writes what one-prompt `generate` writes; in bf16 no decoder does, so it may stray no further
# than batched `generate` does, at the same accuracy. Forced bf16 (no fast bf16) is emulated and slow: 4 prompts there
# (docs/measurements.md#2026-12-05-the-suite-and-the-ceiling-on-an-avx2-cpu-in-float32).
@pytest.mark.slow
@pytest.mark.parametrize("bf16, prompts", [(False, 16), (True, 8 if cpu_has_fast_bf16() else 4)],
                         ids=["float32", "bf16"])
def test_embedded_model_decodes_iteration_0_as_plain_generate(monkeypatch, bf16, prompts):
    """The default run's iteration-0 eval prompts on SmolLM2: PrefixGenerator vs `generate`, same weights and dtype."""
    monkeypatch.setenv(BF16_ENV, "1" if bf16 else "0")
    config, task, prefix, problems = embedded_iteration_0(prompts)
    questions = [task.format_question(p) for p in problems]
    lm = load_model(DEFAULT_MODEL, device="cpu")
    dtype = next(lm.model.parameters()).dtype
    assert dtype == (torch.bfloat16 if bf16 else torch.float32)

    ours = [cut_at_stop(c.text) for c in
            PrefixGenerator(lm, prefix, Decoding(config.max_new_tokens, 0.0, config.top_p)).generate(questions)]

    prompt_ids = [encode_prefix(lm, prefix) + encode_piece(lm, q) for q in questions]
    alone = [text for ids in prompt_ids for text in generate_texts(lm, [ids], config.max_new_tokens)]
    assert len(set(alone)) > len(alone) // 2  # real, varied completions
    same = sum(a == b for a, b in zip(ours, alone))
    right = {name: sum(task.is_correct(task.extract_answer(t), p) for p, t in zip(problems, texts))
             for name, texts in (("decoder", ours), ("one prompt", alone))}
    print(f"\nembedded {DEFAULT_MODEL} ({dtype}): {same} of {len(questions)} iteration-0 eval completions identical "
          f"to one-prompt generate; right answers {right}")
    if not bf16:
        assert same == len(questions), [(a, b) for a, b in zip(ours, alone) if a != b]
        return
    batched = generate_texts(lm, prompt_ids, config.max_new_tokens)
    batched_same = sum(a == b for a, b in zip(batched, alone))
    print(f"left-padded batched generate: {batched_same} of {len(questions)} identical to one-prompt generate")
    assert same >= batched_same, [(a, b) for a, b in zip(ours, alone) if a != b]
    assert abs(right["decoder"] - right["one prompt"]) <= 1, right  # one question: within noise
