"""``autonomous status`` and ``autonomous logs``: what the runner is doing, read from disk.

Status combines three sources, each authoritative for its part: ``runner_state.json``
(is a runner alive, which session, which tasks are in flight), the provider (how many
tasks are done, open, blocked) and ``events.jsonl`` (recent events, and so what phase each
task in flight is in). Nothing here talks to the running process, so status works the
same whether the runner is alive, paused, finished or crashed.

The event log is only ever read from its end (:func:`tail_lines`), block by block, so a
log of a gigabyte after a week of nights costs no more than a small one.

This module is imported by ``autonomous status``: keep it free of rich, httpx and the
runner (``python -X importtime`` should stay well under 200 ms for the command).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomous import runner_state
from autonomous.errors import StoreCorrupt, TaskNotFound
from autonomous.events.format import format_event
from autonomous.events.sinks.files import EVENTS_FILENAME
from autonomous.tasks import TaskStatus, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config
    from autonomous.config_view import ReadingConfig

BLOCK = 64 * 1024
BLOCKED_SHOWN = 20  # blocked tasks listed (in scheduling order); tasks.blocked counts them all

# What a task in flight is doing, by the kind of its latest event.
_PHASES = {
    "task_claimed": "starting",
    "backend_start": "agent working",
    "text": "agent working",
    "tool_use": "agent working",
    "tool_result": "agent working",
    "usage": "agent working",
    "api_retry": "agent working (API retry)",
    "permission_denied": "agent working",
    "nudge": "asking for the completion report",
    "outcome": "checking the outcome",
    "verification": "verifying",
    "checkpoint": "at a checkpoint",
    "rate_limit": "waiting for the rate limit",
    "warning": "running",
    "task_recorded": "recording",
}


# -- reading events.jsonl ------------------------------------------------------------------------


def _reverse_lines(fh: Any, end: int, block: int = BLOCK) -> Iterator[bytes]:
    """Complete lines of a binary file before offset ``end``, last first."""
    pos, rest = end, b""
    while pos > 0:
        size = min(block, pos)
        pos -= size
        fh.seek(pos)
        chunk = fh.read(size) + rest
        lines = chunk.split(b"\n")
        rest = lines[0]  # may be the tail of a line that starts in an earlier block
        for line in reversed(lines[1:]):
            if line.strip():
                yield line
    if rest.strip():
        yield rest


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:  # a torn line after a crash, or not ours: skip it
        return None
    return value if isinstance(value, dict) else None


def _matcher(task: str | Collection[str] | None) -> Callable[[dict[str, Any]], bool]:
    if task is None:
        return lambda event: True
    wanted = {task} if isinstance(task, str) else set(task)

    def match(event: dict[str, Any]) -> bool:
        return bool(wanted & {event.get("task_id"), event.get("task_key"), event.get("key")})

    return match


def tail_events(
    log_dir: Path, n: int, *, task: str | Collection[str] | None = None, end: int | None = None
) -> list[dict[str, Any]]:
    """The last ``n`` events (matching ``task``, if given), oldest first, reading the file
    backwards from ``end`` (default: its current size)."""
    path = Path(log_dir) / EVENTS_FILENAME
    if n <= 0:
        return []
    match = _matcher(task)
    found: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as fh:
            stop = fh.seek(0, os.SEEK_END) if end is None else end
            for line in _reverse_lines(fh, stop):
                event = _parse(line)
                if event is not None and match(event):
                    found.append(event)
                    if len(found) >= n:
                        break
    except FileNotFoundError:
        return []
    found.reverse()
    return found


def read_events(
    log_dir: Path,
    *,
    tail: int | None = None,
    task: str | Collection[str] | None = None,
    follow: bool = False,
    poll_interval: float = 0.5,
    stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Events from ``<log_dir>/events.jsonl``, oldest first.

    ``tail``: only the last N (matching) events; ``task``: only events of this task id or
    key (or any of a collection: pass ``task_refs(provider, ref)`` so a key finds events
    that carry only the id); ``follow``: then keep yielding new events as they are
    appended (polling every ``poll_interval`` seconds) until ``stop()`` is true or the
    user presses Ctrl-C. A file that does not exist yet yields nothing (or, following,
    is waited for); a truncated or replaced file is read again from its start.
    """
    path = Path(log_dir) / EVENTS_FILENAME
    match = _matcher(task)
    pos = 0
    ident: tuple[int, int] | None = None
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            ident, pos = (st.st_dev, st.st_ino), st.st_size
            if tail is not None:
                yield from tail_events(log_dir, tail, task=task, end=pos)
            else:
                fh.seek(0)
                while fh.tell() < pos:
                    line = fh.readline()
                    if not line.endswith(b"\n"):  # being written right now: follow picks it up
                        pos = fh.tell() - len(line)
                        break
                    event = _parse(line)
                    if event is not None and match(event):
                        yield event
    except FileNotFoundError:
        pass
    if not follow:
        return
    partial = b""
    try:
        while stop is None or not stop():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                time.sleep(poll_interval)
                continue
            if ident != (st.st_dev, st.st_ino) or st.st_size < pos:  # replaced or truncated
                ident, pos, partial = (st.st_dev, st.st_ino), 0, b""
            if st.st_size == pos:
                time.sleep(poll_interval)
                continue
            with open(path, "rb") as fh:
                fh.seek(pos)
                data = fh.read(st.st_size - pos)
            pos += len(data)
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            for line in lines:
                event = _parse(line) if line.strip() else None
                if event is not None and match(event):
                    yield event
    except KeyboardInterrupt:
        return


