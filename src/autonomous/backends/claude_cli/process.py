"""The CLI as a child process: started in its own process group, always reaped with
everything it started, and killed by the kernel if the runner dies first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def reap(proc: asyncio.subprocess.Process, kill_grace: float, *, natural: bool = False) -> None:
    """End the CLI and everything it started, and wait for the CLI.

    The CLI leads its own process group (``start_new_session``), but it starts each Bash
    tool command in a *new session* of its own, so killing the group is not enough:
    the CLI's descendants are listed first (while they are still its descendants) and
    their groups are killed after it. ``natural``: the CLI closed its output by itself,
    so it gets the grace period to exit on its own (it saves the session after the
    result line) before any signal.
    """
    pgid = proc.pid
    family = _descendants(proc.pid) if proc.returncode is None else []
    try:
        if proc.returncode is None and natural:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), kill_grace)
        if proc.returncode is None:
            _killpg(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), kill_grace)
            except TimeoutError:
                _killpg(pgid, signal.SIGKILL)
                await proc.wait()
    finally:
        _killpg(pgid, signal.SIGKILL)  # background jobs left in the CLI's own group
        own = os.getpgrp()
        for pid in family:
            try:
                group = os.getpgid(pid)
            except (ProcessLookupError, PermissionError):
                continue
            if group != own:
                _killpg(group, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Linux ``/proc``; elsewhere only the group kill applies)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def parent_death_signal() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` asking the kernel to SIGKILL the CLI if the runner dies.

    Without it a runner killed with SIGKILL leaves the CLI working on the task,
    unsupervised, while the next runner resumes the same task. libc is loaded here, in
    the parent, so the child only makes one foreign call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: nobody will reap us
            os._exit(1)

    return preexec


async def feed_stdin(proc: asyncio.subprocess.Process, prompt: str) -> None:
    stdin = proc.stdin
    if stdin is None:
        return
    try:
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()
            await stdin.wait_closed()


async def drain(stream: asyncio.StreamReader | None, tail: deque[str]) -> None:
    if stream is None:
        return
    while True:
        chunk = await stream.readline()
        if not chunk:
            return
        tail.append(chunk.decode("utf-8", "replace"))
