"""The coding-agent loop: claim a task, build its prompt, run the backend, verify, record.

One session of ``autonomous start``::

    start session (provider.record_session, META note, runner_state.json)
    recover claims of a dead runner of this project (kill -9 leaves nothing stuck)
    loop:
        limits checked BEFORE claiming (tasks, wall clock, budget: never start a task the
        remaining budget cannot cover at its expected cost)
        claim_next (a unique worker id, a lease renewed at lease/3 by a heartbeat)
        prompt (prompts/task.md: task, conventions, bounded handoff notes, report rules)
        backend.run in a fresh context, events streamed to the bus
        outcome -> verification (the runner decides completion) -> git commit -> release
        checkpoints (stop-on-failure, context high, reviews in supervised mode)
    end session (summary note on META, record_session, runner_state.json)

Exit codes (DESIGN.md): 0 no work left or a limit reached cleanly; 1 a task failed or was
blocked and the runner stopped; 2 usage or configuration (also: the backend's credentials
were refused); 3 paused at a checkpoint awaiting review; 4 budget or rate limit exhausted;
130 interrupted.

Safety rules kept here, in one place:

* A task is ``done`` only when the backend reports completion *and* verification passes.
* Every write about a task presents the claim's fencing token; a worker that lost its
  lease (``StaleClaim`` on renew) interrupts its agent and records nothing.
* Work is never thrown away: a task released unfinished gets a work-in-progress commit
  (when committing is on) and a handoff note, and goes back to ``todo``.
* State survives crashes: runner_state.json is written atomically at every step, and a
  claim whose runner died (pid gone) is handed back at the next start.

The loop is written as one :class:`Worker` per agent sharing a :class:`SessionBudget`;
``autonomous.workers`` (``start --workers N``) of them run side by side as coroutines of
one event loop. With more than one (or ``execution.git.branch_per_task``) in a git
repository, each task runs in its own worktree and comes back through the merge queue
(:class:`Isolation`; docs/runner.md "Parallel workers").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autonomous import actions, fsutil, history, preflight, prompts, runner_state, scheduler, verify
from autonomous import checkpoints as cp
from autonomous.backends.base import Backend, RunOptions, TaskAllowance
from autonomous.checks import baseline as checks_baseline
from autonomous.checks import detect, review
from autonomous.checks import diff as checks_diff
from autonomous.checks.review import ReviewVerdict
from autonomous.config import Config, load_config, secret_values
from autonomous.errors import AutonomousError, ClaimConflict, PreflightError, StaleClaim, TaskNotFound
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus, Redactor
from autonomous.init.tick import Tick, tick_done
from autonomous.providers.base import SessionRecord, StateProvider
from autonomous.runner_state import CurrentTask, RunnerState
from autonomous.tasks import Task, TaskStatus, utcnow
from autonomous.workspace import changes, git
from autonomous.workspace.commit import TaskCommit, commit_change_set

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PAUSED = 3
EXIT_BUDGET = 4
EXIT_INTERRUPTED = 130

HANDOFF_CAP = 4096  # bytes of handoff notes in one prompt, all sources together
NOTE_CAP = 1200  # characters kept of any single note quoted in a prompt
CONVENTIONS_CAP = 8192  # characters of AGENTS.md / CLAUDE.md quoted in a prompt
STATUS_INTERVAL = 1.0  # seconds between live-progress writes of the state file
CONTEXT_REQUEUE_LIMIT = 3  # fresh-context restarts of one task per session before it counts as failed
AUTHOR = "runner"

Emit = Callable[[Event], None]


def _noop_emit(event: Event) -> None:
    return None


def new_worker_id() -> str:
    """``hostname:pid:rand``: unique per process, and tells a person where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# -- settings --------------------------------------------------------------------------------


@dataclass(slots=True)
class Settings:
    """Everything the loop reads from the configuration, flattened, resolved once.

    Built only by :meth:`from_config`: the defaults are the config's (config.py), never
    repeated here, so one place maps config keys to behaviour.
    """

    project_dir: Path  # where the agent works (autonomous.project_dir)
    state_dir: Path
    log_dir: Path
    backend: str
    model: str
    max_turns_per_task: int
    max_tasks_per_session: int | None
    cost_limit_per_session: float | None
    first_task_cost: float  # expected cost of a task before any finished this session
    lease_seconds: float
    inactivity_timeout: float
    max_session_minutes: float | None
    max_rate_limit_wait: float  # seconds the session may spend waiting on rate limits
    allowed_tools: list[str]
    permission_mode: str
    command_deny: list[str]
    command_allow: list[str]
    mcp_servers: dict[str, Any]
    context_window: int
    claude_path: str | None
    max_tokens: int
    rate_limit_rpm: int
    mode: cp.ExecutionMode
    on_failure: str  # stop | continue
    ordering: scheduler.Ordering
    turn_interval: int
    context_threshold: float
    git_commit: bool
    allow_dirty: bool
    allow_files: list[str]
    verify_commands: list[str]
    verify_source: str  # how the commands were chosen ("configured", "auto: detected ...")
    require_changes: bool
    baseline: bool
    review: bool
    max_attempts: int
    verify_timeout: float
    secrets: list[str]
    workers: int
    branch_per_task: bool
    merge_strategy: str  # merge | rebase
    max_merge_attempts: int
    tick_source: bool  # tick a finished task's box in its imported tasks.md

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        auto, execution, verification = config.autonomous, config.execution, config.verification
        commands, source = detect.plan(verification.commands, config.project_dir)
        return cls(
            project_dir=config.project_dir,
            state_dir=config.state_dir.resolve(),
            log_dir=config.log_dir.resolve(),
            backend=auto.backend,
            model=auto.model,
            max_turns_per_task=auto.max_turns_per_task,
            max_tasks_per_session=auto.max_tasks_per_session,
            cost_limit_per_session=auto.cost_limit_per_session,
            first_task_cost=auto.first_task_cost,
            lease_seconds=auto.lease_seconds,
            inactivity_timeout=auto.inactivity_timeout,
            max_session_minutes=auto.max_session_minutes,
            max_rate_limit_wait=auto.max_rate_limit_wait,
            allowed_tools=list(auto.allowed_tools),
            permission_mode=auto.permission_mode,
            command_deny=list(auto.command_policy.deny),
            command_allow=list(auto.command_policy.allow),
            mcp_servers=dict(auto.mcp_servers),
            context_window=auto.context_window,
            claude_path=auto.claude_path,
            max_tokens=auto.max_tokens,
            rate_limit_rpm=auto.rate_limit_rpm,
            mode=cp.ExecutionMode(execution.mode),
            on_failure=execution.on_failure,
            ordering=execution.ordering,
            turn_interval=execution.checkpoints.turn_interval,
            context_threshold=execution.checkpoints.context_threshold,
            git_commit=execution.git.commit,
            allow_dirty=execution.git.allow_dirty,
            allow_files=list(execution.git.allow_files),
            verify_commands=commands,
            verify_source=source,
            require_changes=verification.require_changes,
            baseline=verification.baseline,
            review=verification.review,
            max_attempts=verification.max_attempts,
            verify_timeout=verification.timeout,
            secrets=sorted(secret_values(config)),
            workers=auto.workers,
            branch_per_task=execution.git.branch_per_task,
            merge_strategy=execution.git.merge_strategy,
            max_merge_attempts=execution.git.max_merge_attempts,
            tick_source=config.initializer.tick_source,
        )

    @property
    def git_excludes(self) -> tuple[str, ...]:
        """The tool's runtime folders inside the project (beyond ``.ai-agents``), relative
        to it: never part of a task's change set."""
        excludes = list(git.RUNTIME_EXCLUDES)
        for folder in (self.state_dir, self.log_dir):
            with contextlib.suppress(ValueError):
                excludes.append(folder.relative_to(self.project_dir.resolve()).as_posix())
        return tuple(dict.fromkeys(excludes))


# -- the session budget ------------------------------------------------------------------------


