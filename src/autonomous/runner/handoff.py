"""Where a task's verified work goes: ``execution.handoff`` (merge, review, pr) and the
shared remote (docs/runner.md "Many machines").

:class:`Handoff` is the part of :class:`~autonomous.runner.worker.Worker` that runs after
the task's commit on its own branch: the merge queue into the integration branch, a
person's review, a pull request; and, before a task starts, whether the shared remote
already holds it. :func:`open_shared_remote` is the session's side: it resolves the remote
once and publishes what a runner killed mid-push left behind.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autonomous import history, verify
from autonomous.errors import PreflightError, ProviderError, StaleClaim
from autonomous.events import Event, Outcome, OutcomeStatus, TaskRecorded, Verification, WarningEvent
from autonomous.prompts.build import RUNNER_AUTHOR as AUTHOR
from autonomous.prompts.build import shorten
from autonomous.runner.verdict import Result
from autonomous.tasks import Task, TaskStatus
from autonomous.workspace import changes, git, pull_requests, remote
from autonomous.workspace.pull_requests import PullRequests
from autonomous.workspace.worktrees import MERGE_NOTE, Isolation

if TYPE_CHECKING:
    from autonomous.config import Config
    from autonomous.providers.base import StateProvider
    from autonomous.runner.session import AutonomousRunner
    from autonomous.runner.worker import TaskResult


class Handoff:
    """The handoff half of a worker (a mixin: :class:`~autonomous.runner.worker.Worker` is the rest)."""

    runner: AutonomousRunner
    config: Config
    provider: StateProvider
    isolation: Isolation | None
    worktree: Path | None

    if TYPE_CHECKING:  # the worker's own, used here

        @property
        def cwd(self) -> Path: ...
        def emit(self, event: Event, task: Task | None = None) -> None: ...
        def _note(self, task: Task, token: int, text: str) -> None: ...
        def _changes_since(self, before: changes.TreeState) -> changes.ChangeSet: ...
        async def _record(self, task: Task, token: int, result: TaskResult) -> TaskResult: ...

    async def _hand_off(self, task: Task, token: int, result: TaskResult) -> tuple[TaskStatus, str, bool]:
        """Where verified, committed work on the task's branch goes (``execution.handoff``):
        to a person (review), to a pull request (pr), or through the merge queue (merge).
        Returns the task's status, the head of its note, and whether the handoff failed."""
        assert self.worktree is not None
        handoff = self.config.execution.handoff
        if handoff == "review" and not result.approved:
            result.verdict = Result.IN_REVIEW
            branch = git.branch_name(task.key)
            where = f"worktree {self.worktree}"
            if self.runner.remote is not None:  # any machine can then merge it once approved
                shared = self.runner.remote
                pushed = await asyncio.to_thread(git.push, self.worktree, shared.name, branch)
                where = f"pushed to {shared.name}" if pushed.pushed else f"{where}; push failed: {pushed.output}"
            return (
                TaskStatus.IN_REVIEW,
                (
                    f"{history.REVIEW_NOTE}: branch {branch} (commit {(result.commit or '-')[:12]}, {where}) "
                    f"waits for `autonomous approve {task.key}` or `autonomous reject {task.key} --note TEXT`"
                ),
                False,
            )
        if handoff == "pr":
            status, head = await self._pull_request(task, result)
            return status, head, status is TaskStatus.BLOCKED  # the work stays committed on its branch
        merged, head = await self._merge(task, token, result)
        if merged:
            return TaskStatus.DONE, head, False
        return (TaskStatus.BLOCKED if result.verdict == Result.BLOCKED else TaskStatus.TODO), head, True

    def _remote_start(self, task: Task) -> str | None:
        """The task's commit when the remote already holds it (a runner died after pushing
        it, before recording it), as of a fresh fetch."""
        shared, iso = self.runner.remote, self.isolation
        assert shared is not None and iso is not None
        with iso.git_lock:
            git.fetch(iso.repo, shared.name, shared.branch)
            return remote.published(iso.repo, shared, task.id)

    async def _record_landed(self, task: Task, token: int, result: TaskResult, sha: str) -> TaskResult:
        shared = self.runner.remote
        assert shared is not None
        result.verdict, result.commit = Result.DONE, sha
        note = (
            f"Done (commit {sha[:12]} already on {shared.describe()}: a runner stopped after pushing it, "
            f"before recording it)\nTurns: 0, cost: $0.0000, duration: 0.0s, commit: {sha}"
        )
        try:
            self.provider.release(task.id, token, status=TaskStatus.DONE, note=note, author=AUTHOR)
        except StaleClaim:
            result.verdict = Result.LOST
            result.message = f"lost the lease on {task.key} before recording; nothing recorded"
            return result
        result.message = note.splitlines()[0]
        self.emit(TaskRecorded(status="done", verdict=result.verdict, commit=sha, message=result.message), task)
        return result

    async def _checks(self) -> verify.VerificationResult:
        """The configured commands on the task's work as it stands (before a merge or a push
        of work verified earlier): no baseline, no change-set rule, no review."""
        c = self.config
        return await verify.verify(
            self.cwd, c.checks.commands, timeout=c.verification.timeout, redact=self.runner.redactor.text
        )

    async def _merge_approved(
        self, task: Task, token: int, result: TaskResult, before: changes.TreeState, started: float
    ) -> TaskResult:
        """A person approved the work in review: verify it once more and merge it as ``merge``
        mode would, without running the agent again."""
        result.approved = True
        result.change_set = await asyncio.to_thread(self._changes_since, before)
        if not result.change_set:  # the reviewed branch is not here (another machine, deleted): merge nothing
            result.outcome = Outcome(
                OutcomeStatus.BLOCKED, blocker=f"approved, but branch {git.branch_name(task.key)} holds no work here"
            )
            return await self._record(task, token, result)
        result.outcome = Outcome(OutcomeStatus.COMPLETED, summary="approved in review")
        result.verification = await self._checks()
        self.emit(Verification(attempt=1, **result.verification.to_dict()), task)
        result.duration_s = time.monotonic() - started
        return await self._record(task, token, result)

    async def _pull_request(self, task: Task, result: TaskResult) -> tuple[TaskStatus, str]:
        """``handoff: pr``: push the task's branch and open (or reuse) its pull request
        (workspace/pull_requests.py). Returns the status and the note's head."""
        c, shared, pulls = self.config, self.runner.remote, self.runner.pull_requests
        assert shared is not None and pulls is not None and self.worktree is not None
        body = f"{task.description}\n\nOpened by autonomous for task {task.key} (id {task.id}).".strip()
        done = await pull_requests.hand_off(
            pulls, self.worktree, shared, task.key, title=f"{task.key}: {task.title}", body=body,
            attempts=c.execution.git.max_push_attempts, verify=self._checks,
        )  # fmt: skip
        result.commit = done.sha or result.commit
        if done.pull is None:
            result.verdict = Result.BLOCKED
            return TaskStatus.BLOCKED, f"Blocked: {done.problem}"
        result.verdict = Result.IN_REVIEW
        return TaskStatus.IN_REVIEW, (
            f"{history.PR_NOTE} #{done.pull.number} {done.pull.url} (branch {git.branch_name(task.key)}, "
            f"commit {(result.commit or '-')[:12]}, {'opened' if done.opened else 'updated'}): "
            "merged -> done, changes requested -> back to the agent"
        )

    async def _merge(self, task: Task, token: int, result: TaskResult) -> tuple[bool, str]:
        """Through the merge queue into the integration branch. Returns (merged, the head of
        the task's note); on failure ``result.verdict`` is MERGE_RETRY (back to todo, redone
        on the new base) or, after ``max_merge_attempts``, BLOCKED."""
        iso, path = self.isolation, self.worktree
        assert iso is not None and path is not None
        c = self.config
        branch = git.branch_name(task.key)
        own = result.commit
        tip = await asyncio.to_thread(git.head, path)  # what a review pushed of the branch, if anything
        try:
            merged, vr = await iso.integrate(task, branch, path, self.runner.redactor.text, self.runner.baseline)
        except git.GitError as exc:
            merged, vr = git.MergeResult(False, output=str(exc)), None
        if vr is not None and vr.ran_anything:
            self._note(task, token, f"After merging into {iso.integration}: {vr.evidence()}")
        if merged.merged:
            result.commit = merged.after or own
            try:
                await asyncio.to_thread(iso.finish, path, branch)
            except git.GitError as exc:
                self.emit(WarningEvent(message=f"could not remove the worktree {path}: {exc}"), task)
            shared = self.runner.remote
            pushed = f", pushed to {shared.describe()}" if shared else ""
            if shared is not None and result.approved and tip:  # the reviewed branch has landed: it goes
                await asyncio.to_thread(iso.delete_remote_branch, shared.name, branch, tip)
            if merged.rebased:
                pushed += " after rebasing onto work pushed meanwhile"
            return True, (
                f"Done (commit {own[:12] if own else '-'}, merged into {iso.integration} "
                f"as {(result.commit or '-')[:12]}, {c.execution.git.merge_strategy}{pushed})"
            )
        attempts = sum(1 for n in history.since_retry(task.notes) if n.text.startswith(MERGE_NOTE)) + 1
        what = "conflict" if merged.conflict else "blocked by the checkout" if merged.obstacle else "failed"
        max_attempts = c.execution.git.max_merge_attempts
        if attempts >= max_attempts or merged.obstacle:
            result.verdict = Result.BLOCKED
            iso.kept.append({"key": task.key, "branch": branch, "path": str(path), "reason": f"merge {what}"})
            await asyncio.to_thread(iso.save_leftovers)
            head = (
                f"{MERGE_NOTE} ({what}, attempt {attempts} of {max_attempts}): blocked; branch {branch} and "
                f"worktree {path} are kept for a person"
            )
        else:
            result.verdict = Result.MERGE_RETRY
            kept = branch
            try:
                kept = await asyncio.to_thread(iso.set_aside, path, branch)
            except git.GitError as exc:
                self.emit(WarningEvent(message=f"could not set the branch {branch} aside: {exc}"), task)
            head = (
                f"{MERGE_NOTE} ({what}, attempt {attempts} of {max_attempts}) into {iso.integration}: "
                f"back to todo, to be redone on the new {iso.integration}; the earlier work is kept on branch {kept}"
            )
        head += "\n" + shorten(merged.output or "(no output)", 3000)
        self.emit(WarningEvent(message=head.splitlines()[0]), task)
        return False, head


async def open_shared_remote(runner: AutonomousRunner) -> None:
    """Resolve ``execution.git.remote`` and publish what a runner killed mid-push left
    unpushed (its tasks are then found on the remote and recorded done, not redone).
    Review mode and a remote need task worktrees: a configuration without them is an
    error before anything is claimed."""
    c = runner.config
    if (c.execution.git.remote or c.execution.handoff == "review") and runner.isolation is None:
        need = "execution.git.remote" if c.execution.git.remote else "execution.handoff: review"
        raise PreflightError(f"{need} needs a git repository with a commit and a branch checked out")
    if not c.execution.git.remote or runner.isolation is None:
        return
    iso = runner.isolation
    try:
        shared = remote.resolve(iso.repo, c.execution.git.remote, c.execution.git.branch)
        runner.remote = iso.remote = shared
    except git.GitError as exc:
        raise PreflightError(str(exc)) from None
    if c.execution.handoff == "pr":
        github = getattr(runner.provider, "client", None) if runner.provider.kind == "github" else None
        pulls = c.execution.pull_requests
        try:
            runner.pull_requests = PullRequests.open(pulls, shared.branch, shared=github, env=os.environ)
        except ProviderError as exc:
            raise PreflightError(str(exc)) from None
    if shared.branch != iso.integration:
        raise PreflightError(
            f"execution.git.branch: the project has {iso.integration} checked out, not {shared.branch}; "
            f"check out {shared.branch} (the runner merges into the branch checked out)"
        )
    if await asyncio.to_thread(remote.catch_up, iso.repo, shared) is None:
        return  # the remote has no such branch yet: the first push creates it
    ahead = await asyncio.to_thread(git.count_ahead, iso.repo, shared.ref)
    if not ahead:
        return

    async def check() -> verify.VerificationResult | None:
        return await iso.check_checkout(runner.redactor.text)

    pub = await remote.publish(iso.repo, shared, attempts=c.execution.git.max_push_attempts, verify=check)
    if pub.pushed:
        message = f"pushed {ahead} commit(s) left unpushed on {iso.integration} to {shared.describe()}"
    else:
        kept = await asyncio.to_thread(remote.set_aside, iso.repo, shared, "unpushed")
        message = (
            f"{ahead} commit(s) on {iso.integration} could not be pushed to {shared.describe()}; "
            f"kept on branch {kept}, {iso.integration} is back on {shared.describe()}: {pub.output.splitlines()[0]}"
        )
    runner.emit(WarningEvent(message=message))
