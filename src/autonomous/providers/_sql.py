"""What the two SQL stores (``file.py`` on SQLite, ``postgres.py``) share beyond their
dialects: the scheduling columns and how they are derived, the mapping of a task row to
a :class:`Task`, the planning of a creation batch, the columns an ``update_task`` writes,
and the statements (identical text in both dialects) that read the graph for the
scheduler's cycle check. The SQL that differs by dialect stays in each store.

Values here are Python values (lists, datetimes); each store encodes them for its
columns (SQLite keeps lists as JSON text, PostgreSQL as ``text[]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any

from autonomous import scheduler
from autonomous.errors import TaskNotFound
from autonomous.providers.base import TaskChanges, check_dependency_keys, status_after_update
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, TitleKind

ID_PREFIX = "T-"
OPEN = "('todo', 'in_progress', 'blocked', 'in_review')"  # not satisfied: they gate what follows
SATISFIED = "('done', 'canceled')"
# execution.review_unblocks_dependents: an in_review task satisfies its dependants and heads no
# phase. Readiness queries are written once, for the default, with ``HEAD_MARK.format(alias)``
# after the head's status test; :func:`review_satisfies` rewrites them for the option.
SATISFIED_OR_REVIEW = "('done', 'canceled', 'in_review')"
HEAD_MARK = "/*in_review:{}*/"
_HEAD_MARK = re.compile(r"/\*in_review:(\w+)\*/")


def review_satisfies(sql: str) -> str:
    """``sql`` (a readiness query) with ``in_review`` counted as finished."""
    sql = sql.replace(f"NOT IN {SATISFIED}", f"NOT IN {SATISFIED_OR_REVIEW}")
    return _HEAD_MARK.sub(lambda m: f"AND {m.group(1)}.status <> 'in_review'", sql)


ORDER = "ORDER BY t.kind, t.phase, t.number, t.letter, t.prio, t.created_at, t.id"

# The open, non-META tasks (the only ones in the scheduler's cycle check), with just what
# the check reads, and their dependencies in order: see ``open_graph``.
OPEN_GRAPH_TASKS = (
    f"SELECT t.id, t.key, t.title, t.status, t.priority, t.labels, t.created_at FROM tasks t "
    f"WHERE t.status IN {OPEN} AND t.kind >= 1"
)
OPEN_GRAPH_DEPENDENCIES = (
    f"SELECT d.task_id, d.depends_on FROM dependencies d JOIN tasks t ON t.id = d.task_id "
    f"WHERE t.status IN {OPEN} AND t.kind >= 1 ORDER BY d.task_id, d.pos"
)

_STATUSES = {s.value: s for s in TaskStatus}


_PRIORITIES = {p.value: p for p in Priority}


def migrations(dialect: str) -> list[str]:
    """The numbered schema scripts of ``dialect`` (``migrations/<dialect>/NNN.sql``, package
    data, in order): script i takes the schema from version i to i + 1."""
    folder = files("autonomous.providers") / "migrations" / dialect
    return [
        f.read_text(encoding="utf-8") for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".sql")
    ]


def schedule_columns(task: Task) -> tuple[int, int, int, str, int, bool]:
    """(kind, phase, number, letter, prio, is_meta): ``scheduler.sort_key`` minus its
    tie-breaks (created_at, id), which are columns of their own."""
    tk = scheduler.title_key(task)
    meta = scheduler.is_meta(task)
    kind = TitleKind.META if meta else tk.kind
    phase, number, letter = tk.position
    return int(kind), phase, number, letter, task.priority.rank, meta


def row_task(
    row: Sequence[Any],
    dependencies: list[str],
    notes: list[Note],
    *,
    decode_list: Callable[[Any], list[str]],
    decode_time: Callable[[Any], datetime],
) -> Task:
    """The task of a row of ``id, key, title, description, acceptance_criteria,
    test_steps, status, priority, labels, worker_id, expires_at, fence, created_at,
    updated_at, cost_usd, turns`` (in that order)."""
    (tid, key, title, description, criteria, steps, status, priority, labels, worker, expires, fence,
     created, updated, cost, turns) = row  # fmt: skip
    return Task(
        id=tid,
        key=key,
        title=title,
        description=description,
        acceptance_criteria=decode_list(criteria),
        test_steps=decode_list(steps),
        status=_STATUSES[status],
        priority=_PRIORITIES[priority],
        labels=decode_list(labels),
        dependencies=dependencies,
        notes=notes,
        claim=Claim(worker, decode_time(expires), fence) if worker is not None else None,
        created_at=decode_time(created),
        updated_at=decode_time(updated),
        cost_usd=cost,
        turns=turns,
    )


def open_graph(
    task_rows: Iterable[Sequence[Any]],
    dependency_rows: Iterable[Sequence[Any]],
    *,
    decode_list: Callable[[Any], list[str]],
    decode_time: Callable[[Any], datetime],
) -> list[Task]:
    """The light tasks the scheduler's cycle check reads, from the rows of
    ``OPEN_GRAPH_TASKS`` and ``OPEN_GRAPH_DEPENDENCIES``."""
    deps: dict[str, list[str]] = {}
    for task_id, depends_on in dependency_rows:
        deps.setdefault(task_id, []).append(depends_on)
    return [
        Task(
            id=tid, key=key, title=title, status=_STATUSES[status], priority=_PRIORITIES[priority],
            labels=decode_list(labels), dependencies=deps.get(tid, []), created_at=decode_time(created),
        )
        for tid, key, title, status, priority, labels, created in task_rows
    ]  # fmt: skip


@dataclass(slots=True)
class Batch:
    """A creation batch, planned: the new tasks by key (dependencies as ids), the ids of
    the keys that already existed (in request order), and the id counter's next value."""

    created: dict[str, Task]
    existing_ids: list[str]
    next_number: int