def render_event(event: dict[str, Any]) -> str:
    """One line for a person (``autonomous logs`` without ``--json``)."""
    return format_event(event)


def with_task_keys(events: Iterable[dict[str, Any]], provider: Any) -> Iterator[dict[str, Any]]:
    """The events, each one about a task labelled with its key (``task_key``) so that lines
    about one task all read ``[KEY]``: logs written before events carried the key, and
    a tail that starts after the task's claim, learn it from the store (once per task)."""
    keys: dict[str, str | None] = {}
    for event in events:
        tid = event.get("task_id")
        if tid and not (event.get("task_key") or event.get("key")):
            if tid not in keys:
                try:
                    keys[tid] = provider.get_task(tid).key
                except TaskNotFound:
                    keys[tid] = None
            if keys[tid]:
                event = {**event, "task_key": keys[tid]}
        elif tid and (event.get("task_key") or event.get("key")):
            keys[tid] = event.get("task_key") or event.get("key")
        yield event


def task_refs(provider: Any, ref: str) -> set[str]:
    """The id and key a task goes by, for ``read_events(task=...)``: events carry the id,
    people type the key. An unknown ref is matched as given."""
    try:
        task = provider.find_task(ref)
    except TaskNotFound:
        return {ref}
    return {ref, task.id, task.key}


# -- status ---------------------------------------------------------------------------------------


