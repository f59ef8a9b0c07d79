"""The runner as an operating-system process: who it is, its lock, its children.

* :func:`new_worker_id` names a worker ``hostname:pid:rand`` (unique, and tells a person
  where it runs);
* :class:`RunnerLock` keeps one runner per project;
* :func:`signal_handlers` routes SIGINT and SIGTERM to the session while it runs;
* :func:`kill_children` ends every process the runner started (a second Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from autonomous.errors import RunnerBusy

LOCK_FILE = "runner.lock"


def new_worker_id() -> str:
    """``hostname:pid:rand``: unique per process, and tells a person where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def same_host(worker_id: str | None) -> bool:
    return bool(worker_id) and worker_id.split(":", 1)[0] == socket.gethostname()


class RunnerLock:
    """One runner per project: ``flock`` on ``<state_dir>/runner.lock``, held for the whole
    session and freed by the kernel however the process ends (``kill -9`` included), so
    no stale lock ever needs a person. The file names the holder's pid for the message."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunnerBusy(
                f"another runner is running on this project (pid {holder or '?'}); "
                "stop it with `autonomous stop` first, or wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def kill_children() -> None:
    """Kill every child process of this runner and their process groups (the agent and
    anything it started). Linux: read from /proc; elsewhere nothing to find."""
    me = os.getpid()
    my_group = os.getpgrp()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != me:
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group != my_group:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def signal_handlers(loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler(signum)`` in the loop while the block runs (only
    in the main thread: an embedding application's worker thread keeps its own handling)."""
    installed = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, handler, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    try:
        yield
    finally:
        for signum in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
