"""The documents the dashboard serves, built from the provider and the event log.

Plain functions of their inputs (no HTTP here), so the board's paging, the task page and
the cost chart are tested without a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autonomous import actions, history, scheduler
from autonomous.errors import AutonomousError
from autonomous.progress import tail_events
from autonomous.providers.base import StateProvider
from autonomous.tasks import Task, TaskStatus

# The board's columns, left to right; a status the task model does not have is left out.
COLUMNS = [s for s in ("todo", "in_progress", "blocked", "in_review", "done", "canceled") if s in set(TaskStatus)]
PAGE = 50  # cards per column per request
MAX_PAGE = 1000
MAX_PATCH = 400_000  # characters of a task's diff served on its page


def page_bounds(offset: Any, limit: Any, default: int) -> tuple[int, int]:
    """``offset`` and ``limit`` query values as bounded integers (bad values: the defaults)."""
    try:
        start = max(0, int(offset))
    except (TypeError, ValueError):
        start = 0
    try:
        size = min(MAX_PAGE, max(1, int(limit)))
    except (TypeError, ValueError):
        size = default
    return start, size


def tasks_page(provider: StateProvider, statuses: list[TaskStatus] | None, offset: int, limit: int) -> dict[str, Any]:
    """A page of ``tasks --json`` (same task objects, same scheduling order)."""
    ordered = scheduler.order(provider.list_tasks(statuses))
    return {
        "tasks": [t.to_dict() for t in ordered[offset : offset + limit]],
        "total": len(ordered),
        "offset": offset,
        "limit": limit,
    }


def _card(task: Task, waits: dict[str, scheduler.Decision]) -> dict[str, Any]:
    decision = waits.get(task.id)
    return {
        "id": task.id,
        "key": task.key,
        "title": task.title,
        "status": task.status.value,
        "priority": task.priority.value,
        "phase": task.title_key.phase,
        "waits_on": [t.key for t in decision.waits_on] if decision else [],
        "waiting": decision.explain() if decision else None,
        "turns": task.turns,
        "cost_usd": task.cost_usd,
        "worker": task.claim.worker_id if task.claim and task.claim.live() else None,
    }


def board(
    provider: StateProvider,
    *,
    ordering: scheduler.Ordering,
    review_satisfies: bool = False,
    column: str | None = None,
    offset: int = 0,
    limit: int = PAGE,
) -> dict[str, Any]:
    """Each column's count and one page of its cards (only ``column`` when given: the
    next page of one column), plus the META task. One read of the store per call."""
    everything = provider.list_tasks()
    ordered = scheduler.order(everything)
    waits = {d.task.id: d for d in scheduler.plan(ordered, None, ordering, review_satisfies) if not d.ready}
    meta = next((t for t in ordered if scheduler.is_meta(t)), None)
    by_column: dict[str, list[Task]] = {c: [] for c in COLUMNS}
    for task in ordered:
        if not scheduler.is_meta(task) and task.status.value in by_column:
            by_column[task.status.value].append(task)
    wanted = [column] if column else COLUMNS
    return {
        "columns": {
            name: {
                "total": len(by_column.get(name, [])),
                "offset": offset,
                "cards": [_card(t, waits) for t in by_column.get(name, [])[offset : offset + limit]],
            }
            for name in wanted
        },
        "meta": _card(meta, waits) if meta else None,
    }


def task_page(
    provider: StateProvider, ref: str, repo: Path, *, ordering: scheduler.Ordering, review_satisfies: bool = False
) -> dict[str, Any]:
    """Everything the task page shows: ``tasks show --json`` plus its commits' patch."""
    task = provider.find_task(ref)
    decision = next(
        (d for d in scheduler.plan(provider.list_tasks(), None, ordering, review_satisfies) if d.task.id == task.id),
        None,
    )
    patch, problem = "", None
    if history.commits(task.notes):
        try:
            patch = actions.diff(repo, task)
        except AutonomousError as exc:
            problem = str(exc)
    return {
        "task": task.to_dict(),
        "ready": bool(decision and decision.ready),
        "waiting": decision.explain() if decision and not decision.ready else None,
        "attempts": [a.to_dict() for a in history.attempts(task.notes)],
        "evidence": [e.to_dict() for e in history.evidence(task.notes)],
        "commits": history.commits(task.notes),
        "diff": patch[:MAX_PATCH],
        "diff_truncated": len(patch) > MAX_PATCH,
        "diff_problem": problem,
    }


def cost_series(log_dir: Path, *, events: int = 5000) -> list[dict[str, Any]]:
    """The session's cost over time, from the event log: one point per recorded task
    (cumulative), then the tasks in flight at their latest reported (or estimated) cost. The latest
    session only (from its ``session_start`` within the last ``events`` events)."""
    recent = tail_events(log_dir, events)
    start = max((i for i, e in enumerate(recent) if e.get("kind") == "session_start"), default=0)
    points: list[dict[str, Any]] = []
    total, in_flight = 0.0, {}
    for event in recent[start:]:
        kind, tid = event.get("kind"), event.get("task_id")
        cost = event.get("cost_usd")
        if kind == "task_recorded" and isinstance(cost, int | float):
            in_flight.pop(tid, None)
            total += float(cost)
            points.append({"at": event.get("at"), "cost_usd": round(total, 6), "key": event.get("key")})
            continue
        if kind == "usage" and not isinstance(cost, int | float):
            cost = event.get("cost_usd_estimate")  # the CLI backend's running estimate
        if tid and kind in ("usage", "outcome") and isinstance(cost, int | float):
            in_flight[tid] = (event.get("at"), float(cost))
    if in_flight:
        at = max(at for at, _ in in_flight.values())
        points.append({"at": at, "cost_usd": round(total + sum(c for _, c in in_flight.values()), 6), "key": None})
    return points
