"""The StateProvider contract: where tasks live, and how workers take them safely.

Every provider passes ``tests/providers/test_provider_contract.py``. The guarantees:

* ``create_tasks`` is idempotent by key: a key that exists is returned, not duplicated.
* ``claim`` is atomic: of N concurrent claimers of one task, exactly one wins; the others
  get :class:`ClaimConflict`. The winner receives a *fencing token* (``task.claim.token``)
  that grows with every claim of that task.
* Every write made under a claim (``renew``, ``add_note`` with a token, ``release``,
  ``update_task`` with a token) presents the token, and is refused with
  :class:`StaleClaim` when it is not the current one: a worker whose lease expired and was
  taken over can no longer write over the new owner's work.
* A lease that expires returns the task to the ready pool (the scheduler treats an
  ``in_progress`` task with an expired claim as takeable).
* Writes without a token (a person's ``tasks update``) are refused on a task with a live
  claim unless ``force=True``, which also ends the claim so its holder's token is stale.

Providers whose store has no transactions (Linear, GitHub) say in their docstring which
of these they can only approximate, and how.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from autonomous import scheduler
from autonomous.errors import ClaimConflict, ProviderError, StaleClaim, TaskNotFound
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, utcnow


@dataclass(slots=True)
class CreateResult:
    created: list[Task] = field(default_factory=list)
    existing: list[Task] = field(default_factory=list)  # keys that were already there, untouched

    @property
    def tasks(self) -> list[Task]:
        return self.created + self.existing


@dataclass(slots=True)
class TaskCounts:
    """The non-META tasks by status, and what they have cost: what ``status`` shows,
    answered by one aggregate query in the SQL stores."""

    by_status: dict[TaskStatus, int] = field(default_factory=lambda: dict.fromkeys(TaskStatus, 0))
    cost_usd: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def open(self) -> int:
        """Tasks still to do: todo, in progress or blocked."""
        return sum(n for status, n in self.by_status.items() if not status.satisfied)


@dataclass(slots=True)
class SessionRecord:
    """One run of ``autonomous start`` (or of a worker within it), as the store keeps it."""

    id: str
    worker_id: str
    started_at: datetime
    ended_at: datetime | None = None
    state: str = "running"  # running, stopped, error, paused
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "worker_id": self.worker_id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "state": self.state,
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionRecord:
        """The inverse of :meth:`to_dict` (stores that keep sessions as JSON)."""
        return cls(
            id=data["id"],
            worker_id=data["worker_id"],
            started_at=parse_time(data["started_at"]),
            ended_at=parse_time(data["ended_at"]) if data.get("ended_at") else None,
            state=data.get("state", "running"),
            summary=data.get("summary") or {},
        )


_Member = TypeVar("_Member", TaskStatus, Priority)
_TEXT_FIELDS = ("title", "description")
_LIST_FIELDS = ("acceptance_criteria", "test_steps", "labels", "dependencies")


def _member(kind: type[_Member], value: Any, what: str) -> _Member:
    """``value`` as a member of the enum ``kind`` (a member or its value); ProviderError
    naming ``what`` and the choices otherwise, so a typo is one clear line."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise ProviderError(f"{what} {value!r} is not one of {choices}") from None


@dataclass(frozen=True, slots=True)
class ReadyQuery:
    """What ``next_ready``, ``count_ready`` and ``claim_next`` ask a store, checked once:
    the ordering policy (ValueError for one the scheduler and the SQL do not implement),
    the task ids to pass over (sorted, without repeats), and whether an ``in_review``
    task counts as finished (``execution.review_unblocks_dependents``)."""

    ordering: scheduler.Ordering = "strict"
    exclude: list[str] = field(default_factory=list)
    review_satisfies: bool = False

    def __post_init__(self) -> None:
        if self.ordering not in scheduler.ORDERINGS:
            choices = ", ".join(scheduler.ORDERINGS)
            raise ValueError(f"unknown ordering {self.ordering!r}; expected one of {choices}")
        object.__setattr__(self, "exclude", sorted(set(self.exclude)))


@dataclass(frozen=True, slots=True)
class Release:
    """What a ``release`` writes besides ending the claim: the status the task goes to,
    a note (None: none) by ``author``, and the cost and turns to add to the task's."""

    status: TaskStatus
    note: str | None
    author: str
    cost_usd: float
    turns: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", _member(TaskStatus, self.status, "release: status"))


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """The fields one ``update_task`` call gives, checked and normalised here once so that
    no store checks them again: None leaves a field as it is (no field of a task can be
    None). Lists are copies of the caller's; ``dependencies`` (task ids) lose repeats,
    keeping their order. A malformed field is a ProviderError naming it."""

    title: str | None = None
    description: str | None = None
    acceptance_criteria: list[str] | None = None
    test_steps: list[str] | None = None
    status: TaskStatus | None = None
    priority: Priority | None = None
    labels: list[str] | None = None
    dependencies: list[str] | None = None

    def __post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ProviderError(f"update_task: {name} must be text, not {type(value).__name__}")
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ProviderError(f"update_task: {name} must be a list of text, not {type(value).__name__}")
            items = list(dict.fromkeys(value) if name == "dependencies" else value)
            if not all(isinstance(item, str) for item in items):
                raise ProviderError(f"update_task: {name} must be a list of text")
            object.__setattr__(self, name, items)
        for name, kind in (("status", TaskStatus), ("priority", Priority)):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, _member(kind, value, f"update_task: {name}"))

    def given(self) -> dict[str, Any]:
        """The fields given, by name."""
        return {name: value for name in self.__dataclass_fields__ if (value := getattr(self, name)) is not None}


# -- the contract's rules, shared by every store ----------------------------------------------
# Each store checks them where its data is (a SQL row, an issue body, a claim log); the
# decisions and their messages live here once.


