"""The workers of one session, side by side on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta

from autonomous import checkpoints as cp
from autonomous import history, scheduler
from autonomous.errors import AutonomousError, ClaimConflict, ExitCode, StaleClaim, TaskNotFound
from autonomous.events import RateLimit, TaskRecorded, WarningEvent
from autonomous.prompts.build import RUNNER_AUTHOR as AUTHOR
from autonomous.prompts.build import last_note
from autonomous.runner.verdict import Result
from autonomous.runner.worker import Worker
from autonomous.runner_state import CurrentTask
from autonomous.tasks import Task, TaskStatus, utcnow
from autonomous.workspace.pull_requests import Verdict as PullVerdict

REMOTE_POLL = 1.0  # seconds between looks at the shared store while only other machines' tasks run


class WorkerPool:
    """The part of :class:`~autonomous.runner.session.AutonomousRunner` that runs its
    workers: N coroutines taking tasks, the shared halts and pauses, the rate-limit waits.
    A mixin: the session's state is its state."""

    # -- the workers ---------------------------------------------------------------------------
    #
    # Every worker runs :meth:`_worker_loop` as a coroutine on the loop thread. Provider calls
    # are synchronous and made from the loop thread only (the heartbeat's renew runs in a
    # thread, which both stores support: the SQLite store opens a connection per thread, the
    # PostgreSQL store serialises on its own lock), so nothing between a check of the shared
    # limits and the claim that follows can interleave with another worker: the budget
    # reservation, the task count and the claim are one step.

    def _changed(self) -> None:
        """Wake the workers waiting for something to change (a task ended, a stop)."""
        event, self._change = self._change, asyncio.Event()
        if event is not None:
            event.set()

    def _set_halt(self, code: int, reason: str) -> tuple[int, str]:
        """A decision that ends the session for every worker: they take no new task, and
        the ones running finish (or, on a stop, checkpoint) the task they have."""
        if self._halt is None:
            self._halt = (code, reason)
        self._changed()
        return self._halt

    async def _run_workers(self, resume_targets: list[CurrentTask]) -> tuple[int, str]:
        self._change = asyncio.Event()
        first_claims = [asyncio.Event() for _ in self.workers]

        async def one(i: int, worker: Worker) -> tuple[int, str]:
            if i:  # staggered: a worker starts once the one before it has made its first claim
                await first_claims[i - 1].wait()
            try:
                return await self._worker_loop(worker, resume_targets, first_claims[i])
            except BaseException as exc:
                self._set_halt(ExitCode.FAILED, f"runner error: {type(exc).__name__}: {exc}")
                raise
            finally:
                first_claims[i].set()
                self._changed()

        results = await asyncio.gather(*(one(i, w) for i, w in enumerate(self.workers)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        if self._halt is not None:
            return self._halt
        ends = [r for r in results if isinstance(r, tuple)]
        return next((r for r in ends if r[0] != ExitCode.OK), ends[0])

    async def _worker_loop(
        self, worker: Worker, resume_targets: list[CurrentTask], first_claim: asyncio.Event
    ) -> tuple[int, str]:
        c = self.config
        while True:
            if self.stopping:
                return ExitCode.INTERRUPTED, self._stop_reason or "interrupted"
            if self._halt is not None:
                return self._halt
            if self._pause is not None:  # another worker hit a rate limit: everybody waits it out
                ok, why = await asyncio.shield(self._pause)
                if not ok:
                    return self._set_halt(ExitCode.BUDGET, why)
                continue
            review = self._review()
            if review is not None:
                return self._set_halt(*review)
            await self._poll_pull_requests()
            refusal = self.budget.refuse()
            if refusal is not None:
                code, why = refusal
                if code == ExitCode.OK and self._failures:
                    return ExitCode.FAILED, f"{why}; {self._failures} task(s) failed or were blocked this session"
                if code == ExitCode.BUDGET and self._busy and self._change is not None:
                    # the running tasks may cost less than they reserved: decide when one ends
                    await self._change.wait()
                    continue
                return (code, why) if code == ExitCode.OK else self._set_halt(code, why)
            # Reserve before claiming (no await in between): N workers cannot together start
            # more tasks than max_tasks_per_session or spend more than the budget.
            self.budget.reserve(worker.worker_id)
            resume_session, resume_note = None, ""
            task: Task | None = None
            while resume_targets and task is None:
                target = resume_targets.pop(0)
                task = self._claim_specific(target.id, worker.worker_id)
                if task is not None:
                    resume_session = target.backend_session_id
                    resume_note = last_note(task) or ""
            if task is None:
                if cp.requires_review(cp.CheckpointKind.BEFORE_TASK, cp.ExecutionMode(c.execution.mode)):
                    upcoming = scheduler.next_ready(
                        self.provider.list_tasks(),
                        utcnow(),
                        c.execution.ordering,
                        self._exclude,
                        c.execution.review_unblocks_dependents,
                    )
                    if upcoming is not None:
                        self.checkpoint(
                            cp.Checkpoint(cp.CheckpointKind.BEFORE_TASK, upcoming.key, upcoming.title), upcoming
                        )
                        review = self._review()
                        if review is not None:
                            self.budget.unreserve(worker.worker_id)
                            return self._set_halt(*review)
                task = self.provider.claim_next(
                    worker.worker_id,
                    c.autonomous.lease_seconds,
                    c.execution.ordering,
                    self._exclude,
                    review_satisfies=c.execution.review_unblocks_dependents,
                )
            first_claim.set()
            if task is None:
                self.budget.unreserve(worker.worker_id)
                if self._busy and self._change is not None:  # what the others finish may make a task ready
                    await self._change.wait()
                    continue
                if self.remote is not None and self._change is not None and self._elsewhere():
                    # -- shared remote: runners on other machines hold tasks whose end may unlock ours
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._change.wait(), timeout=REMOTE_POLL)
                    continue
                if await self._wait_for_pull_requests():
                    continue
                waiting = self._nothing_ready_reason()
                in_review = self._awaiting_review()
                if in_review and not self._failures:
                    return self._set_halt(ExitCode.PAUSED, in_review)
                if self._failures:
                    return (
                        ExitCode.FAILED,
                        f"no more tasks can run: {self._failures} task(s) failed or were blocked; {waiting}",
                    )
                return ExitCode.OK, waiting
            self._busy += 1
            self.state.counters["tasks_started"] = self.budget.tasks_started
            try:
                result = await worker.run_task(task, resume_session=resume_session, resume_note=resume_note)
            finally:
                self._busy -= 1
                self._changed()
            self.budget.settle(worker.worker_id, result.cost_usd, result.verdict == Result.DONE)
            self.state.counters["done_cost_usd"] = round(self.budget.done_total, 6)  # the expected cost, on --resume
            self.state.counters["tasks_done"] = self.budget.done_count
            self.state.turns += result.turns
            for checkpoint in result.checkpoints:
                self.checkpoint(checkpoint, task, worker)
            verdict = result.verdict
            if verdict == Result.DONE:
                self._last_done_id = task.id
                self.state.tasks_completed.append(task.key)
            elif verdict == Result.BLOCKED:
                self.state.tasks_blocked.append(task.key)
            elif verdict == Result.FAILED:
                self.state.tasks_failed.append(task.key)
            self.save_state()
            if verdict == Result.INTERRUPTED:
                self._keep_for_resume(worker, task)
                return self._set_halt(ExitCode.INTERRUPTED, self._stop_reason or result.message)
            if verdict == Result.LOST:
                self._exclude.add(task.id)
                continue
            if verdict == Result.AUTH:
                return self._set_halt(ExitCode.USAGE, result.message)
            if verdict == Result.BUDGET:
                return self._set_halt(ExitCode.BUDGET, result.message)
            if verdict == Result.RATE_LIMITED:
                # The same task is tried again after the pause: that is not a new task for
                # max_tasks_per_session, and the time the backend already spent retrying
                # counts against max_rate_limit_wait, so a storm ends with exit 4.
                self.budget.tasks_started = max(0, self.budget.tasks_started - 1)
                self.budget.rate_limit_wait_left -= result.duration_s
                if self.budget.rate_limit_wait_left <= 0:
                    return self._set_halt(
                        ExitCode.BUDGET,
                        f"rate limited: max_rate_limit_wait ({c.autonomous.max_rate_limit_wait:.0f}s) is spent",
                    )
                ok, why = await self._rate_limit_pause(result.retry_at, task)
                if not ok:
                    return self._set_halt(ExitCode.BUDGET, why)
                continue
            if verdict in (Result.BLOCKED, Result.FAILED):
                self._failures += 1
                self._exclude.add(task.id)
                if c.execution.on_failure != "continue":
                    review = self._review()
                    if review is not None and review[0] == ExitCode.PAUSED:
                        return self._set_halt(*review)
                    return self._set_halt(ExitCode.FAILED, f"{task.key} {verdict}: {result.message} (stop-on-failure)")

    async def _rate_limit_pause(self, retry_at: datetime | None, task: Task) -> tuple[bool, str]:
        """One pause for all workers: the first worker rate limited waits until ``retry_at``
        (within max_rate_limit_wait); the others, rate limited or about to claim, wait on
        the same pause."""
        if self._pause is None:
            pause = asyncio.ensure_future(self._wait_rate_limit(retry_at, task))
            self._pause = pause
            pause.add_done_callback(lambda _f: setattr(self, "_pause", None) if self._pause is pause else None)
        return await asyncio.shield(self._pause)

    def _claim_specific(self, task_id: str, worker_id: str | None = None) -> Task | None:
        try:
            return self.provider.claim(task_id, worker_id or self.worker_id, self.config.autonomous.lease_seconds)
        except (ClaimConflict, TaskNotFound, StaleClaim):
            return None

    def _keep_for_resume(self, worker: Worker, task: Task) -> None:
        """After an interruption the state file keeps what was running (and the agent's
        conversation id), so ``start --resume`` continues it for real."""
        if self.state is None:
            return
        last = worker.last_current
        self._kept.append(
            last
            or CurrentTask(
                id=task.id, key=task.key, title=task.title, started_at=utcnow().isoformat(), worker_id=worker.worker_id
            )
        )
        self.save_state()

    def _elsewhere(self) -> bool:
        """Whether another runner (another machine) holds a live claim: its task may make
        one of ours ready when it ends, so this runner waits rather than ends its session."""
        mine = {w.worker_id for w in self.workers}
        try:
            running = self.provider.list_tasks([TaskStatus.IN_PROGRESS])
        except AutonomousError:
            return False
        return any(t.claim is not None and t.claim.live() and t.claim.worker_id not in mine for t in running)

    # -- pull requests (execution.handoff: pr, docs/runner.md "Many machines") ----------------
    async def _poll_pull_requests(self) -> None:
        """Look at the pull request of every task in ``in_review``, at most once every
        ``pr_poll_seconds`` (conditional GETs: an unchanged pull request costs no rate limit)."""
        if self.pull_requests is None or time.monotonic() < self._pr_next_poll:
            return
        self._pr_next_poll = time.monotonic() + self.config.execution.pr_poll_seconds
        try:
            waiting = self.provider.list_tasks([TaskStatus.IN_REVIEW])
        except AutonomousError as exc:
            self.emit(WarningEvent(message=f"could not list the tasks in review: {exc}"))
            return
        for task in waiting:
            found = history.pull_request(task.notes)
            if found is None:
                continue
            try:
                verdict = await asyncio.to_thread(
                    self.pull_requests.verdict, found[0], history.handled_reviews(task.notes)
                )
                self._settle_pull_request(task, verdict)
            except AutonomousError as exc:  # GitHub or the store hiccupped: the next poll tries again
                self.emit(WarningEvent(message=f"pull request of {task.key}: {exc}", task_id=task.id, key=task.key))

    def _settle_pull_request(self, task: Task, verdict: PullVerdict) -> None:
        """Merged -> done; closed unmerged -> blocked; changes requested -> back to the agent
        with the review as its feedback, at most ``verification.max_attempts`` rounds."""
        pull, rounds_allowed = verdict.pull, self.config.verification.max_attempts
        if verdict.kind == "waiting":
            return
        if verdict.kind == "merged":
            status = TaskStatus.DONE
            sha = pull.merge_sha or pull.head_sha
            note = (
                f"Done (pull request #{pull.number} merged as {sha[:12]})\n"
                f"Turns: 0, cost: $0.0000, duration: 0.0s, commit: {sha}"
            )
        elif verdict.kind == "closed":
            status = TaskStatus.BLOCKED
            note = (
                f"Blocked: pull request #{pull.number} was closed without being merged ({pull.url}); "
                f"its branch is kept. Retry the task to redo it, or cancel it"
            )
        else:
            rounds = history.change_rounds(task.notes) + 1
            status = TaskStatus.TODO if rounds <= rounds_allowed else TaskStatus.BLOCKED
            then = "back to the agent" if status is TaskStatus.TODO else "blocked: no rounds left"
            note = (
                f"{history.CHANGES_NOTE} on pull request #{pull.number} by {verdict.reviewer} "
                f"(review {verdict.review_id}, round {rounds} of {rounds_allowed}): {then}\n"
                + "\n".join(verdict.feedback or ["(the review has no text)"])
            )
        self.provider.add_note(task.id, self.redactor.text(note), AUTHOR)
        self.provider.update_task(task.id, status=status)
        if status is TaskStatus.DONE:
            self.state.tasks_completed.append(task.key)
        elif status is TaskStatus.BLOCKED:
            self._failures += 1
            self.state.tasks_blocked.append(task.key)
        self._pr_waiting_since = None  # something moved: execution.pr_wait counts from here
        self.emit(
            TaskRecorded(
                status=status.value,
                verdict=verdict.kind,
                message=note.splitlines()[0],
                task_id=task.id,
                key=task.key,
            )
        )
        self._changed()

    async def _wait_for_pull_requests(self) -> bool:
        """With nothing ready and only pull requests open: keep looking at them for up to
        ``execution.pr_wait`` seconds (True: look again), then let ``start`` exit 3."""
        if self.pull_requests is None or not self.config.execution.pr_wait or not self._awaiting_review():
            return False
        now = time.monotonic()
        if self._pr_waiting_since is None:
            self._pr_waiting_since = now
        if now - self._pr_waiting_since >= self.config.execution.pr_wait:
            return False
        assert self._change is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._change.wait(), timeout=max(0.0, self._pr_next_poll - now))
        return True

    def _awaiting_review(self) -> str:
        """With nothing ready and nobody working: the tasks waiting for a person's review
        (``execution.handoff: review``), as the line ``start`` ends with (exit 3), or ""."""
        try:
            waiting = [t.key for t in self.provider.list_tasks([TaskStatus.IN_REVIEW])]
        except AutonomousError:
            return ""
        if not waiting:
            return ""
        if self.pull_requests is not None:
            return f"paused awaiting review: {', '.join(waiting)} wait(s) for their pull request to be merged"
        return (
            f"paused awaiting review: {', '.join(waiting)} wait(s) in in_review "
            "(`autonomous approve KEY`, or `autonomous reject KEY --note TEXT`)"
        )

    def _nothing_ready_reason(self) -> str:
        try:
            ex = self.config.execution
            decisions = scheduler.plan(self.provider.list_tasks(), None, ex.ordering, ex.review_unblocks_dependents)
        except AutonomousError as exc:
            return str(exc)
        if not decisions:
            return "no work left: every task is done"
        waiting = [d.explain() for d in decisions if not d.ready][:5]
        return f"nothing ready: {len(decisions)} open task(s) wait ({'; '.join(waiting)})"

    async def _wait_rate_limit(self, retry_at: datetime | None, task: Task) -> tuple[bool, str]:
        now = utcnow()
        wait = (retry_at - now).total_seconds() if retry_at else 60.0
        wait = max(0.0, wait)
        if wait > self.budget.rate_limit_wait_left:
            return False, (
                f"rate limited until {(now + timedelta(seconds=wait)).isoformat()}: longer than the "
                f"{self.budget.rate_limit_wait_left:.0f}s of max_rate_limit_wait left"
            )
        self.budget.rate_limit_wait_left -= wait
        self.emit(
            RateLimit(
                retry_at=(now + timedelta(seconds=wait)).isoformat(),
                wait_s=round(wait, 1),
                notify=True,
                task_id=task.id,
                key=task.key,
            )
        )
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            assert self._stop_event is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), timeout=min(left, 30.0))
            if self.stopping:
                return True, "stop requested"
            if deadline - time.monotonic() > 0:
                self.emit(RateLimit(remaining_s=round(deadline - time.monotonic(), 1)))
        return True, ""
