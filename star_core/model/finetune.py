"""Supervised fine-tuning on kept rationales, loss on the completion only.

Every training example has the same few-shot prefix (the prompt the model is
asked with, without any hint), so each step computes the prefix once at batch
size 1 and the rows attend to it through the shared-prefix attention. With an
empty prefix (RunConfig.train_prefix off, the paper's arithmetic rows) the rows
are the whole sequences and attention is plain. Rows are
the question and the completion; labels are -100 over the question and the
right padding, as TRL's completion-only loss does.

Two methods: LoRA adapters on every linear layer (peft; small checkpoints, no
optimizer state for the base weights, the usual choice on a GPU for larger
models) and full fine-tuning. Either way the trained weights are float32 and
the matmuls run in bf16 through autocast where bf16 is fast.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from . import train_state
from ..core.config import FINETUNE_METHODS
from .generate import autocast, encode_piece, encode_prefix
from .loading import LoadedModel
from .prefix_attention import prefix_kv, use_shared_prefix_attention

IGNORE = -100


@dataclass(frozen=True)
class Example:
    prompt: str  # the question part, after the shared prefix
    completion: str  # the rationale and answer, ending with the stop text


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    learning_rate: float
    method: str = "lora"
    lora_rank: int = 16
    seed: int = 0
    start: str | None = None  # a checkpoint to go on training (the seed's model); None: the model as loaded


class StepSharing(Protocol):
    """How several processes share every step (distributed/data_parallel.py); without one, this process does it all."""

    is_main: bool  # the process that saves the training state

    def start(self, trained: list[torch.Tensor]) -> None: ...

    def loss(self, lm: LoadedModel, prefix_ids: list[int], batch: list) -> tuple[torch.Tensor, int]: ...

    def reduce_gradients(self, trained: list[torch.Tensor]) -> None: ...

    def batch_loss(self) -> float: ...


@dataclass
class FinetuneResult:
    steps: int
    final_loss: float  # mean loss over the last 10% of steps
    losses: list[float]
    tokens: int  # sequence tokens trained on, each row with its prefix (what a plain trainer would process)
    computed_tokens: int  # tokens actually run through the model: the prefix once per step, plus the rows
    seconds: float
    resumed_from: int = 0  # the steps a saved state had already done (0: trained from the start)


def finetune(
    lm: LoadedModel,
    prefix: str,
    examples: list[Example],
    settings: TrainSettings,
    on_step: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    state_dir: Path | None = None,
    sharing: StepSharing | None = None,
) -> FinetuneResult:
    """Train `lm.model` (replaced by its LoRA wrapper for that method). on_step(step, steps, loss, tokens_per_s).

    With `state_dir`, the training state is saved there every few steps and when `should_stop` stops it
    (train_state.py), and a state found there for the same job is resumed: the result is the same as if
    training had not stopped. The caller removes the folder once it has saved the final checkpoint.

    With `sharing`, this is one of several processes that take each step together (`should_stop` must then
    answer the same in all of them).
    """
    if not examples:
        raise ValueError("no examples to fine-tune on")
    if settings.method not in FINETUNE_METHODS:
        raise ValueError(f"unknown fine-tuning method {settings.method!r}; use one of {', '.join(FINETUNE_METHODS)}")
    torch.manual_seed(settings.seed)
    use_shared_prefix_attention(lm.model)
    if settings.method == "lora":
        lm.model = _with_lora(lm.model, settings.lora_rank, settings.start)
    elif settings.start:
        _load_full_weights(lm.model, settings.start)
    model = lm.model
    model.train()
    prefix_ids = encode_prefix(lm, prefix)
    rows = [_encode(lm, ex) for ex in examples]
    rng = random.Random(settings.seed)
    trained = [p for p in model.parameters() if p.requires_grad]
    if sharing is not None:
        sharing.start(trained)
    optimizer = torch.optim.AdamW(trained, lr=settings.learning_rate, weight_decay=0.0)
    steps, batch_size = settings.steps, settings.batch_size
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    order: list[int] = []
    losses: list[float] = []
    tokens = computed = 0
    seconds_before = 0.0  # spent by the processes that trained before a resume
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    job = train_state.fingerprint(settings, prefix_ids, rows, named) if state_dir is not None else ""
    saved = train_state.load(state_dir, job) if state_dir is not None else None
    if saved is not None:
        with torch.no_grad():
            for name, p in named:
                p.copy_(saved["params"][name])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        rng.setstate(_as_random_state(saved["python_rng"]))
        torch.set_rng_state(saved["torch_rng"])
        order, losses = list(saved["order"]), list(saved["losses"])
        tokens, computed, seconds_before = saved["tokens"], saved["computed"], saved["seconds"]
    first = len(losses)
    tokens_before = tokens
    started = time.perf_counter()
    cadence = train_state.Cadence(last_step=first)

    def save_state(step: int) -> None:
        if sharing is not None and not sharing.is_main:
            return  # the processes' states are the same: one copy
        took = train_state.save(state_dir, step, dict(
            fingerprint=job, params={n: p.detach() for n, p in named}, optimizer=optimizer.state_dict(),
            scheduler=schedule.state_dict(), python_rng=rng.getstate(), torch_rng=torch.get_rng_state(),
            order=list(order), losses=list(losses), tokens=tokens, computed=computed,
            seconds=seconds_before + time.perf_counter() - started,
        ))
        cadence.saved(step, took)

    for step in range(first, steps):
        if should_stop and should_stop():
            if state_dir is not None and cadence.last_step < step:
                save_state(step)  # what a resume continues from
            break
        if len(order) < batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order += fresh
        batch = [rows[i] for i in order[:batch_size]]
        del order[:batch_size]
        with autocast(lm):
            loss, row_tokens = _loss(lm, prefix_ids, batch) if sharing is None else sharing.loss(lm, prefix_ids, batch)
        loss.backward()
        if sharing is not None:
            sharing.reduce_gradients(trained)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item() if sharing is None else sharing.batch_loss())
        tokens += row_tokens + len(batch) * len(prefix_ids)
        computed += row_tokens + len(prefix_ids)
        if state_dir is not None and step + 1 < steps and cadence.due(step + 1):
            save_state(step + 1)
        if on_step:  # the rate of this process's own steps
            on_step(step + 1, steps, losses[-1], (tokens - tokens_before) / (time.perf_counter() - started))
    model.eval()
    tail = losses[-max(1, math.ceil(len(losses) / 10)):] if losses else [float("nan")]
    return FinetuneResult(len(losses), sum(tail) / len(tail), losses, tokens, computed,
                          seconds_before + time.perf_counter() - started, resumed_from=first)


def _as_random_state(saved) -> tuple:
    """random.Random.setstate wants the tuples getstate gave; a saved state may hold lists."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _with_lora(model: torch.nn.Module, rank: int, start: str | None = None) -> torch.nn.Module:
    from peft import LoraConfig, PeftModel, get_peft_model

    if start:
        if not (Path(start) / "adapter_config.json").exists():
            raise ValueError(f"{start} is not a LoRA adapter, so LoRA training cannot go on from it")
        return PeftModel.from_pretrained(model, start, is_trainable=True)  # the same adapter, trained further
    # alpha = 2 x rank is the common choice; every linear layer, as QLoRA found best.
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", lora_dropout=0.0))


