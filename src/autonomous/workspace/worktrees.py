"""A worktree per task, and the merge queue that brings finished branches back.

With several workers (or ``execution.git.branch_per_task``) each task runs in its own
worktree ``.ai-agents/worktrees/<KEY>`` on a branch ``autonomous/<KEY>`` made from the
integration branch; a verified branch waits for the merge queue (one merge at a time),
is verified again on the merged result, and is undone when that fails. See
docs/runner.md "Parallel workers".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomous import verify
from autonomous.events import Event, WarningEvent
from autonomous.fsutil import write_json_atomic
from autonomous.tasks import Task, utcnow
from autonomous.workspace import git, remote

if TYPE_CHECKING:
    from autonomous.checks.baseline import Baseline
    from autonomous.config import Config


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

    def __init__(self, config: Config, repo: Path, integration: str):
        self.config = config
        self.remote: remote.Remote | None = None  # execution.git.remote, resolved at the session's start
        self.project_dir = self.config.project_dir
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
    def setup(cls, config: Config, emit: Callable[[Event], None]) -> Isolation | None:
        """Isolation when the project is a git repository and there are several workers
        (or ``execution.git.branch_per_task``, a shared remote, review handoff); None
        otherwise (work in the project itself)."""
        c = config
        wanted = (
            c.autonomous.workers > 1 or c.execution.git.branch_per_task or c.execution.handoff == "review"
            or c.execution.git.remote
        )  # fmt: skip
        if not wanted or not git.is_repo(c.project_dir):
            return None
        branch = git.current_branch(c.project_dir)
        if branch is None or git.head(c.project_dir) is None:
            emit(
                WarningEvent(
                    message="no worktrees: the project has no commit or no branch checked out (detached HEAD); "
                    "every worker works in the project itself"
                )
            )
            return None
        repo = git.toplevel(c.project_dir)
        iso = cls(config, repo, branch)
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
                base = self.integration
                # -- shared remote: a new task starts from the remote's latest integration branch,
                # or from its own branch when a runner pushed it for review
                shared, branch = self.remote, git.branch_name(task.key)
                if shared is not None and not git.branch_exists(self.repo, branch):
                    if git.fetch(self.repo, shared.name, branch) is not None:
                        base = git.tracking_ref(shared.name, branch)
                    elif git.fetch(self.repo, shared.name, shared.branch) is not None:
                        base = shared.ref
                git.add_worktree(self.repo, path, branch, base)
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
        write_json_atomic(
            self.config.state_dir / LEFTOVERS_FILE,
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

    def delete_remote_branch(self, remote: str, branch: str, expected: str) -> bool:
        """After an approved task merged: its pushed branch leaves the remote, unless
        someone added commits to it since (see :func:`git.delete_remote_branch`)."""
        with self.git_lock:
            return git.delete_remote_branch(self.repo, remote, branch, expected)

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
        self, task: Task, branch: str, path: Path, redact: Callable[[str], str], baseline: Baseline | None = None
    ) -> tuple[git.MergeResult, verify.VerificationResult | None]:
        """One merge at a time: merge, verify the merged result, undo on failure."""
        c = self.config
        async with self.merge_lock:
            shared = self.remote
            if shared is not None:  # merge into the remote's latest, not a stale local branch
                await asyncio.to_thread(self._locked, remote.catch_up, self.repo, shared)
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
                strategy=c.execution.git.merge_strategy,
                message=f"Merge {branch}: {task.key} {title}\n\nautonomous: task {task.id} done",
                worktree=path,
            )
            if not merged.merged:
                return merged, None
            vr = None
            if c.checks.commands:
                vr = await verify.verify(
                    self.project_dir,
                    c.checks.commands,
                    timeout=c.verification.timeout,
                    redact=redact,
                    baseline=baseline,
                    report_dir=c.state_dir / "checks" / "merge",
                )
                if not vr.passed and merged.before is not None:
                    await asyncio.to_thread(self._locked, git.undo_merge, self.repo, merged.before)
                    merged.merged = False
                    merged.output = "verification failed on the merged result:\n" + vr.evidence()
            if merged.merged and shared is not None:
                await self._push(merged, shared, redact)
            return merged, vr

    async def _push(self, merged: git.MergeResult, shared: remote.Remote, redact: Callable[[str], str]) -> None:
        """The merged result goes to the shared remote; a push that cannot be made undoes
        the merge (the task's branch keeps its commits, and the task is redone or blocked
        like any failed merge)."""
        c = self.config

        async def check() -> verify.VerificationResult | None:
            return await self.check_checkout(redact)

        async def locked(fn: Callable[..., Any], *args: Any) -> Any:
            return await asyncio.to_thread(self._locked, fn, *args)

        attempts = c.execution.git.max_push_attempts
        pub = await remote.publish(self.repo, shared, attempts=attempts, verify=check, locked=locked)
        if pub.pushed:
            merged.after, merged.rebased = pub.sha, pub.rebased
            return
        if merged.before is not None:
            await asyncio.to_thread(self._locked, git.undo_merge, self.repo, merged.before)
        merged.merged, merged.conflict, merged.output = False, pub.conflict, pub.output

    async def check_checkout(self, redact: Callable[[str], str]) -> verify.VerificationResult | None:
        """The verification commands on the project's checkout (before a push); None without any."""
        c = self.config
        if not c.checks.commands:
            return None
        return await verify.verify(self.project_dir, c.checks.commands, timeout=c.verification.timeout, redact=redact)
