"""The event bus and the file sinks: where the runner's events go once they happen.

The runner emits :class:`~autonomous.events.Event` objects into one :class:`EventBus`.
The bus passes every event through the :class:`~autonomous.events.Redactor` *once*,
then hands the redacted copy to each sink, so no sink can see a secret, and no sink
can forget to redact. A sink that raises is logged (once per sink) and skipped for that
event; the run never stops because a disk filled up or Slack was down.

Sinks here: :class:`LogFileSink` (the human log, ``autonomous.log``) and
:class:`JsonlSink` (the machine log, ``events.jsonl``, which ``autonomous status`` and
``autonomous logs`` read). ``slack.SlackSink`` and ``display.TerminalSink`` live with the
code they need (httpx, rich), so this module stays cheap to import.

:func:`format_event` is the one place that turns an event into a line of text; the log
file, the plain terminal output and ``autonomous logs`` all use it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autonomous.events import Event, EventKind, Redactor

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config

log = logging.getLogger("autonomous.events")

LOG_FILENAME = "autonomous.log"
EVENTS_FILENAME = "events.jsonl"


@runtime_checkable
class Sink(Protocol):
    """Something that consumes (already redacted) events."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class EventBus:
    """Fan events out to sinks, redacted first.

    ``emit`` never raises because of a sink: a failing sink gets one warning in the
    Python log (the first failure, redacted) and keeps receiving later events, in case
    the failure was passing. Thread-safe: workers may emit from several threads.
    """

    def __init__(self, sinks: Iterable[Sink] = (), redactor: Redactor | None = None):
        self.sinks: list[Sink] = list(sinks)
        self.redactor = redactor or Redactor()
        self._failed: set[int] = set()
        self._lock = threading.RLock()
        self._closed = False

    def add(self, sink: Sink) -> None:
        with self._lock:
            self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        clean = self.redactor.event(event)
        with self._lock:
            if self._closed:
                return
            for sink in self.sinks:
                try:
                    sink.handle(clean)
                except Exception as exc:
                    self._report(sink, "handle", exc)

    def close(self) -> None:
        """Close every sink (flushes Slack, stops the live display). Idempotent."""
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


# -- formatting ---------------------------------------------------------------------------

_LEVELS = {
    EventKind.ERROR.value: "ERROR",
    EventKind.WARNING.value: "WARN",
    EventKind.RATE_LIMIT.value: "WARN",
    EventKind.PERMISSION_DENIED.value: "WARN",
    EventKind.API_RETRY.value: "WARN",
}
_BASE_FIELDS = ("at", "kind", "task_id", "backend")
MAX_TEXT = 300


def _one_line(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, "", [], {}):
            return value
    return None


def _money(value: Any) -> str:
    try:
        return f"${float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


def _tool_summary(data: dict[str, Any]) -> str:
    name = _first(data, "tool", "name") or "tool"
    arg = _first(data, "summary", "command", "file_path", "path", "pattern")
    tool_input = data.get("input")
    if arg is None and isinstance(tool_input, dict):
        arg = _first(tool_input, "command", "file_path", "path", "pattern", "url", "description")
    if arg is None and tool_input:
        arg = tool_input
    return f"{name} {_one_line(arg, 160)}" if arg is not None else str(name)


def describe(event: dict[str, Any]) -> str:
    """What happened, in a few words, from an event's JSON form (``Event.to_dict()``).
    The kind is not repeated: :func:`format_event` puts it in front."""
    kind = event.get("kind", "?")
    data = {k: v for k, v in event.items() if k not in _BASE_FIELDS and k != "task_key"}
    if kind == EventKind.TASK_CLAIMED:
        return _one_line(_first(data, "title", "key") or "", 200)
    if kind == EventKind.TOOL_USE:
        return _tool_summary(data)
    if kind == EventKind.TEXT:
        return _one_line(_first(data, "text") or "")
    if kind == EventKind.USAGE:
        parts = []
        if "turns" in data:
            parts.append(f"turns {data['turns']}")
        if "cost_usd" in data:
            parts.append(f"cost {_money(data['cost_usd'])}")
        return ", ".join(parts) or _one_line(data)
    if kind in (EventKind.OUTCOME, EventKind.TASK_RECORDED):
        text = str(_first(data, "status") or "?")
        extra = []
        if data.get("turns"):
            extra.append(f"{data['turns']} turns")
        if data.get("cost_usd"):
            extra.append(_money(data["cost_usd"]))
        if data.get("duration_s"):
            extra.append(f"{float(data['duration_s']):.0f}s")
        if extra:
            text += f" ({', '.join(extra)})"
        detail = _first(data, "blocker", "error", "summary")
        return text + (f": {_one_line(detail, 200)}" if detail else "")
    if kind == EventKind.SESSION_START:
        return str(_first(data, "session_id") or "")
    if kind == EventKind.SESSION_END:
        return _one_line(_first(data, "reason", "stop_reason", "state") or "", 200)
    if kind == EventKind.RATE_LIMIT:
        until = _first(data, "retry_at")
        return f"until {until}" if until else _one_line(data)
    if kind == EventKind.VERIFICATION:
        passed = data.get("passed", data.get("ok"))
        verdict = "passed" if passed else "failed" if passed is not None else ""
        what = _first(data, "command", "summary", "message")
        return " ".join(p for p in (verdict, _one_line(what, 200) if what else "") if p)
    message = _first(data, "message", "reason", "text", "summary", "error")
    if message is not None:
        return _one_line(message)
    return _one_line(data) if data else ""


