"""What ``autonomous start`` checks before it claims the first task.

Everything that can be known to fail is found here, before a task is claimed, a model
request is made or anything is committed: each failure is one line naming the fix, exit 2.
A run that would have failed on its first task at 3 a.m. (CLI missing, not logged in, a
dirty checkout the merge would refuse) fails here instead, for free.

The checks, in order: one runner per project (an OS lock,
:class:`~autonomous.runner.process.RunnerLock`); the state
store answers and holds tasks; the repository's state (tracked files with uncommitted
changes refuse the run unless ``--allow-dirty``; untracked files are fine); the backend
can run and has credentials; the sandbox can run (no silent fallback: without bubblewrap
or user namespaces ``start`` exits 2 naming the package, unless ``autonomous.sandbox: off``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from autonomous import sandbox
from autonomous.config import SandboxSection
from autonomous.errors import AutonomousError, PreflightError
from autonomous.workspace import changes, git

_CLI_TIMEOUT = 30.0


@dataclass(slots=True)
class Workspace:
    """What preflight learned about the project's checkout."""

    in_git: bool
    dirty: list[str] = field(default_factory=list)  # tracked files already modified (--allow-dirty)
    warnings: list[str] = field(default_factory=list)


def check_workspace(project_dir: Path, *, allow_dirty: bool, excludes: tuple[str, ...] = ()) -> Workspace:
    """The repository's state: not a repository (a warning: nothing will be committed),
    tracked files with uncommitted changes (refused unless ``allow_dirty``)."""
    if not git.is_repo(project_dir):
        return Workspace(
            False,
            warnings=[
                f"{project_dir} is not a git repository: nothing will be committed "
                "(run `git init` and commit once to get a commit per task)"
            ],
        )
    repo = git.toplevel(project_dir)
    dirty = git.tracked_changes(repo, changes.project_pathspec(project_dir, repo, excludes))
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
        raise PreflightError(
            f"tracked files have uncommitted changes: {shown}. Commit or stash them first, or run "
            "`autonomous start --allow-dirty` to leave them out of every task commit"
        )
    return Workspace(True, dirty=dirty)


def check_merge_obstacles(project_dir: Path, integration: str, branches: list[str]) -> None:
    """Parallel workers: a kept task branch that adds a file lying untracked in the
    project's checkout would fail its merge; say so before paying for anything."""
    repo = git.toplevel(project_dir)
    for branch in branches:
        blocking = [p for p in git.added_paths(repo, integration, branch) if os.path.lexists(repo / p)]
        if blocking:
            raise PreflightError(
                f"branch {branch} adds {', '.join(blocking[:5])}, which exist untracked in {repo}; "
                "move them away (or delete the branch) before starting"
            )


# -- backends ------------------------------------------------------------------------------


def check_backend(name: str, *, claude_path: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The backend can run and has credentials. Returns one line describing what will be
    used (for the session's first log line)."""
    env = dict(os.environ if environ is None else environ)
    if name == "anthropic-sdk":
        if importlib.util.find_spec("anthropic") is None:
            raise PreflightError(
                "backend anthropic-sdk needs the anthropic package: pip install 'autonomous-runner[api]'"
            )
        if not env.get("ANTHROPIC_API_KEY"):
            raise PreflightError("backend anthropic-sdk needs an API key: set ANTHROPIC_API_KEY")
        return "anthropic-sdk with ANTHROPIC_API_KEY"
    if name == "claude-code-sdk" and importlib.util.find_spec("claude_agent_sdk") is None:
        raise PreflightError("backend claude-code-sdk needs the Agent SDK: pip install 'autonomous-runner[sdk]'")
    if name in ("claude-code", "claude-code-sdk"):
        return _check_claude(claude_path, env)
    return name


def _check_claude(claude_path: str | None, env: dict[str, str]) -> str:
    from autonomous.backends.claude_cli import find_claude

    try:
        binary = find_claude(claude_path)
    except AutonomousError as exc:
        raise PreflightError(str(exc)) from None
    env.pop("CLAUDECODE", None)
    try:
        proc = subprocess.run(
            [binary, "auth", "status", "--json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_CLI_TIMEOUT, env=env,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PreflightError(f"the Claude Code CLI ({binary}) does not run: {exc}") from None
    try:
        status = json.loads(proc.stdout)
    except ValueError:
        status = None
    if not isinstance(status, dict):  # a CLI without `auth status`: at least it must start
        version = subprocess.run(
            [binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_CLI_TIMEOUT,
            env=env,
        )  # fmt: skip
        if version.returncode != 0:
            detail = (version.stderr or version.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PreflightError(f"the Claude Code CLI ({binary}) does not run: {detail[0]}")
        return f"claude-code ({binary}, {version.stdout.strip()})"
    if not status.get("loggedIn"):
        raise PreflightError(
            "the Claude Code CLI is not logged in: run `claude` once and log in (/login), "
            "or set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"
        )
    how = status.get("apiKeySource") or status.get("authMethod") or "logged in"
    return f"claude-code ({binary}, {how})"


# -- sandbox -------------------------------------------------------------------------------


def check_sandbox(backend: str, section: SandboxSection, project_dir: Path) -> str:
    """The sandbox can run here (else :class:`PreflightError` naming the package); returns
    one line saying which sandbox is in force, for the session's first event and ``status``."""
    if not section.enabled:
        return sandbox.describe(backend, None)
    problem = sandbox.check(backend)
    if problem is not None:
        raise PreflightError(problem)
    if backend == "anthropic-sdk" and section.network == "allow":
        raise PreflightError(
            "autonomous.sandbox.network: allow needs Claude Code's proxy, which the anthropic-sdk backend does "
            "not have: use network: off or on, or the claude-code backend"
        )
    return sandbox.describe(backend, sandbox.for_section(project_dir, section))
