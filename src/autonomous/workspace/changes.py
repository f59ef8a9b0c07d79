"""Task-scoped change sets: exactly the paths a task created, modified or deleted.

A user's project is rarely clean: an untracked ``.env`` holding a token, notes, the
tool's own untracked config. ``git add -A`` would sweep all of it into the task's commit.
So when a task is claimed the runner takes a :class:`TreeState` of the project (the
commit HEAD points at, plus the content of every path that differs from it: dirty tracked
files and untracked ones, ignored files and the tool's own folders left aside), and when
the task is recorded it takes another. The task's :class:`ChangeSet` is the paths whose
content differs between the two; the commit, ``require_changes`` and the note's "files
changed" all read that one set, and everything else stays exactly as it was.

Content is compared by git's own blob id (sha1 of ``blob <size>\\0<bytes>``) and file
mode, so a path whose content a task restored, or merely touched, is not a change, and a
file that was dirty before and edited again is. Outside a git repository the same
comparison runs over every file of the project (capped), so ``require_changes`` still
works there.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.workspace import git

# Never part of a task's change set: the tool's own files (config, state, logs, worktrees)
# and the initializer's marker.
TOOL_PATHS = (".ai-agents", ".project_state.json")
# Build and tool leftovers (the agent's test run, the verification commands) that are never
# a task's change while untracked: a project without a .gitignore must not get its
# ``__pycache__`` committed. Tracked files below them still count.
JUNK_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", "node_modules", ".venv", "venv"}
)
JUNK_SUFFIXES = (".pyc", ".pyo")
JUNK_NAMES = frozenset({".DS_Store", ".coverage"})
_TREE_FILE_CAP = 50_000
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileState:
    """What one path holds: git's blob id of its content and its mode (``None`` id: absent)."""

    blob: str | None
    mode: int = 0o100644

    @property
    def exists(self) -> bool:
        return self.blob is not None


ABSENT = FileState(None, 0)


@dataclass(slots=True)
class TreeState:
    """The project at one moment. ``files`` holds every path (relative to ``base``) whose
    content differs from ``head``; in a project without git, every file."""

    base: Path  # repository top level, or the project directory without git
    head: str | None
    files: dict[str, FileState]
    pathspec: tuple[str, ...] = ()  # the project part of the repository, minus the tool's folders
    in_git: bool = True


@dataclass(slots=True)
class ChangeSet:
    """The paths a task changed, relative to :attr:`base` (the repository's top level)."""

    base: Path
    created: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return sorted({*self.created, *self.modified, *self.deleted})

    def __bool__(self) -> bool:
        return bool(self.created or self.modified or self.deleted)

    def __len__(self) -> int:
        return len(self.paths)

    def _rel(self, path: Path) -> str | None:
        try:
            return Path(path).resolve().relative_to(self.base.resolve()).as_posix()
        except ValueError:
            return None

    def including(self, path: Path) -> ChangeSet:
        """This set plus a file the runner itself changed for the task (a ticked checklist)."""
        rel = self._rel(path)
        if rel is None or rel in self.paths:
            return self
        return ChangeSet(self.base, list(self.created), sorted([*self.modified, rel]), list(self.deleted))

    def excluding(self, path: Path) -> ChangeSet:
        """This set without ``path`` (a file that must stay out of the task's commit)."""
        rel = self._rel(path)
        keep = [p for p in self.created if p != rel], [p for p in self.modified if p != rel]
        return ChangeSet(self.base, keep[0], keep[1], [p for p in self.deleted if p != rel])

    def describe(self, limit: int = 30) -> str:
        """``a.py (new), b.py, c.py (deleted)``, capped at ``limit`` paths."""
        mark = {**{p: " (new)" for p in self.created}, **{p: " (deleted)" for p in self.deleted}}
        shown = [p + mark.get(p, "") for p in self.paths[:limit]]
        more = len(self) - limit
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def blob_id(path: Path) -> FileState:
    """The git blob id and mode of ``path`` as it is on disk now (ABSENT when it is not
    a file or a symlink). Streams the content, so a large file costs no memory."""
    try:
        st = os.lstat(path)
    except OSError:
        return ABSENT
    if stat.S_ISLNK(st.st_mode):
        target = os.fsencode(os.readlink(path))
        return FileState(hashlib.sha1(b"blob %d\0" % len(target) + target).hexdigest(), 0o120000)
    if not stat.S_ISREG(st.st_mode):
        return ABSENT
    digest = hashlib.sha1(b"blob %d\0" % st.st_size)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return ABSENT
    mode = 0o100755 if st.st_mode & stat.S_IXUSR else 0o100644
    return FileState(digest.hexdigest(), mode)


