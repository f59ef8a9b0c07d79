"""A small wrapper around the ``git`` command: what the runner needs to record each
task's work as its own commit.

Rules it keeps, because the repository is someone's real work:

* it only ever stages and commits paths inside the project directory (a pathspec of
  ``.`` run from there), so files elsewhere in an enclosing repository are untouched;
* ``.gitignore`` is respected (``git add -A`` never adds ignored files), and the runner's
  own runtime folders (state, logs) are excluded explicitly;
* it never pushes, rebases, resets, stashes or checks anything out;
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

from autonomous.errors import AutonomousError

# Runtime folders of the tool itself: never part of a task's commit.
RUNTIME_EXCLUDES = (".ai-agents/state", ".ai-agents/logs")
_TIMEOUT = 120.0


class GitError(AutonomousError):
    """A git command failed; the message carries its stderr."""


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