def _seconds_since(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return max(0.0, (now - then).total_seconds())


def _same_host(worker_id: str | None) -> bool | None:
    if not worker_id or ":" not in worker_id:
        return None
    return worker_id.split(":", 1)[0] == socket.gethostname()


def _runner(state_dir: Path, now: datetime) -> tuple[dict[str, Any], runner_state.RunnerState | None]:
    try:
        state = runner_state.load(state_dir)
    except StoreCorrupt as exc:
        return {"state": "unreadable", "error": str(exc)}, None
    if state is None:
        return {"state": "never_run"}, None
    local = _same_host(state.worker_id)
    alive = runner_state.pid_alive(state.pid) if local is not False else None
    shown = state.state
    if state.state == "running" and alive is False:
        shown = "crashed"  # the file says running, but its process is gone
    return {
        "state": shown,
        "recorded_state": state.state,
        "pid": state.pid,
        "pid_alive": alive,
        "session_id": state.session_id,
        "worker_id": state.worker_id,
        "backend": state.backend,
        "sandbox": state.sandbox,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "ended_at": state.ended_at,
        "pause_reason": state.pause_reason,
        "stop_reason": state.stop_reason,
        "exit_code": state.exit_code,
    }, state


def collect_status(
    state_dir: Path,
    log_dir: Path,
    provider: Any | None,
    *,
    events: int = 10,
    now: datetime | None = None,
) -> dict[str, Any]:
    """:func:`build_status` from explicit paths (the provider may be None: task counts are
    then left out)."""
    now = now or utcnow()
    runner, state = _runner(Path(state_dir), now)
    recent = tail_events(Path(log_dir), max(events, 200))

    current = []
    for cur in state.current if state else []:
        latest = next((e for e in reversed(recent) if e.get("task_id") == cur.id), None)
        phase = _PHASES.get(str(latest.get("kind")), "running") if latest else "running"
        if runner["state"] == "crashed":
            phase = "interrupted (runner gone)"
        current.append(
            {
                "id": cur.id,
                "key": cur.key,
                "title": cur.title,
                "phase": phase,
                "tool": cur.tool,
                "turns": cur.turns,
                "cost_usd": cur.cost_usd,
                "started_at": cur.started_at,
                "elapsed_s": _seconds_since(cur.started_at, now),
                "worker_id": cur.worker_id,
            }
        )

    tasks: dict[str, Any] | None = None
    blocked: list[dict[str, Any]] = []
    in_review: list[str] = []  # keys of the tasks waiting for a person
    total_cost = None
    if provider is not None:
        # aggregate queries and the first few blocked tasks: no pass over every task
        found = provider.count_by_status()
        counts = {s.value: found.by_status.get(s, 0) for s in TaskStatus}
        tasks = {
            "total": found.total,
            "completed": counts["done"],
            "remaining": counts["todo"] + counts["in_progress"],
            "blocked": counts["blocked"],
            "in_review": counts["in_review"],
            "by_status": counts,
        }
        for t in provider.iter_tasks([TaskStatus.BLOCKED], limit=BLOCKED_SHOWN + 1):
            if not t.is_meta and len(blocked) < BLOCKED_SHOWN:
                reason = t.notes[-1].text if t.notes else ""
                blocked.append({"id": t.id, "key": t.key, "title": t.title, "reason": " ".join(reason.split())[:300]})
        in_review = [t.key for t in provider.iter_tasks([TaskStatus.IN_REVIEW], limit=BLOCKED_SHOWN)]
        total_cost = round(found.cost_usd, 6)

    metrics: dict[str, Any] = {"cost_usd": None, "total_cost_usd": total_cost}
    if state is not None:
        end = datetime.fromisoformat(state.ended_at) if state.ended_at else now
        start = datetime.fromisoformat(state.started_at) if state.started_at else None
        elapsed = max(0.0, (end - start).total_seconds()) if start else None
        finished = len(state.tasks_completed) + len(state.tasks_blocked) + len(state.tasks_failed)
        metrics.update(
            {
                "cost_usd": state.cost_usd,
                "turns": state.turns,
                "tasks_completed": len(state.tasks_completed),
                "tasks_blocked": len(state.tasks_blocked),
                "tasks_failed": len(state.tasks_failed),
                "elapsed_s": round(elapsed, 1) if elapsed is not None else None,
                "tasks_per_hour": round(len(state.tasks_completed) / (elapsed / 3600), 2) if elapsed else None,
                "mean_task_s": round(elapsed / finished, 1) if elapsed and finished else None,
            }
        )

    return {
        "state": runner["state"],
        "tasks_completed": metrics.get("tasks_completed", 0),
        "runner": runner,
        "current": current,
        "worktrees_kept": _kept_worktrees(Path(state_dir)),
        "tasks": tasks,
        "blocked": blocked,
        "in_review": in_review,
        "metrics": metrics,
        "recent_events": recent[-events:] if events > 0 else [],
    }


def _kept_worktrees(state_dir: Path) -> list[dict[str, Any]]:
    """Task worktrees the runner keeps because they hold unmerged work (a crash, a failed
    merge): ``<state_dir>/worktrees.json``, written by the runner at start and after merges."""
    try:
        data = json.loads((state_dir / "worktrees.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    kept = data.get("kept") if isinstance(data, dict) else None
    return [k for k in kept if isinstance(k, dict)] if isinstance(kept, list) else []


def _worker_label(worker_id: str | None, many: bool) -> str:
    """``w2`` of ``host:pid:rand:w2`` when several workers run, else nothing."""
    if not many or not worker_id:
        return ""
    return f"[{worker_id.rsplit(':', 1)[-1]}] "


def build_status(
    config: Config | ReadingConfig, provider: Any | None, *, events: int = 10, now: datetime | None = None
) -> dict[str, Any]:
    """Everything ``autonomous status`` shows, as a JSON-ready dict (see docs/monitoring.md).

    ``state`` is the runner's state (``running``, ``paused``, ``stopped``, ``completed``,
    ``error``) except that a runner recorded as running whose process is gone shows as
    ``crashed``; ``never_run`` when there is no state file, ``unreadable`` when it is damaged.
    """
    return collect_status(config.state_dir, config.log_dir, provider, events=events, now=now)


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_status(status: dict[str, Any]) -> str:
    """The status as a few lines of text for a person."""
    r, m = status["runner"], status["metrics"]
    state = status["state"]
    lines = []
    if state == "never_run":
        lines.append("Runner:   never run here (autonomous start begins a session)")
    elif state == "unreadable":
        lines.append(f"Runner:   state file unreadable: {r.get('error')}")
    else:
        head = f"Runner:   {state}"
        bits = [f"session {r.get('session_id')}"]
        if r.get("pid"):
            bits.append(f"pid {r['pid']}" + (" (gone)" if r.get("pid_alive") is False else ""))
        if r.get("backend"):
            bits.append(f"backend {r['backend']}")
        lines.append(f"{head} ({', '.join(bits)})")
        if r.get("sandbox"):
            lines.append(f"Sandbox:  {r['sandbox']}")
        if state == "crashed":
            lines.append(
                "          the runner's process is gone: `autonomous start --resume` continues where it stopped"
            )
        if r.get("pause_reason"):
            lines.append(f"          paused: {r['pause_reason']}")
        elif r.get("stop_reason") and state != "running":
            lines.append(f"          stopped: {r['stop_reason']} (exit {r.get('exit_code')})")
    many = len(status["current"]) > 1
    for cur in status["current"]:
        tool = f", tool {cur['tool']}" if cur.get("tool") else ""
        lines.append(
            f"Current:  {_worker_label(cur.get('worker_id'), many)}{cur['key']} {cur['title']} - {cur['phase']}{tool}, "
            f"{cur['turns']} turns, ${cur['cost_usd']:.4f}, {_dur(cur.get('elapsed_s'))}"
        )
    for k in status.get("worktrees_kept", []):
        lines.append(f"Worktree: {k.get('path')} (branch {k.get('branch')}) kept: {k.get('reason')}")
    tasks = status.get("tasks")
    if tasks is not None:
        in_progress = tasks["by_status"].get("in_progress", 0)
        lines.append(
            f"Tasks:    {tasks['completed']} done, {tasks['remaining']} remaining ({in_progress} in progress), "
            f"{tasks['blocked']} blocked, {tasks['by_status'].get('canceled', 0)} canceled ({tasks['total']} total)"
        )
        if tasks["by_status"].get("in_review"):
            waiting = ", ".join(status.get("in_review", [])[:10])
            count = tasks["by_status"]["in_review"]
            lines.append(f"Review:   {count} task(s) wait for `autonomous approve`: {waiting}")
    for b in status.get("blocked", [])[:10]:
        reason = f" - {b['reason'][:120]}" if b.get("reason") else ""
        lines.append(f"Blocked:  {b['key']} {b['title']}{reason}")
    if m.get("cost_usd") is not None:
        rate = f"{m['tasks_per_hour']:.1f} tasks/h" if m.get("tasks_per_hour") is not None else "- tasks/h"
        lines.append(
            f"Session:  {m['tasks_completed']} completed, {m['tasks_blocked']} blocked, {m['tasks_failed']} failed "
            f"in {_dur(m.get('elapsed_s'))}; ${m['cost_usd']:.4f}; {rate}; {_dur(m.get('mean_task_s'))} per task"
        )
    if m.get("total_cost_usd") is not None:
        lines.append(f"Cost:     ${m['total_cost_usd']:.4f} across all sessions")
    if status.get("recent_events"):
        lines.append("Recent events:")
        lines += [f"  {render_event(e)}" for e in status["recent_events"]]
    return "\n".join(lines) + "\n"
