"""The event bus: where every event goes once it happens.

The runner emits typed events (:mod:`autonomous.events.model`) into one :class:`EventBus`.
The bus is the one place that redacts: every event passes through the
:class:`~autonomous.events.redact.Redactor` *once*, and each sink gets the redacted copy,
so no sink can see a secret and no sink needs to redact. A sink that raises is logged
(once per sink) and skipped for that event; the run never stops because a disk filled up
or Slack was down.

The bus also keeps the live progress of each worker (task, tool in use, turns and cost
so far, across the task's runs) from the events themselves, so ``autonomous status``
shows what ``events.jsonl`` shows. The runner reads it into its state file; the bus asks
for that write when progress changes, at most once per ``interval`` seconds, with one
trailing write so the last change is never lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autonomous.events.model import Event, OutcomeEvent, TaskClaimed, ToolUse, UsageUpdate
from autonomous.events.redact import Redactor

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config

log = logging.getLogger("autonomous.events")

STATE_INTERVAL = 1.0  # seconds between live-progress writes of the runner state


@runtime_checkable
class Sink(Protocol):
    """Something that consumes (already redacted) events."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Schedule = Callable[[float, Callable[[], None]], Cancellable]


@dataclass(slots=True)
class LiveTask:
    """What one worker's task is doing now. ``turns`` and ``cost_usd`` count every run of
    the task so far: the runs that ended (their outcomes) plus the one in flight."""

    task_id: str  # the worker's task in flight, or the last one it ran
    key: str | None = None
    tool: str | None = None
    turns: int = 0
    cost_usd: float = 0.0
    ended_turns: int = 0  # of the task's runs that ended
    ended_cost_usd: float = 0.0

    def update(self, event: Event) -> bool:
        """Take in one event of this task; whether anything ``status`` shows changed."""
        if isinstance(event, ToolUse):
            self.tool = event.name
        elif isinstance(event, UsageUpdate):
            if event.turns is not None:
                self.turns = self.ended_turns + event.turns
            if event.cost_usd is not None:
                self.cost_usd = self.ended_cost_usd + event.cost_usd
        elif isinstance(event, OutcomeEvent):
            self.ended_turns += event.turns
            self.ended_cost_usd += event.cost_usd
            self.turns, self.cost_usd, self.tool = self.ended_turns, self.ended_cost_usd, None
        else:
            return False
        return True


class EventBus:
    """Fan events out to sinks, redacted first; keep each worker's live progress.

    ``emit`` never raises because of a sink: a failing sink gets one warning in the
    Python log (the first failure, redacted) and keeps receiving later events, in case
    the failure was passing. Thread-safe: workers may emit from several threads.
    ``clock`` is what the state-write interval is measured against (tests move it).
    """

    def __init__(
        self,
        sinks: Iterable[Sink] = (),
        redactor: Redactor | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = STATE_INTERVAL,
    ):
        self.sinks: list[Sink] = list(sinks)
        self.redactor = redactor or Redactor()
        self.live: dict[str, LiveTask] = {}  # worker id -> its task in flight (or last run)
        self.interval = interval
        self._clock = clock
        self._failed: set[int] = set()
        self._lock = threading.RLock()
        self._closed = False
        self._save: Callable[[], None] | None = None
        self._schedule: Schedule | None = None
        self._saved_at = float("-inf")
        self._trailing: Cancellable | None = None

    def add(self, sink: Sink) -> None:
        with self._lock:
            self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        clean = self.redactor.event(event)
        with self._lock:
            if self._closed:
                return
            progressed = self._progress(clean)
            for sink in self.sinks:
                try:
                    sink.handle(clean)
                except Exception as exc:
                    self._report(sink, "handle", exc)
        if progressed:
            self._save_soon()

    # -- live progress -----------------------------------------------------------------------
    def track(self, save: Callable[[], None], schedule: Schedule) -> None:
        """Call ``save`` when live progress changes, at most once per ``interval``; a change
        inside the interval is saved by one trailing call ``schedule``\\ d for its end."""
        with self._lock:
            self._save, self._schedule = save, schedule

    def untrack(self) -> None:
        """No more saves (the session ended: its last state is written by the runner)."""
        with self._lock:
            self._save = self._schedule = None
            if self._trailing is not None:
                self._trailing.cancel()
                self._trailing = None

    def _progress(self, event: Event) -> bool:
        worker = event.worker_id
        if worker is None or event.task_id is None:
            return False
        if isinstance(event, TaskClaimed):
            self.live[worker] = LiveTask(event.task_id, event.key)
            return True
        live = self.live.get(worker)
        if live is None or live.task_id != event.task_id:
            return False
        return live.update(event)

    def _save_soon(self) -> None:
        with self._lock:
            if self._save is None or self._schedule is None or self._trailing is not None:
                return  # not tracked, or a trailing save is already on its way
            wait = self._saved_at + self.interval - self._clock()
            if wait > 0:
                self._trailing = self._schedule(wait, self._save_now)
                return
        self._save_now()

    def _save_now(self) -> None:
        with self._lock:
            self._trailing = None
            save, self._saved_at = self._save, self._clock()
        if save is not None:
            save()

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every sink (flushes Slack, stops the live display). Idempotent."""
        self.untrack()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:
                    self._report(sink, "close", exc)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _report(self, sink: Sink, what: str, exc: Exception) -> None:
        if id(sink) in self._failed:
            return
        self._failed.add(id(sink))
        # The exception text may quote what the sink was writing: redact it too.
        message = self.redactor.text(f"{type(exc).__name__}: {exc}")
        log.warning(
            "event sink %s failed to %s (%s); the run continues, further failures of this sink are not reported",
            type(sink).__name__,
            what,
            message,
        )


def build_bus(config: Config, *, redactor: Redactor | None = None, terminal: bool | None = None) -> EventBus:
    """The bus ``autonomous start`` uses: log file, JSONL, Slack when a webhook is set,
    and the terminal display (``terminal=None``: only when stdout is a terminal; False:
    none, e.g. for ``--quiet`` or library use).

    ``redactor`` defaults to the configuration's (:func:`autonomous.config.build_redactor`).
    """
    from autonomous.events.sinks.files import JsonlSink, LogFileSink

    if redactor is None:
        from autonomous.config import build_redactor

        redactor = build_redactor(config)
    sinks: list[Any] = [LogFileSink(config.log_dir), JsonlSink(config.log_dir)]
    if config.progress.slack_webhook:
        from autonomous.events.sinks.slack import SlackSink

        sinks.append(SlackSink.from_config(config))
    if terminal is not False:
        from autonomous.events.sinks.terminal import TerminalSink

        sinks.append(TerminalSink())
    return EventBus(sinks, redactor)
