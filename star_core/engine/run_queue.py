"""The machine's run queue: a run takes a slot before it loads a model, or waits its turn.

Why: every model process sizes its thread pool to all the cores. On a 2-core CPU,
two or three runs at once each fine-tuned at 28-73 tokens/s against 1,304 alone
(20-40x slower each): together they did several times less work than one run.
So a machine has a few slots (one per GPU, one for the whole CPU; more CPU slots
with STAR_CPU_SLOTS), and a run beyond them waits as 'queued' and starts by
itself when a slot frees.

How, with nothing but what the operating system gives:

* A slot is a file `<slots>/cpu-0.lock` (`cuda-0.lock`, ...) held with an
  exclusive `flock` while the run uses it. The kernel drops the lock when the
  process ends however it ends (kill -9 included), so a crashed holder never
  blocks the queue.
* The queue is a folder of tickets, one per waiting run, named by the time it
  started waiting and listing the slots its run may take, each also held with
  `flock` by its waiter (a ticket nobody holds is a dead waiter's and is removed
  by whoever sees it). The queue is per device: a waiter may take a free slot
  unless an older live ticket may take that slot too. So runs that want the
  same device start first come, first served, and a run pinned to a free
  `cuda:1` starts at once, however many older runs wait for a busy `cuda:0`.
* `<slots>` is `$STAR_SLOTS`, else `<cache dir>/slots/<host name>` (the cache dir
  is `$STAR_CACHE` or ~/.cache/star-studio), so runs of every database of this
  user on this machine share the queue.

A run started with `--no-queue` takes no slot; it registers itself as a running
model process instead, so that CPU runs can share the cores: each sets its torch
thread count to cores // (model processes running now, itself included), counted
when it starts.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from ..core.errors import RunStateError
from ..core.processes import is_held, try_hold
from ..core.states import RunStatus

POLL_S = 1.0  # how often a waiting run looks for a free slot and for a cancel (a short read of the database)
TICKET_SUFFIX = ".ticket"
PARTIAL_SUFFIX = ".partial"


# --- where and how many ---------------------------------------------------------------


def slots_folder() -> Path:
    explicit = os.environ.get("STAR_SLOTS")
    if explicit:
        return Path(explicit).expanduser()
    # model.cache_dir's folder, read here without importing model (and torch): pages call positions().
    cache = Path(os.environ.get("STAR_CACHE", Path.home() / ".cache" / "star-studio"))
    return cache / "slots" / socket.gethostname()


def cpu_slots() -> int:
    raw = os.environ.get("STAR_CPU_SLOTS", "1")
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise RunStateError(f"STAR_CPU_SLOTS must be a whole number of at least 1 (runs at once on the CPU), not {raw!r}")
    return count


def slot_names(device_type: str, index: int | None, gpus: int) -> list[str]:
    """The slots a run on this device may take: a given GPU's own, any GPU's, or the CPU's."""
    if device_type == "cuda":
        return [f"cuda-{index}"] if index is not None else [f"cuda-{i}" for i in range(max(1, gpus))]
    if device_type == "cpu":
        return [f"cpu-{i}" for i in range(cpu_slots())]
    return [f"{device_type}-0"]  # e.g. mps: one accelerator


def family_of(name: str) -> str:
    """'cpu' for cpu-0, 'cuda' for cuda-1: runs of one family queue together."""
    return name.rsplit("-", 1)[0]


def threads_for(cores: int, workers: int) -> int:
    """Torch threads for one of `workers` model processes sharing `cores` (at least one each)."""
    return max(1, cores // max(1, workers))


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- locks held by this process -------------------------------------------------------


class _HeldFile:
    """A file this process holds an exclusive flock on (released when closed, or when the process dies)."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def write(self, info: dict) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def release(self, unlink: bool) -> None:
        if self.fd < 0:
            return
        if unlink:  # before closing: nobody can mistake a file still on disk for a dead holder's
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = -1


def _try_hold(path: Path) -> _HeldFile | None:
    fd = try_hold(path)
    return None if fd is None else _HeldFile(path, fd)


def _is_held(path: Path) -> bool:
    """Whether a live process holds `path`'s lock (a file nobody holds, or none, is a gone process's)."""
    return is_held(path) is True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@dataclass
class Slot:
    """What a run holds while it runs: a slot, or (with --no-queue) a registration as a running model process."""

    name: str  # cpu-0, cuda-1; or 'unqueued'
    family: str  # cpu, cuda, ...
    _held: _HeldFile | None = None

    @property
    def gpu_index(self) -> int | None:
        return int(self.name.split("-")[1]) if self.family == "cuda" and self.name != "unqueued" else None

    def share_cores(self) -> int | None:
        """Set this process's torch thread count to its share of the cores (CPU runs); the count, or None."""
        if self.family != "cpu":
            return None
        import torch

        threads = threads_for(cores(), running_model_processes(self.family))
        torch.set_num_threads(threads)
        return threads

    def release(self) -> None:
        if self._held is not None:
            # A slot file stays (the next holder reuses it); a registration goes with its process.
            self._held.release(unlink=self.name == "unqueued")
            self._held = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_info(store, run_id: int) -> dict:
    return {"pid": os.getpid(), "db": _db_key(store), "run_id": run_id,
            "since": datetime.now().isoformat(timespec="seconds")}