class SessionBudget:
    """What the session may still spend, shared by every worker of the session.

    Workers *reserve* a task's expected cost before claiming, so N workers cannot each
    start a task that only one of them can afford.
    """

    def __init__(self, settings: Settings, spent: float = 0.0, tasks_started: int = 0):
        self.limit = settings.cost_limit_per_session
        self.floor = settings.first_task_cost
        self.max_tasks = settings.max_tasks_per_session
        self.spent = spent
        self.tasks_started = tasks_started
        self.done_costs: list[float] = []
        self.reserved = 0.0
        self.started_monotonic = time.monotonic()
        self.deadline = (
            self.started_monotonic + settings.max_session_minutes * 60 if settings.max_session_minutes else None
        )
        self.rate_limit_wait_left = settings.max_rate_limit_wait

    def expected_cost(self) -> float:
        if self.done_costs:
            return max(self.floor, sum(self.done_costs) / len(self.done_costs))
        return self.floor

    def remaining(self) -> float | None:
        return None if self.limit is None else self.limit - self.spent - self.reserved

    def refuse(self) -> tuple[int, str] | None:
        """Why no further task may start now, or None. Checked before every claim."""
        if self.max_tasks is not None and self.tasks_started >= self.max_tasks:
            return EXIT_OK, f"max_tasks_per_session reached ({self.max_tasks})"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return EXIT_OK, "max_session_minutes reached"
        remaining = self.remaining()
        if remaining is not None:
            expected = self.expected_cost()
            if remaining <= 0 or remaining < expected:
                return (
                    EXIT_BUDGET,
                    f"cost limit: ${remaining:.4f} left of ${self.limit:.2f}, "
                    f"a task is expected to cost ${expected:.4f}",
                )
        return None

    def reserve(self) -> float:
        amount = self.expected_cost() if self.limit is not None else 0.0
        self.reserved += amount
        self.tasks_started += 1
        return amount

    def unreserve(self, reserved: float) -> None:
        """Give back a reservation whose claim found nothing to run."""
        self.reserved = max(0.0, self.reserved - reserved)
        self.tasks_started = max(0, self.tasks_started - 1)

    def settle(self, reserved: float, cost: float, done: bool) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += cost
        if done:
            self.done_costs.append(cost)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_monotonic


# -- results ----------------------------------------------------------------------------------


class Result:
    """How one task ended for the runner (not the backend's outcome: the runner's verdict)."""

    DONE = "done"
    BLOCKED = "blocked"  # agent reported a blocker, or verification kept failing
    FAILED = "failed"  # the run failed (error, max turns...): back to todo for a retry
    REQUEUED = "requeued"  # context high: continues in a fresh context
    RATE_LIMITED = "rate_limited"
    BUDGET = "budget"
    AUTH = "auth"
    INTERRUPTED = "interrupted"
    LOST = "lost"  # the lease was taken over: nothing recorded
    MERGE_RETRY = "merge_retry"  # verified, but its branch did not merge: back to todo, retried on the new base


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
    commit: str | None = None
    retry_at: datetime | None = None
    message: str = ""
    checkpoints: list[cp.Checkpoint] = field(default_factory=list)
    tick: Tick | None = None  # the source checklist's tick; tick.commit_path belongs to the task's change set


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


# -- prompts ----------------------------------------------------------------------------------


def _cap(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20].rstrip() + "\n…(truncated)"


def _bullets(items: Iterable[str], empty: str) -> str:
    items = [i for i in items if i and i.strip()]
    return "\n".join(f"- {i.strip()}" for i in items) if items else empty


def read_conventions(project_dir: Path, cap: int = CONVENTIONS_CAP) -> str:
    """The project's own instructions for agents (AGENTS.md, else CLAUDE.md), size-capped."""
    for name in ("AGENTS.md", "CLAUDE.md"):
        path = Path(project_dir) / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if text.strip():
            return f"## Project conventions ({name})\n\n{_cap(text, cap)}\n"
    return ""


def _last_note(task: Task, prefer_author: str = AUTHOR) -> str | None:
    notes = [n for n in task.notes if n.author == prefer_author and not n.text.startswith("Verification")]
    notes = notes or task.notes
    return notes[-1].text if notes else None


def handoff_notes(task: Task, all_tasks: list[Task], cap: int = HANDOFF_CAP) -> str:
    """Short notes a fresh context needs: this task's own recent notes (a retry's
    evidence, a handoff after a full context), the last note of every task it depends
    on (or of the task done just before it), and the last session summary. The whole
    section is capped at ``cap`` bytes, so notes never grow a prompt without bound."""
    by_id = {t.id: t for t in all_tasks}
    parts: list[str] = []
    own = [n for n in task.notes][-3:]
    for note in own:
        parts.append(f"- earlier note on this task ({note.at:%Y-%m-%d %H:%M}): {_cap(note.text, NOTE_CAP)}")
    deps = [by_id[d] for d in task.dependencies if d in by_id]
    if not deps:
        ordered = scheduler.order(all_tasks)
        before = [t for t in ordered if t.status is TaskStatus.DONE and not scheduler.is_meta(t)]
        position = {t.id: i for i, t in enumerate(ordered)}
        mine = position.get(task.id, len(ordered))
        before = [t for t in before if position[t.id] < mine]
        deps = before[-1:]
    for dep in deps:
        text = _last_note(dep)
        if text:
            parts.append(f"- from {dep.key} ({dep.status.value}): {_cap(text, NOTE_CAP)}")
    meta = next((t for t in all_tasks if scheduler.is_meta(t)), None)
    if meta is not None:
        summaries = [n for n in meta.notes if n.text.startswith("Session summary")]
        if summaries:
            parts.append(f"- last session: {_cap(summaries[-1].text, NOTE_CAP)}")
    if not parts:
        return ""
    body = ""
    for part in parts:
        if len((body + part + "\n").encode()) > cap - 64:
            body += "- (more notes left out)\n"
            break
        body += part + "\n"
    return "## Handoff notes\n\n" + body


def _verification_section(settings: Settings) -> str:
    if not settings.verify_commands and not settings.require_changes:
        return ""
    lines = ["## How the runner will check your work", ""]
    lines += [f"- `{c}` must exit 0" for c in settings.verify_commands]
    if settings.require_changes:
        lines.append("- the task must change the project (files or a commit)")
    return "\n".join(lines) + "\n"


def build_prompt(task: Task, all_tasks: list[Task], settings: Settings) -> str:
    """The task prompt from ``prompts/task.md``."""
    try:
        from autonomous.backends.report import REPORT_INSTRUCTIONS
    except ImportError:  # pragma: no cover - report.py ships with the package
        REPORT_INSTRUCTIONS = ""
    text = prompts.load("task.md").safe_substitute(
        key=task.key,
        title=task.title,
        description=task.description.strip() or "(no description: the title says it all)",
        acceptance_criteria=_bullets(task.acceptance_criteria, "- (none given)"),
        test_steps=_bullets(task.test_steps, "- (none given)"),
        verification=_verification_section(settings),
        conventions=read_conventions(settings.project_dir),
        handoff=handoff_notes(task, all_tasks),
        report_instructions=REPORT_INSTRUCTIONS,
    )
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def continuation_prompt(task: Task, note: str = "") -> str:
    return (
        f"You were interrupted while working on task {task.key}: {task.title}. Continue where you left off: "
        "check what is already done, finish the remaining work, run the tests, and end with the completion report."
        + (f"\n\nNote left when you were interrupted: {_cap(note, NOTE_CAP)}" if note else "")
    )


def verification_feedback(result: verify.VerificationResult, attempt: int, max_attempts: int) -> str:
    if result.review is not None and not result.review.approved:
        return review.feedback(result.review, attempt, max_attempts)
    return (
        f"The runner checked your work and verification FAILED (attempt {attempt} of {max_attempts}). "
        "The task is not done until these checks pass. Fix the problem, then end with the completion report.\n\n"
        f"```\n{_cap(result.evidence(), 6000)}\n```"
    )


# -- isolation: a worktree per task, and the merge queue ---------------------------------------


# a review ending like this stops the task the same way an agent's run would
_REVIEW_STOPS = (
    OutcomeStatus.INTERRUPTED,
    OutcomeStatus.RATE_LIMITED,
    OutcomeStatus.BUDGET_EXCEEDED,
    OutcomeStatus.AUTH_ERROR,
)

MERGE_NOTE = "Merge failed"  # first words of the note a failed merge leaves (counted for max_merge_attempts)
LEFTOVERS_FILE = "worktrees.json"  # <state_dir>/worktrees.json: worktrees kept with unmerged work


