"""The runner's own state file, ``<state_dir>/runner_state.json``.

It is what ``autonomous status``, ``stop``, ``resume`` and ``start --resume`` read to
find a running or interrupted session. It is written atomically (temp file, fsync,
rename) so a crash leaves either the old or the new version, never half of one. Task
truth stays in the provider; this file only says what the runner was doing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autonomous.errors import StoreCorrupt
from autonomous.fsutil import write_json_atomic

FILENAME = "runner_state.json"
SCHEMA_VERSION = 1


@dataclass(slots=True)
class CurrentTask:
    id: str
    key: str
    title: str
    started_at: str  # ISO time
    token: int | None = None  # fencing token of our claim
    backend_session_id: str | None = None  # lets --resume continue the conversation
    turns: int = 0
    cost_usd: float = 0.0
    tool: str | None = None  # tool in use right now
    worker_id: str | None = None


@dataclass(slots=True)
class RunnerState:
    session_id: str
    worker_id: str
    state: str = "running"  # running, paused, stopped, error, completed
    pid: int = field(default_factory=os.getpid)
    started_at: str = ""
    updated_at: str = ""
    ended_at: str | None = None
    backend: str = ""
    sandbox: str = ""  # which sandbox is in force (autonomous.sandbox)
    tasks_completed: list[str] = field(default_factory=list)  # task keys
    tasks_blocked: list[str] = field(default_factory=list)
    tasks_failed: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    turns: int = 0
    current: list[CurrentTask] = field(default_factory=list)  # one per busy worker
    pause_reason: str | None = None  # set when state == paused (checkpoint awaiting review)
    stop_reason: str | None = None
    exit_code: int | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerState:
        data = dict(data)
        data.pop("schema_version", None)
        current = [CurrentTask(**c) for c in data.pop("current", [])]
        return cls(current=current, **data)


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILENAME


def load(state_dir: Path) -> RunnerState | None:
    """The saved state, or None when no runner ever ran here. A damaged file is
    reported (StoreCorrupt with its path) and left as it is."""
    path = state_path(state_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unknown schema_version {data.get('schema_version')!r}")
        return RunnerState.from_dict(data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreCorrupt(f"{path}: not a runner state file this version can read ({exc})") from None


def save(state_dir: Path, state: RunnerState) -> None:
    write_json_atomic(state_path(state_dir), state.to_dict())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
