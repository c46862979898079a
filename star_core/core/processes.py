"""Processes of this machine: whether one is alive, and which process a pid file still names.

A pid alone does not name a process for long: once its process ends, the number is free for
the next one (after a reboot, soon), and a signal sent to it reaches whoever has it now. So a
worker's pid file is held: spawn_holding starts the worker holding an exclusive flock on it
from its first instruction to its end, and live_holder believes the pid inside only while that
lock is held. The kernel drops the lock when the worker ends however it ends (kill -9
included), so a file nobody holds is a dead worker's, whatever process has its pid now.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """True while process `pid` exists (also when it is another user's and cannot be signalled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spawn_holding(pid_file: Path, argv: list[str], **popen) -> subprocess.Popen:
    """Start `argv` holding an exclusive flock on `pid_file` for its whole life; the file holds its pid.

    The lock is taken here, before the child exists, on a new file that the child inherits the
    descriptor of (flock locks belong to the open file, not to a process): there is no moment
    between the start and the child's end when the file names it but is not held. The file gets
    its name only once it holds the pid, so a reader never sees a held file without one.
    """
    partial = pid_file.with_name(f".{pid_file.name}.{os.getpid()}.{time.time_ns()}.partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new file nobody else has opened: taken at once
        process = subprocess.Popen(argv, pass_fds=(fd,), **popen)
        os.write(fd, str(process.pid).encode())
        os.replace(partial, pid_file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # the child's copy keeps the lock
    return process


def live_holder(pid_file: Path) -> int | None:
    """The pid in `pid_file` while the process started by spawn_holding still holds it; else None.

    None also for a file nobody holds (its process is gone: the pid in it may be an unrelated
    process's by now) and for a missing or unreadable one.
    """
    try:
        fd = os.open(pid_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0)
        else:
            return None  # we got the lock: nobody holds it (closing the file drops ours)
    finally:
        os.close(fd)
    try:
        return int(text.decode().strip())
    except ValueError:
        return None


def try_hold(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing), held by this process until the descriptor returned
    is closed or the process ends however it ends; None if another open file holds it now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_held(path: Path) -> bool | None:
    """Whether a live process holds `path`'s flock (this one included, through another descriptor);
    None where there is no such file or it cannot be opened: no evidence either way."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if we got it
    return False


def signal_holder(pid_file: Path, sig: int = signal.SIGTERM) -> int | None:
    """Send `sig` to the process holding `pid_file` (live_holder); return its pid, or None if none holds it."""
    pid = live_holder(pid_file)
    if pid is None:
        return None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # it ended between the check and the signal
        return None
    return pid