class Isolation:
    """Each task in its own worktree (``.ai-agents/worktrees/<KEY>``, git-ignored) on a
    branch ``autonomous/<KEY>`` made from the integration branch (the branch checked out in
    the project when the runner started). Finished branches come back one at a time (the
    merge queue, an :class:`asyncio.Lock`), verification runs again on the merged result,
    and a conflict or a failing check puts the integration branch back where it was.

    Git commands are blocking; they run in a thread (``asyncio.to_thread``) so one worker's
    merge never stalls the other workers' agents."""

    def __init__(self, runner: AutonomousRunner, repo: Path, integration: str):
        self.runner = runner
        self.settings = runner.settings
        self.project_dir = self.settings.project_dir
        self.repo = repo
        self.rel = self.project_dir.resolve().relative_to(repo.resolve())
        self.integration = integration
        self.root = self.project_dir / git.WORKTREES_DIR
        self.merge_lock = asyncio.Lock()
        # git's worktree bookkeeping (.git/worktrees) is not safe against concurrent
        # add/remove/prune: every command that changes it, and the merge, take this lock
        # (they run in threads).
        self.git_lock = threading.Lock()
        self.kept: list[dict[str, Any]] = []

    @classmethod
    def setup(cls, runner: AutonomousRunner) -> Isolation | None:
        """Isolation when the project is a git repository and there are several workers
        (or ``execution.git.branch_per_task``); None otherwise (work in the project itself)."""
        s = runner.settings
        if not (s.workers > 1 or s.branch_per_task) or not git.is_repo(s.project_dir):
            return None
        branch = git.current_branch(s.project_dir)
        if branch is None or git.head(s.project_dir) is None:
            runner.emit(
                Event(
                    EventKind.WARNING,
                    {"message": "no worktrees: the project has no commit or no branch checked out (detached HEAD); "
                     "every worker works in the project itself"},
                )
            )  # fmt: skip
            return None
        repo = git.toplevel(s.project_dir)
        iso = cls(runner, repo, branch)
        git.ignore_locally(repo, "/" + (iso.rel / git.WORKTREES_DIR).as_posix().removeprefix("./") + "/")
        return iso

    def path_for(self, task: Task) -> Path:
        return self.root / git.branch_name(task.key).removeprefix(git.BRANCH_PREFIX)

    def prepare(self, task: Task) -> tuple[Path, Path]:
        """The task's worktree (reused when an earlier attempt left one: its work goes on)
        and the agent's working directory inside it."""
        path = self.path_for(task)
        with self.git_lock:
            known = {w.path.resolve() for w in git.list_worktrees(self.repo)}
            if path.resolve() not in known:
                if path.exists():  # a directory git forgot about: never reuse blindly
                    raise git.GitError(f"{path} exists but is not a worktree of {self.repo}; move it away")
                git.prune_worktrees(self.repo)
                git.add_worktree(self.repo, path, git.branch_name(task.key), self.integration)
        return path, path / self.rel

    def scan_leftovers(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Worktrees a previous runner left (a crash, a blocked task): merged and clean ones
        are removed with their branch; the others are kept and reported."""
        cleaned: list[str] = []
        kept: list[dict[str, Any]] = []
        root = self.root.resolve()
        git.prune_worktrees(self.repo)
        for wt in git.list_worktrees(self.repo):
            if root not in wt.path.resolve().parents:
                continue
            clean = git.is_clean(wt.path)
            merged = wt.branch is not None and git.is_merged(self.repo, wt.branch, self.integration)
            if merged and clean:
                git.remove_worktree(self.repo, wt.path)
                if wt.branch:
                    git.delete_branch(self.repo, wt.branch, merged_into=self.integration)
                cleaned.append(wt.path.name)
                continue
            why = "uncommitted changes" if not clean else f"commits not merged into {self.integration}"
            kept.append({"key": wt.path.name, "branch": wt.branch, "path": str(wt.path), "reason": why})
        self.kept = kept
        self.save_leftovers()
        return cleaned, kept

    def save_leftovers(self) -> None:
        fsutil.write_json_atomic(
            self.settings.state_dir / LEFTOVERS_FILE,
            {"integration": self.integration, "kept": self.kept, "at": utcnow().isoformat()},
        )

    def forget(self, path: Path) -> None:
        before = len(self.kept)
        self.kept = [k for k in self.kept if Path(k["path"]).resolve() != path.resolve()]
        if len(self.kept) != before:
            self.save_leftovers()

    def finish(self, path: Path, branch: str) -> None:
        """After a merge: the worktree and its (merged) branch go."""
        with self.git_lock:
            git.remove_worktree(self.repo, path)
            git.delete_branch(self.repo, branch, merged_into=self.integration)
        self.forget(path)

    def set_aside(self, path: Path, branch: str) -> str:
        """After a failed merge: the branch keeps its commits under another name and the
        worktree goes, so the retry starts on the new integration branch."""
        if git.is_clean(path):
            with self.git_lock:
                git.remove_worktree(self.repo, path)
                kept = git.rename_branch(self.repo, branch, f"{branch}-attempt")
            self.forget(path)
            return kept
        return branch

    def obstacles(self, branch: str) -> str:
        """Why merging ``branch`` into the project's checkout cannot work, or "": a path the
        branch changes that the user has modified there (tracked, uncommitted) or that lies
        there untracked while the branch adds it. Untracked files elsewhere (a ``.env``, the
        config) are no obstacle. Found before the merge, so the task is not redone for a
        conflict that a redo cannot solve."""
        fork = git.merge_base(self.repo, self.integration, branch)
        touched = set(git.changed_between(self.repo, fork, branch, [":(top)"]))
        if not touched:
            return ""
        here = {path: xy for xy, path in git.status_paths(self.repo, [":(top)"])}
        dirty = sorted(p for p in touched if p in here and here[p] != "??")
        untracked = sorted(p for p in set(git.added_paths(self.repo, self.integration, branch)) if here.get(p) == "??")
        problems = []
        if dirty:
            problems.append(f"uncommitted changes in {', '.join(dirty[:5])}")
        if untracked:
            problems.append(f"untracked {', '.join(untracked[:5])} would be overwritten")
        if not problems:
            return ""
        return (
            f"cannot merge into {self.repo}: {'; '.join(problems)}. Commit, move or remove them there, then "
            f"`autonomous retry {branch.removeprefix(git.BRANCH_PREFIX)}` (the work is kept on its branch)"
        )

    def _locked(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        with self.git_lock:
            return fn(*args, **kw)

    async def integrate(
        self, task: Task, branch: str, path: Path, redact: Callable[[str], str]
    ) -> tuple[git.MergeResult, verify.VerificationResult | None]:
        """One merge at a time: merge, verify the merged result, undo on failure."""
        s = self.settings
        async with self.merge_lock:
            obstacles = await asyncio.to_thread(self._locked, self.obstacles, branch)
            if obstacles:
                return git.MergeResult(False, output=obstacles, obstacle=True), None
            title = task.title if len(task.title) < 60 else task.title[:57] + "..."
            merged = await asyncio.to_thread(
                self._locked,
                git.merge_branch,
                self.repo,
                branch,
                self.integration,
                strategy=s.merge_strategy,
                message=f"Merge {branch}: {task.key} {title}\n\nautonomous: task {task.id} done",
                worktree=path,
            )
            if not merged.merged or not s.verify_commands:
                return merged, None
            vr = await verify.verify(
                self.project_dir,
                s.verify_commands,
                timeout=s.verify_timeout,
                redact=redact,
                baseline=self.runner.baseline,
                report_dir=s.state_dir / "checks" / "merge",
            )
            if not vr.passed and merged.before is not None:
                await asyncio.to_thread(self._locked, git.undo_merge, self.repo, merged.before)
                merged.merged = False
                merged.output = "verification failed on the merged result:\n" + vr.evidence()
            return merged, vr


# -- the worker -------------------------------------------------------------------------------


class Worker:
    """One agent taking tasks one after another. Shares the provider, the budget and the
    event bus with the other workers of the session."""

    def __init__(self, runner: AutonomousRunner, worker_id: str, backend: Backend):
        self.runner = runner
        self.worker_id = worker_id
        self.backend = backend
        self.settings = runner.settings
        self.provider = runner.provider
        self._run_task: asyncio.Task | None = None
        self._interrupt_reason: str | None = None
        self.current: CurrentTask | None = None
        self.last_current: CurrentTask | None = None  # what the last task left, for --resume
        self.turn_counter = cp.TurnCounter(self.settings.turn_interval)
        self.isolation: Isolation | None = runner.isolation
        self.worktree: Path | None = None  # the task's worktree, with isolation
        self.workspace: Path | None = None  # where the agent works: the project, or its copy in the worktree
        self.allowance: TaskAllowance | None = None  # the task's turns, shared by its attempts and its review
        self._texts: list[str] | None = None  # the agent's top-level texts, while a review runs

    @property
    def cwd(self) -> Path:
        return self.workspace or self.settings.project_dir

    def emit(self, kind: EventKind, task: Task | None = None, **data: Any) -> None:
        if task is not None:
            data.setdefault("key", task.key)
        self.runner.emit(Event(kind, data, task_id=task.id if task else None, backend=self.backend.name))

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
        interval = max(0.05, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.provider.renew, task.id, token, self.settings.lease_seconds)
            except StaleClaim:
                self.emit(EventKind.WARNING, task, message=f"lost the lease on {task.key}: another worker owns it now")
                self.interrupt(Result.LOST)
                return
            except Exception as exc:  # a store hiccup: try again next beat, the lease has slack
                self.emit(EventKind.WARNING, task, message=f"could not renew the lease on {task.key}: {exc}")

    # -- one backend run ----------------------------------------------------------------------
    async def _drive(self, prompt: str, options: RunOptions, task: Task, turns_offset: int) -> Outcome:
        counter = self.turn_counter
        outcome: Outcome | None = None
        stream = self.backend.run(prompt, options)
        try:
            async for item in stream:
                if isinstance(item, Outcome):
                    outcome = item
                    continue
                self._observe(item, task, turns_offset, counter)
                self.runner.emit(item)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if outcome is None:
            outcome = Outcome(OutcomeStatus.ERROR, error="the backend ended without an outcome")
        return outcome

    def _observe(self, event: Event, task: Task, turns_offset: int, counter: cp.TurnCounter) -> None:
        cur = self.current
        if cur is None:
            return
        data = event.data
        changed = False
        if event.kind is EventKind.BACKEND_START and data.get("session_id"):
            cur.backend_session_id = str(data["session_id"])
            changed = True
        elif event.kind is EventKind.TOOL_USE:
            cur.tool = str(data.get("name") or data.get("tool") or "") or None
        elif event.kind is EventKind.TEXT and self._texts is not None and not data.get("subagent"):
            self._texts.append(str(data.get("text") or ""))
        if "turns" in data and isinstance(data["turns"], int | float):
            cur.turns = turns_offset + int(data["turns"])
            if counter.update(cur.turns):
                self.runner.checkpoint(
                    cp.Checkpoint(cp.CheckpointKind.TURN_INTERVAL, task.key, f"{cur.turns} turns"), task, self
                )
        if "cost_usd" in data and isinstance(data["cost_usd"], int | float):
            cur.cost_usd = float(data["cost_usd"])
        # `autonomous status` reads the state file: keep it as live as the event log, at
        # most one write a second (a session id is worth a write at once: --resume needs it).
        self.runner.save_state(at_most_every=0.0 if changed else STATUS_INTERVAL)

    async def _run_backend(self, prompt: str, options: RunOptions, task: Task, turns_offset: int) -> Outcome:
        started = time.monotonic()
        self._run_task = asyncio.ensure_future(self._drive(prompt, options, task, turns_offset))
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
        self.emit(EventKind.OUTCOME, task, **outcome.to_dict())
        return outcome

    def _options(self, task: Task, session_id: str | None) -> RunOptions:
        s = self.settings
        remaining = self.runner.budget.remaining()
        budget = None if remaining is None else max(0.0, remaining + self.runner.reserved_for(self))
        if self.allowance is not None:
            self.allowance.usd_left = budget  # turns are the task's; money is the session's
        return RunOptions(
            cwd=self.cwd,
            model=s.model,
            max_turns=s.max_turns_per_task,
            max_tokens=s.max_tokens,
            allowed_tools=list(s.allowed_tools),
            permission_mode=s.permission_mode,
            session_id=session_id,
            mcp_servers=dict(s.mcp_servers),
            task_id=task.id,
            inactivity_timeout=s.inactivity_timeout,
            budget_usd=budget,
            rate_limit_rpm=s.rate_limit_rpm,
            command_deny=list(s.command_deny),
            command_allow=list(s.command_allow),
            claude_path=s.claude_path,
            context_window=s.context_window,
            allowance=self.allowance,
        )

    # -- one task ---------------------------------------------------------------------------
    async def run_task(self, task: Task, *, resume_session: str | None = None, resume_note: str = "") -> TaskResult:
        assert task.claim is not None, "run_task needs a claimed task"
        token = task.claim.token
        s = self.settings
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
        self.emit(EventKind.TASK_CLAIMED, task, title=task.title, token=token, worker_id=self.worker_id)
        heartbeat = asyncio.ensure_future(self._heartbeat(task, token))
        started = time.monotonic()
        result = TaskResult(Result.FAILED, task)
        self.worktree = self.workspace = None
        self.allowance = TaskAllowance(s.max_turns_per_task)
        try:
            if self.isolation is not None:
                try:
                    self.worktree, self.workspace = await asyncio.to_thread(self.isolation.prepare, task)
                except git.GitError as exc:
                    result.outcome = Outcome(OutcomeStatus.ERROR, error=f"could not prepare the task's worktree: {exc}")
                    return await self._record(task, token, result)
            await self.runner.ensure_baseline()
            before = await asyncio.to_thread(self._tree_at_claim)
            all_tasks = self.runner.prompt_context(task)
            prompt = continuation_prompt(task, resume_note) if resume_session else build_prompt(task, all_tasks, s)
            session_id = resume_session
            attempt = 0
            self.turn_counter = self.runner.turn_counter = cp.TurnCounter(s.turn_interval)
            while True:
                outcome = await self._run_backend(prompt, self._options(task, session_id), task, result.turns)
                if resume_session and outcome.status is OutcomeStatus.ERROR and not outcome.turns and attempt == 0:
                    # The conversation could not be resumed (expired, other machine): start afresh.
                    self.emit(
                        EventKind.WARNING, task, message=f"could not resume session {resume_session}: fresh start"
                    )
                    resume_session = session_id = None
                    prompt = build_prompt(task, all_tasks, s)
                    outcome = await self._run_backend(prompt, self._options(task, None), task, result.turns)
                result.outcome = outcome
                result.change_set = await asyncio.to_thread(self._changes_since, before)
                result.cost_usd += outcome.cost_usd
                result.turns += outcome.turns
                seen = self.current.backend_session_id if self.current else None
                session_id = outcome.session_id or seen or session_id
                if self.current is not None:
                    self.current.backend_session_id = session_id
                    self.current.turns = result.turns
                    self.current.cost_usd = result.cost_usd
                    self.current.tool = None
                if outcome.status is not OutcomeStatus.COMPLETED:
                    break
                attempt += 1
                vr = await self._verify(task, result, before)
                result.verification = vr
                self.emit(EventKind.VERIFICATION, task, attempt=attempt, **vr.to_dict())
                if vr.ran_anything:
                    self._note(task, token, f"{vr.evidence()}\n(attempt {attempt} of {s.max_attempts})")
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
                if attempt >= s.max_attempts or self.runner.stopping or self._interrupt_reason:
                    break
                prompt = verification_feedback(vr, attempt, s.max_attempts)
            result.duration_s = time.monotonic() - started
            return await self._record(task, token, result)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
            self.last_current, self.current = self.current, None

    async def _verify(self, task: Task, result: TaskResult, before: changes.TreeState) -> verify.VerificationResult:
        """The checks (commands against the baseline, the change set), then the review."""
        s = self.settings
        change_set = result.change_set or changes.ChangeSet(self.cwd)
        vr = await verify.verify(
            self.cwd,
            s.verify_commands,
            timeout=s.verify_timeout,
            require_changes=s.require_changes and not verify.opts_out_of_changes(task),
            change_set=change_set,
            redact=self.runner.redactor.text,
            baseline=self.runner.baseline,
            report_dir=s.state_dir / "checks" / "".join(c if c.isalnum() else "_" for c in self.worker_id),
        )
        diff = await asyncio.to_thread(checks_diff.task_diff, change_set, before.head) if change_set else None
        vr.diffstat = diff.diffstat(change_set) if diff is not None else ""
        if vr.passed and s.review:
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
            options = review.review_options(self._options(task, None))
            outcome = await self._run_backend(prompt, options, task, result.turns)
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
        s = self.settings
        if self.isolation is not None and self.worktree is not None:
            top = git.toplevel(self.worktree)
            fork = git.merge_base(top, "HEAD", self.isolation.integration) or git.head(top)
            return changes.TreeState(top, fork, {}, changes.project_pathspec(self.cwd, top, s.git_excludes))
        return changes.capture(self.cwd, s.git_excludes)

    def _changes_since(self, before: changes.TreeState) -> changes.ChangeSet:
        return changes.diff(before, changes.capture(self.cwd, self.settings.git_excludes))

    async def _commit(self, task: Task, message: str, change_set: changes.ChangeSet) -> tuple[TaskCommit, str]:
        """Commit exactly the task's change set (in a thread: git must not stall the other
        workers). Returns what was committed, and a problem to report (empty when none)."""
        s = self.settings
        if self.isolation is not None:
            if self.workspace is None:  # no worktree was made: nothing of this task to commit
                return TaskCommit(), ""
        elif not s.git_commit or not git.is_repo(s.project_dir):
            return TaskCommit(), ""
        if not change_set:
            return TaskCommit(), ""
        try:
            done = await asyncio.to_thread(
                commit_change_set, change_set, message, secrets=s.secrets, allow_files=s.allow_files
            )
        except git.GitError as exc:
            self.emit(EventKind.WARNING, task, message=f"commit failed: {exc}")
            return TaskCommit(), f"commit failed: {exc}"
        if done.refused:
            self.emit(EventKind.WARNING, task, message=f"nothing committed: {done.describe_refusal()}")
        return done, ""

    async def _merge(self, task: Task, token: int, result: TaskResult) -> tuple[bool, str]:
        """Through the merge queue into the integration branch. Returns (merged, the head of
        the task's note); on failure ``result.verdict`` is MERGE_RETRY (back to todo, redone
        on the new base) or, after ``max_merge_attempts``, BLOCKED."""
        iso, path = self.isolation, self.worktree
        assert iso is not None and path is not None
        s = self.settings
        branch = git.branch_name(task.key)
        own = result.commit
        try:
            merged, vr = await iso.integrate(task, branch, path, self.runner.redactor.text)
        except git.GitError as exc:
            merged, vr = git.MergeResult(False, output=str(exc)), None
        if vr is not None and vr.ran_anything:
            self._note(task, token, f"After merging into {iso.integration}: {vr.evidence()}")
        if merged.merged:
            result.commit = merged.after or own
            try:
                await asyncio.to_thread(iso.finish, path, branch)
            except git.GitError as exc:
                self.emit(EventKind.WARNING, task, message=f"could not remove the worktree {path}: {exc}")
            return True, (
                f"Done (commit {own[:12] if own else '-'}, merged into {iso.integration} "
                f"as {(result.commit or '-')[:12]}, {s.merge_strategy})"
            )
        attempts = sum(1 for n in history.since_retry(task.notes) if n.text.startswith(MERGE_NOTE)) + 1
        what = "conflict" if merged.conflict else "blocked by the checkout" if merged.obstacle else "failed"
        if attempts >= s.max_merge_attempts or merged.obstacle:
            result.verdict = Result.BLOCKED
            iso.kept.append({"key": task.key, "branch": branch, "path": str(path), "reason": f"merge {what}"})
            await asyncio.to_thread(iso.save_leftovers)
            head = (
                f"{MERGE_NOTE} ({what}, attempt {attempts} of {s.max_merge_attempts}): blocked; branch {branch} and "
                f"worktree {path} are kept for a person"
            )
        else:
            result.verdict = Result.MERGE_RETRY
            kept = branch
            try:
                kept = await asyncio.to_thread(iso.set_aside, path, branch)
            except git.GitError as exc:
                self.emit(EventKind.WARNING, task, message=f"could not set the branch {branch} aside: {exc}")
            head = (
                f"{MERGE_NOTE} ({what}, attempt {attempts} of {s.max_merge_attempts}) into {iso.integration}: "
                f"back to todo, to be redone on the new {iso.integration}; the earlier work is kept on branch {kept}"
            )
        head += "\n" + _cap(merged.output or "(no output)", 3000)
        self.emit(EventKind.WARNING, task, message=head.splitlines()[0])
        return False, head

    async def _record(self, task: Task, token: int, result: TaskResult) -> TaskResult:
        """Decide the verdict and write it with the token: commit first, so the note can
        carry the sha."""
        s = self.settings
        outcome = result.outcome or Outcome(OutcomeStatus.ERROR, error="no outcome")
        if self._interrupt_reason == Result.LOST:
            result.verdict = Result.LOST
            result.message = f"lost the lease on {task.key}; nothing recorded"
            return result
        merge_failed = False
        change_set = result.change_set or changes.ChangeSet(self.cwd)
        committed = TaskCommit()
        vr = result.verification
        status = TaskStatus.TODO
        if outcome.status is OutcomeStatus.COMPLETED and vr is not None and vr.passed:
            result.verdict = Result.DONE
            status = TaskStatus.DONE
            title = task.title if len(task.title) < 70 else task.title[:67] + "..."
            if s.tick_source:
                result.tick = await asyncio.to_thread(tick_done, task, self.cwd, s.state_dir)
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
            summary = outcome.summary or "(no summary)"
            if committed.refused:
                result.verdict, status, merge_failed = Result.BLOCKED, TaskStatus.BLOCKED, True
                head = f"Blocked: nothing committed: {committed.describe_refusal()}; the files are kept as they are"
            elif self.isolation is not None and self.worktree is not None and commit_problem:
                # not on the task branch, so not mergeable: not done; the worktree keeps the work
                result.verdict, status, merge_failed = Result.FAILED, TaskStatus.TODO, True
                head = f"Failed: verified, but the work could not be committed in {self.worktree} ({commit_problem})"
            elif self.isolation is not None and self.worktree is not None:
                merge_ok, head = await self._merge(task, token, result)
                merge_failed = not merge_ok
                if merge_failed:
                    status = TaskStatus.BLOCKED if result.verdict == Result.BLOCKED else TaskStatus.TODO
        elif outcome.status is OutcomeStatus.COMPLETED:
            result.verdict = Result.BLOCKED
            status = TaskStatus.BLOCKED
            head = f"Blocked: verification failed after {s.max_attempts} attempt(s): {vr.reason if vr else ''}"
            summary = outcome.summary
        elif outcome.status is OutcomeStatus.BLOCKED:
            result.verdict = Result.BLOCKED
            status = TaskStatus.BLOCKED
            head = f"Blocked: {outcome.blocker or outcome.error or 'the agent reported a blocker'}"
            summary = outcome.summary
            result.checkpoints.append(cp.Checkpoint(cp.CheckpointKind.BLOCKER, task.key, outcome.blocker))
        elif outcome.status is OutcomeStatus.INTERRUPTED:
            result.verdict = Result.INTERRUPTED
            head = f"Interrupted ({outcome.error or 'stop requested'}); back to todo, work in progress kept"
            summary = outcome.summary
        elif outcome.status is OutcomeStatus.RATE_LIMITED:
            result.verdict = Result.RATE_LIMITED
            result.retry_at = outcome.retry_at
            head = "Rate limited" + (f" until {outcome.retry_at.isoformat()}" if outcome.retry_at else "")
            summary = outcome.summary
        elif outcome.status is OutcomeStatus.BUDGET_EXCEEDED:
            result.verdict = Result.BUDGET
            head = "Stopped: the session's cost limit was reached during the task"
            summary = outcome.summary
        elif outcome.status is OutcomeStatus.AUTH_ERROR:
            result.verdict = Result.AUTH
            head = f"Not run: the backend's credentials were refused ({outcome.error})"
            summary = ""
        elif cp.context_high(outcome.context_tokens, s.context_window, s.context_threshold):
            count = self.runner.context_requeues.get(task.id, 0) + 1
            self.runner.context_requeues[task.id] = count
            if count > CONTEXT_REQUEUE_LIMIT:
                result.verdict = Result.FAILED
                head = f"Failed: context filled up {count} times ({outcome.status.value})"
            else:
                result.verdict = Result.REQUEUED
                head = (
                    f"Context high ({outcome.context_tokens} tokens of {s.context_window}): "
                    "re-queued to continue in a fresh context"
                )
                result.checkpoints.append(cp.Checkpoint(cp.CheckpointKind.CONTEXT_HIGH, task.key, head))
            summary = outcome.summary
        else:
            result.verdict = Result.FAILED
            head = f"Failed ({outcome.status.value}): {outcome.error or outcome.summary or 'no detail'}; back to todo"
            summary = outcome.summary
        if status is not TaskStatus.DONE and not merge_failed:
            committed, _ = await self._commit(
                task, f"WIP {task.key}: {result.verdict}, not done\n\nautonomous: task {task.id}", change_set
            )
            result.commit = committed.sha
            if result.commit:
                head += f" (work in progress committed: {result.commit[:12]})"
            if committed.refused:
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
            self.emit(EventKind.WARNING, task, message=result.message)
            return result
        self.emit(
            EventKind.TASK_RECORDED,
            task,
            status=status.value,
            verdict=result.verdict,
            cost_usd=round(result.cost_usd, 6),
            turns=result.turns,
            commit=result.commit,
            message=head,
        )
        return result


# -- the runner -------------------------------------------------------------------------------


class AutonomousRunner:
    """``AutonomousRunner(config).start()``: run the loop; returns a :class:`RunResult`
    (``.exit_code``). ``config`` is a :class:`~autonomous.config.Config` (``load_config``,
    ``RunnerConfig``; default: the project's config file); ``provider``, ``backend``,
    ``emit`` and ``approver`` can be given for embedding and tests.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        provider: StateProvider | None = None,
        backend: Backend | None = None,
        emit: Emit | None = None,
        approver: cp.Approver | None = None,
        out: Callable[[str], None] | None = None,
        worker_id: str | None = None,
    ):
        self.config = config if config is not None else load_config()
        self.settings = Settings.from_config(self.config)
        self._provider = provider
        self._backend = backend
        self._emit = emit or _noop_emit
        self.approver = approver or cp.TerminalApprover()
        self.out = out or (lambda text: print(text, flush=True))
        self.worker_id = worker_id or new_worker_id()
        self.redactor = Redactor(self.settings.secrets)
        self.budget = SessionBudget(self.settings)
        self.state: RunnerState | None = None
        self.workers: list[Worker] = []
        self.context_requeues: dict[str, int] = {}
        self.turn_counter = cp.TurnCounter(self.settings.turn_interval)
        self.stopping = False
        self._stop_reason: str | None = None
        self._signals = 0
        self._stop_event: asyncio.Event | None = None
        self._pending_review: list[tuple[cp.Checkpoint, Task | None]] = []
        self._reservations: dict[int, float] = {}
        self._meta_id: str | None = None
        self._last_done_id: str | None = None
        self._lock = threading.Lock()
        self._saved_at = 0.0  # monotonic time of the last state write
        self.isolation: Isolation | None = None
        self._kept: list[CurrentTask] = []  # interrupted tasks, kept in the state file for --resume
        self.dirty_at_start: list[str] = []  # tracked files modified before the run (--allow-dirty)
        self.backend_check = ""  # what preflight found the backend to be (the session's first event says it)
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

            made = get_backend(name or self.settings.backend)
            self._backend = made() if isinstance(made, type) else made
        return self._backend

    def emit(self, event: Event) -> None:
        try:
            self._emit(self.redactor.event(event))
        except Exception as exc:  # a broken sink must not stop the work; say so on stderr
            print(f"autonomous: event sink failed: {exc}", file=sys.stderr)

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

    def reserved_for(self, worker: Worker) -> float:
        return self._reservations.get(id(worker), 0.0)

    # -- state file ---------------------------------------------------------------------------
    def save_state(self, at_most_every: float = 0.0) -> None:
        """Write runner_state.json; with ``at_most_every`` skip the write when the last
        one is more recent than that many seconds (live progress, not decisions)."""
        if self.state is None:
            return
        now = time.monotonic()
        if at_most_every and now - self._saved_at < at_most_every:
            return
        self._saved_at = now
        with self._lock:
            self.state.updated_at = utcnow().isoformat()
            self.state.cost_usd = round(self.budget.spent, 6)
            self.state.current = [w.current for w in self.workers if w.current is not None] + self._kept
            runner_state.save(self.settings.state_dir, self.state)

    def set_current(self, worker: Worker, current: CurrentTask) -> None:
        worker.current = current
        self.save_state()

    def get_status(self, *, events: int = 10) -> dict[str, Any]:
        """What ``autonomous status --json`` shows (:func:`autonomous.progress.collect_status`,
        docs/monitoring.md): ``state``, ``tasks_completed``, ``current``, ``tasks``, ``metrics`` ...

        Read from the state file, which this runner writes at every step."""
        from autonomous.progress import collect_status

        return collect_status(self.settings.state_dir, self.settings.log_dir, self.provider, events=events)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self, checkpoint: cp.Checkpoint, task: Task | None, worker: Worker | None = None) -> None:
        """Record a checkpoint; in a mode that reviews it, the review happens between tasks."""
        review = cp.requires_review(checkpoint.kind, self.settings.mode)
        self.emit(
            Event(
                EventKind.CHECKPOINT,
                {**checkpoint.to_dict(), "review": review, "mode": self.settings.mode.value},
                task_id=task.id if task else None,
            )
        )
        if review:
            self._pending_review.append((checkpoint, task))

    def _review(self) -> tuple[int, str] | None:
        """Ask about pending checkpoints. Returns an exit (paused / aborted) or None."""
        while self._pending_review:
            checkpoint, _task = self._pending_review.pop(0)
            decision = self.approver.ask(checkpoint)
            self.emit(Event(EventKind.CHECKPOINT, {**checkpoint.to_dict(), "decision": decision.value}))
            if decision is cp.Decision.PAUSE:
                self._pending_review.clear()
                return EXIT_PAUSED, f"paused at {checkpoint.describe()}"
            if decision is cp.Decision.ABORT:
                self._pending_review.clear()
                return EXIT_INTERRUPTED, f"aborted at {checkpoint.describe()}"
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
            self.emit(Event(EventKind.WARNING, {"message": f"{name}: finishing up (again to kill the agent at once)"}))
            self.request_stop(f"interrupted by {name}")
            return
        self.emit(Event(EventKind.WARNING, {"message": f"second {name}: killing the agent now"}))
        _kill_children()
        if self.state is not None:
            self.state.state = "stopped"
            self.state.stop_reason = f"killed by a second {name}"
            self.state.exit_code = EXIT_INTERRUPTED
            with contextlib.suppress(Exception):
                self.save_state()
        os._exit(EXIT_INTERRUPTED)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return installed

    # -- entry points --------------------------------------------------------------------------
    def start(
        self,
        *,
        resume: bool = False,
        max_tasks: int | None = None,
        dry_run: bool = False,
        backend: str | None = None,
    ) -> RunResult:
        """Run the session to its end (sync). See the module docstring for exit codes."""
        return asyncio.run(self.run(resume=resume, max_tasks=max_tasks, backend=backend, dry_run=dry_run))

    def dry_run(self) -> str:
        """The execution plan: order, what waits on what, and the first task's prompt."""
        tasks = self.provider.list_tasks()
        decisions = scheduler.plan(tasks, ordering=self.settings.ordering)
        lines = [
            f"Execution plan ({self.settings.ordering} ordering, backend {self.settings.backend}, "
            f"model {self.settings.model}, mode {self.settings.mode.value}):",
            "",
        ]
        for i, d in enumerate(decisions, 1):
            lines.append(f"{i:>3}. {d.task.key:<16} {d.task.status.value:<11} {d.task.title}")
            if not d.ready:
                lines.append(f"       {d.explain()}")
        if not decisions:
            lines.append("  nothing to do: no open tasks")
        limits = [
            f"max_tasks_per_session={self.settings.max_tasks_per_session}",
            f"max_turns_per_task={self.settings.max_turns_per_task}",
            f"cost_limit_per_session={self.settings.cost_limit_per_session}",
            f"max_session_minutes={self.settings.max_session_minutes}",
            f"on_failure={self.settings.on_failure}",
        ]
        lines += ["", "Limits: " + ", ".join(limits)]
        lines.append(
            "Verification: "
            + (", ".join(f"`{c}`" for c in self.settings.verify_commands) or "(no commands)")
            + f" [{self.settings.verify_source}]"
            + (" + require changes" if self.settings.require_changes else "")
            + (" + baseline" if self.settings.baseline and self.settings.verify_commands else "")
            + (" + review" if self.settings.review else "")
        )
        first = next((d.task for d in decisions if d.ready), None)
        if first is not None:
            lines += ["", f"Prompt of the first task ({first.key}):", "", build_prompt(first, tasks, self.settings)]
        return "\n".join(lines)

    async def run(
        self,
        *,
        resume: bool = False,
        max_tasks: int | None = None,
        backend: str | None = None,
        dry_run: bool = False,
    ) -> RunResult:
        """The session, async (``AutonomousRunnerSDK`` and embedding use this)."""
        if dry_run:
            self.out(self.dry_run())
            return RunResult(EXIT_OK, "dry run: nothing claimed, nothing spent")
        if max_tasks is not None:
            self.settings.max_tasks_per_session = max_tasks
            self.budget.max_tasks = max_tasks
        if backend:
            self.settings.backend = backend
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        installed = self._install_signals(loop)
        try:
            return await self._session(resume)
        finally:
            for signum in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)

    # -- the session -----------------------------------------------------------------------------
    async def _session(self, resume: bool) -> RunResult:
        lock = preflight.RunnerLock(self.settings.state_dir)
        lock.acquire()
        try:
            return await self._checked_session(resume)
        finally:
            lock.release()

    def _preflight(self) -> None:
        """Everything that can be known to fail, before the first claim (preflight.py):
        each failure raises PreflightError (exit 2) with nothing claimed, spent or committed."""
        s = self.settings
        git.hide_tool_dirs(s.project_dir, [s.state_dir, s.log_dir, s.project_dir / git.WORKTREES_DIR])
        if self._backend is None:  # a backend given by the caller is the caller's to check
            self.backend_check = preflight.check_backend(s.backend, claude_path=s.claude_path)
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
        workspace = preflight.check_workspace(s.project_dir, allow_dirty=s.allow_dirty, excludes=s.git_excludes)
        self.dirty_at_start = workspace.dirty
        for warning in workspace.warnings:
            print(f"autonomous: warning: {warning}", file=sys.stderr, flush=True)
            self.emit(Event(EventKind.WARNING, {"message": warning}))
        branch = git.current_branch(s.project_dir) if workspace.in_git else None
        if branch is not None and (s.workers > 1 or s.branch_per_task):
            preflight.check_merge_obstacles(s.project_dir, branch, git.branches(s.project_dir, git.BRANCH_PREFIX))

    async def _checked_session(self, resume: bool) -> RunResult:
        s = self.settings
        self._preflight()
        previous = _load_previous(s.state_dir)
        backend_ = self.backend()
        self.isolation = Isolation.setup(self)
        count = max(1, s.workers)
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
        )
        if continuing:
            self.state.tasks_completed = list(previous.tasks_completed)
            self.state.tasks_blocked = list(previous.tasks_blocked)
            self.state.tasks_failed = list(previous.tasks_failed)
            self.state.turns = previous.turns
            self.budget.spent = previous.cost_usd
            self.state.counters = dict(previous.counters)
            self.budget.tasks_started = int(previous.counters.get("tasks_started", 0))
        self.save_state()
        record = SessionRecord(id=session_id, worker_id=self.worker_id, started_at=utcnow())
        self.provider.record_session(record)
        done, total = self._sync_meta(running=True) or (None, None)
        self._meta_note(
            f"Session {session_id} {'resumed' if continuing else 'started'} by {self.worker_id}: "
            f"backend {worker.backend.name}, model {s.model}, mode {s.mode.value}, "
            f"max {s.max_tasks_per_session} tasks, cost limit {s.cost_limit_per_session}"
        )
        self.emit(
            Event(
                EventKind.SESSION_START,
                {
                    "session_id": session_id,
                    "worker_id": self.worker_id,
                    "resumed": continuing,
                    "pid": os.getpid(),
                    **({"backend_check": self.backend_check} if self.backend_check else {}),
                    **({"allowed_dirty": self.dirty_at_start} if self.dirty_at_start else {}),
                    "tasks_done": done,
                    "tasks_total": total,
                },
                backend=worker.backend.name,
            )
        )
        resume_targets = self._recover(previous)
        self._leftovers()
        self.baseline, self._baseline_done, self._baseline_lock = None, False, asyncio.Lock()
        exit_code, reason = EXIT_OK, ""
        try:
            exit_code, reason = await self._run_workers(resume_targets if resume else [])
        except AutonomousError as exc:
            exit_code, reason = exc.exit_code, str(exc)
        except BaseException as exc:
            exit_code, reason = EXIT_FAILED, f"runner error: {type(exc).__name__}: {exc}"
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
        s = self.settings
        if not s.verify_commands:
            if s.verify_source.startswith("auto"):
                self._warn(
                    f"verification: {s.verify_source}; no tests run after each task "
                    "(set verification.commands to name them)"
                )
            return
        if not s.baseline:
            return
        baseline = await checks_baseline.run_baseline(
            s.verify_commands, s.project_dir, s.verify_timeout, s.state_dir / "checks" / "baseline"
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
        self.emit(Event(EventKind.WARNING, {"message": message}))

    def _meta_note(self, text: str) -> None:
        try:
            meta = self.provider.meta_task()
            if meta is not None:
                self.provider.add_note(meta.id, self.redactor.text(text), AUTHOR)
        except Exception as exc:  # the META note is a courtesy; the session record is the truth
            self.emit(Event(EventKind.WARNING, {"message": f"could not note on META: {exc}"}))

    def _sync_meta(self, *, running: bool) -> tuple[int, int] | None:
        """META in progress while the session runs, done when every task is; returns
        (done, total) of the other tasks for the display's progress bar."""
        try:
            return actions.sync_meta(self.provider, running=running)
        except Exception as exc:  # a courtesy, like the META note
            self.emit(Event(EventKind.WARNING, {"message": f"could not update the META task: {exc}"}))
            return None

    def _recover(self, previous: RunnerState | None) -> list[CurrentTask]:
        """Claims left by a runner of this project that died (kill -9, power cut) go back
        to the pool now rather than when their lease expires. Only for a runner on this
        host whose pid is gone: a live runner's claims are never touched. Returns what
        that runner was working on, for ``--resume``."""
        if previous is None or not previous.current:
            return []
        dead = previous.pid != os.getpid() and not runner_state.pid_alive(previous.pid)
        targets = []
        for cur in previous.current:
            targets.append(cur)
            if not dead or not _same_host(cur.worker_id or previous.worker_id):
                continue
            try:
                task = self.provider.get_task(cur.id)
            except TaskNotFound:
                continue
            holder = task.claim.worker_id if task.claim else None
            if task.status is TaskStatus.IN_PROGRESS and holder in (cur.worker_id, previous.worker_id):
                try:
                    self.provider.update_task(task.id, force=True, status=TaskStatus.TODO)
                    self.provider.add_note(
                        task.id,
                        f"Recovered: runner {holder} (pid {previous.pid}) died while working on this task; "
                        "back to todo"
                        + (f"; its conversation was {cur.backend_session_id}" if cur.backend_session_id else ""),
                        AUTHOR,
                    )
                    self.emit(
                        Event(
                            EventKind.WARNING,
                            {"message": f"recovered {task.key} from dead runner pid {previous.pid}"},
                            task_id=task.id,
                        )
                    )
                except (StaleClaim, ClaimConflict):
                    pass
        return targets

    def _leftovers(self) -> None:
        """Worktrees a previous runner left: merged ones go, unmerged ones are kept and
        reported (a WARNING event, and ``autonomous status``)."""
        if self.isolation is None:
            return
        try:
            cleaned, kept = self.isolation.scan_leftovers()
        except (git.GitError, OSError) as exc:
            self.emit(Event(EventKind.WARNING, {"message": f"could not list the task worktrees: {exc}"}))
            return
        if cleaned:
            self.emit(Event(EventKind.WARNING, {"message": f"removed merged worktrees: {', '.join(cleaned)}"}))
        for k in kept:
            self.emit(
                Event(
                    EventKind.WARNING,
                    {
                        "message": f"worktree {k['path']} (branch {k['branch']}) kept: {k['reason']}; "
                        "its task continues there when claimed again",
                        "worktree": k,
                    },
                )
            )

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
                self._set_halt(EXIT_FAILED, f"runner error: {type(exc).__name__}: {exc}")
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
        return next((r for r in ends if r[0] != EXIT_OK), ends[0])

    async def _worker_loop(
        self, worker: Worker, resume_targets: list[CurrentTask], first_claim: asyncio.Event
    ) -> tuple[int, str]:
        s = self.settings
        while True:
            if self.stopping:
                return EXIT_INTERRUPTED, self._stop_reason or "interrupted"
            if self._halt is not None:
                return self._halt
            if self._pause is not None:  # another worker hit a rate limit: everybody waits it out
                ok, why = await asyncio.shield(self._pause)
                if not ok:
                    return self._set_halt(EXIT_BUDGET, why)
                continue
            review = self._review()
            if review is not None:
                return self._set_halt(*review)
            refusal = self.budget.refuse()
            if refusal is not None:
                code, why = refusal
                if code == EXIT_OK and self._failures:
                    return EXIT_FAILED, f"{why}; {self._failures} task(s) failed or were blocked this session"
                if code == EXIT_BUDGET and self._busy and self._change is not None:
                    # the running tasks may cost less than they reserved: decide when one ends
                    await self._change.wait()
                    continue
                return (code, why) if code == EXIT_OK else self._set_halt(code, why)
            # Reserve before claiming (no await in between): N workers cannot together start
            # more tasks than max_tasks_per_session or spend more than the budget.
            reserved = self.budget.reserve()
            resume_session, resume_note = None, ""
            task: Task | None = None
            while resume_targets and task is None:
                target = resume_targets.pop(0)
                task = self._claim_specific(target.id, worker.worker_id)
                if task is not None:
                    resume_session = target.backend_session_id
                    resume_note = _last_note(task) or ""
            if task is None:
                if cp.requires_review(cp.CheckpointKind.BEFORE_TASK, s.mode):
                    upcoming = scheduler.next_ready(self.provider.list_tasks(), utcnow(), s.ordering, self._exclude)
                    if upcoming is not None:
                        self.checkpoint(
                            cp.Checkpoint(cp.CheckpointKind.BEFORE_TASK, upcoming.key, upcoming.title), upcoming
                        )
                        review = self._review()
                        if review is not None:
                            self.budget.unreserve(reserved)
                            return self._set_halt(*review)
                task = self.provider.claim_next(worker.worker_id, s.lease_seconds, s.ordering, self._exclude)
            first_claim.set()
            if task is None:
                self.budget.unreserve(reserved)
                if self._busy and self._change is not None:  # what the others finish may make a task ready
                    await self._change.wait()
                    continue
                waiting = self._nothing_ready_reason()
                if self._failures:
                    return (
                        EXIT_FAILED,
                        f"no more tasks can run: {self._failures} task(s) failed or were blocked; {waiting}",
                    )
                return EXIT_OK, waiting
            self._busy += 1
            self._reservations[id(worker)] = reserved
            self.state.counters["tasks_started"] = self.budget.tasks_started
            try:
                result = await worker.run_task(task, resume_session=resume_session, resume_note=resume_note)
            finally:
                self._reservations.pop(id(worker), None)
                self._busy -= 1
                self._changed()
            self.budget.settle(reserved, result.cost_usd, result.verdict == Result.DONE)
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
                return self._set_halt(EXIT_INTERRUPTED, self._stop_reason or result.message)
            if verdict == Result.LOST:
                self._exclude.add(task.id)
                continue
            if verdict == Result.AUTH:
                return self._set_halt(EXIT_USAGE, result.message)
            if verdict == Result.BUDGET:
                return self._set_halt(EXIT_BUDGET, result.message)
            if verdict == Result.RATE_LIMITED:
                # The same task is tried again after the pause: that is not a new task for
                # max_tasks_per_session, and the time the backend already spent retrying
                # counts against max_rate_limit_wait, so a storm ends with exit 4.
                self.budget.tasks_started = max(0, self.budget.tasks_started - 1)
                self.budget.rate_limit_wait_left -= result.duration_s
                if self.budget.rate_limit_wait_left <= 0:
                    return self._set_halt(
                        EXIT_BUDGET, f"rate limited: max_rate_limit_wait ({s.max_rate_limit_wait:.0f}s) is spent"
                    )
                ok, why = await self._rate_limit_pause(result.retry_at, task)
                if not ok:
                    return self._set_halt(EXIT_BUDGET, why)
                continue
            if verdict in (Result.BLOCKED, Result.FAILED):
                self._failures += 1
                self._exclude.add(task.id)
                if s.on_failure != "continue":
                    review = self._review()
                    if review is not None and review[0] == EXIT_PAUSED:
                        return self._set_halt(*review)
                    return self._set_halt(EXIT_FAILED, f"{task.key} {verdict}: {result.message} (stop-on-failure)")

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
            return self.provider.claim(task_id, worker_id or self.worker_id, self.settings.lease_seconds)
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

    def _nothing_ready_reason(self) -> str:
        try:
            decisions = scheduler.plan(self.provider.list_tasks(), ordering=self.settings.ordering)
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
            Event(
                EventKind.RATE_LIMIT,
                {"retry_at": (now + timedelta(seconds=wait)).isoformat(), "wait_s": round(wait, 1), "notify": True},
                task_id=task.id,
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
                self.emit(Event(EventKind.RATE_LIMIT, {"remaining_s": round(deadline - time.monotonic(), 1)}))
        return True, ""

    def _end(self, record: SessionRecord, exit_code: int, reason: str) -> RunResult:
        state = self.state
        assert state is not None
        # Every way a session ends passes here; a reason can quote a model's blocker or an
        # error text, and it goes to the state file, the META task, events and stderr.
        reason = self.redactor.text(reason)
        elapsed = self.budget.elapsed()
        state_name = {EXIT_OK: "completed", EXIT_PAUSED: "paused", EXIT_INTERRUPTED: "stopped"}.get(exit_code, "error")
        state.state = state_name
        state.exit_code = exit_code
        state.stop_reason = reason
        state.pause_reason = reason if exit_code == EXIT_PAUSED else None
        state.ended_at = utcnow().isoformat()
        if exit_code != EXIT_INTERRUPTED:
            state.current = []
        with self._lock:
            state.updated_at = utcnow().isoformat()
            state.cost_usd = round(self.budget.spent, 6)
            runner_state.save(self.settings.state_dir, state)
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
            self.emit(Event(EventKind.WARNING, {"message": f"could not record the session end: {exc}"}))
        event_data = {"session_id": state.session_id, **summary}
        if exit_code == EXIT_PAUSED:
            event_data["notify"] = True
        self.emit(Event(EventKind.SESSION_END, event_data))
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


def _load_previous(state_dir: Path) -> RunnerState | None:
    try:
        return runner_state.load(state_dir)
    except AutonomousError:
        return None


def _same_host(worker_id: str | None) -> bool:
    return bool(worker_id) and worker_id.split(":", 1)[0] == socket.gethostname()


def _kill_children() -> None:
    """Kill every child process of this runner and their process groups (the agent and
    anything it started). Linux: read from /proc; elsewhere nothing to find."""
    me = os.getpid()
    my_group = os.getpgrp()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != me:
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group != my_group:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


# -- status, stop, recovery ---------------------------------------------------------------------


def request_stop(state_dir: Path) -> tuple[bool, str]:
    """``autonomous stop``: SIGTERM the runner recorded in ``runner_state.json``.
    Returns (whether a runner was signalled, a sentence for the user)."""
    try:
        state = runner_state.load(Path(state_dir))
    except AutonomousError as exc:
        return False, str(exc)
    if state is None:
        return False, "no runner has run in this project"
    if state.state != "running":
        return False, f"no runner is running (last session {state.session_id} is {state.state})"
    if not _same_host(state.worker_id):
        return False, f"the runner runs on another host ({state.worker_id}); stop it there"
    if not runner_state.pid_alive(state.pid):
        return False, f"no runner is running (pid {state.pid} of session {state.session_id} is gone)"
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False, f"no runner is running (pid {state.pid} is gone)"
    return True, f"sent SIGTERM to runner pid {state.pid} (session {state.session_id}); it finishes its current step"


def recovery_context(config: Config, *, events: int = 20, provider: StateProvider | None = None) -> dict[str, Any]:
    """``autonomous resume``: the status (:func:`autonomous.progress.collect_status`: state,
    runner, tasks in flight, ``recent_events``), plus ``task_notes`` (the last notes of each
    task in flight) and ``would`` (what ``--resume`` would do)."""
    from autonomous.progress import collect_status

    info = collect_status(config.state_dir, config.log_dir, None, events=events)
    if info["state"] == "unreadable":
        return {**info, "would": "fix or remove the state file"}
    state = _load_previous(config.state_dir)
    notes: dict[str, list[str]] = {}
    if state is not None and state.current:
        try:
            own = provider is None
            prov = provider
            if prov is None:
                from autonomous.providers import get_provider

                prov = get_provider(config)
            try:
                for cur in state.current:
                    with contextlib.suppress(TaskNotFound):
                        notes[cur.key] = [n.text for n in prov.get_task(cur.id).notes[-3:]]
            finally:
                if own:
                    prov.close()
        except AutonomousError:
            pass
    info["task_notes"] = notes
    if state is None:
        info["would"] = "start a new session: no runner has run here"
    elif info["state"] == "running":
        info["would"] = f"nothing: a runner is running (pid {state.pid}); `autonomous stop` first"
    elif state.current:
        cur = state.current[0]
        how = (
            f"continuing its conversation {cur.backend_session_id}" if cur.backend_session_id else "in a fresh context"
        )
        others = [c.key for c in state.current[1:]]
        info["would"] = (
            f"continue session {state.session_id}: first {cur.key} ({cur.title}) {how}"
            + (f", with {', '.join(others)} on the other workers" if others else "")
            + ", then the next ready tasks"
        )
    elif state.state == "paused":
        info["would"] = f"continue session {state.session_id} after the pause ({state.pause_reason})"
    else:
        info["would"] = f"continue session {state.session_id} with the next ready task"
    return info
