"""Generation phases on Ray actors (`star run --workers N [--ray-address ADDRESS]`).

Each of N actors holds one model replica, on a GPU of its own where the cluster has
GPUs and on an equal share of the CPU cores otherwise, and decodes whole batches with
the same shared-prefix decoder as a run without workers (generate.PrefixGenerator).
The driver (the run's own process) plans the batches, keeps each actor two batches
deep so it never waits for the driver, and hands the results to the loop in plan
order; the loop judges and stores them, so the database keeps its one writer and the
attempts are stored in the same order as without workers.

Every call carries all an actor needs (checkpoint, prefix, decoding settings, batch),
so any actor can take any batch: when an actor dies (its process killed, its node
lost), the batches it held are given to the others and a fresh actor takes its place.
A batch is handed back at most once and stored whole, so nothing is lost or stored
twice; a batch that kills its actor three times stops the run with a message instead
of looping.

The base model and the run's checkpoints are read by the actors from the paths the
driver uses: on a cluster of several machines they must be on storage every node
mounts (docs/scale.md#what-to-install-on-a-cluster).

Ray is imported only when a run has workers; it is an optional extra.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

from ..batch_decoder import DecodeBatch
from ...core.config import RunConfig
from ...core.errors import ModelLoadError, StarError

DEPTH = 2  # batches queued per actor: it starts the next while the driver stores the last
MAX_FAILURES_PER_BATCH = 3
START_TIMEOUT_S = 600.0  # an actor that has not started by then cannot be placed (or cannot import the project)
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # completions are small; Ray's default would reserve 30% of the memory


class WorkersError(StarError):
    """The run's decode workers could not be started or kept alive."""


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise WorkersError("--workers needs Ray, which is not installed: pip install 'star-studio[ray]' "
                           "(or run without --workers)") from exc
    return ray


def connect(address: str, local_cpus: int) -> None:
    """Join the cluster at `address`, or start Ray on this machine with `local_cpus` CPUs (once per process)."""
    from ..loading import BF16_ENV

    ray = import_ray()
    if ray.is_initialized():
        return
    # Errors reach the run as exceptions; Ray's own notices would only break the progress bars.
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    # The actors decide their dtype as every process does (model.use_bf16); on another machine of a cluster they
    # would not see this process's environment, so its STAR_BF16 goes with them.
    forced = {BF16_ENV: os.environ[BF16_ENV]} if BF16_ENV in os.environ else {}
    options = dict(quiet, runtime_env={"env_vars": forced}) if forced else quiet
    try:
        if address.strip():
            ray.init(address=address.strip(), **options)
        else:
            ray.init(num_cpus=local_cpus, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address.strip() else "a local Ray instance"
        raise WorkersError(f"could not connect to {where}: {exc}") from exc


def cpu_share(node_cpus: Sequence[float], workers: int) -> int:
    """CPU cores per worker: the most that still lets `workers` workers fit on the nodes (cores are not
    shared between nodes). WorkersError when even one core each does not fit."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    whole = [int(c) for c in node_cpus]
    if sum(whole) < workers:
        raise WorkersError(f"--workers {workers} needs at least {workers} CPU cores on the Ray cluster; it has "
                           f"{sum(whole)}: use fewer workers or join a larger cluster with --ray-address")
    share = max(whole)
    while sum(c // share for c in whole) < workers:
        share -= 1
    return share


def placement(device: str, workers: int, nodes: Sequence[dict]) -> tuple[int, int, str]:
    """(CPUs, GPUs, torch device) of each worker, from the run's --device and the cluster's nodes' resources."""
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    if device == "cuda" or (device == "auto" and gpus > 0):
        if gpus < workers:
            raise WorkersError(f"--workers {workers} puts each worker on a GPU of its own, but the Ray cluster has "
                               f"{gpus}: use --workers {gpus}" + (" or --device cpu" if device == "auto" else ""))
        return 1, 1, "cuda"
    return cpu_share([n.get("CPU", 0) for n in nodes], workers), 0, "cpu"


class DecodeWorker:
    """One model replica inside a Ray actor (made remote by the pool)."""

    def __init__(self, model: str, device: str, threads: int):
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)  # its share: workers on one machine must not each take every core
        self.spec, self.device = model, device
        self._lm = None
        self._checkpoint: str | None = "-"  # nothing loaded yet
        self._generator = None
        self._phase = None

    def ready(self) -> dict:
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname()}

    def decode(self, checkpoint: str | None, prefix: str, decoding, batch: DecodeBatch):
        from ..generate import PrefixGenerator
        from ..loading import load_model

        if checkpoint != self._checkpoint:
            if checkpoint is not None and not Path(checkpoint).exists():
                import socket

                raise ModelLoadError(f"the checkpoint {checkpoint} is not visible on {socket.gethostname()}, where a "
                                     "decode worker runs: keep the database's folder on storage every Ray node mounts")
            self._lm = self._generator = None
            self._lm = load_model(self.spec, self.device, checkpoint=checkpoint)
            self._checkpoint = checkpoint
        if self._generator is None or self._phase != (prefix, decoding):
            self._generator = PrefixGenerator(self._lm, prefix, decoding)  # the prefix's cache, once per phase
            self._phase = (prefix, decoding)
        return self._generator.generate(list(batch.questions), seed=batch.seed)


