"""The runner's own state file, ``<state_dir>/runner_state.json``.

It is what ``autonomous status``, ``stop``, ``resume`` and ``start --resume`` read to
find a running or interrupted session. Task truth stays in the provider; this file only
says what the runner was doing. The runner saves it at every step, so a save costs the
same whatever the session has done (the per-task overhead stays flat at 10,000 tasks):

* **Atomic.** The file is written to a temp file and renamed over the old one: readers
  and a crashed (even ``kill -9``) runner only ever see a complete file.
* **No growing rewrite.** The session's lists of finished task keys, which grow with
  every task, are not in the file: each key is appended once to
  ``runner_state.tasks`` (``<session>\t<completed|blocked|failed>\t<key>`` lines; the
  file is started afresh by the first save of another session). :func:`load` reads the
  lines of the file's session back into the lists. The state file itself stays small.
* **fsync where it matters.** A save that starts a session or changes its state
  (paused, stopped, completed, error) is durable before :func:`save` returns: the temp
  file, the task journal and the directory are fsynced. The saves in between (a task
  claimed, a conversation id, a task recorded) are fsynced at most once a second
  (``FSYNC_INTERVAL``). What that gives up is only against a power cut, never a
  process crash: the last second of progress may be lost, or the newest file may be
  found damaged, which ``status`` reports as unreadable and ``start`` overwrites; the
  task store, which the runner never writes without its own fsync, still has every task's
  truth, and a claim of a dead runner is handed back at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from autonomous.errors import StoreCorrupt
from autonomous.fsutil import fsync_dir

FILENAME = "runner_state.json"
TASKS_FILENAME = "runner_state.tasks"
SCHEMA_VERSION = 1
FSYNC_INTERVAL = 1.0  # seconds: the most progress a power cut can take from the state file
_OUTCOMES = ("completed", "blocked", "failed")  # tasks_<outcome> lists, journalled


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

    def header(self) -> dict[str, Any]:
        """What the state file holds: everything but the finished lists, which are
        journalled (only their lengths are kept, to tell a journal line from a stray one)."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("tasks_"):
                data[f"{f.name}_count"] = len(value)
            elif f.name == "current":
                data["current"] = [asdict(c) for c in value]
            elif f.name == "counters":
                data["counters"] = dict(value)
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerState:
        data = dict(data)
        data.pop("schema_version", None)
        for outcome in _OUTCOMES:
            data.pop(f"tasks_{outcome}_count", None)
        current = [CurrentTask(**c) for c in data.pop("current", [])]
        return cls(current=current, **data)


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILENAME


def tasks_path(state_dir: Path) -> Path:
    return Path(state_dir) / TASKS_FILENAME


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
        counts = {o: data.get(f"tasks_{o}_count") for o in _OUTCOMES}
        state = RunnerState.from_dict(data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreCorrupt(f"{path}: not a runner state file this version can read ({exc})") from None
    if any(isinstance(n, int) for n in counts.values()):
        finished = _read_journal(tasks_path(state_dir), state.session_id)
        for outcome in _OUTCOMES:
            wanted = counts[outcome] if isinstance(counts[outcome], int) else 0
            # lines past the count were appended by a save whose state file never landed
            setattr(state, f"tasks_{outcome}", finished[outcome][:wanted])
    return state


def _read_journal(path: Path, session_id: str) -> dict[str, list[str]]:
    finished: dict[str, list[str]] = {o: [] for o in _OUTCOMES}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return finished
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[0] == session_id and parts[1] in finished:
            finished[parts[1]].append(parts[2])
    return finished


@dataclass(slots=True)
class _Saved:
    """What this process last wrote for one state directory: the session and state (a
    change is a durable point), how much of each list is journalled, when it last fsynced."""

    session_id: str
    state: str
    journalled: dict[str, int]
    synced_at: float


_saved: dict[Path, _Saved] = {}
_saving = threading.Lock()


def save(state_dir: Path, state: RunnerState) -> None:
    """Write the state (see the module docstring for what is fsynced when)."""
    directory = Path(state_dir)
    key = directory.absolute()
    with _saving:
        last = _saved.get(key)
        fresh = last is None or last.session_id != state.session_id
        durable = fresh or last.state != state.state or time.monotonic() - last.synced_at >= FSYNC_INTERVAL
        journalled = _journal(directory, state, None if fresh else last.journalled, sync=durable)
        _write_state(state_path(directory), state.header(), durable=durable)
        synced_at = time.monotonic() if durable or last is None else last.synced_at
        _saved[key] = _Saved(state.session_id, state.state, journalled, synced_at)


def _journal(directory: Path, state: RunnerState, done: dict[str, int] | None, *, sync: bool) -> dict[str, int]:
    """Append the finished keys not yet in the journal; start it afresh for a session
    this process has not journalled yet (or when a list shrank)."""
    lists = {o: getattr(state, f"tasks_{o}") for o in _OUTCOMES}
    rewrite = done is None or any(len(lists[o]) < done.get(o, 0) for o in _OUTCOMES)
    start = dict.fromkeys(_OUTCOMES, 0) if rewrite else done
    assert start is not None
    lines = [f"{state.session_id}\t{o}\t{' '.join(str(k).split())}\n" for o in _OUTCOMES for k in lists[o][start[o] :]]
    if lines or rewrite:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tasks_path(directory), "w" if rewrite else "a", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
    return {o: len(lists[o]) for o in _OUTCOMES}


def _write_state(path: Path, data: dict[str, Any], *, durable: bool) -> None:
    """:func:`write_json_atomic` for the state file, at the cost of a few system calls:
    one compact write to a temp name of this process (saves are serialised by
    ``_saving``), the rename, and the fsyncs only when ``durable``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, (json.dumps(data) + "\n").encode("utf-8"))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
