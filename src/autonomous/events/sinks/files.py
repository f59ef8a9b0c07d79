"""The file sinks: ``autonomous.log`` (one human line per event, rotated by size) and
``events.jsonl`` (one ``Event.to_dict()`` per line, which ``autonomous status``,
``autonomous logs`` and the dashboard read)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from autonomous.events.format import format_event

if TYPE_CHECKING:
    from autonomous.events.model import Event

LOG_FILENAME = "autonomous.log"
EVENTS_FILENAME = "events.jsonl"


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

    def handle(self, event: Event) -> None:
        self._file.write_line(json.dumps(event.to_dict(), default=str, ensure_ascii=False))

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

    def handle(self, event: Event) -> None:
        size = self._file.write_line(format_event(event.to_dict()))
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