def project_pathspec(project_dir: Path, repo: Path, excludes: Iterable[str] = ()) -> tuple[str, ...]:
    """The project's part of the repository minus the tool's own paths and ``excludes``,
    as pathspecs relative to the repository's top level."""
    rel = Path(os.path.relpath(Path(project_dir).resolve(), Path(repo).resolve())).as_posix()
    prefix = "" if rel == "." else rel + "/"
    spec = [f":(top){rel}" if prefix else ":(top)"]
    for path in dict.fromkeys([*TOOL_PATHS, *excludes]):
        spec.append(f":(top,exclude){prefix}{path}")
    return tuple(spec)


def capture(project_dir: Path, excludes: Iterable[str] = ()) -> TreeState:
    """The project as it is now (see the module docstring)."""
    project_dir = Path(project_dir)
    if not git.is_repo(project_dir):
        return TreeState(project_dir, None, dict(_walk(project_dir, excludes)), in_git=False)
    repo = git.toplevel(project_dir)
    spec = project_pathspec(project_dir, repo, excludes)
    files = {
        path: blob_id(repo / path) for xy, path in git.status_paths(repo, spec) if not (xy == "??" and is_junk(path))
    }
    return TreeState(repo, git.head(repo), files, spec)


def is_junk(path: str) -> bool:
    """A build or tool leftover (see JUNK_DIRS)."""
    parts = path.split("/")
    return bool(JUNK_DIRS.intersection(parts[:-1])) or parts[-1] in JUNK_NAMES or parts[-1].endswith(JUNK_SUFFIXES)


def _walk(root: Path, excludes: Iterable[str]) -> Iterator[tuple[str, FileState]]:
    skip = {Path(e).as_posix().strip("/") for e in [*TOOL_PATHS, *excludes]}
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else Path(rel_dir).as_posix() + "/"
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and d not in JUNK_DIRS and rel_dir + d not in skip)
        for name in sorted(filenames):
            rel = rel_dir + name
            if rel in skip or is_junk(rel):
                continue
            yield rel, blob_id(Path(dirpath) / name)
            count += 1
            if count >= _TREE_FILE_CAP:
                return


def diff(before: TreeState, after: TreeState) -> ChangeSet:
    """The paths whose content differs between ``before`` and ``after``."""
    changes = ChangeSet(after.base)
    candidates = set(before.files) | set(after.files)
    if before.in_git and before.head != after.head:
        candidates |= set(git.changed_between(after.base, before.head, after.head, after.pathspec))
    if before.in_git:
        in_before_head = git.blobs_at(after.base, before.head, sorted(candidates - set(before.files)))
        in_after_head = (
            in_before_head
            if after.head == before.head
            else git.blobs_at(after.base, after.head, sorted(candidates - set(after.files)))
        )
    else:
        in_before_head = in_after_head = {}
    for path in sorted(candidates):
        old = before.files[path] if path in before.files else _committed(in_before_head.get(path))
        new = after.files[path] if path in after.files else _committed(in_after_head.get(path))
        if old == new:
            continue
        if not old.exists:
            changes.created.append(path)
        elif not new.exists:
            changes.deleted.append(path)
        else:
            changes.modified.append(path)
    return changes


def _committed(entry: tuple[int, str] | None) -> FileState:
    return ABSENT if entry is None else FileState(entry[1], entry[0])
