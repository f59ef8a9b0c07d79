"""Money and task counts of a session: ``SessionBudget`` and the task allowances it hands out."""

from __future__ import annotations

import time

from autonomous.backends.base import TaskAllowance
from autonomous.config import Config
from autonomous.errors import ExitCode


class SessionBudget:
    """What the session may still spend, shared by every worker of the session, and the
    one owner of money and task counts.

    * Before a claim a worker *reserves* the expected cost of a task (the floor
      ``first_task_cost``, then the average of the tasks done), so N workers cannot each
      start a task that only one of them can afford.
    * Each task in flight has one :class:`TaskAllowance` for all its runs (attempts,
      nudges, reviews): ``max_turns_per_task`` turns, and as dollars what the *session*
      has left. Every cost a worker reports mid-run (:meth:`observe`) lowers the dollars
      of every allowance in flight at once, and a backend checks its allowance before
      each request, so N workers together pass the limit by at most one request each.
    """

    def __init__(self, config: Config, spent: float = 0.0, tasks_started: int = 0):
        self.limit = config.autonomous.cost_limit_per_session
        self.floor = config.autonomous.first_task_cost
        self.max_tasks = config.autonomous.max_tasks_per_session
        self.max_turns = config.autonomous.max_turns_per_task
        self.spent = spent
        self.tasks_started = tasks_started
        self.done_total = 0.0  # cost of the tasks done, for the expected cost (kept across --resume)
        self.done_count = 0
        self.reserved: dict[str, float] = {}  # worker id -> the expected cost it reserved for its task
        self.live: dict[str, float] = {}  # worker id -> what its task in flight has spent so far
        self.allowances: dict[str, TaskAllowance] = {}
        self.started_monotonic = time.monotonic()
        self.deadline = (
            self.started_monotonic + minutes * 60 if (minutes := config.autonomous.max_session_minutes) else None
        )
        self.rate_limit_wait_left = config.autonomous.max_rate_limit_wait

    def expected_cost(self) -> float:
        if self.done_count:
            return max(self.floor, self.done_total / self.done_count)
        return self.floor

    def committed(self) -> float:
        """Spent, plus for each task in flight what it spent or reserved, whichever is more."""
        workers = set(self.reserved) | set(self.live)
        return self.spent + sum(max(self.reserved.get(w, 0.0), self.live.get(w, 0.0)) for w in workers)

    def remaining(self) -> float | None:
        return None if self.limit is None else self.limit - self.committed()

    def refuse(self) -> tuple[int, str] | None:
        """Why no further task may start now, or None. Checked before every claim."""
        if self.max_tasks is not None and self.tasks_started >= self.max_tasks:
            return ExitCode.OK, f"max_tasks_per_session reached ({self.max_tasks})"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return ExitCode.OK, "max_session_minutes reached"
        remaining = self.remaining()
        if remaining is not None:
            expected = self.expected_cost()
            if remaining <= 0 or remaining < expected:
                return (
                    ExitCode.BUDGET,
                    f"cost limit: ${max(remaining, 0.0):.4f} left of ${self.limit:.2f}, "
                    f"a task is expected to cost ${expected:.4f}",
                )
        return None

    def reserve(self, worker: str) -> None:
        self.reserved[worker] = self.expected_cost() if self.limit is not None else 0.0
        self.tasks_started += 1

    def unreserve(self, worker: str) -> None:
        """Give back a reservation whose claim found nothing to run."""
        self.reserved.pop(worker, None)
        self.tasks_started = max(0, self.tasks_started - 1)

    def allowance(self, worker: str, kept: TaskAllowance | None = None) -> TaskAllowance:
        """The allowance of the task ``worker`` starts (``kept``: what an interrupted run of
        it left, on ``--resume``): turns of its own, dollars of the session."""
        allowance = kept or TaskAllowance(self.max_turns)
        self.allowances[worker] = allowance
        self.live[worker] = 0.0
        self._share()
        return allowance

    def observe(self, worker: str, cost_so_far: float) -> None:
        """A task in flight reported what it has spent so far (all its runs together)."""
        if worker in self.live:
            self.live[worker] = max(self.live[worker], cost_so_far)
            self._share()

    def _share(self) -> None:
        if self.limit is None:
            return
        left = self.limit - self.spent - sum(self.live.values())
        for allowance in self.allowances.values():
            allowance.usd_left = left

    def settle(self, worker: str, cost: float, done: bool) -> None:
        """The task of ``worker`` ended, having cost ``cost`` in all."""
        self.reserved.pop(worker, None)
        self.live.pop(worker, None)
        self.allowances.pop(worker, None)
        self.spent += cost
        if done:
            self.done_total += cost
            self.done_count += 1
        self._share()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic
