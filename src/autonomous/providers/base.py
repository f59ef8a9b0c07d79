"""The StateProvider contract: where tasks live, and how workers take them safely.

Every provider passes ``tests/test_provider_contract.py``. The guarantees:

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autonomous import scheduler
from autonomous.errors import ClaimConflict, TaskNotFound
from autonomous.tasks import NewTask, Note, Priority, Task, TaskStatus, utcnow


@dataclass(slots=True)
class CreateResult:
    created: list[Task] = field(default_factory=list)
    existing: list[Task] = field(default_factory=list)  # keys that were already there, untouched

    @property
    def tasks(self) -> list[Task]:
        return self.created + self.existing


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


_UNSET: Any = object()


class StateProvider(abc.ABC):
    """Base class of every store. Subclasses implement the abstract methods; the rest
    have safe defaults built on them, which a store may override for speed."""

    kind: str = "abstract"

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

    # -- writing -------------------------------------------------------------------
    @abc.abstractmethod
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        """Create tasks, idempotent by key. Dependencies name keys (of this batch or of
        existing tasks) and are stored as ids; an unknown key raises TaskNotFound."""

    @abc.abstractmethod
    def update_task(
        self,
        task_id: str,
        *,
        token: int | None = None,
        force: bool = False,
        title: str = _UNSET,
        description: str = _UNSET,
        acceptance_criteria: list[str] = _UNSET,
        test_steps: list[str] = _UNSET,
        status: TaskStatus = _UNSET,
        priority: Priority = _UNSET,
        labels: list[str] = _UNSET,
        dependencies: list[str] = _UNSET,
    ) -> Task:
        """Change fields of a task (only those given). See the module docstring for
        the token and ``force`` rules."""

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

    @abc.abstractmethod
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
        and turns spent. StaleClaim if the token is not current."""

    def claim_next(
        self,
        worker_id: str,
        lease_seconds: float,
        ordering: scheduler.Ordering = "strict",
        exclude: Iterable[str] = (),
    ) -> Task | None:
        """Claim the next ready task, or return None when nothing is ready.

        The default reads every task and asks the scheduler; losing a race to another
        worker just moves on to the next candidate.
        """
        skip = set(exclude)
        while True:
            task = scheduler.next_ready(self.list_tasks(), utcnow(), ordering, skip)
            if task is None:
                return None
            try:
                return self.claim(task.id, worker_id, lease_seconds)
            except ClaimConflict:
                skip.add(task.id)

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
