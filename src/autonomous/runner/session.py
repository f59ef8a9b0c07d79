"""One session of ``autonomous start``: ``AutonomousRunner``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autonomous import actions, runner_state, scheduler
from autonomous import checkpoints as cp
from autonomous.backends.base import Backend
from autonomous.checks import baseline as checks_baseline
from autonomous.config import Config, build_redactor, load_config
from autonomous.errors import (
    AutonomousError,
    ExitCode,
    PreflightError,
    TaskNotFound,
)
from autonomous.events import CheckpointReached, Event, SessionEnd, SessionStart, WarningEvent
from autonomous.events.bus import EventBus
from autonomous.prompts.build import RUNNER_AUTHOR as AUTHOR
from autonomous.prompts.build import build_prompt
from autonomous.providers.base import SessionRecord, StateProvider
from autonomous.runner import preflight
from autonomous.runner.budget import SessionBudget
from autonomous.runner.handoff import open_shared_remote
from autonomous.runner.pool import WorkerPool
from autonomous.runner.process import RunnerLock, kill_children, new_worker_id, signal_handlers
from autonomous.runner.state import load_previous, recover_dead_claims
from autonomous.runner.worker import Worker
from autonomous.runner_state import CurrentTask, RunnerState
from autonomous.tasks import Task, TaskStatus, utcnow
from autonomous.workspace import git, remote
from autonomous.workspace.pull_requests import PullRequests
from autonomous.workspace.worktrees import Isolation


@dataclass(slots=True)
class RunResult:
    """What ``start`` returns: the exit code and why, and what the session did."""

    exit_code: int
    reason: str = ""
    session_id: str = ""
    tasks_completed: list[str] = field(default_factory=list)
    tasks_blocked: list[str] = field(default_factory=list)
    tasks_failed: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    duration_s: float = 0.0

    def __int__(self) -> int:
        return self.exit_code


class AutonomousRunner(WorkerPool):
    """``AutonomousRunner(config).start()``: run the loop; returns a :class:`RunResult`
    (``.exit_code``). ``config`` is a :class:`~autonomous.config.Config` (``load_config``,
    ``RunnerConfig``; default: the project's config file); ``provider``, ``backend``,
    ``bus`` (an :class:`~autonomous.events.bus.EventBus` with the sinks the events go to)
    and ``approver`` can be given for embedding and tests.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        provider: StateProvider | None = None,
        backend: Backend | None = None,
        bus: EventBus | None = None,
        approver: cp.Approver | None = None,
        out: Callable[[str], None] | None = None,
        worker_id: str | None = None,
    ):
        self.config = config if config is not None else load_config()
        self._provider = provider
        self._backend = backend
        self.approver = approver or cp.TerminalApprover()
        self.out = out or (lambda text: print(text, flush=True))
        self.worker_id = worker_id or new_worker_id()
        self.redactor = build_redactor(self.config)
        self.bus = bus if bus is not None else EventBus(redactor=self.redactor)
        self.budget = SessionBudget(self.config)
        self.state: RunnerState | None = None
        self.workers: list[Worker] = []
        self.context_requeues: dict[str, int] = {}
        self.turn_counter = cp.TurnCounter(self.config.execution.checkpoints.turn_interval)
        self.stopping = False
        self._stop_reason: str | None = None
        self._signals = 0
        self._stop_event: asyncio.Event | None = None
        self._pending_review: list[tuple[cp.Checkpoint, Task | None]] = []
        self._meta_id: str | None = None
        self._last_done_id: str | None = None
        self._lock = threading.Lock()
        self.isolation: Isolation | None = None
        self.remote: remote.Remote | None = None  # execution.git.remote, resolved at the session's start
        self.pull_requests: PullRequests | None = None  # execution.handoff: pr
        self._pr_next_poll = 0.0  # monotonic time of the next look at the open pull requests
        self._pr_waiting_since: float | None = None  # when only pull requests were left (execution.pr_wait)
        self._kept: list[CurrentTask] = []  # interrupted tasks, kept in the state file for --resume
        self.dirty_at_start: list[str] = []  # tracked files modified before the run (--allow-dirty)
        self.backend_check = ""  # what preflight found the backend to be (the session's first event says it)
        self.sandbox = ""  # which sandbox is in force (the session's first event and status say it)
        self.baseline: checks_baseline.Baseline | None = None  # the checks before the first task
        self._baseline_done = False
        self._baseline_lock = asyncio.Lock()
        self._exclude: set[str] = set()  # tasks no worker takes again this session (failed, lost)
        self._failures = 0
        self._busy = 0  # workers running a task
        self._halt: tuple[int, str] | None = None
        self._pause: asyncio.Future[tuple[bool, str]] | None = None
        self._change: asyncio.Event | None = None  # set in _run_workers, on the loop

    # -- wiring -----------------------------------------------------------------------------
    @property
    def provider(self) -> StateProvider:
        if self._provider is None:
            from autonomous.providers import get_provider

            self._provider = get_provider(self.config)
        return self._provider

    def backend(self, name: str | None = None) -> Backend:
        if self._backend is None or (name and name != self._backend.name):
            from autonomous.backends import get_backend

            made = get_backend(name or self.config.autonomous.backend)
            self._backend = made() if isinstance(made, type) else made
        return self._backend

    def emit(self, event: Event) -> None:
        """Hand an event to the bus, which redacts it once for every sink."""
        self.bus.emit(event)

    def prompt_context(self, task: Task) -> list[Task]:
        """The tasks a prompt's handoff notes come from: the task, its dependencies, the
        META task and the task done last. Read one by one, so building a prompt costs
        the same with 10 or 10,000 tasks (only the very first prompt of a session
        looks through the whole list, to find the task done last)."""
        related: dict[str, Task] = {task.id: task}
        for dep in task.dependencies:
            with contextlib.suppress(TaskNotFound):
                related[dep] = self.provider.get_task(dep)
        if self._meta_id is None:
            meta = self.provider.meta_task()
            self._meta_id = meta.id if meta else ""
        if self._meta_id:
            with contextlib.suppress(TaskNotFound):
                related[self._meta_id] = self.provider.get_task(self._meta_id)
        if self._last_done_id is None and not task.dependencies:
            ordered = scheduler.order(
                self.provider.list_tasks([TaskStatus.DONE, TaskStatus.IN_PROGRESS, TaskStatus.TODO])
            )
            mine = next((i for i, t in enumerate(ordered) if t.id == task.id), len(ordered))
            done = [t for t in ordered[:mine] if t.status is TaskStatus.DONE and not scheduler.is_meta(t)]
            self._last_done_id = done[-1].id if done else ""
        if self._last_done_id and self._last_done_id not in related:
            with contextlib.suppress(TaskNotFound):
                related[self._last_done_id] = self.provider.get_task(self._last_done_id)
        return list(related.values())

    # -- state file ---------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write runner_state.json, with each task in flight as the bus sees it (tool,
        turns, cost so far): the bus calls this when live progress changes, at most once
        a second; the runner at every decision."""
        if self.state is None:
            return
        with self._lock:
            current = [self.with_progress(w.current) for w in self.workers if w.current is not None]
            self.state.updated_at = utcnow().isoformat()
            self.state.cost_usd = round(self.budget.spent, 6)
            self.state.current = current + self._kept
            runner_state.save(self.config.state_dir, self.state)

    def with_progress(self, cur: CurrentTask) -> CurrentTask:
        """``cur`` with the tool, turns and cost so far that the bus saw for its task."""
        live = self.bus.live.get(cur.worker_id or "")
        if live is not None and live.task_id == cur.id:
            cur.tool, cur.turns, cur.cost_usd = live.tool, live.turns, round(live.cost_usd, 6)
        return cur

    def set_current(self, worker: Worker, current: CurrentTask) -> None:
        worker.current = current
        self.save_state()

    def get_status(self, *, events: int = 10) -> dict[str, Any]:
        """What ``autonomous status --json`` shows (:func:`autonomous.progress.collect_status`,
        docs/monitoring.md): ``state``, ``tasks_completed``, ``current``, ``tasks``, ``metrics`` ...

        Read from the state file, which this runner writes at every step."""
        from autonomous.progress import collect_status

        return collect_status(self.config.state_dir, self.config.log_dir, self.provider, events=events)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self, checkpoint: cp.Checkpoint, task: Task | None, worker: Worker | None = None) -> None:
        """Record a checkpoint; in a mode that reviews it, the review happens between tasks."""
        review = cp.requires_review(checkpoint.kind, cp.ExecutionMode(self.config.execution.mode))
        self.emit(
            CheckpointReached(
                checkpoint=checkpoint.kind.value,
                task_key=checkpoint.task_key,
                reason=checkpoint.reason,
                review=review,
                mode=self.config.execution.mode,
                task_id=task.id if task else None,
                key=checkpoint.task_key,
                worker_id=worker.worker_id if worker else None,
            )
        )
        if review:
            self._pending_review.append((checkpoint, task))

    def _review(self) -> tuple[int, str] | None:
        """Ask about pending checkpoints. Returns an exit (paused / aborted) or None."""
        while self._pending_review:
            checkpoint, task = self._pending_review.pop(0)
            decision = self.approver.ask(checkpoint)
            self.emit(
                CheckpointReached(
                    checkpoint=checkpoint.kind.value,
                    task_key=checkpoint.task_key,
                    reason=checkpoint.reason,
                    decision=decision.value,
                    task_id=task.id if task else None,
                    key=checkpoint.task_key,
                )
            )
            if decision is cp.Decision.PAUSE:
                self._pending_review.clear()
                return ExitCode.PAUSED, f"paused at {checkpoint.describe()}"
            if decision is cp.Decision.ABORT:
                self._pending_review.clear()
                return ExitCode.INTERRUPTED, f"aborted at {checkpoint.describe()}"
        return None

    # -- signals -------------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop taking tasks and interrupt the one in flight (it is checkpointed and
        released to todo). Safe to call from a signal handler on the loop."""
        self.stopping = True
        self._stop_reason = self._stop_reason or reason
        if self._stop_event is not None:
            self._stop_event.set()
        for worker in self.workers:
            worker.interrupt(reason)
        if self._change is not None:
            self._changed()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self.emit(WarningEvent(message=f"{name}: finishing up (again to kill the agent at once)"))
            self.request_stop(f"interrupted by {name}")
            return
        self.emit(WarningEvent(message=f"second {name}: killing the agent now"))
        kill_children()
        if self.state is not None:
            self.state.state = "stopped"
            self.state.stop_reason = f"killed by a second {name}"
            self.state.exit_code = ExitCode.INTERRUPTED
            with contextlib.suppress(Exception):
                self.save_state()
        os._exit(ExitCode.INTERRUPTED)

    # -- entry points --------------------------------------------------------------------------
    def start(self, *, resume: bool = False, dry_run: bool = False) -> RunResult:
        """Run the session to its end (sync). See the module docstring for exit codes.
        Limits, the backend and the rest come from the configuration (the command line's
        overrides are in it already: ``load_config(overrides=...)``)."""
        return asyncio.run(self.run(resume=resume, dry_run=dry_run))

    def dry_run(self) -> str:
        """The execution plan: order, what waits on what, and the first task's prompt."""
        tasks = self.provider.list_tasks()
        ex = self.config.execution
        decisions = scheduler.plan(tasks, None, ex.ordering, ex.review_unblocks_dependents)
        auto = self.config.autonomous
        lines = [
            f"Execution plan ({self.config.execution.ordering} ordering, backend {auto.backend}, "
            f"model {auto.model}, mode {self.config.execution.mode}):",
            "",
        ]
        for i, d in enumerate(decisions, 1):
            lines.append(f"{i:>3}. {d.task.key:<16} {d.task.status.value:<11} {d.task.title}")
            if not d.ready:
                lines.append(f"       {d.explain()}")
        if not decisions:
            lines.append("  nothing to do: no open tasks")
        limits = [
            f"max_tasks_per_session={auto.max_tasks_per_session}",
            f"max_turns_per_task={auto.max_turns_per_task}",
            f"cost_limit_per_session={auto.cost_limit_per_session}",
            f"max_session_minutes={auto.max_session_minutes}",
            f"on_failure={self.config.execution.on_failure}",
        ]
        lines += ["", "Limits: " + ", ".join(limits)]
        checks, verification = self.config.checks, self.config.verification
        lines.append(
            "Verification: "
            + (", ".join(f"`{c}`" for c in checks.commands) or "(no commands)")
            + f" [{checks.how}]"
            + (" + require changes" if verification.require_changes else "")
            + (" + baseline" if verification.baseline and checks.commands else "")
            + (" + review" if verification.review else "")
        )
        first = next((d.task for d in decisions if d.ready), None)
        if first is not None:
            lines += ["", f"Prompt of the first task ({first.key}):", "", build_prompt(first, tasks, self.config)]
        return "\n".join(lines)

    async def run(self, *, resume: bool = False, dry_run: bool = False) -> RunResult:
        """The session, async (``AutonomousRunnerSDK`` and embedding use this)."""
        if dry_run:
            self.out(self.dry_run())
            return RunResult(ExitCode.OK, "dry run: nothing claimed, nothing spent")
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        with signal_handlers(loop, self._on_signal):
            return await self._session(resume)

    # -- the session -----------------------------------------------------------------------------
    async def _session(self, resume: bool) -> RunResult:
        lock = RunnerLock(self.config.state_dir)
        lock.acquire()
        try:
            return await self._checked_session(resume)
        finally:
            lock.release()

    def _preflight(self) -> None:
        """Everything that can be known to fail, before the first claim (preflight.py):
        each failure raises PreflightError (exit 2) with nothing claimed, spent or committed."""
        c = self.config
        git.hide_tool_dirs(c.project_dir, [c.state_dir, c.log_dir, c.project_dir / git.WORKTREES_DIR])
        if self._backend is None:  # a backend given by the caller is the caller's to check
            self.backend_check = preflight.check_backend(c.autonomous.backend, claude_path=c.autonomous.claude_path)
        self.sandbox = preflight.check_sandbox(c.autonomous.backend, c.autonomous.sandbox, c.project_dir)
        git.set_run_hooks(c.execution.git.run_hooks)
        try:
            tasks = [t for t in self.provider.list_tasks() if not scheduler.is_meta(t)]
        except AutonomousError:
            raise
        except Exception as exc:
            raise PreflightError(f"the state store does not answer: {type(exc).__name__}: {exc}") from None
        if not tasks:
            raise PreflightError(
                "no tasks yet: create them from a spec with `autonomous init --spec FILE` (or `autonomous tasks add`)"
            )
        workspace = preflight.check_workspace(
            c.project_dir, allow_dirty=c.execution.git.allow_dirty, excludes=c.git_excludes
        )
        self.dirty_at_start = workspace.dirty
        for warning in workspace.warnings:
            print(f"autonomous: warning: {warning}", file=sys.stderr, flush=True)
            self.emit(WarningEvent(message=warning))
        branch = git.current_branch(c.project_dir) if workspace.in_git else None
        if branch is not None and (c.autonomous.workers > 1 or c.execution.git.branch_per_task):
            preflight.check_merge_obstacles(c.project_dir, branch, git.branches(c.project_dir, git.BRANCH_PREFIX))

    async def _checked_session(self, resume: bool) -> RunResult:
        c = self.config
        self._preflight()
        previous = load_previous(c.state_dir)
        backend_ = self.backend()
        self.isolation = Isolation.setup(self.config, self.emit)
        await open_shared_remote(self)
        count = max(1, c.autonomous.workers)
        self.workers = [
            Worker(self, self.worker_id if count == 1 else f"{self.worker_id}:w{i + 1}", backend_) for i in range(count)
        ]
        worker = self.workers[0]
        now = utcnow().isoformat()
        continuing = resume and previous is not None
        session_id = (
            previous.session_id if continuing else f"s-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        )
        self.state = RunnerState(
            session_id=session_id,
            worker_id=self.worker_id,
            state="running",
            started_at=previous.started_at if continuing and previous.started_at else now,
            backend=worker.backend.name,
            sandbox=self.sandbox,
        )
        if continuing:
            self.state.tasks_completed = list(previous.tasks_completed)
            self.state.tasks_blocked = list(previous.tasks_blocked)
            self.state.tasks_failed = list(previous.tasks_failed)
            self.state.turns = previous.turns
            self.budget.spent = previous.cost_usd
            self.budget.done_total = float(previous.counters.get("done_cost_usd", 0.0))
            self.budget.done_count = int(previous.counters.get("tasks_done", 0))
            self.state.counters = dict(previous.counters)
            self.budget.tasks_started = int(previous.counters.get("tasks_started", 0))
        self.save_state()
        self.bus.track(self.save_state, asyncio.get_running_loop().call_later)
        record = SessionRecord(id=session_id, worker_id=self.worker_id, started_at=utcnow())
        self.provider.record_session(record)
        done, total = self._sync_meta(running=True) or (None, None)
        self._meta_note(
            f"Session {session_id} {'resumed' if continuing else 'started'} by {self.worker_id}: "
            f"backend {worker.backend.name}, model {c.autonomous.model}, mode {c.execution.mode}, "
            f"max {c.autonomous.max_tasks_per_session} tasks, cost limit {c.autonomous.cost_limit_per_session}"
        )
        self.emit(
            SessionStart(
                session_id=session_id,
                worker_id=self.worker_id,
                resumed=continuing,
                pid=os.getpid(),
                backend_check=self.backend_check or None,
                sandbox=self.sandbox,
                allowed_dirty=list(self.dirty_at_start),
                tasks_done=done,
                tasks_total=total,
                backend=worker.backend.name,
            )
        )
        resume_targets = recover_dead_claims(self.provider, previous, self.emit)
        self._leftovers()
        self.baseline, self._baseline_done, self._baseline_lock = None, False, asyncio.Lock()
        exit_code, reason = ExitCode.OK, ""
        try:
            exit_code, reason = await self._run_workers(resume_targets if resume else [])
        except AutonomousError as exc:
            exit_code, reason = exc.exit_code, str(exc)
        except BaseException as exc:
            exit_code, reason = ExitCode.FAILED, f"runner error: {type(exc).__name__}: {exc}"
            self._end(record, exit_code, reason)
            raise
        return self._end(record, exit_code, reason)

    async def ensure_baseline(self) -> None:
        """Before the agent of the session's first task starts (a session with nothing to do
        runs no tests): warn once when no check was found; run the checks once and report
        what already fails (checks/baseline.py: not blamed on the tasks)."""
        async with self._baseline_lock:
            if not self._baseline_done:
                self._baseline_done = True
                await self._run_baseline()

    async def _run_baseline(self) -> None:
        c = self.config
        if not c.checks.commands:
            if c.checks.how.startswith("auto"):
                self._warn(
                    f"verification: {c.checks.how}; no tests run after each task "
                    "(set verification.commands to name them)"
                )
            return
        if not c.verification.baseline:
            return
        baseline = await checks_baseline.run_baseline(
            c.checks.commands, c.project_dir, c.verification.timeout, c.state_dir / "checks" / "baseline"
        )
        for result in baseline.values():
            result.tail = [self.redactor.text(line) for line in result.tail]
        self.baseline = baseline
        failures = checks_baseline.describe_failures(baseline)
        for line in failures:
            self._warn("baseline: " + line)
        passed = [c for c, r in baseline.items() if r.passed]
        self._meta_note("Baseline before the first task: " + "; ".join([*(f"`{c}` passes" for c in passed), *failures]))

    def _warn(self, message: str) -> None:
        print(f"autonomous: warning: {message}", file=sys.stderr, flush=True)
        self.emit(WarningEvent(message=message))

    def _meta_note(self, text: str) -> None:
        try:
            meta = self.provider.meta_task()
            if meta is not None:
                self.provider.add_note(meta.id, self.redactor.text(text), AUTHOR)
        except Exception as exc:  # the META note is a courtesy; the session record is the truth
            self.emit(WarningEvent(message=f"could not note on META: {exc}"))

    def _sync_meta(self, *, running: bool) -> tuple[int, int] | None:
        """META in progress while the session runs, done when every task is; returns
        (done, total) of the other tasks for the display's progress bar."""
        try:
            return actions.sync_meta(self.provider, running=running)
        except Exception as exc:  # a courtesy, like the META note
            self.emit(WarningEvent(message=f"could not update the META task: {exc}"))
            return None

    def _leftovers(self) -> None:
        """Worktrees a previous runner left: merged ones go, unmerged ones are kept and
        reported (a WARNING event, and ``autonomous status``)."""
        if self.isolation is None:
            return
        try:
            cleaned, kept = self.isolation.scan_leftovers()
        except (git.GitError, OSError) as exc:
            self.emit(WarningEvent(message=f"could not list the task worktrees: {exc}"))
            return
        if cleaned:
            self.emit(WarningEvent(message=f"removed merged worktrees: {', '.join(cleaned)}"))
        for k in kept:
            self.emit(
                WarningEvent(
                    message=f"worktree {k['path']} (branch {k['branch']}) kept: {k['reason']}; "
                    "its task continues there when claimed again",
                    worktree=k,
                )
            )

    def _end(self, record: SessionRecord, exit_code: int, reason: str) -> RunResult:
        state = self.state
        assert state is not None
        self.bus.untrack()  # the end's own write below is the last word
        # Every way a session ends passes here; a reason can quote a model's blocker or an
        # error text, and it goes to the state file, the META task, events and stderr.
        reason = self.redactor.text(reason)
        elapsed = self.budget.elapsed()
        names = {ExitCode.OK: "completed", ExitCode.PAUSED: "paused", ExitCode.INTERRUPTED: "stopped"}
        state_name = names.get(exit_code, "error")
        state.state = state_name
        state.exit_code = exit_code
        state.stop_reason = reason
        state.pause_reason = reason if exit_code == ExitCode.PAUSED else None
        state.ended_at = utcnow().isoformat()
        if exit_code != ExitCode.INTERRUPTED:
            state.current = []
        with self._lock:
            state.updated_at = utcnow().isoformat()
            state.cost_usd = round(self.budget.spent, 6)
            runner_state.save(self.config.state_dir, state)
        summary = {
            "exit_code": exit_code,
            "reason": reason,
            "tasks_completed": list(state.tasks_completed),
            "tasks_blocked": list(state.tasks_blocked),
            "tasks_failed": list(state.tasks_failed),
            "cost_usd": round(self.budget.spent, 6),
            "turns": state.turns,
            "duration_s": round(elapsed, 1),
        }
        self._sync_meta(running=False)
        self._meta_note(
            f"Session summary {state.session_id}: done {len(state.tasks_completed)}"
            + (f" ({', '.join(state.tasks_completed[-20:])})" if state.tasks_completed else "")
            + f", blocked {len(state.tasks_blocked)}"
            + (f" ({', '.join(state.tasks_blocked)})" if state.tasks_blocked else "")
            + f", failed {len(state.tasks_failed)}"
            + (f" ({', '.join(state.tasks_failed)})" if state.tasks_failed else "")
            + f", cost ${self.budget.spent:.4f}, time {elapsed / 60:.1f} min; stopped: {reason} (exit {exit_code})"
        )
        record.ended_at = utcnow()
        record.state = {"completed": "stopped"}.get(state_name, state_name)
        record.summary = summary
        try:
            self.provider.record_session(record)
        except Exception as exc:
            self.emit(WarningEvent(message=f"could not record the session end: {exc}"))
        paused = exit_code == ExitCode.PAUSED
        self.emit(SessionEnd(session_id=state.session_id, notify=paused, worker_id=self.worker_id, **summary))
        return RunResult(
            exit_code=exit_code,
            reason=reason,
            session_id=state.session_id,
            tasks_completed=list(state.tasks_completed),
            tasks_blocked=list(state.tasks_blocked),
            tasks_failed=list(state.tasks_failed),
            cost_usd=self.budget.spent,
            duration_s=elapsed,
        )
