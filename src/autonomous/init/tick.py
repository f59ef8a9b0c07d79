"""Keeping an imported checklist in step: when a task from a Markdown ``tasks.md`` is done,
its box in the file is ticked, so the file a person reads says what the store says.

A tick is one character (``[ ]`` -> ``[x]``), and only on the line the task was imported
from, recognised by the hash of its text at import: a line someone edited since (or a
file rewritten under us) is left alone and the note says why. When the line moved (lines
added above it), the hash finds it again. The last sub-task of a Kiro group ticks the
group's box too. The runner calls :func:`tick_done` just before the task's commit and
adds :attr:`Tick.commit_path` to the task's change set; a file git does not track, or one
outside the project, is ticked on disk but never committed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.init.common import CHECKBOX, DONE_MARKS, OPEN_MARKS, line_sha
from autonomous.init.ledger import read_ledger
from autonomous.tasks import Task


@dataclass(slots=True)
class Tick:
    """What :func:`tick_done` did to the source file."""

    path: Path  # the source file
    lines: list[int] = field(default_factory=list)  # 1-based lines ticked now (the task's, then its group's)
    commit_path: Path | None = None  # the path to add to the task's commit; None: not to be committed
    note: str = ""  # one line for the task's note

    @property
    def ticked(self) -> bool:
        return bool(self.lines)


def tick_done(task: Task, project_dir: Path, state_dir: Path) -> Tick | None:
    """Tick the box of a finished task in its source file (``project_dir`` is where the
    task's work is committed: the project or the worker's worktree). None when the task
    did not come from a Markdown checklist."""
    ledger = read_ledger(state_dir)
    if not ledger or not ledger.get("checklist"):
        return None
    entry = ledger["tasks"].get(task.key)
    if not isinstance(entry, dict) or not entry.get("line"):
        return None
    source = Path(ledger["source"])
    path = source if source.is_absolute() else Path(project_dir) / source
    result = Tick(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        result.note = f"Source checklist not ticked: cannot read {source} ({exc})"
        return result
    lines = text.splitlines(keepends=True)
    index, state = _find(lines, entry["line"], entry["line_sha"])
    if state == "missing":
        result.note = f"Source checklist not ticked: the line of {task.key} in {source} was edited since init"
        return result
    if state == "open":
        lines[index] = _ticked(lines[index])
        result.lines.append(index + 1)
    group = ledger.get("groups", {}).get(entry.get("parent") or "")
    if isinstance(group, dict) and group.get("line") and _all_ticked(lines, ledger["tasks"], group["members"]):
        gindex, gstate = _find(lines, group["line"], group["line_sha"])
        if gstate == "open":
            lines[gindex] = _ticked(lines[gindex])
            result.lines.append(gindex + 1)
    if not result.lines:
        result.note = f"Source checklist: {task.key} was already ticked in {source}"
        return result
    _write(path, "".join(lines))
    where = ", ".join(str(n) for n in result.lines)
    if _committable(path, Path(project_dir)):
        result.commit_path = path
        result.note = f"Ticked {task.key} in {source} (line {where}), committed with the task"
    else:
        result.note = f"Ticked {task.key} in {source} (line {where}) on disk only: git does not track it here"
    return result


def _find(lines: list[str], line_no: int, sha: str) -> tuple[int, str]:
    """(index, "open" | "done" | "missing") of the task's line: the recorded line if its
    text is unchanged (or changed only by a tick), else the one line anywhere that is."""

    def state(i: int) -> str | None:
        raw = lines[i].rstrip("\r\n")
        if line_sha(raw) == sha:
            m = CHECKBOX.match(raw)
            return "done" if m and m["mark"] in DONE_MARKS else "open"
        m = CHECKBOX.match(raw)
        if m and m["mark"] in DONE_MARKS:
            start = m.start("mark")
            if any(line_sha(raw[:start] + c + raw[start + 1 :]) == sha for c in OPEN_MARKS):
                return "done"
        return None

    if 0 < line_no <= len(lines):
        found = state(line_no - 1)
        if found:
            return line_no - 1, found
    hits = [(i, s) for i in range(len(lines)) if (s := state(i))]
    return hits[0] if len(hits) == 1 else (-1, "missing")


def _ticked(line: str) -> str:
    m = CHECKBOX.match(line.rstrip("\r\n"))
    assert m is not None and len(m["mark"]) == 1
    return line[: m.start("mark")] + "x" + line[m.end("mark") :]


def _all_ticked(lines: list[str], tasks: dict, members: list[str]) -> bool:
    for key in members:
        entry = tasks.get(key)
        if not isinstance(entry, dict) or not entry.get("line"):
            return False
        if _find(lines, entry["line"], entry["line_sha"])[1] != "done":
            return False
    return True


def _write(path: Path, text: str) -> None:
    """Same bytes but the ticks, replaced atomically (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _committable(path: Path, project_dir: Path) -> bool:
    """Inside the project and tracked by git: then the tick belongs in the task's commit."""
    try:
        path.resolve().relative_to(project_dir.resolve())
    except ValueError:
        return False
    try:
        proc = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", str(path.resolve())],
            cwd=project_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
