"""The runner's view of the configuration: ``Settings``, resolved once per session."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autonomous import checkpoints as cp
from autonomous import scheduler
from autonomous.checks import detect
from autonomous.config import Config, PullRequestsSection, SandboxSection, secret_values
from autonomous.workspace import git


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
    remote: str | None  # execution.git.remote: push finished work there (workspace/remote.py)
    remote_branch: str | None
    max_push_attempts: int
    handoff: str  # merge | review | pr
    review_unblocks_dependents: bool  # an in_review task counts as finished for readiness
    pull_requests: PullRequestsSection  # handoff: pr (workspace/pull_requests.py)
    pr_poll_seconds: float
    pr_wait: float
    sandbox: SandboxSection  # autonomous.sandbox: what the agent may see and touch
    git_run_hooks: bool

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
            remote=execution.git.remote,
            remote_branch=execution.git.branch,
            max_push_attempts=execution.git.max_push_attempts,
            handoff=execution.handoff,
            review_unblocks_dependents=execution.review_unblocks_dependents,
            pull_requests=execution.pull_requests,
            pr_poll_seconds=execution.pr_poll_seconds,
            pr_wait=execution.pr_wait,
            sandbox=auto.sandbox,
            git_run_hooks=execution.git.run_hooks,
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