def iso_time(dt: datetime) -> str:
    """Fixed-width UTC ISO text (naive times are UTC): sorts as strings as the times do."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """An ISO time as stores and APIs write it (``Z`` or an offset; naive means UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stale_claim(key: str, task_id: str, token: int, fence: int, *, held: bool) -> StaleClaim:
    """The refusal of a write whose token is not the current claim's (``held``: whether
    the task has a claim now, ``fence``: the current token)."""
    current = f"current token {fence}" if held else "no claim now"
    return StaleClaim(f"{key} ({task_id}): token {token} is stale ({current})")


def check_token(key: str, task_id: str, token: int | None, claim: Claim | None, fence: int) -> None:
    """StaleClaim unless ``token`` is None or the current claim's (``fence``)."""
    if token is not None and (claim is None or fence != token):
        raise stale_claim(key, task_id, token, fence, held=claim is not None)


def check_dependency_keys(key: str, dependencies: Iterable[str], known: Collection[str]) -> None:
    """TaskNotFound when a new task ``key`` depends on keys that are not ``known`` (of
    existing tasks or of the batch being created)."""
    unknown = [k for k in dependencies if k not in known]
    if unknown:
        raise TaskNotFound(f"task {key!r} depends on unknown task key(s): {', '.join(unknown)}")


def check_takeable(task: Task, now: datetime) -> None:
    """ClaimConflict unless the scheduler calls the task takeable at ``now``."""
    ok, reason = scheduler.takeable(task, now)
    if not ok:
        raise ClaimConflict(f"{task.key} ({task.id}) cannot be claimed: {reason}")


def update_ends_claim(
    key: str, task_id: str, claim: Claim | None, live: bool, changes: TaskChanges, *, token: int | None, force: bool
) -> bool:
    """Whether an ``update_task`` ends the task's claim (see the module docstring); the
    token, if any, has been checked already. Without a token a live claim refuses
    (ClaimConflict) unless ``force``, which ends it; a status change over a lapsed claim
    ends it too, so its absent holder cannot later overwrite the change."""
    if token is not None or claim is None:
        return False
    if live:
        if not force:
            raise ClaimConflict(
                f"{key} ({task_id}) is claimed by {claim.worker_id} until {iso_time(claim.expires_at)}; "
                "use force to take it over"
            )
        return True
    return changes.status is not None


def status_after_update(old: TaskStatus, status: TaskStatus | None, end_claim: bool) -> TaskStatus:
    """The status an ``update_task`` leaves: the one given, else a task whose claim it
    ended goes from ``in_progress`` back to ``todo``."""
    if status is not None:
        return TaskStatus(status)
    if end_claim and old is TaskStatus.IN_PROGRESS:
        return TaskStatus.TODO
    return old


class StateProvider(abc.ABC):
    """Base class of every store. Subclasses implement the abstract methods; the rest
    have safe defaults built on them, which a store may override for speed."""

    kind: str = "abstract"
    # The clock leases are judged by; stores keep their own (tests pass a fake one).
    _now: Callable[[], datetime] = staticmethod(utcnow)

    # -- reading -------------------------------------------------------------------
    @abc.abstractmethod
    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        """All tasks (optionally only those with the given statuses), notes included."""

    @abc.abstractmethod
    def get_task(self, task_id: str) -> Task:
        """The task with this id; TaskNotFound otherwise."""

    def find_task(self, ref: str) -> Task:
        """A task by id or by key (what people type on the command line)."""
        try:
            return self.get_task(ref)
        except TaskNotFound:
            pass
        for task in self.list_tasks():
            if task.key == ref or task.key.lower() == ref.lower():
                return task
        raise TaskNotFound(f"no task with id or key {ref!r}")

    def meta_task(self) -> Task | None:
        """The project's META tracking task, if there is one."""
        for task in scheduler.order(self.list_tasks()):
            if scheduler.is_meta(task):
                return task
        return None

    def iter_tasks(
        self, statuses: Iterable[TaskStatus] | None = None, *, limit: int | None = None, offset: int = 0
    ) -> Iterator[Task]:
        """Tasks (optionally only those with the given statuses) in scheduling order, from
        ``offset``, at most ``limit`` of them. The SQL stores stream them from one
        snapshot, so a listing of 100,000 tasks never holds them all; the default reads
        the list and sorts it."""
        ordered = scheduler.order(self.list_tasks(statuses))
        yield from ordered[offset : None if limit is None else offset + limit]

    def count_by_status(self) -> TaskCounts:
        """How many non-META tasks each status has, and their total cost."""
        counts = TaskCounts()
        for task in self.list_tasks():
            if not scheduler.is_meta(task):
                counts.by_status[task.status] += 1
                counts.cost_usd += task.cost_usd
        return counts

    def next_ready(
        self, ordering: scheduler.Ordering = "strict", exclude: Iterable[str] = (), review_satisfies: bool = False
    ) -> Task | None:
        """The task ``claim_next`` would claim now, without claiming it (None when nothing
        is ready); DependencyCycle as the scheduler raises it, ValueError for an unknown
        ordering. ``review_satisfies``: an ``in_review`` task counts as finished
        (``execution.review_unblocks_dependents``)."""
        return self._next_ready(ReadyQuery(ordering, list(exclude), review_satisfies))

    def _next_ready(self, query: ReadyQuery) -> Task | None:
        """:meth:`next_ready` with checked arguments. The default asks the scheduler about
        every task; the SQL stores answer with the claim's own candidate query."""
        tasks = self.list_tasks()
        return scheduler.next_ready(tasks, self._now(), query.ordering, query.exclude, query.review_satisfies)

    def count_ready(self, ordering: scheduler.Ordering = "strict", review_satisfies: bool = False) -> int:
        """How many open non-META tasks are ready now (the rest wait); ``review_satisfies``
        and ValueError as in :meth:`next_ready`."""
        return self._count_ready(ReadyQuery(ordering, review_satisfies=review_satisfies))

    def _count_ready(self, query: ReadyQuery) -> int:
        """:meth:`count_ready` with checked arguments; the default asks the scheduler."""
        plan = scheduler.plan(self.list_tasks(), self._now(), query.ordering, query.review_satisfies)
        return sum(d.ready for d in plan)

    # -- writing -------------------------------------------------------------------
    @abc.abstractmethod
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        """Create tasks, idempotent by key. Dependencies name keys (of this batch or of
        existing tasks) and are stored as ids; an unknown key raises TaskNotFound."""

    def update_task(
        self,
        task_id: str,
        *,
        token: int | None = None,
        force: bool = False,
        title: str | None = None,
        description: str | None = None,
        acceptance_criteria: list[str] | None = None,
        test_steps: list[str] | None = None,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        labels: list[str] | None = None,
        dependencies: list[str] | None = None,
    ) -> Task:
        """Change fields of a task (only those given, None leaves one as it is) and return
        it. With a token, StaleClaim unless it is the current claim's; without one, a live
        claim refuses (ClaimConflict) unless ``force``, which ends it so its holder's token
        is stale (see the module docstring and :func:`update_ends_claim`). Unknown
        dependency ids raise TaskNotFound and nothing is written. The fields are checked
        here once (:class:`TaskChanges`); each store writes them in ``_update_task``."""
        changes = TaskChanges(
            title=title, description=description, acceptance_criteria=acceptance_criteria, test_steps=test_steps,
            status=status, priority=priority, labels=labels, dependencies=dependencies,
        )  # fmt: skip
        return self._update_task(task_id, changes, token=token, force=force)

    @abc.abstractmethod
    def _update_task(self, task_id: str, changes: TaskChanges, *, token: int | None, force: bool) -> Task:
        """Write ``changes`` (already checked) under the rules :meth:`update_task` states."""

    @abc.abstractmethod
    def add_note(self, task_id: str, text: str, author: str, *, token: int | None = None) -> Note:
        """Append a timestamped note. With a token, refused if the token is stale."""

    # -- claims ----------------------------------------------------------------------
    @abc.abstractmethod
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        """Atomically take a takeable task: status in_progress, a new claim with the next
        fencing token. ClaimConflict if it is not takeable (live claim, wrong status)."""

    @abc.abstractmethod
    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        """Extend the lease from now. StaleClaim if the token is not current."""

    def release(
        self,
        task_id: str,
        token: int,
        *,
        status: TaskStatus = TaskStatus.TODO,
        note: str | None = None,
        author: str = "runner",
        cost_usd: float = 0.0,
        turns: int = 0,
    ) -> Task:
        """End the claim and set the status in one write, adding the note and the cost
        and turns spent. StaleClaim if the token is not current. The values are checked
        here once (:class:`Release`); each store writes them in ``_release``."""
        return self._release(task_id, token, Release(status, note, author, cost_usd, turns))

    @abc.abstractmethod
    def _release(self, task_id: str, token: int, release: Release) -> Task:
        """Write ``release`` (already checked) under the rules :meth:`release` states."""

    def claim_next(
        self,
        worker_id: str,
        lease_seconds: float,
        ordering: scheduler.Ordering = "strict",
        exclude: Iterable[str] = (),
        review_satisfies: bool = False,
    ) -> Task | None:
        """Claim the next ready task (the one :meth:`next_ready` names, unless another
        worker takes it first), or return None when nothing is ready; ``exclude``: task
        ids not to take; ``review_satisfies`` and ValueError as in :meth:`next_ready`."""
        return self._claim_next(worker_id, lease_seconds, ReadyQuery(ordering, list(exclude), review_satisfies))

    def _claim_next(self, worker_id: str, lease_seconds: float, query: ReadyQuery) -> Task | None:
        """:meth:`claim_next` with checked arguments. The default asks the scheduler about
        what :meth:`_claim_view` reads and claims its pick; losing a race to another worker
        (or to a deletion) moves on to the next candidate. The SQL stores find and claim
        in one transaction instead."""
        read, take = self._claim_view(worker_id, lease_seconds)
        skip = set(query.exclude)
        while True:
            task = scheduler.next_ready(read(), self._now(), query.ordering, skip, query.review_satisfies)
            if task is None:
                return None
            try:
                return take(task)
            except (ClaimConflict, TaskNotFound):
                skip.add(task.id)

    def _claim_view(
        self, worker_id: str, lease_seconds: float
    ) -> tuple[Callable[[], list[Task]], Callable[[Task], Task]]:
        """What the default :meth:`_claim_next` reads (again after each lost race) and how
        it claims one task of it: every task, and :meth:`claim`. A store whose listing
        carries what a claim needs overrides this to claim from the listing it read."""
        return self.list_tasks, lambda task: self.claim(task.id, worker_id, lease_seconds)

    # -- sessions ------------------------------------------------------------------
    @abc.abstractmethod
    def record_session(self, session: SessionRecord) -> None:
        """Insert or update a session record (start, then end with a summary)."""

    @abc.abstractmethod
    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        """The most recent sessions first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""

    def __enter__(self) -> StateProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
