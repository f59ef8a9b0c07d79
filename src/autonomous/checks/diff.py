"""The diff of a task's change set (and its diffstat), for the evidence and the review.

Only the change set's paths are diffed (against the commit the task started from), so a
user's other edits never reach the reviewer or the note. New files are read and shown as
added whole (as ``git diff --no-index /dev/null FILE`` would), which leaves the index untouched.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.workspace.changes import ChangeSet

_GIT_TIMEOUT = 60
_NEW_FILE_CAP = 1_000_000  # bytes of a created file read for its diff


@dataclass(slots=True)
class TaskDiff:
    text: str = ""
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (added, removed)

    def diffstat(self, change_set: ChangeSet, limit: int = 20) -> str:
        """``3 files, +12 -4: a.py (new, +10), b.py (+2 -4), c.py (deleted)``."""
        paths = change_set.paths
        if not paths:
            return "no files changed"
        added = sum(a for a, _ in self.stats.values())
        removed = sum(r for _, r in self.stats.values())
        parts = []
        for path in paths[:limit]:
            a, r = self.stats.get(path, (0, 0))
            tags = ["new"] if path in change_set.created else ["deleted"] if path in change_set.deleted else []
            tags += [t for t in (f"+{a}" if a else "", f"-{r}" if r else "") if t]
            parts.append(path + (f" ({', '.join(tags)})" if tags else ""))
        more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
        files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        return f"{files}, +{added} -{removed}: " + ", ".join(parts) + more


def _git(base: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=base, capture_output=True, text=True, errors="replace", timeout=_GIT_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout  # git diff --no-index exits 1 when the files differ


def task_diff(change_set: ChangeSet, head: str | None) -> TaskDiff:
    """The unified diff of the change set against ``head`` (the commit the task started from)."""
    base = change_set.base
    chunks: list[str] = []
    tracked = [p for p in change_set.paths if p not in change_set.created]
    if head and tracked:
        chunks.append(_git(base, "diff", "--no-color", "--no-ext-diff", head, "--", *tracked))
    chunks += [_new_file(base, path) for path in change_set.created if (base / path).is_file()]
    text = "".join(c if c.endswith("\n") or not c else c + "\n" for c in chunks)
    return TaskDiff(text, _stats(text))


def _new_file(base: Path, path: str) -> str:
    """A created file as a diff against nothing (what ``git diff --no-index /dev/null`` prints,
    without a process per file)."""
    data = (base / path).read_bytes()[:_NEW_FILE_CAP]
    head = f"diff --git a/{path} b/{path}\nnew file\n"
    if b"\0" in data:
        return head + f"Binary files /dev/null and b/{path} differ\n"
    lines = data.decode("utf-8", "replace").splitlines()
    return head + f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines)


def _stats(text: str) -> dict[str, tuple[int, int]]:
    stats: dict[str, list[int]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current = None
        elif line.startswith("+++ ") or line.startswith("--- "):
            name = line[4:].strip()
            if name != "/dev/null":
                current = name[2:] if name[:2] in ("a/", "b/") else name
                stats.setdefault(current, [0, 0])
        elif current is not None and line.startswith("+"):
            stats[current][0] += 1
        elif current is not None and line.startswith("-"):
            stats[current][1] += 1
    return {path: (a, r) for path, (a, r) in stats.items()}