def _db_key(store) -> str:
    return str(Path(store.path).resolve())


# --- what is on the machine now ---------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    path: Path
    family: str
    order: int  # nanoseconds since the epoch when its run started waiting
    db: str
    run_id: int
    pid: int
    slots: frozenset[str] | None  # the slots its run may take (None: any of its family's, as older tickets say)


def _tickets(folder: Path) -> list[Ticket]:
    """Live tickets, oldest first; a dead waiter's ticket is removed on the way."""
    queue = folder / "queue"
    if not queue.is_dir():
        return []
    _remove_dead_partials(queue)
    found = []
    for path in queue.glob("*" + TICKET_SUFFIX):
        if not _is_held(path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        family, order, pid, _ = path.name[: -len(TICKET_SUFFIX)].split("_", 3)
        info = _read(path)
        slots = frozenset(info["slots"]) if isinstance(info.get("slots"), list) else None
        found.append(Ticket(path, family, int(order), str(info.get("db", "")), int(info.get("run_id", -1)), int(pid),
                            slots))
    return sorted(found, key=lambda t: t.order)


def running_model_processes(family: str = "cpu", folder: Path | None = None) -> int:
    """Model processes of a device family running on this machine: held slots and --no-queue registrations."""
    folder = folder or slots_folder()
    if not folder.is_dir():
        return 0
    count = 0
    for path in folder.glob(f"{family}-*.lock"):
        count += _is_held(path)
    _remove_dead_partials(folder)
    for path in folder.glob(f"unqueued_{family}_*.lock"):
        if _is_held(path):
            count += 1
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    return count


def positions(store, folder: Path | None = None) -> dict[int, int]:
    """Place in the machine's queue (1 = next to start) of every run of this database waiting on this machine:
    one more than the older waiters that may take a slot it may take."""
    key = _db_key(store)
    tickets = _tickets(folder or slots_folder())
    return {t.run_id: 1 + len(_ahead(tickets, t.family, t.slots, t.order)) for t in tickets if t.db == key}


def _ahead(tickets: list[Ticket], family: str, names, order: int) -> list[Ticket]:
    """The older tickets that may take one of the slots `names` (None: any of the family's)."""
    return [t for t in tickets if t.order < order and t.family == family
            and (names is None or t.slots is None or not t.slots.isdisjoint(names))]


def position(store, run_id: int, folder: Path | None = None) -> int | None:
    """Place of a run in the machine's queue (1 = next to start), or None if it is not waiting here."""
    return positions(store, folder).get(run_id)


def holders(family: str | None = None, folder: Path | None = None) -> list[dict]:
    """Who holds the slots of a family (None: of every family) now ({pid, db, run_id, since, slot} each)."""
    folder = folder or slots_folder()
    if not folder.is_dir():
        return []
    pattern = f"{family}-*.lock" if family else "*-*.lock"
    return [_read(p) | {"slot": p.stem} for p in sorted(folder.glob(pattern)) if _is_held(p)]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def status_labels(store, runs, folder: Path | None = None) -> list[str]:
    """The status column of a run list (Store.list_runs), with each queued run's place: 'queued (2nd)'."""
    places = positions(store, folder) if (runs.status == RunStatus.QUEUED).any() else {}
    return [f"{s} ({ordinal(places[i])})" if s == RunStatus.QUEUED and i in places else str(s)
            for i, s in zip(runs.id, runs.status)]


# --- taking a slot --------------------------------------------------------------------------


def device_slots(device: str) -> tuple[str, list[str]]:
    """(family, slot names) for a run's `device` setting ('auto', 'cpu', 'cuda', 'cuda:1')."""
    import torch

    from ..model.loading import resolve_device

    dev = resolve_device(device)
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    names = slot_names(dev.type, dev.index, gpus)
    return family_of(names[0]), names


def unqueued(store, run_id: int, slots: tuple[str, list[str]], folder: Path | None = None) -> Slot:
    """--no-queue: start at once, registered as a running model process (for the others' share of the cores).
    `slots`: device_slots() of the run's device."""
    family, _ = slots
    folder = _usable(folder or slots_folder())
    held = _new_held(folder / f"unqueued_{family}_{os.getpid()}_{time.time_ns()}.lock", _holder_info(store, run_id))
    return Slot("unqueued", family, held)


def wait_for_slot(
    store,
    run_id: int,
    slots: tuple[str, list[str]],
    on_wait: Callable[[str], None] | None = None,
    folder: Path | None = None,
    poll_s: float = POLL_S,
) -> Slot | None:
    """Take a slot for the run, waiting in the queue as 'queued' while none is free.

    Marks the run queued in the store first (refused, writing nothing, if the run is
    done or another live process has it), so that the run list shows it at once.
    Returns the slot, or None if the run was cancelled while it waited (nothing loaded).
    The caller then claims the run as running with `Store.claim_run(run_id, from_queue=True)`.
    `slots`: device_slots() of the run's device.
    """
    family, names = slots
    folder = _usable(folder or slots_folder())
    store.claim_run(run_id, status=RunStatus.QUEUED)
    ticket, order = _new_ticket(folder, family, store, run_id, names)
    said = None
    try:
        while True:
            if store.cancel_requested(run_id):
                return None
            tickets = _tickets(folder)
            for name in names:  # a free slot no older waiter may take: first come, first served per device
                if _ahead(tickets, family, [name], order):
                    continue
                held = _try_hold(folder / f"{name}.lock")
                if held is not None:
                    held.write(_holder_info(store, run_id))
                    return Slot(name, family, held)
            place = len(_ahead(tickets, family, names, order)) + 1
            if on_wait is not None and place != said:
                busy = ", ".join(f"run {h.get('run_id')} of {h.get('db')}" for h in holders(family, folder)
                                 if h["slot"] in names) or "another run"
                which = "" if family == "cpu" else f" ({', '.join(names)})"
                on_wait(f"waiting for a free {family} slot{which} on this machine: {ordinal(place)} in the queue "
                        f"({busy} running); it starts by itself (--no-queue starts at once)")
                said = place
            time.sleep(poll_s)
    finally:
        ticket.release(unlink=True)


def _usable(folder: Path) -> Path:
    """The slots folder, made if missing; a clear error (before anything is stored) if it cannot be."""
    try:
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise RunStateError(f"cannot use the run queue's folder {folder}: {exc.strerror or exc}; set STAR_SLOTS to a "
                            "writable folder, or start with --no-queue") from exc
    return folder


def _new_ticket(folder: Path, family: str, store, run_id: int, names: list[str]) -> tuple[_HeldFile, int]:
    """A ticket held by this process for a run that may take the slots `names`, and its place in the order (the
    time it started waiting, in ns)."""
    order = time.time_ns()
    name = f"{family}_{order:020d}_{os.getpid()}_{run_id}{TICKET_SUFFIX}"
    return _new_held(folder / "queue" / name, _holder_info(store, run_id) | {"slots": list(names)}), order


def _new_held(path: Path, info: dict) -> _HeldFile:
    """A new file held by this process. It gets its name only once locked, so that nobody takes it for a dead
    process's file and removes it between its creation and its lock."""
    held = _try_hold(path.with_name(path.name + PARTIAL_SUFFIX))
    assert held is not None  # a fresh name (time and pid) nobody else can hold
    held.write(info)
    os.replace(held.path, path)
    held.path = path
    return held


def _remove_dead_partials(folder: Path) -> None:
    """Files left by a process killed between creating and naming one (old enough not to be in the making)."""
    for path in folder.glob("*" + PARTIAL_SUFFIX):
        try:
            old = time.time() - path.stat().st_mtime > 60
        except FileNotFoundError:
            continue
        if old and not _is_held(path):
            path.unlink(missing_ok=True)
