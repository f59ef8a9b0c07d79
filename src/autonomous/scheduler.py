"""Which task runs next, and why every other open task waits. Pure functions, no I/O.

Order: META tasks first (listed, never handed to an agent), then phased titles by
(phase, number, letter), then tracker ids (``ARK-123``) by number, then everything
else; ties go to the higher priority, then the older task.

Readiness under an *ordering policy* (``execution.ordering``):

``strict`` (default, the predecessor's rule)
    every open phased task waits for every open phased task before it: all of phase 1
    before any of phase 2, and 1.1 before 1.2 before 1.2a before 1.3.
``phases``
    phases in order; inside a phase, tasks wait only for explicit dependencies.
``dependencies``
    explicit dependencies only.

Under every policy a task also waits for its explicit dependencies, a task whose
dependency does not exist waits (reported as ``missing``: a silent skip could run work
on a base that was never built), and a task is only takeable when it is ``todo`` or
``in_progress`` under an expired lease. ``done`` and ``canceled`` both satisfy a
dependency: a canceled task was decided against, and must not stall the plan.
``in_review`` does not, unless ``review_satisfies`` (``execution.review_unblocks_dependents``):
then a task in review neither gates nor blocks the tasks after it (it is still reported,
not ready). Tracker ids and untitled tasks are not phase-gated.

A cycle (explicit dependencies, possibly through the policy's implicit order) would
make tasks wait forever; it is raised as :class:`DependencyCycle` naming the cycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal

from autonomous.errors import DependencyCycle
from autonomous.tasks import Task, TaskStatus, TitleKey, TitleKind, parse_title, utcnow

Ordering = Literal["strict", "phases", "dependencies"]
ORDERINGS: tuple[Ordering, ...] = ("strict", "phases", "dependencies")

_title_key = lru_cache(maxsize=262_144)(parse_title)


def title_key(task: Task) -> TitleKey:
    return _title_key(task.title)


def is_meta(task: Task) -> bool:
    return "meta" in task.labels or title_key(task).kind is TitleKind.META


def sort_key(task: Task) -> tuple:
    tk = title_key(task)
    kind = TitleKind.META if is_meta(task) else tk.kind
    return (int(kind), *tk.position, task.priority.rank, task.created_at, task.id)


def order(tasks: Iterable[Task]) -> list[Task]:
    """All tasks in scheduling order (META first)."""
    return sorted(tasks, key=sort_key)


@dataclass(slots=True)
class Decision:
    """One open task's place in the plan: ready, or what it waits for."""

    task: Task
    ready: bool
    waits_on: list[Task] = field(default_factory=list)  # open tasks it waits for (capped)
    waits_on_count: int = 0  # how many in total
    missing: list[str] = field(default_factory=list)  # dependency ids that do not exist
    reason: str = ""  # why the task itself is not takeable (claimed, blocked), if so

    def explain(self) -> str:
        """``Skipping AUTH-2.1 - blocked by: AUTH-1.2 (in_progress), AUTH-1.3 (todo)``."""
        name = self.task.key or self.task.id
        if self.ready:
            return f"Ready {name}"
        if self.reason:
            return f"Skipping {name} - {self.reason}"
        parts = [f"{t.key or t.id} ({t.status.value})" for t in self.waits_on]
        parts += [f"{d} (missing)" for d in self.missing]
        more = self.waits_on_count - len(self.waits_on)
        if more > 0:
            parts.append(f"and {more} more")
        return f"Skipping {name} - blocked by: {', '.join(parts)}"


_EXPLAIN_CAP = 10


def takeable(task: Task, now: datetime) -> tuple[bool, str]:
    """Whether the task's own state lets a worker claim it, and if not, why."""
    if task.status is TaskStatus.TODO:
        if task.claim and task.claim.live(now):
            return False, f"claimed by {task.claim.worker_id} until {task.claim.expires_at:%H:%M:%S}"
        return True, ""
    if task.status is TaskStatus.IN_PROGRESS:
        if task.claim is None:
            return False, "in_progress without a claim (someone is working on it by hand)"
        if task.claim.live(now):
            return (
                False,
                f"in_progress, claimed by {task.claim.worker_id} until {task.claim.expires_at:%H:%M:%S}",
            )
        return True, ""
    if task.status is TaskStatus.BLOCKED:
        return False, "blocked (set it back to todo when the blocker is resolved)"
    if task.status is TaskStatus.IN_REVIEW:
        return False, "in_review (waits for `autonomous approve` or `autonomous reject`, or for its pull request)"
    return False, task.status.value


def finished(task: Task, review_satisfies: bool = False) -> bool:
    """Whether ``task`` lets the tasks after it and depending on it go ahead."""
    return task.status.satisfied or (review_satisfies and task.status is TaskStatus.IN_REVIEW)


def plan(
    tasks: Sequence[Task], now: datetime | None = None, ordering: Ordering = "strict", review_satisfies: bool = False
) -> list[Decision]:
    """A decision for every open (not done, not canceled), non-META task, in order."""
    by_id = {t.id: t for t in tasks}
    open_tasks = [t for t in order(tasks) if not t.status.satisfied and not is_meta(t)]
    _check_cycles(open_tasks, by_id, ordering)
    return list(iter_plan(open_tasks, by_id.get, now or utcnow(), ordering, review_satisfies))


