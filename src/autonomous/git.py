"""A small wrapper around the ``git`` command: what the runner needs to record each
task's work as its own commit.

Rules it keeps, because the repository is someone's real work:

* it only ever stages and commits paths inside the project directory (a pathspec of
  ``.`` run from there), so files elsewhere in an enclosing repository are untouched;
* ``.gitignore`` is respected (``git add -A`` never adds ignored files), and the runner's
  own runtime folders (state, logs) are excluded explicitly;
* it never pushes or stashes; the worktree and merge-queue helpers at the end (parallel
  workers) rebase task branches and reset only the integration checkout, see there;
* every command runs with stdin closed and a timeout, so a hook or a signing prompt
  cannot hang an unattended night.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autonomous.errors import GitError

# Runtime folders of the tool itself: never part of a task's commit.
RUNTIME_EXCLUDES = (".ai-agents/state", ".ai-agents/logs")
_TIMEOUT = 120.0


def _run(args: Sequence[str], cwd: Path, *, check: bool = True, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} timed out after {_TIMEOUT:.0f}s") from None
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def is_repo(path: Path) -> bool:
    """Whether ``path`` lies inside a git work tree."""
    try:
        return _run(["rev-parse", "--is-inside-work-tree"], Path(path), check=True).strip() == "true"
    except GitError:
        return False


def head(path: Path) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    try:
        return _run(["rev-parse", "--verify", "-q", "HEAD"], Path(path)).strip() or None
    except GitError:
        return None


def _pathspec(excludes: Iterable[str], path: Path | None = None) -> list[str]:
    """``.`` minus the excludes. An exclude that .gitignore already ignores is left out:
    git refuses to ``add`` a pathspec naming an ignored path, even as an exclusion."""
    excludes = list(excludes)
    if path is not None and excludes:
        ignored = set(_run(["check-ignore", "--", *excludes], path, check=False).split())
        excludes = [e for e in excludes if e not in ignored]
    return [".", *(f":(exclude){e}" for e in excludes)]


def _status(path: Path, excludes: Iterable[str]) -> list[str]:
    out = _run(
        ["status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all", "--", *_pathspec(excludes)], path
    )
    return [entry for entry in out.split("\0") if entry]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the project looked like when a task started: HEAD and a fingerprint of the
    uncommitted changes (paths, plus size and mtime of each changed file, so a file that
    was already dirty and is edited again still counts as a change)."""

    head: str | None
    fingerprint: str


def snapshot(path: Path, excludes: Iterable[str] = RUNTIME_EXCLUDES) -> Snapshot:
    path = Path(path)
    excludes = tuple(excludes)
    digest = hashlib.sha256()
    for entry in _status(path, excludes):
        digest.update(entry.encode())
        name = entry[3:]
        try:
            st = (path / name).stat()
            digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            digest.update(b"-")
    return Snapshot(head(path), digest.hexdigest())


def changed_since(path: Path, before: Snapshot, excludes: Iterable[str] = RUNTIME_EXCLUDES) -> bool:
    """Whether a commit was made or the working tree changed since ``before``."""
    return snapshot(path, excludes) != before


def changed_files(path: Path, excludes: Iterable[str] = RUNTIME_EXCLUDES) -> list[str]:
    """Uncommitted changes under the project, as paths relative to the repository root."""
    return sorted({entry[3:] for entry in _status(Path(path), tuple(excludes))})


def _identity_env(path: Path) -> dict[str, str]:
    """A fallback author for repositories where none is configured (fresh CI boxes);
    a configured identity always wins."""
    if _run(["config", "user.email"], path, check=False).strip():
        return {}
    return {
        "GIT_AUTHOR_NAME": "autonomous",
        "GIT_AUTHOR_EMAIL": "autonomous@localhost",
        "GIT_COMMITTER_NAME": "autonomous",
        "GIT_COMMITTER_EMAIL": "autonomous@localhost",
    }


def commit_all(path: Path, message: str, excludes: Iterable[str] = RUNTIME_EXCLUDES) -> str | None:
    """Stage every change under ``path`` (ignored files and ``excludes`` left out) and
    commit only those paths. Returns the new commit's sha, or None when there was
    nothing to commit. Changes the user staged elsewhere in the repository stay staged
    and uncommitted."""
    path = Path(path)
    spec = _pathspec(tuple(excludes), path)
    _run(["add", "-A", "--", *spec], path)
    staged = _run(["diff", "--cached", "--name-only", "--", *spec], path).strip()
    if not staged:
        return None
    _run(["commit", "-q", "--no-edit", "-m", message, "--", *spec], path, env=_identity_env(path))
    return head(path)


def init(path: Path) -> None:
    """Create a repository (used by tests and by people trying the tool out)."""
    _run(["init", "-q"], Path(path))


# -- worktrees and the merge queue (parallel workers) ------------------------------------------
#
# With several workers each task runs in its own worktree on its own branch, created from
# the integration branch (the branch checked out in the project when the runner started).
# The runner merges finished branches one at a time. The only destructive commands here
# (``merge --abort``, ``reset --hard`` to the commit before the merge) run on the
# integration checkout, and only after :func:`is_clean` said it held no uncommitted work;
# a task branch and its commits are never deleted unless merged.

WORKTREES_DIR = ".ai-agents/worktrees"
BRANCH_PREFIX = "autonomous/"


def toplevel(path: Path) -> Path:
    return Path(_run(["rev-parse", "--show-toplevel"], Path(path)).strip())


