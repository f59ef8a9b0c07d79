"""Checkpoints: moments where a person may want to look before the runner goes on.

Kinds (the predecessor's four, plus one for interactive mode):

``turn_interval``       every ``execution.checkpoints.turn_interval`` turns of a task
``regression_failure``  the runner's verification failed (tests red after "done")
``blocker``             the agent reported it cannot go on
``context_high``        the context passed ``context_threshold`` of the window: the task
                        is re-queued and continues in a fresh context
``before_task``         interactive mode only: ask before every task

Execution modes (``execution.mode``) decide which checkpoints stop for review:

``autonomous``   none pause. Only the critical ones *act*, and they act by the runner's
                 own rules: failures stop the run (stop-on-failure), a full context
                 re-queues the task. Everything else is an event in the log.
``supervised``   every checkpoint pauses for review.
``interactive``  as supervised, and also asks before each task.

A pause asks on the terminal when stdin is a TTY (continue / pause / details / abort).
Without one, nobody can answer: the runner saves its state as paused and exits 3, and
``autonomous start --resume`` continues.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO


class CheckpointKind(enum.StrEnum):
    TURN_INTERVAL = "turn_interval"
    REGRESSION_FAILURE = "regression_failure"
    BLOCKER = "blocker"
    CONTEXT_HIGH = "context_high"
    BEFORE_TASK = "before_task"


CRITICAL = frozenset({CheckpointKind.REGRESSION_FAILURE, CheckpointKind.BLOCKER, CheckpointKind.CONTEXT_HIGH})


class ExecutionMode(enum.StrEnum):
    AUTONOMOUS = "autonomous"
    SUPERVISED = "supervised"
    INTERACTIVE = "interactive"


class Decision(enum.StrEnum):
    CONTINUE = "continue"
    PAUSE = "pause"
    ABORT = "abort"


@dataclass(slots=True)
class Checkpoint:
    kind: CheckpointKind
    task_key: str | None = None
    reason: str = ""
    details: str = ""  # shown when the reviewer asks for details
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def critical(self) -> bool:
        return self.kind in CRITICAL

    def describe(self) -> str:
        where = f" on {self.task_key}" if self.task_key else ""
        return f"checkpoint {self.kind.value}{where}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.kind.value, "task_key": self.task_key, "reason": self.reason, **self.data}


def requires_review(kind: CheckpointKind, mode: ExecutionMode | str) -> bool:
    """Whether this checkpoint stops for a person in this mode (see the module docstring)."""
    mode = ExecutionMode(mode)
    if mode is ExecutionMode.AUTONOMOUS:
        return False
    if kind is CheckpointKind.BEFORE_TASK:
        return mode is ExecutionMode.INTERACTIVE
    return True


class Approver(Protocol):
    def ask(self, checkpoint: Checkpoint) -> Decision: ...


class NoTerminal:
    """The answer when nobody is there: pause, so the run waits for a person."""

    def ask(self, checkpoint: Checkpoint) -> Decision:
        return Decision.PAUSE


class TerminalApprover:
    """Asks on the terminal; without a TTY it pauses (nobody could answer)."""

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        input_fn: Callable[[str], str] | None = None,
    ):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._input = input_fn

    def interactive(self) -> bool:
        if self._input is not None:
            return True
        try:
            return bool(self.stdin.isatty())
        except (AttributeError, ValueError):
            return False

    def _read(self, prompt: str) -> str:
        if self._input is not None:
            return self._input(prompt)
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line

    def ask(self, checkpoint: Checkpoint) -> Decision:
        if not self.interactive():
            return Decision.PAUSE
        self.stdout.write(f"\n⏸  {checkpoint.describe()}\n")
        while True:
            try:
                answer = self._read("[c]ontinue, [p]ause, [d]etails, [a]bort? ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                return Decision.PAUSE
            if answer in ("c", "continue", "y", "yes"):
                return Decision.CONTINUE
            if answer in ("p", "pause"):
                return Decision.PAUSE
            if answer in ("a", "abort", "q", "quit"):
                return Decision.ABORT
            if answer in ("d", "details"):
                self.stdout.write((checkpoint.details or "(no details)") + "\n")
                continue
            self.stdout.write("please answer c, p, d or a\n")


class TurnCounter:
    """Fires once every ``interval`` turns of a task (0 or None: never)."""

    def __init__(self, interval: int | None):
        self.interval = interval or 0
        self._next = self.interval

    def update(self, turns: int) -> bool:
        if not self.interval or turns < self._next:
            return False
        while self._next <= turns:
            self._next += self.interval
        return True


def context_high(context_tokens: int, context_window: int, threshold: float) -> bool:
    """Whether the last request's context passed ``threshold`` (a fraction) of the window."""
    if not context_tokens or not context_window or not threshold:
        return False
    return context_tokens > threshold * context_window
