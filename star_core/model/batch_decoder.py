"""Where a phase's batches are decoded: the seam between the loop and the decoder.

The loop plans a generation phase as numbered batches of questions, hands them to a
`BatchDecoder`, and judges and stores each batch as it comes back. Which decoder a run
gets is chosen once per run, from where it runs:

  * `LocalDecoder`: this process, one batch after another, with the shared-prefix
    decoder (generate.PrefixGenerator);
  * the Ray actor pool (distributed/ray_generation.py, `--workers N`): N model
    replicas decoding batches at once, results handed back in plan order.

A deployment that serves its model with a dedicated inference engine (vLLM, TGI,
SGLang) would put a client of that engine behind the same interface: it receives
the prefix, the decoding settings and the batches, and yields each batch's
completions; judging, storing and resuming stay in the loop.

Batches are planned over every question of the phase, in a fixed order, and the
ones already stored are skipped. Because a batch is stored whole or not at all, a
resumed phase decodes exactly the batches the interrupted one had not stored, with
the same questions and the same seeds. Each batch's sampling seed comes from
(run seed, iteration, kind, batch index), never from the process that decodes it, so
sampled rationales do not depend on how many workers there are or which one took a
batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

from .generate import Completion, Decoding, PrefixGenerator
from .loading import LoadedModel

T = TypeVar("T")


@dataclass(frozen=True)
class DecodeBatch:
    index: int  # the batch's place in its phase's plan (it names the batch and seeds its sampling)
    seed: int
    questions: tuple[str, ...]


class BatchDecoder(Protocol):
    def decode(self, prefix: str, decoding: Decoding,
               batches: Sequence[DecodeBatch]) -> Iterator[tuple[DecodeBatch, list[Completion]]]:
        """Each batch with one completion per question, every batch exactly once, in the order given.

        Closing the iterator early (a cancelled run) abandons the batches not yet handed back.
        """
        ...


def batch_seed(run_seed: int, iteration: int, kind: str, index: int) -> int:
    """The sampling seed of one batch of a phase: the same wherever and whenever the batch is decoded."""
    digest = hashlib.sha256(f"{run_seed}/{iteration}/{kind}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: torch.Generator.manual_seed takes any of them


def plan_batches(items: Sequence[T], per_batch: int, done: Callable[[T], bool]) -> list[tuple[int, list[T]]]:
    """(index, the items of batch `index` not yet done) for each batch with something left to do.

    Batches are cut from the whole sequence, done items included, so that a batch keeps its
    index and its items however much of the phase was stored before.
    """
    if per_batch < 1:
        raise ValueError(f"per_batch must be at least 1, got {per_batch}")
    plan = []
    for index, start in enumerate(range(0, len(items), per_batch)):
        left = [item for item in items[start : start + per_batch] if not done(item)]
        if left:
            plan.append((index, left))
    return plan


class LocalDecoder:
    """Decodes in this process with one loaded model, batch after batch."""

    def __init__(self, lm: LoadedModel, make_generator: Callable[..., PrefixGenerator] = PrefixGenerator):
        self.lm = lm
        self.make_generator = make_generator  # the loop passes its own name for it, which tests replace

    def decode(self, prefix: str, decoding: Decoding,
               batches: Sequence[DecodeBatch]) -> Iterator[tuple[DecodeBatch, list[Completion]]]:
        if not batches:
            return
        generator = self.make_generator(self.lm, prefix, decoding)  # the prefix's cache, once per phase
        for batch in batches:
            yield batch, generator.generate(list(batch.questions), seed=batch.seed)
