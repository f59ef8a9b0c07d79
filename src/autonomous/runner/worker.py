"""One agent taking tasks one after another: claim -> prompt -> backend -> verify -> record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomous import checkpoints as cp
from autonomous import history, sandbox, verify
from autonomous.backends.base import Backend, RunOptions, TaskAllowance
from autonomous.checks import diff as checks_diff
from autonomous.checks import review
from autonomous.checks.review import ReviewVerdict
from autonomous.errors import StaleClaim
from autonomous.events import (
    BackendStart,
    Event,
    Outcome,
    OutcomeEvent,
    OutcomeStatus,
    TaskClaimed,
    TaskRecorded,
    Text,
    UsageUpdate,
    Verification,
    WarningEvent,
)
from autonomous.init.tick import Tick, tick_done
from autonomous.prompts.build import RUNNER_AUTHOR as AUTHOR
from autonomous.prompts.build import build_prompt, continuation_prompt, verification_feedback
from autonomous.runner.handoff import Handoff
from autonomous.runner.verdict import Result, decide
from autonomous.runner_state import CurrentTask
from autonomous.tasks import Task, TaskStatus, utcnow
from autonomous.workspace import changes, git
from autonomous.workspace.commit import TaskCommit, commit_change_set
from autonomous.workspace.worktrees import Isolation

if TYPE_CHECKING:
    from autonomous.runner.session import AutonomousRunner

# a review ending like this stops the task the same way an agent's run would
_REVIEW_STOPS = (
    OutcomeStatus.INTERRUPTED,
    OutcomeStatus.RATE_LIMITED,
    OutcomeStatus.BUDGET_EXCEEDED,
    OutcomeStatus.AUTH_ERROR,
)


@dataclass(slots=True)
class TaskResult:
    verdict: str
    task: Task
    outcome: Outcome | None = None
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    verification: verify.VerificationResult | None = None
    change_set: changes.ChangeSet | None = None  # what the task changed, as of its last agent run
    attempts: int = 0  # verification rounds
    allowance_spent: bool = False  # the attempts stopped because the task's allowance ran out
    commit: str | None = None
    retry_at: datetime | None = None
    message: str = ""
    checkpoints: list[cp.Checkpoint] = field(default_factory=list)
    tick: Tick | None = None  # the source checklist's tick; tick.commit_path belongs to the task's change set
    approved: bool = False  # a person approved the task in review: merge it, do not send it to review again


class Worker(Handoff):
    """One agent taking tasks one after another. Shares the provider, the budget and the
    event bus with the other workers of the session."""

    def __init__(self, runner: AutonomousRunner, worker_id: str, backend: Backend):
        self.runner = runner
        self.worker_id = worker_id
        self.backend = backend
        self.config = runner.config
        self.provider = runner.provider
        self._run_task: asyncio.Task | None = None
        self._interrupt_reason: str | None = None
        self.current: CurrentTask | None = None
        self.last_current: CurrentTask | None = None  # what the last task left, for --resume
        self.turn_counter = cp.TurnCounter(self.config.execution.checkpoints.turn_interval)
        self.isolation: Isolation | None = runner.isolation
        self.worktree: Path | None = None  # the task's worktree, with isolation
        self.workspace: Path | None = None  # where the agent works: the project, or its copy in the worktree
        self.allowance: TaskAllowance | None = None  # the task's turns and money, shared by its attempts and its review
        self._texts: list[str] | None = None  # the agent's top-level texts, while a review runs

    @property
    def cwd(self) -> Path:
        return self.workspace or self.config.project_dir

    def emit(self, event: Event, task: Task | None = None) -> None:
        """Emit ``event`` stamped with this worker, its backend and ``task``: the bus keeps
        each worker's live progress from these stamps."""
        common: dict[str, Any] = {"worker_id": self.worker_id, "backend": self.backend.name}
        if task is not None:
            common.update(task_id=task.id, key=task.key)
        self.runner.emit(event.stamped(**common))

    # -- interruption ---------------------------------------------------------------------
    def interrupt(self, reason: str) -> None:
        """Stop the backend run in flight (signal, lost lease). The run's generator is
        closed, which ends the agent's process."""
        if self._interrupt_reason is None:
            self._interrupt_reason = reason
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()  # closes the run's generator, which ends the agent's process

    # -- heartbeat ------------------------------------------------------------------------
    async def _heartbeat(self, task: Task, token: int) -> None:
        interval = max(0.05, self.config.autonomous.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.provider.renew, task.id, token, self.config.autonomous.lease_seconds)
            except StaleClaim:
                self.emit(WarningEvent(message=f"lost the lease on {task.key}: another worker owns it now"), task)
                self.interrupt(Result.LOST)
                return
            except Exception as exc:  # a store hiccup: try again next beat, the lease has slack
                self.emit(WarningEvent(message=f"could not renew the lease on {task.key}: {exc}"), task)

    # -- one backend run ----------------------------------------------------------------------
    async def _drive(self, prompt: str, options: RunOptions, task: Task) -> Outcome:
        def relay(event: Event) -> None:
            self.emit(event, task)
            self._observe(event, task)

        return await self.backend.complete(prompt, options, relay)

    def _observe(self, event: Event, task: Task) -> None:
        """What the runner decides from the run in flight: the conversation to resume, the
        reviewer's answer, the turn-interval checkpoint and the session budget (from the
        task's live progress, which the bus keeps)."""
        cur = self.current
        if cur is None:
            return
        if isinstance(event, BackendStart) and event.session_id:
            cur.backend_session_id = event.session_id
            self.runner.save_state()  # at once: --resume needs it
        elif isinstance(event, Text) and self._texts is not None and not event.subagent:
            self._texts.append(event.text)
        elif isinstance(event, UsageUpdate):
            live = self.runner.bus.live.get(self.worker_id)
            if live is None or live.task_id != task.id:
                return
            if event.turns is not None and self.turn_counter.update(live.turns):
                self.runner.checkpoint(
                    cp.Checkpoint(cp.CheckpointKind.TURN_INTERVAL, task.key, f"{live.turns} turns"), task, self
                )
            if event.cost_usd is not None:
                self.runner.budget.observe(self.worker_id, live.cost_usd)

    async def _run_backend(self, prompt: str, options: RunOptions, task: Task) -> Outcome:
        started = time.monotonic()
        self._run_task = asyncio.ensure_future(self._drive(prompt, options, task))
        try:
            outcome = await self._run_task
        except asyncio.CancelledError:
            if self._interrupt_reason is None:
                raise
            outcome = Outcome(OutcomeStatus.INTERRUPTED, error=self._interrupt_reason)
        except Exception as exc:  # a backend bug must not take the runner down with the lease held
            outcome = Outcome(OutcomeStatus.ERROR, error=f"backend raised {type(exc).__name__}: {exc}")
        finally:
            self._run_task = None
        if not outcome.duration_s:
            outcome.duration_s = time.monotonic() - started
        if self._interrupt_reason is not None and outcome.status is not OutcomeStatus.INTERRUPTED:
            outcome.status = OutcomeStatus.INTERRUPTED
            outcome.error = outcome.error or self._interrupt_reason
        self.emit(OutcomeEvent.of(outcome), task)
        return outcome

    def _options(self, task: Task, session_id: str | None, allowance: TaskAllowance) -> RunOptions:
        """One run's options. ``allowance`` is the task's, shared by all its runs: the
        limits are never rebuilt per attempt."""
        c = self.config
        return RunOptions(
            allowance=allowance,
            cwd=self.cwd,
            model=c.autonomous.model,
            max_turns=c.autonomous.max_turns_per_task,
            max_tokens=c.autonomous.max_tokens,
            allowed_tools=list(c.autonomous.allowed_tools),
            permission_mode=c.autonomous.permission_mode,
            session_id=session_id,
            mcp_servers=dict(c.autonomous.mcp_servers),
            task_id=task.id,
            inactivity_timeout=c.autonomous.inactivity_timeout,
            rate_limit_rpm=c.autonomous.rate_limit_rpm,
            command_deny=list(c.autonomous.command_policy.deny),
            command_allow=list(c.autonomous.command_policy.allow),
            claude_path=c.autonomous.claude_path,
            context_window=c.autonomous.context_window,
            sandbox=sandbox.for_section(self.cwd, c.autonomous.sandbox, tool_dirs=(c.state_dir, c.log_dir)),
            # the pull requests' token is the runner's, never the agent's
            env={pulls.client.token_env: ""} if (pulls := self.runner.pull_requests) else {},
        )

    # -- one task ---------------------------------------------------------------------------
    async def run_task(self, task: Task, *, resume_session: str | None = None, resume_note: str = "") -> TaskResult:
        assert task.claim is not None, "run_task needs a claimed task"
        token = task.claim.token
        c = self.config
        self._interrupt_reason = None
        self.current = CurrentTask(
            id=task.id,
            key=task.key,
            title=task.title,
            started_at=utcnow().isoformat(),
            token=token,
            backend_session_id=resume_session,
            worker_id=self.worker_id,
        )
        self.runner.set_current(self, self.current)
        self.emit(TaskClaimed(title=task.title, token=token), task)
        heartbeat = asyncio.ensure_future(self._heartbeat(task, token))
        started = time.monotonic()
        result = TaskResult(Result.FAILED, task)
        self.worktree = self.workspace = None
        try:
            if self.runner.remote is not None and self.isolation is not None:
                # -- shared remote: a task the remote already holds is done
                landed = await asyncio.to_thread(self._remote_start, task)
                if landed is not None:
                    return await self._record_landed(task, token, result, landed)
            if self.isolation is not None:
                try:
                    self.worktree, self.workspace = await asyncio.to_thread(self.isolation.prepare, task)
                except git.GitError as exc:
                    result.outcome = Outcome(OutcomeStatus.ERROR, error=f"could not prepare the task's worktree: {exc}")
                    return await self._record(task, token, result)
            await self.runner.ensure_baseline()
            before = await asyncio.to_thread(self._tree_at_claim)
            if c.execution.handoff == "review" and history.review_decision(task.notes) == "approved":
                return await self._merge_approved(task, token, result, before, started)
            all_tasks = self.runner.prompt_context(task)
            prompt = continuation_prompt(task, resume_note) if resume_session else build_prompt(task, all_tasks, c)
            session_id = resume_session
            attempt = 0
            self.turn_counter = self.runner.turn_counter = cp.TurnCounter(c.execution.checkpoints.turn_interval)
            allowance = self.allowance = self.runner.budget.allowance(self.worker_id)
            while True:
                outcome = await self._run_backend(prompt, self._options(task, session_id, allowance), task)
                if session_id and outcome.status is OutcomeStatus.ERROR and not outcome.turns:
                    # The conversation could not be resumed (expired, another machine or process): start
                    # afresh with the whole task, and the checks' feedback when this is a later attempt.
                    self.emit(WarningEvent(message=f"could not resume session {session_id}: fresh start"), task)
                    resume_session = session_id = None
                    prompt = build_prompt(task, all_tasks, c) + (f"\n\n{prompt}" if attempt else "")
                    outcome = await self._run_backend(prompt, self._options(task, None, allowance), task)
                result.outcome = outcome
                result.change_set = await asyncio.to_thread(self._changes_since, before)
                result.cost_usd += outcome.cost_usd
                result.turns += outcome.turns
                seen = self.current.backend_session_id if self.current else None
                session_id = outcome.session_id or seen or session_id
                if self.current is not None:
                    self.current.backend_session_id = session_id
                if outcome.status is not OutcomeStatus.COMPLETED:
                    break
                attempt += 1
                vr = await self._verify(task, result, before)
                result.verification, result.attempts = vr, attempt
                self.emit(Verification(attempt=attempt, **vr.to_dict()), task)
                if vr.ran_anything:
                    self._note(task, token, f"{vr.evidence()}\n(attempt {attempt} of {c.verification.max_attempts})")
                if vr.passed or result.outcome is not outcome:  # done, or the review was cut short
                    break
                result.checkpoints.append(
                    cp.Checkpoint(
                        cp.CheckpointKind.REGRESSION_FAILURE,
                        task.key,
                        vr.reason,
                        details=vr.evidence(),
                    )
                )
                if attempt >= c.verification.max_attempts or self.runner.stopping or self._interrupt_reason:
                    break
                if allowance.turns_spent or allowance.usd_spent:
                    result.allowance_spent = True
                    break
                prompt = verification_feedback(vr, attempt, c.verification.max_attempts)
            result.duration_s = time.monotonic() - started
            return await self._record(task, token, result)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
            if self.current is not None:
                self.runner.with_progress(self.current)
            self.last_current, self.current = self.current, None

    async def _verify(self, task: Task, result: TaskResult, before: changes.TreeState) -> verify.VerificationResult:
        """The checks (commands against the baseline, the change set), then the review."""
        c = self.config
        change_set = result.change_set or changes.ChangeSet(self.cwd)
        vr = await verify.verify(
            self.cwd,
            c.checks.commands,
            timeout=c.verification.timeout,
            require_changes=c.verification.require_changes and not verify.opts_out_of_changes(task),
            change_set=change_set,
            redact=self.runner.redactor.text,
            baseline=self.runner.baseline,
            report_dir=c.state_dir / "checks" / "".join(ch if ch.isalnum() else "_" for ch in self.worker_id),
        )
        diff = await asyncio.to_thread(checks_diff.task_diff, change_set, before.head) if change_set else None
        vr.diffstat = diff.diffstat(change_set) if diff is not None else ""
        if vr.passed and c.verification.review:
            vr.review = await self._review(task, result, diff.text if diff else "", vr)
            if not vr.review.approved:
                vr.fail(vr.review.headline())
        return vr

    async def _review(self, task: Task, result: TaskResult, diff: str, vr: verify.VerificationResult) -> ReviewVerdict:
        """A fresh read-only session of the backend judges the diff (checks/review.py). Its
        turns and cost are the task's; an outcome that stops the task (interrupt, limits)
        becomes the task's outcome."""
        checks = [c.evidence().splitlines()[0] for c in vr.commands]
        prompt = review.build_prompt(task, diff, vr.diffstat, checks)
        agent_session = self.current.backend_session_id if self.current else None
        self._texts = []
        try:
            options = review.review_options(self._options(task, None, self._task_allowance()))
            outcome = await self._run_backend(prompt, options, task)
        finally:
            texts, self._texts = self._texts or [], None
            if self.current is not None:
                self.current.backend_session_id = agent_session
        result.cost_usd += outcome.cost_usd
        result.turns += outcome.turns
        verdict = review.parse_verdict("\n".join(texts))
        if verdict is None:
            why = outcome.error or f"the reviewer's run ended {outcome.status.value}"
            completed = outcome.status is OutcomeStatus.COMPLETED
            verdict = ReviewVerdict(False, error="no JSON verdict in its answer" if completed else why)
        if outcome.status in _REVIEW_STOPS:
            result.outcome = outcome
        verdict.turns, verdict.cost_usd = outcome.turns, outcome.cost_usd
        return verdict

    def _task_allowance(self) -> TaskAllowance:
        assert self.allowance is not None, "a review runs inside a task"
        return self.allowance

    def _note(self, task: Task, token: int, text: str) -> None:
        try:
            self.provider.add_note(task.id, self.runner.redactor.text(text), AUTHOR, token=token)
        except StaleClaim:
            self.interrupt(Result.LOST)

    def _tree_at_claim(self) -> changes.TreeState:
        """What the task's change set is measured against. In the project itself: the tree
        as it is now (a user's untracked and dirty files are not the task's). In the task's
        own worktree: the point where its branch left the integration branch, with nothing
        dirty, so work an earlier attempt left there (committed or not) is the task's."""
        c = self.config
        if self.isolation is not None and self.worktree is not None:
            top = git.toplevel(self.worktree)
            fork = git.merge_base(top, "HEAD", self.isolation.integration) or git.head(top)
            return changes.TreeState(top, fork, {}, changes.project_pathspec(self.cwd, top, c.git_excludes))
        return changes.capture(self.cwd, c.git_excludes)

    def _changes_since(self, before: changes.TreeState) -> changes.ChangeSet:
        return changes.diff(before, changes.capture(self.cwd, self.config.git_excludes))

    async def _commit(self, task: Task, message: str, change_set: changes.ChangeSet) -> tuple[TaskCommit, str]:
        """Commit exactly the task's change set (in a thread: git must not stall the other
        workers). Returns what was committed, and a problem to report (empty when none)."""
        c = self.config
        if self.isolation is not None:
            if self.workspace is None:  # no worktree was made: nothing of this task to commit
                return TaskCommit(), ""
        elif not c.execution.git.commit or not git.is_repo(c.project_dir):
            return TaskCommit(), ""
        if not change_set:
            return TaskCommit(), ""
        try:
            done = await asyncio.to_thread(
                commit_change_set,
                change_set,
                message,
                secrets=self.runner.redactor.secrets,
                allow_files=c.execution.git.allow_files,
            )
        except git.GitError as exc:
            self.emit(WarningEvent(message=f"commit failed: {exc}"), task)
            return TaskCommit(), f"commit failed: {exc}"
        if done.refused:
            self.emit(WarningEvent(message=f"nothing committed: {done.describe_refusal()}"), task)
        return done, ""

    async def _record(self, task: Task, token: int, result: TaskResult) -> TaskResult:
        """Decide the verdict and write it with the token: commit first, so the note can
        carry the sha."""
        c = self.config
        outcome = result.outcome or Outcome(OutcomeStatus.ERROR, error="no outcome")
        if self._interrupt_reason == Result.LOST:
            result.verdict = Result.LOST
            result.message = f"lost the lease on {task.key}; nothing recorded"
            return result
        merge_failed = False
        change_set = result.change_set or changes.ChangeSet(self.cwd)
        committed = TaskCommit()
        context_restarts = self.runner.context_requeues.get(task.id, 0)
        verdict = decide(
            outcome,
            result.verification,
            attempts=result.attempts,
            max_attempts=c.verification.max_attempts,
            allowance_spent=result.allowance_spent,
            context_tokens_high=cp.context_high(
                outcome.context_tokens, c.autonomous.context_window, c.execution.checkpoints.context_threshold
            ),
            context_window=c.autonomous.context_window,
            context_restarts=context_restarts,
        )
        result.verdict, status, head, summary = verdict.result, verdict.status, verdict.head, verdict.summary
        result.retry_at = verdict.retry_at
        if verdict.context_restart:
            self.runner.context_requeues[task.id] = context_restarts + 1
        if verdict.checkpoint is not None:
            detail = outcome.blocker if verdict.checkpoint is cp.CheckpointKind.BLOCKER else head
            result.checkpoints.append(cp.Checkpoint(verdict.checkpoint, task.key, detail))
        if result.verdict == Result.DONE:
            title = task.title if len(task.title) < 70 else task.title[:67] + "..."
            if c.initializer.tick_source:
                result.tick = await asyncio.to_thread(tick_done, task, self.cwd, c.state_dir)
            if result.tick and result.tick.ticked:
                # the ticked box goes with the task's work; a file git does not track stays out
                change_set = (
                    change_set.including(result.tick.commit_path)
                    if result.tick.commit_path
                    else change_set.excluding(result.tick.path)
                )
            committed, commit_problem = await self._commit(
                task, f"{task.key}: {title}\n\nautonomous: task {task.id} done", change_set
            )
            result.commit = committed.sha
            head = "Done" + (f" (commit {result.commit[:12]})" if result.commit else "")
            if commit_problem:
                head += f" ({commit_problem})"
            if committed.refused:
                merge_failed = True  # blocked below: no merge, no second commit
            elif self.isolation is not None and self.worktree is not None and commit_problem:
                # not on the task branch, so not mergeable: not done; the worktree keeps the work
                result.verdict, status, merge_failed = Result.FAILED, TaskStatus.TODO, True
                head = f"Failed: verified, but the work could not be committed in {self.worktree} ({commit_problem})"
            elif self.worktree is not None:
                status, head, merge_failed = await self._hand_off(task, token, result)
        if status not in (TaskStatus.DONE, TaskStatus.IN_REVIEW) and not merge_failed:
            committed, _ = await self._commit(
                task, f"WIP {task.key}: {result.verdict}, not done\n\nautonomous: task {task.id}", change_set
            )
            result.commit = committed.sha
            if result.commit:
                head += f" (work in progress committed: {result.commit[:12]})"
        if committed.refused:  # a secret in the change, done or not: nothing committed, a person looks
            result.verdict, status = Result.BLOCKED, TaskStatus.BLOCKED
            head = f"Blocked: nothing committed: {committed.describe_refusal()}; the files are kept as they are"
        lines = [head]
        if result.tick and result.tick.note:
            lines.append(result.tick.note)
        if summary:
            lines.append(f"Summary: {summary}")
        if change_set:
            lines.append("Files changed: " + change_set.describe())
        if committed.left_out:
            lines.append(committed.describe_left_out())
        left_dirty = sorted(set(self.runner.dirty_at_start) - set(change_set.paths))
        if left_dirty and result.commit:
            shown = ", ".join(left_dirty[:10]) + (f" and {len(left_dirty) - 10} more" if len(left_dirty) > 10 else "")
            lines.append(f"Left out of the commit (already modified before the run, --allow-dirty): {shown}")
        lines.append(
            f"Turns: {result.turns}, cost: ${result.cost_usd:.4f}, duration: {result.duration_s:.1f}s"
            + (f", commit: {result.commit}" if result.commit else "")
            + (f", backend session: {outcome.session_id}" if outcome.session_id else "")
        )
        note = self.runner.redactor.text("\n".join(lines))
        result.message = self.runner.redactor.text(head)  # it becomes the session's stop reason
        try:
            self.provider.release(
                task.id, token, status=status, note=note, author=AUTHOR, cost_usd=result.cost_usd, turns=result.turns
            )
        except StaleClaim:
            result.verdict = Result.LOST
            result.message = f"lost the lease on {task.key} before recording; nothing recorded"
            self.emit(WarningEvent(message=result.message), task)
            return result
        self.emit(
            TaskRecorded(
                status=status.value,
                verdict=result.verdict,
                cost_usd=round(result.cost_usd, 6),
                turns=result.turns,
                commit=result.commit,
                message=head,
            ),
            task,
        )
        return result
