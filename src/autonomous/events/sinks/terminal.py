"""What a person watching ``autonomous start`` sees: a live panel on a terminal, plain
lines anywhere else.

On a terminal (stdout is a TTY, ``CI`` unset, ``TERM`` not ``dumb``) a rich live panel
shows each task in flight (key and title, tool in use, turns, cost so far, elapsed) and
the project's progress ("done N of M" and a bar). Every notable event is printed as a
line *above* the panel, so the history stays in the terminal's scrollback while the
panel redraws below it. Elsewhere (a pipe, a file, CI logs) every notable event is one
plain line. Agent text and token counts are left to the log files either way. rich is
imported only when the live panel starts, so importing this module is cheap.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from autonomous.events.format import describe
from autonomous.events.model import (
    Event,
    EventKind,
    OutcomeEvent,
    SessionStart,
    TaskClaimed,
    TaskRecorded,
    ToolUse,
    UsageUpdate,
    Verification,
)

# Events worth a plain line; the rest (text, token usage, tool results) stay in the logs.
PLAIN_KINDS = frozenset(
    {
        EventKind.SESSION_START,
        EventKind.SESSION_END,
        EventKind.TASK_CLAIMED,
        EventKind.TOOL_USE,
        EventKind.OUTCOME,
        EventKind.VERIFICATION,
        EventKind.TASK_RECORDED,
        EventKind.CHECKPOINT,
        EventKind.RATE_LIMIT,
        EventKind.API_RETRY,
        EventKind.NUDGE,
        EventKind.PERMISSION_DENIED,
        EventKind.WARNING,
        EventKind.ERROR,
    }
)


def is_interactive(stream: TextIO) -> bool:
    """Whether to draw the live panel on ``stream``."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass(slots=True)
class _TaskView:
    label: str
    started: float
    tool: str = ""
    turns: int = 0
    cost_usd: float = 0.0
    status: str = "running"


class TerminalSink:
    """The terminal display, as an event sink.

    ``live=None`` decides from the stream (see :func:`is_interactive`). ``console`` is a
    rich console to draw on (tests pass one writing to a buffer).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        console: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stdout
        self.live = is_interactive(self.stream) if live is None else live
        self._console = console
        self._clock = clock
        self._lock = threading.RLock()
        self._tasks: dict[str, _TaskView] = {}
        self._labels: dict[str, str] = {}
        self._session_started: float | None = None
        self._done = 0
        self._blocked = 0
        self._project: tuple[int, int] | None = None  # (done, total) of the project's tasks at session start
        self._cost = 0.0
        self._live: Any = None  # rich.live.Live once started
        self._closed = False

    # -- the sink ---------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            line = self._update(event)
            if self.live:
                self._ensure_live()
                if line is not None and event.kind in PLAIN_KINDS:
                    self._live.console.print(line, markup=False, highlight=False)
                self._live.refresh()
            elif line is not None and event.kind in PLAIN_KINDS:
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._live is not None:
                self._live.stop()
                self._live = None

    # -- state ------------------------------------------------------------------------------
    def _update(self, event: Event) -> str | None:
        tid = event.task_id
        if isinstance(event, SessionStart):
            self._session_started = self._clock()
            done, total = event.tasks_done, event.tasks_total
            self._project = (done, total) if done is not None and total is not None else None
        if tid and isinstance(event, TaskClaimed):
            label = f"{event.key} {event.title}" if event.key and event.title else event.key or event.title or tid
            self._labels[tid] = label
            self._tasks[tid] = _TaskView(label, self._clock())
        view = self._tasks.get(tid) if tid else None
        if view is not None:
            if isinstance(event, ToolUse):
                view.tool = event.name
            elif isinstance(event, UsageUpdate | OutcomeEvent):
                # the backend's own figure when it has one; else its running estimate
                view.turns = event.turns if event.turns is not None else view.turns
                cost = event.cost_usd if event.cost_usd is not None else getattr(event, "cost_usd_estimate", None)
                view.cost_usd = cost if cost is not None else view.cost_usd
            elif isinstance(event, Verification):
                view.tool = "verifying"
        if isinstance(event, TaskRecorded) and tid:
            return self._finished(event, self._tasks.pop(tid, None))
        return self._line(event)

    def _finished(self, event: TaskRecorded, view: _TaskView | None) -> str:
        status = event.status or "?"
        cost = event.cost_usd if event.cost_usd is not None else view.cost_usd if view else 0.0
        turns = event.turns if event.turns is not None else view.turns if view else 0
        self._cost += cost
        if status == "done":
            self._done += 1
        elif status == "blocked":
            self._blocked += 1
        mark = {"done": "✓", "blocked": "✗"}.get(status, "•")
        label = view.label if view else self._labels.get(event.task_id or "", event.task_id or "")
        elapsed = f", {_duration(self._clock() - view.started)}" if view else ""
        message = event.message
        tail = f" - {describe({'kind': 'text', 'text': message})[:160]}" if message and status != "done" else ""
        return f"{mark} {label}: {status} ({turns} turns, ${cost:.4f}{elapsed}){tail}"

    def _line(self, event: Event) -> str:
        record = event.to_dict()
        at = event.at.astimezone().strftime("%H:%M:%S") if isinstance(event.at, datetime) else ""
        who = self._labels.get(event.task_id or "", event.task_id or "")
        if isinstance(event, TaskClaimed):
            return f"{at} → {who}"
        where = f"[{who.split(' ', 1)[0]}] " if who else ""
        text = describe(record)
        return f"{at} {where}{event.kind.value}{': ' + text if text else ''}"

    # -- the live panel ---------------------------------------------------------------------
    def _ensure_live(self) -> None:
        if self._live is not None:
            return
        from rich.console import Console
        from rich.live import Live

        console = self._console or Console(file=self.stream)
        own = self._console is None
        self._live = Live(
            get_renderable=self._render,
            console=console,
            refresh_per_second=2,
            transient=True,
            redirect_stdout=own,
            redirect_stderr=own,
        )
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            now = self._clock()
            in_flight = sum(v.cost_usd for v in self._tasks.values())
            elapsed = _duration(now - self._session_started) if self._session_started is not None else "-"
            summary = Text(
                f"this session: done {self._done}  blocked {self._blocked}  cost ${self._cost + in_flight:.4f}  "
                f"elapsed {elapsed}",
                style="dim",
            )
            progress = self._progress()
            if progress is not None:
                summary = Group(progress, summary)
            if not self._tasks:
                return Group(Text("waiting for a task..."), summary)
            table = Table(box=None, pad_edge=False, show_header=True, header_style="bold", expand=False)
            for column in ("TASK", "TOOL", "TURNS", "COST", "ELAPSED"):
                table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60 if column == "TASK" else None)
            for view in self._tasks.values():
                table.add_row(
                    view.label,
                    view.tool or "-",
                    str(view.turns),
                    f"${view.cost_usd:.4f}",
                    _duration(now - view.started),
                )
            return Group(table, summary)

    def _progress(self) -> Any:
        """``done N of M`` and a bar, for the project's tasks (known from the session start)."""
        if self._project is None:
            return None
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        start_done, total = self._project
        done = min(total, start_done + self._done)
        row = Table.grid(padding=(0, 1))
        row.add_row(f"done {done} of {total}", ProgressBar(total=max(total, 1), completed=done, width=40))
        return row