def plan_batch(new_tasks: Sequence[NewTask], known: Mapping[str, str], number: int, now: datetime) -> Batch:
    """Ids ``T-<number>``... for the keys not in ``known`` (key -> id), ``created_at`` one
    microsecond apart in batch order (the scheduler's "older first" keeps the spec's
    order); TaskNotFound for a dependency on a key neither known nor in the batch."""
    batch: dict[str, Task] = {}
    existing_ids: list[str] = []
    for nt in new_tasks:
        if nt.key in known:
            existing_ids.append(known[nt.key])
            continue
        if nt.key in batch:
            existing_ids.append(batch[nt.key].id)
            continue
        created = now + timedelta(microseconds=len(batch))
        batch[nt.key] = Task(
            id=f"{ID_PREFIX}{number}",
            key=nt.key,
            title=nt.title,
            description=nt.description,
            acceptance_criteria=list(nt.acceptance_criteria),
            test_steps=list(nt.test_steps),
            priority=nt.priority if type(nt.priority) is Priority else Priority(nt.priority),
            labels=list(nt.labels),
            dependencies=list(dict.fromkeys(nt.dependencies)),  # keys for now
            created_at=created,
            updated_at=created,
        )
        number += 1
    ids = {**known, **{k: t.id for k, t in batch.items()}}
    for task in batch.values():
        check_dependency_keys(task.key, task.dependencies, ids)
        task.dependencies = [ids[k] for k in task.dependencies]
    return Batch(batch, existing_ids, number)


def keys_of(new_tasks: Sequence[NewTask]) -> list[str]:
    """Every key a batch names (its own and its dependencies'), to look up at once."""
    return sorted({nt.key for nt in new_tasks} | {k for nt in new_tasks for k in nt.dependencies})


@dataclass(slots=True)
class Current:
    """The columns of a task row an ``update_task`` reads before it writes."""

    id: str
    key: str
    title: str
    status: TaskStatus
    priority: Priority
    labels: list[str]
    fence: int


@dataclass(slots=True)
class Update:
    """What an ``update_task`` writes: column values (lists as lists), whether the
    dependency graph changed (``graph_rev`` must grow), and the new dependency ids (None:
    unchanged), to be checked by :func:`check_dependencies` and written by the store."""

    sets: dict[str, Any]
    graph_changed: bool
    dependencies: list[str] | None


def plan_update(current: Current, changes: TaskChanges, end_claim: bool) -> Update:
    """The columns an ``update_task`` with ``changes`` writes, beside ``updated_at``;
    ``end_claim`` as :func:`autonomous.providers.base.update_ends_claim` decided."""
    sets: dict[str, Any] = {}
    old_status = current.status
    new_status = status_after_update(old_status, changes.status, end_claim)
    if end_claim:
        sets.update(worker_id=None, expires_at=None, fence=current.fence + 1)
    if new_status is not old_status:
        sets["status"] = new_status.value
    # finishing a task can never close a cycle; reopening one can
    graph_changed = old_status.satisfied and not new_status.satisfied
    for name in ("description", "acceptance_criteria", "test_steps"):
        if (value := getattr(changes, name)) is not None:
            sets[name] = value
    if changes.title is not None or changes.labels is not None or changes.priority is not None:
        probe = Task(
            id=current.id,
            key=current.key,
            title=current.title if changes.title is None else changes.title,
            priority=current.priority if changes.priority is None else changes.priority,
            labels=current.labels if changes.labels is None else changes.labels,
        )
        kind, phase, number, letter, prio, meta = schedule_columns(probe)
        sets.update(
            title=probe.title, priority=probe.priority.value, labels=probe.labels,
            kind=kind, phase=phase, number=number, letter=letter, prio=prio, is_meta=meta,
        )  # fmt: skip
        graph_changed = graph_changed or changes.title is not None or changes.labels is not None
    if changes.dependencies is not None:
        graph_changed = True
    return Update(sets, graph_changed, changes.dependencies)


def check_dependencies(task_id: str, dependencies: list[str], found: Iterable[str]) -> None:
    """TaskNotFound naming the dependencies that are not among the ``found`` task ids."""
    present = set(found)
    unknown = [d for d in dependencies if d not in present]
    if unknown:
        raise TaskNotFound(f"dependencies of {task_id!r} name unknown task id(s): {', '.join(unknown)}")