_REMOTE_WORKER = None


def _remote_worker():
    """DecodeWorker as a Ray actor class, made once per process (each new one is exported to the cluster again)."""
    global _REMOTE_WORKER
    if _REMOTE_WORKER is None:
        _REMOTE_WORKER = import_ray().remote(DecodeWorker)
    return _REMOTE_WORKER


def _kill_all(actors: list) -> None:
    if not actors:
        return
    import ray

    for actor in actors:
        if actor is not None:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone, or Ray shut down first: nothing left to free
                pass
    actors.clear()


class RayDecoderPool:
    """The run's N decode actors, started on first use and stopped by `release()` (before fine-tuning, which
    needs the devices) or when the pool is collected."""

    def __init__(self, config: RunConfig, cpus_per_worker: int | None = None):
        """`cpus_per_worker` fixes CPU workers' cores (bench/scale.py compares workers of one core each); by default
        each gets an equal share of the cluster's."""
        import torch

        self.config = config
        self._cpus_per_worker = cpus_per_worker
        self._local_cpus = torch.get_num_threads()  # the run's share of this machine (run_queue set it)
        self._actors: list = []
        self._generation: list[int] = []  # per slot: bumped when its actor is replaced
        self.workers_info: list[dict] = []  # per slot: pid and host of its actor
        self._options: dict = {}
        self.replaced = 0  # actors replaced after they died, over the pool's life
        self._finalizer = weakref.finalize(self, _kill_all, self._actors)

    def for_checkpoint(self, checkpoint: Path | None) -> "_PoolDecoder":
        return _PoolDecoder(self, None if checkpoint is None else str(checkpoint))

    def release(self) -> None:
        _kill_all(self._actors)
        self._generation.clear()
        self.workers_info.clear()

    # --- actors -------------------------------------------------------------

    def _start(self) -> None:
        if self._actors:
            return
        ray = import_ray()
        connect(self.config.ray_address, self._local_cpus)
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        cpus, gpus, device = placement(self.config.device, self.config.workers, nodes)
        if device == "cpu" and self._cpus_per_worker:
            cpus = self._cpus_per_worker
        self._options = dict(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        self._device, self._threads = device, cpus
        self._generation = [0] * self.config.workers
        self.workers_info = [{}] * self.config.workers
        self._actors.extend([None] * self.config.workers)
        for slot in range(self.config.workers):
            self._spawn(slot, wait=False)
        self._wait_ready(range(self.config.workers))

    def _spawn(self, slot: int, wait: bool = True) -> None:
        remote = _remote_worker().options(**self._options)
        self._actors[slot] = remote.remote(self.config.model, self._device, self._threads)
        if wait:
            self._wait_ready([slot])

    def _wait_ready(self, slots) -> None:
        ray = import_ray()
        slots = list(slots)
        try:
            infos = ray.get([self._actors[s].ready.remote() for s in slots], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as exc:
            raise WorkersError(f"Ray did not start {len(slots)} decode worker(s) within {START_TIMEOUT_S:.0f} s; the "
                               f"cluster may lack free resources ({self._options})") from exc
        except ray.exceptions.RayError as exc:
            raise WorkersError(f"a decode worker failed to start: {exc}") from exc
        for slot, info in zip(slots, infos):
            self.workers_info[slot] = info

    def _replace(self, slot: int) -> None:
        ray = import_ray()
        try:
            ray.kill(self._actors[slot])
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        self._generation[slot] += 1
        self.replaced += 1
        self._spawn(slot)

    # --- decoding -----------------------------------------------------------

    def decode(self, checkpoint: str | None, prefix: str, decoding,
               batches: Sequence[DecodeBatch]) -> Iterator[tuple[DecodeBatch, list]]:
        if not batches:
            return
        ray = import_ray()
        self._start()
        order = [b.index for b in batches]
        if len(set(order)) != len(order):
            raise ValueError("batch indices must be distinct")
        waiting = deque(batches)
        in_flight: dict = {}  # ObjectRef -> (slot, generation, batch)
        load = [0] * len(self._actors)
        finished: dict[int, list] = {}  # index -> completions, until the batches before it are handed back
        failures: dict[int, int] = {}
        by_index = {b.index: b for b in batches}
        handed = 0
        try:
            while handed < len(order):
                for slot in range(len(self._actors)):
                    while waiting and load[slot] < DEPTH:
                        batch = waiting.popleft()
                        ref = self._actors[slot].decode.remote(checkpoint, prefix, decoding, batch)
                        in_flight[ref] = (slot, self._generation[slot], batch)
                        load[slot] += 1
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    slot, generation, batch = in_flight.pop(ref)
                    if generation == self._generation[slot]:
                        load[slot] -= 1
                    try:
                        finished[batch.index] = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        self._lost(slot, generation, batch, exc, failures, load)
                        waiting.appendleft(batch)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, StarError):
                            raise cause from None  # e.g. a model that does not load: the message, not a traceback
                        raise
                while handed < len(order) and order[handed] in finished:
                    index = order[handed]
                    handed += 1
                    yield by_index[index], finished.pop(index)
        finally:
            for ref in in_flight:  # a cancelled run: the work not handed back is abandoned
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - finished or its actor gone meanwhile
                    pass

    def _lost(self, slot: int, generation: int, batch: DecodeBatch, exc: Exception, failures: dict, load: list) -> None:
        """A batch whose actor died: count it against the batch, and replace the actor (once per death)."""
        failures[batch.index] = failures.get(batch.index, 0) + 1
        if failures[batch.index] >= MAX_FAILURES_PER_BATCH:
            raise WorkersError(f"batch {batch.index} of the phase lost its decode worker {failures[batch.index]} times "
                               f"(out of memory?); last: {type(exc).__name__}: {exc}")
        if generation == self._generation[slot]:  # the first of its batches to report the death
            self._replace(slot)
            load[slot] = 0  # the batches it held fail too, and are queued again as they report


class _PoolDecoder:
    """The pool as a BatchDecoder for one checkpoint (batch_decoder.BatchDecoder)."""

    def __init__(self, pool: RayDecoderPool, checkpoint: str | None):
        self.pool, self.checkpoint = pool, checkpoint

    def decode(self, prefix: str, decoding, batches: Sequence[DecodeBatch]):
        return self.pool.decode(self.checkpoint, prefix, decoding, batches)
