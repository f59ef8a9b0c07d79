"""The runner's own checks of a task's result, with evidence.

A model saying "done" is a claim, not a fact. Before a task is marked done the runner
runs the configured ``verification.commands`` in the project (through the shell, with
a timeout, in their own process group so a timeout kills everything they started) and,
when ``verification.require_changes`` is set, checks that the task's change set (the
paths it created, modified or deleted since it was claimed,
:mod:`autonomous.workspace.changes`) is not empty. The result carries the evidence (command, exit code, last lines of
output) that goes into the task's notes and, on failure, back to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.workspace.changes import ChangeSet

TAIL_LINES = 40
_LINE_CAP = 400  # characters kept of one output line


@dataclass(slots=True)
class CommandResult:
    command: str
    exit_code: int | None  # None when it timed out or could not start
    tail: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def evidence(self) -> str:
        status = f"timed out after {self.duration_s:.0f}s" if self.timed_out else f"exit {self.exit_code}"
        head = f"$ {self.command}  ->  {status} ({self.duration_s:.1f}s)"
        return head + ("\n" + "\n".join(self.tail) if self.tail else "")


@dataclass(slots=True)
class VerificationResult:
    passed: bool
    commands: list[CommandResult] = field(default_factory=list)
    require_changes: bool = False
    changed: bool | None = None  # None when not checked
    reason: str = ""  # why it failed, one line

    @property
    def ran_anything(self) -> bool:
        return bool(self.commands) or self.require_changes

    def evidence(self) -> str:
        """The note stored on the task, whatever the result."""
        lines = [f"Verification {'passed' if self.passed else 'FAILED'}" + (f": {self.reason}" if self.reason else "")]
        if self.require_changes:
            found = "found" if self.changed else "NONE (no file created, modified or deleted)"
            lines.append(f"required changes: {found}")
        lines += [c.evidence() for c in self.commands]
        if not self.ran_anything:
            lines.append("(no verification configured: nothing was checked beyond the agent's report)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "changed": self.changed,
            "commands": [
                {"command": c.command, "exit_code": c.exit_code, "timed_out": c.timed_out, "tail": c.tail[-10:]}
                for c in self.commands
            ],
        }


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


async def verify(
    project_dir: Path,
    commands: Sequence[str],
    *,
    timeout: float = 600.0,
    require_changes: bool = False,
    change_set: ChangeSet | None = None,
    redact: Callable[[str], str] | None = None,
) -> VerificationResult:
    """Run every command (all of them, so the evidence is complete) and the change check
    (``change_set``: what the task changed, from the runner's own snapshots)."""
    project_dir = Path(project_dir)
    result = VerificationResult(passed=True, require_changes=require_changes)
    if require_changes:
        result.changed = bool(change_set)
        if not result.changed:
            result.passed = False
            result.reason = "the task changed nothing (no file created, modified or deleted)"
    for command in commands:
        cr = await run_command(command, project_dir, timeout)
        if redact is not None:
            cr.tail = [redact(line) for line in cr.tail]
        result.commands.append(cr)
        if not cr.passed and result.passed:
            result.passed = False
            result.reason = f"`{command}` " + ("timed out" if cr.timed_out else f"exited {cr.exit_code}")
    return result