def format_event(event: dict[str, Any]) -> str:
    """One human line: ``2026-05-09T07:35:25 INFO  [AUTH-1.2] tool_use       Bash pytest -q``."""
    at = str(event.get("at", ""))[:19]
    kind = str(event.get("kind", "?"))
    level = _LEVELS.get(kind, "INFO")
    task = _first(event, "task_key", "key") or event.get("task_id")
    where = f"[{task}] " if task else ""
    return f"{at} {level:<5} {where}{kind:<14} {describe(event)}".rstrip()


class TaskKeys:
    """Task id -> key, learnt from the events themselves (every event the runner emits
    about a task carries its ``key``; backend events carry only the id), so every line
    about a task is labelled with its key, the name people use."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    def label(self, event: Event) -> dict[str, Any]:
        """The event's JSON form with ``task_key`` when its task's key is known."""
        record = event.to_dict()
        if event.task_id:
            key = event.data.get("key")
            if isinstance(key, str) and key:
                self._keys[event.task_id] = key
            if "task_key" not in record and event.task_id in self._keys:
                record["task_key"] = self._keys[event.task_id]
        return record


# -- file sinks -----------------------------------------------------------------------------


class _AppendFile:
    """A file opened with O_APPEND, written one whole line per ``write`` call, so several
    processes appending to it never interleave inside a line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write_line(self, line: str) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path.name} is closed")
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        while view:  # one write in practice; a short write on a full disk continues
            written = os.write(self._fd, view)
            view = view[written:]
        return os.fstat(self._fd).st_size

    def reopen(self) -> None:
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonlSink:
    """``events.jsonl``: one ``Event.to_dict()`` per line, append-only, visible at once
    (unbuffered ``os.write``) to ``autonomous logs --follow`` and ``status``."""

    def __init__(self, log_dir: Path):
        self.path = Path(log_dir) / EVENTS_FILENAME
        self._file = _AppendFile(self.path)
        self._keys = TaskKeys()

    def handle(self, event: Event) -> None:
        self._file.write_line(json.dumps(self._keys.label(event), default=str, ensure_ascii=False))

    def close(self) -> None:
        self._file.close()


class LogFileSink:
    """``autonomous.log``: one human line per event, rotated by size.

    When the file passes ``max_bytes`` it becomes ``autonomous.log.1`` (older ones shift
    up to ``backups``). Another process still appending to the renamed file finishes its
    lines there; nothing is lost, lines just land in the previous file.
    """

    def __init__(self, log_dir: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 3):
        self.path = Path(log_dir) / LOG_FILENAME
        self.max_bytes = max_bytes
        self.backups = backups
        self._file = _AppendFile(self.path)
        self._keys = TaskKeys()

    def handle(self, event: Event) -> None:
        size = self._file.write_line(format_event(self._keys.label(event)))
        if self.max_bytes and size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file.reopen()

    def close(self) -> None:
        self._file.close()


# -- wiring ---------------------------------------------------------------------------------


def build_bus(config: Config, *, redactor: Redactor | None = None, terminal: bool | None = None) -> EventBus:
    """The bus ``autonomous start`` uses: log file, JSONL, Slack when a webhook is set,
    and the terminal display (``terminal=None``: only when stdout is a terminal; False:
    none, e.g. for ``--quiet`` or library use).

    ``redactor`` defaults to one built from ``config.secret_values(config)``.
    """
    if redactor is None:
        from autonomous.config import secret_values

        redactor = Redactor(secret_values(config))
    sinks: list[Sink] = [LogFileSink(config.log_dir), JsonlSink(config.log_dir)]
    if config.progress.slack_webhook:
        from autonomous.slack import SlackSink

        sinks.append(SlackSink.from_config(config, redactor=redactor))
    if terminal is not False:
        from autonomous.display import TerminalSink

        sinks.append(TerminalSink())
    return EventBus(sinks, redactor)
