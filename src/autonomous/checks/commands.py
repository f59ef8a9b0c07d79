"""One check command, run the way the runner runs every check: through the shell, in the
project, with a timeout, in its own process group (a timeout kills everything it started),
keeping only the tail of its output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 40
_LINE_CAP = 400  # characters kept of one output line


@dataclass(slots=True)
class CommandResult:
    command: str
    exit_code: int | None  # None when it timed out or could not start
    tail: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    timed_out: bool = False
    failing_tests: list[str] | None = None  # test ids read from a junit XML report; None: not readable
    accepted: str = ""  # why a failure is not the task's (it failed the same way before the run)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def evidence(self) -> str:
        status = f"timed out after {self.duration_s:.0f}s" if self.timed_out else f"exit {self.exit_code}"
        head = f"$ {self.command}  ->  {status} ({self.duration_s:.1f}s)"
        return head + ("\n" + "\n".join(self.tail) if self.tail else "")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_command(command: str, cwd: Path, timeout: float, tail_lines: int = TAIL_LINES) -> CommandResult:
    """Run one shell command; keep only the last ``tail_lines`` lines of its output
    (stdout and stderr together), so a chatty test suite cannot fill memory."""
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=tail_lines)
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(command, None, [f"could not start: {exc}"], time.monotonic() - start)

    async def pump() -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip("\n")
            tail.append(text if len(text) <= _LINE_CAP else text[:_LINE_CAP] + " …")
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(pump(), timeout)
    except TimeoutError:
        timed_out = True
        _kill_group(proc)
        await proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    return CommandResult(
        command,
        None if timed_out else proc.returncode,
        list(tail),
        time.monotonic() - start,
        timed_out,
    )
