"""The import ledger: ``<state_dir>/imports.json``, written by ``init`` for an imported
task list, read when a task finishes (to tick its box) and by ``export``.

It holds, per task key, where the task is in its source file (line and a hash of the
line, the guard that keeps a tick from clobbering a line someone edited), its group, and
the source's fields the task model has no place for. It lives beside the task store
rather than in it: it describes a file on this machine, is rewritten whole by every
``init``, and needs no change to any store's schema. Runtime state, so never committed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autonomous.fsutil import write_json_atomic

LEDGER_NAME = "imports.json"


def ledger_path(state_dir: Path) -> Path:
    return Path(state_dir) / LEDGER_NAME


def write_ledger(state_dir: Path, data: dict[str, Any]) -> Path:
    path = ledger_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path


def clear_ledger(state_dir: Path) -> None:
    """A spec in the tool's own grammar has no source boxes to keep in step."""
    ledger_path(state_dir).unlink(missing_ok=True)


_cache: dict[Path, tuple[int, dict[str, Any]]] = {}


def read_ledger(state_dir: Path) -> dict[str, Any] | None:
    """The ledger, or None when there is none (or it cannot be read: ticking is a
    convenience, never a reason to fail a task). Cached by modification time: the runner
    reads it after every task."""
    path = ledger_path(state_dir)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    hit = _cache.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        return None
    _cache[path] = (mtime, data)
    return data