def _load_full_weights(model: torch.nn.Module, folder: str) -> None:
    from transformers import AutoModelForCausalLM

    if (Path(folder) / "adapter_config.json").exists():
        raise ValueError(f"{folder} is a LoRA adapter, so full fine-tuning cannot go on from it")
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.load_state_dict(saved.state_dict())


def _encode(lm: LoadedModel, ex: Example) -> tuple[list[int], list[int]]:
    prompt = encode_piece(lm, ex.prompt)
    completion = encode_piece(lm, ex.completion)
    return prompt + completion, [IGNORE] * len(prompt) + completion


def _loss(lm: LoadedModel, prefix_ids: list[int], batch: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, int]:
    device = lm.device
    width = max(len(ids) for ids, _ in batch)
    pad = lm.tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)  # (B, L)
    labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in batch], device=device)  # (B, L)
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
    positions = len(prefix_ids) + torch.arange(width, device=device).expand(len(batch), width)
    shared = prefix_kv(lm.model, prefix_ids) if prefix_ids else None  # with gradients; short rows have none
    logits = lm.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, shared_prefix=shared).logits
    # Token t predicts token t+1; the first row token's prediction comes from the prefix's last position, whose
    # label is a question token and so would be ignored anyway.
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    return loss, int(mask.sum())


def save_checkpoint(lm: LoadedModel, folder: Path) -> Path:
    """Save what generation needs, atomically: a LoRA adapter (~20 MB for SmolLM2), or full weights in bf16."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(lm.model, "peft_config"):
        lm.model.save_pretrained(tmp)  # the adapter only; load_model merges it into the base model
    else:
        state = {k: v.to(torch.bfloat16) for k, v in lm.model.state_dict().items()}
        lm.model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder
