"""A task's commit: exactly its change set, minus credential files, never a secret.

The one place that turns a :class:`~autonomous.workspace.changes.ChangeSet` into a commit,
for a verified task and for a work-in-progress commit alike:

1. credential files (``.env``, keys ...) are left out unless the user allows them;
2. the rest is staged path by path and the staged patch is checked for secrets
   (:mod:`autonomous.workspace.secret_scan`); a finding unstages everything and commits
   nothing: the task is blocked with the finding (file and line, never the value);
3. only those paths are committed; whatever the user staged elsewhere stays staged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from autonomous.workspace import git
from autonomous.workspace.changes import ChangeSet
from autonomous.workspace.secret_scan import Finding, is_protected, scan_staged


@dataclass(slots=True)
class TaskCommit:
    sha: str | None = None
    committed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # credential files the task wrote, kept out of git
    findings: list[Finding] = field(default_factory=list)  # secrets found: nothing was committed

    @property
    def refused(self) -> bool:
        return bool(self.findings)

    def describe_refusal(self) -> str:
        shown = "; ".join(f.describe() for f in self.findings[:10])
        more = len(self.findings) - 10
        return f"a secret in the task's change: {shown}" + (f" and {more} more" if more > 0 else "")

    def describe_left_out(self) -> str:
        return (
            "kept out of the commit (credential files; allow with execution.git.allow_files): "
            + ", ".join(self.left_out)
            if self.left_out
            else ""
        )


def commit_change_set(
    changes: ChangeSet,
    message: str,
    *,
    secrets: Iterable[str] = (),
    allow_files: Sequence[str] = (),
) -> TaskCommit:
    """Commit ``changes`` in its repository (see the module docstring)."""
    result = TaskCommit()
    paths: list[str] = []
    for path in changes.paths:
        (result.left_out if is_protected(path, allow_files) else paths).append(path)
    if not paths:
        return result
    repo = changes.base
    git.stage(repo, paths)
    findings = scan_staged(repo, paths, secrets)
    if findings:
        git.unstage(repo, paths)
        result.findings = findings
        return result
    result.sha = git.commit_paths(repo, paths, message)
    if result.sha is not None:
        result.committed = paths
    return result
