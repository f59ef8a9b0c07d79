"""A shared git remote (``execution.git.remote``): runners on several machines, one branch.

PostgreSQL shares the queue; this module makes the *work* meet in one place. The rules:

* a task starts from the remote's latest integration branch (:func:`catch_up` fetches and
  fast-forwards before the agent runs), so it builds on what other machines finished;
* a finished task is published by :func:`publish`: fetch, rebase the local commits onto
  the remote branch when it moved, verify again on the rebased result, push fast-forward
  only. A push the remote rejects (another runner pushed in between) starts over, up to
  ``max_push_attempts``; then the caller blocks the task with the evidence. Never forced;
* a task is recorded done only after its push, so "every dependency done" means "every
  dependency's commit is on the remote branch", which is what readiness needs;
* a runner killed mid-push leaves a local commit the remote lacks: the next start publishes
  it (:func:`publish` again), and a task whose commit the remote already holds is recorded
  done without running the agent again (:func:`published`), so nothing is lost or done twice.

Git commands block; the async callers run them through :func:`asyncio.to_thread` under
the lock that guards the checkout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from autonomous.verify import VerificationResult
from autonomous.workspace import git

Verify = Callable[[], Awaitable[VerificationResult | None]]
Locked = Callable[..., Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Remote:
    """Where the work meets: ``name`` (a remote of the checkout) and its ``branch``."""

    name: str
    branch: str

    @property
    def ref(self) -> str:
        return git.tracking_ref(self.name, self.branch)

    def describe(self) -> str:
        return f"{self.name}/{self.branch}"


@dataclass(slots=True)
class Published:
    pushed: bool
    sha: str | None = None  # the remote branch's commit after the push
    attempts: int = 0
    rebased: bool = False  # the local commits were rebased onto work another runner pushed
    conflict: bool = False
    verification: VerificationResult | None = None  # the check on the rebased result, if one ran
    output: str = ""


def resolve(repo: Path, remote: str | None, branch: str | None) -> Remote | None:
    """The configured remote, or None (local behaviour). The branch defaults to the one
    checked out. Raises GitError when the checkout has no such remote."""
    if not remote:
        return None
    if remote not in git.remotes(repo):
        raise git.GitError(f"execution.git.remote: the checkout {repo} has no remote {remote!r}")
    name = branch or git.current_branch(repo)
    if not name:
        raise git.GitError("execution.git.branch: HEAD is detached; set the integration branch")
    return Remote(remote, name)


def published(repo: Path, remote: Remote, task_id: str) -> str | None:
    """The commit on the remote branch (as last fetched) that finished ``task_id``."""
    return git.commit_of_task(repo, remote.ref, task_id)


def catch_up(repo: Path, remote: Remote) -> str | None:
    """Fetch, then fast-forward the checkout to the remote branch when it is behind. A
    checkout holding unpushed commits is left as it is (:func:`publish` rebases them).
    Returns the remote branch's commit."""
    sha = git.fetch(repo, remote.name, remote.branch)
    if sha is not None and git.count_ahead(repo, "HEAD", remote.ref):
        git.fast_forward(repo, remote.ref)
    return sha


async def publish(
    repo: Path, remote: Remote, *, attempts: int, verify: Verify, locked: Locked | None = None
) -> Published:
    """Push the checkout's branch to the remote, fast-forward only, rebasing onto (and
    verifying) whatever another runner pushed first; at most ``attempts`` pushes."""

    async def run(fn: Callable[..., object], *args: object) -> object:
        if locked is not None:
            return await locked(fn, *args)
        return await asyncio.to_thread(fn, *args)

    result = Published(False)
    outputs: list[str] = []
    while result.attempts < attempts:
        result.attempts += 1
        upstream = await run(git.fetch, repo, remote.name, remote.branch)
        if upstream is not None and await run(git.count_ahead, repo, "HEAD", remote.ref):
            ok, output = await run(git.rebase_onto, repo, remote.ref)  # type: ignore[misc]
            if not ok:
                result.conflict = True
                result.output = f"rebase onto {remote.describe()} failed (conflict):\n{output}"
                return result
            result.rebased = True
            vr = await verify()
            result.verification = vr
            if vr is not None and not vr.passed:
                result.output = f"verification failed after rebasing onto {remote.describe()}:\n{vr.evidence()}"
                return result
        pushed = await run(git.push, repo, remote.name, remote.branch)
        assert isinstance(pushed, git.PushOutcome)
        if pushed.pushed:
            result.pushed = True
            result.sha = await run(git.head, repo)  # type: ignore[assignment]
            return result
        outputs.append(pushed.output)
        if not pushed.rejected:
            result.output = f"push to {remote.describe()} failed:\n{pushed.output}"
            return result
    result.output = f"push to {remote.describe()} rejected {result.attempts} time(s):\n" + "\n".join(outputs[-2:])
    return result


def set_aside(repo: Path, remote: Remote, key: str) -> str:
    """After a failed publish: the task's commits stay on a branch ``autonomous/<KEY>-unpushed``
    and the checkout goes back to the remote branch, so the next task's push cannot carry
    them. Returns the branch that keeps them."""
    kept = git.keep_branch(repo, git.branch_name(key) + "-unpushed")
    git.undo_merge(repo, remote.ref)
    return kept