def current_branch(path: Path) -> str | None:
    """The branch checked out at ``path``, or None when HEAD is detached."""
    out = _run(["symbolic-ref", "-q", "--short", "HEAD"], Path(path), check=False).strip()
    return out or None


def is_clean(path: Path, excludes: Iterable[str] = RUNTIME_EXCLUDES) -> bool:
    """No uncommitted change under ``path`` (ignored files and ``excludes`` aside)."""
    return not _status(Path(path), tuple(excludes))


def branch_exists(path: Path, branch: str) -> bool:
    return _run(["rev-parse", "--verify", "-q", f"refs/heads/{branch}"], Path(path), check=False).strip() != ""


def is_merged(path: Path, branch: str, into: str) -> bool:
    """Every commit of ``branch`` is reachable from ``into``."""
    try:
        _run(["merge-base", "--is-ancestor", branch, into], Path(path))
        return True
    except GitError:
        return False


def branch_name(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in key).strip(".-") or "task"
    return BRANCH_PREFIX + safe


def ignore_locally(repo: Path, pattern: str) -> None:
    """Add ``pattern`` to the repository's ``info/exclude`` (not to a tracked file)."""
    common = Path(_run(["rev-parse", "--git-common-dir"], Path(repo)).strip())
    if not common.is_absolute():
        common = Path(repo) / common
    exclude = common / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    if pattern not in text.splitlines():
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n")


@dataclass(frozen=True, slots=True)
class Worktree:
    path: Path
    branch: str | None
    head: str | None


def prune_worktrees(repo: Path) -> None:
    """Forget worktrees whose directory is gone. Not while another worktree is being added:
    git reads a half-made one as broken."""
    _run(["worktree", "prune"], Path(repo), check=False)


def list_worktrees(repo: Path) -> list[Worktree]:
    out = _run(["worktree", "list", "--porcelain"], Path(repo))
    found: list[Worktree] = []
    path: Path | None = None
    branch = sha = None
    for line in [*out.splitlines(), ""]:
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
        elif line.startswith("HEAD "):
            sha = line[5:]
        elif line.startswith("branch "):
            branch = line[len("branch ") :].removeprefix("refs/heads/")
        elif not line and path is not None:
            found.append(Worktree(path, branch, sha))
            path, branch, sha = None, None, None
    return found


def add_worktree(repo: Path, path: Path, branch: str, base: str) -> None:
    """A new worktree at ``path`` on ``branch``: the existing branch when there is one
    (its commits are the task's earlier work), else a new branch from ``base``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if branch_exists(repo, branch):
        _run(["worktree", "add", "-q", str(path), branch], Path(repo))
    else:
        _run(["worktree", "add", "-q", "-b", branch, str(path), base], Path(repo))


def remove_worktree(repo: Path, path: Path) -> None:
    _run(["worktree", "remove", "--force", str(path)], Path(repo))


def delete_branch(repo: Path, branch: str, *, merged_into: str) -> bool:
    """Delete ``branch`` only when ``merged_into`` contains all its commits."""
    if not is_merged(repo, branch, merged_into):
        return False
    _run(["branch", "-D", branch], Path(repo))
    return True


def rename_branch(repo: Path, branch: str, new: str) -> str:
    """Keep a branch's commits under another name (a retry starts from a fresh base)."""
    name, n = new, 1
    while branch_exists(repo, name):
        n += 1
        name = f"{new}-{n}"
    _run(["branch", "-m", branch, name], Path(repo))
    return name


@dataclass(slots=True)
class MergeResult:
    merged: bool
    before: str | None = None  # the integration branch's commit before the merge
    after: str | None = None
    conflict: bool = False
    output: str = ""


def merge_branch(
    repo: Path, branch: str, into: str, *, strategy: str, message: str, worktree: Path | None = None
) -> MergeResult:
    """Merge ``branch`` into ``into`` (checked out at ``repo``, which must be clean).

    ``merge``: ``git merge --no-ff``; a conflict is aborted. ``rebase``: the task branch is
    rebased onto ``into`` in its own worktree (a conflict is aborted there, the branch keeps
    its commits), then ``into`` is fast-forwarded."""
    repo = Path(repo)
    before = head(repo)
    if current_branch(repo) != into:
        return MergeResult(False, before, output=f"the project is not on the integration branch {into}")
    if strategy == "rebase":
        where = Path(worktree) if worktree is not None else repo
        proc = subprocess.run(
            ["git", "rebase", "-q", into, *([] if worktree is not None else [branch])],
            cwd=where, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **_identity_env(where)},
        )  # fmt: skip
        if proc.returncode != 0:
            _run(["rebase", "--abort"], where, check=False)
            return MergeResult(False, before, conflict=True, output=(proc.stdout + proc.stderr).strip())
        args = ["merge", "-q", "--ff-only", branch]
    else:
        args = ["merge", "-q", "--no-ff", "--no-edit", "-m", message, branch]
    proc = subprocess.run(
        ["git", *args], cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **_identity_env(repo)},
    )  # fmt: skip
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        _run(["merge", "--abort"], repo, check=False)
        if head(repo) != before and before is not None:
            _run(["reset", "-q", "--hard", before], repo)
        return MergeResult(False, before, conflict="CONFLICT" in output, output=output)
    return MergeResult(True, before, head(repo))


def undo_merge(repo: Path, before: str) -> None:
    """Put the integration branch back on ``before`` (after a failing post-merge check).
    Only for the integration checkout, which was clean before the merge."""
    _run(["reset", "-q", "--hard", before], Path(repo))