def iter_plan(
    open_tasks: Iterable[Task],
    lookup: Callable[[str], Task | None],
    now: datetime,
    ordering: Ordering = "strict",
    review_satisfies: bool = False,
) -> Iterator[Decision]:
    """:func:`plan`'s decisions one at a time, for a caller that stops early.

    ``open_tasks`` are the open non-META tasks in scheduling order (a store streams them);
    a decision depends only on the tasks before it and on its dependencies, which
    ``lookup`` finds by id (None: missing). The caller has checked for cycles (a store
    does so once per change of the graph).
    """
    # Open phased tasks seen so far, in order: under ``strict`` they are exactly the
    # tasks a phased task waits for; under ``phases`` only those of earlier phases.
    earlier: list[Task] = []
    position: dict[str, int] = {}  # id -> index in ``earlier``
    phase_start = 0  # index in ``earlier`` where the current phase begins
    current_phase: int | None = None
    for task in open_tasks:
        tk = title_key(task)
        gate: list[Task] = []
        gate_count = 0
        if tk.kind is TitleKind.PHASED and not finished(task, review_satisfies):
            if tk.phase != current_phase:
                current_phase, phase_start = tk.phase, len(earlier)
            if ordering == "strict":
                gate_count = len(earlier)
                gate = earlier[:_EXPLAIN_CAP]
            elif ordering == "phases":
                gate_count = phase_start
                gate = earlier[: min(phase_start, _EXPLAIN_CAP)]
            position[task.id] = len(earlier)
            earlier.append(task)
        gate_end = gate_count  # tasks before this index in ``earlier`` are already counted
        deps_waiting, missing = [], []
        for dep_id in task.dependencies:
            dep = lookup(dep_id)
            if dep is None:
                missing.append(dep_id)
            elif not finished(dep, review_satisfies) and position.get(dep.id, gate_end) >= gate_end:
                deps_waiting.append(dep)
        ok, reason = takeable(task, now)
        waits = deps_waiting + gate
        count = gate_count + len(deps_waiting)
        yield Decision(
            task=task,
            ready=ok and count == 0 and not missing,
            waits_on=waits[:_EXPLAIN_CAP],
            waits_on_count=count,
            missing=missing,
            reason="" if (count or missing) else reason,
        )


def next_ready(
    tasks: Sequence[Task],
    now: datetime | None = None,
    ordering: Ordering = "strict",
    exclude: Iterable[str] = (),
    review_satisfies: bool = False,
) -> Task | None:
    """The task a coding agent would take now (None when nothing is ready)."""
    skip = set(exclude)
    for decision in plan(tasks, now, ordering, review_satisfies):
        if decision.ready and decision.task.id not in skip:
            return decision.task
    return None


def check_cycles(tasks: Sequence[Task], ordering: Ordering = "strict") -> None:
    """Raise DependencyCycle exactly when :func:`plan` would, without planning.

    For stores that pick the next task themselves (in SQL) and need only this part.
    """
    by_id = {t.id: t for t in tasks}
    _check_cycles([t for t in order(tasks) if not t.status.satisfied and not is_meta(t)], by_id, ordering)


def _check_cycles(open_tasks: list[Task], by_id: dict[str, Task], ordering: Ordering) -> None:
    """Raise DependencyCycle if open tasks can never become ready.

    The graph is the explicit dependencies plus the policy's implicit order, which is
    a chain (strict) or phase gates (phases): a task that explicitly depends on a later
    task of its own sequence deadlocks just like an explicit cycle.
    """
    edges: dict[str, list[str]] = {t.id: [d for d in t.dependencies if d in by_id] for t in open_tasks}
    open_ids = set(edges)
    phased = [t for t in open_tasks if title_key(t).kind is TitleKind.PHASED]
    if ordering == "strict":
        for before, after in itertools.pairwise(phased):
            edges[after.id].append(before.id)
    elif ordering == "phases":
        # one virtual gate node per phase keeps the edge count linear
        previous_gate = None
        phases: dict[int, list[Task]] = {}
        for t in phased:
            phases.setdefault(title_key(t).phase or 0, []).append(t)
        for phase, members in phases.items():
            gate = f"\0phase-{phase}"
            edges[gate] = [m.id for m in members]
            if previous_gate:
                for m in members:
                    edges[m.id].append(previous_gate)
            previous_gate = gate
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(edges, WHITE)
    for root in edges:
        if colour[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = GREY
        while stack:
            node, i = stack[-1]
            targets = [d for d in edges.get(node, ()) if d in edges]
            if i < len(targets):
                stack[-1] = (node, i + 1)
                nxt = targets[i]
                if colour[nxt] == GREY:
                    cycle = [*path[path.index(nxt) :], nxt]
                    names = [by_id[n].key or n for n in cycle if n in open_ids]
                    raise DependencyCycle(names)
                if colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = BLACK
                stack.pop()
                path.pop()
