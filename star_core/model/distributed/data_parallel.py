"""How N fine-tuning processes share each step so that together they take the step one process would.

Every process holds the same weights and draws the same global batch (same seed, same
data order); each computes the loss of its own contiguous part of that batch. One
process's loss is the mean over the batch's completion tokens, so a part's loss is
scaled by its share of those tokens (times N, since the gradients are then averaged
over the N processes, as DDP averages them). After the backward pass the gradients
are all-reduced in buckets, as DDP does; clipping, the optimizer step and the
schedule then run on identical gradients in every process, so the weights stay
identical. The loss reported for a step is the whole batch's.

What differs from one process is only float rounding: a sum of parts instead of
one sum, and smaller matrices.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..finetune import IGNORE, _loss

BUCKET_BYTES = 64 * 2**20  # gradients all-reduced per bucket of about this size (DDP uses 25 MB)


def shard_bounds(rows: int, world: int, rank: int) -> tuple[int, int]:
    """[start, end) of process `rank`'s part of a batch of `rows`: contiguous, sizes differing by at most one,
    the larger parts first."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    base, extra = divmod(rows, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def predicted_tokens(labels: list[int]) -> int:
    """The completion tokens a row's loss is averaged over: every label but the first (no token predicts it)."""
    return sum(1 for label in labels[1:] if label != IGNORE)


class DataParallel:
    """The StepSharing of finetune.finetune for one of `world` processes in the default process group."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device
        self.is_main = rank == 0
        self._batch_loss = float("nan")

    def start(self, trained: list[torch.Tensor]) -> None:
        """Every process starts from the main process's weights (a LoRA adapter's random start included)."""
        with torch.no_grad():
            for p in trained:
                dist.broadcast(p.data, src=0)

    def loss(self, lm, prefix_ids: list[int], batch: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, int]:
        """This process's part of the batch's loss, scaled so that the averaged gradients are the batch's; and
        the whole batch's row tokens."""
        start, end = shard_bounds(len(batch), self.world, self.rank)
        mine = batch[start:end]
        if not mine:
            raise ValueError(f"a batch of {len(batch)} rows cannot be shared by {self.world} processes")
        labelled = sum(predicted_tokens(labels) for _, labels in mine)
        mean, row_tokens = _loss(lm, prefix_ids, mine)
        totals = torch.tensor([labelled, row_tokens, mean.detach().double().item() * labelled], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(totals)
        all_labelled = float(totals[0])
        self._batch_loss = float(totals[2]) / all_labelled
        return mean * (labelled * self.world / all_labelled), int(totals[1])

    def batch_loss(self) -> float:
        """The last batch's loss: its mean over every process's completion tokens."""
        return self._batch_loss

    def reduce_gradients(self, trained: list[torch.Tensor]) -> None:
        bucket: list[torch.Tensor] = []
        size = 0
        for p in trained:
            if p.grad is None:  # unused this step: a zero gradient, so that every process reduces the same tensors
                p.grad = torch.zeros_like(p)
            bucket.append(p.grad)
            size += p.grad.numel() * p.grad.element_size()
            if size >= BUCKET_BYTES:
                self._reduce(bucket)
                bucket, size = [], 0
        if bucket:
            self._reduce(bucket)

    def _reduce(self, grads: list[torch.Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def agree(self, flag: bool) -> bool:
        """Whether any process says `flag` (all of them learn it at the same step)."""
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)
