"""The diff of a task's change set (and its diffstat), for the evidence and the review.

Only the change set's paths are diffed (against the commit the task started from), so a
user's other edits never reach the reviewer or the note. New files are diffed against
nothing (``git diff --no-index /dev/null``), which leaves the index untouched.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.workspace.changes import ChangeSet

_GIT_TIMEOUT = 60


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
    for path in change_set.created:
        if (base / path).is_file():
            chunks.append(_git(base, "diff", "--no-color", "--no-ext-diff", "--no-index", "--", "/dev/null", path))
    text = "".join(c if c.endswith("\n") or not c else c + "\n" for c in chunks)
    return TaskDiff(text, _stats(text))


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
