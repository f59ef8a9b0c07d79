"""What every imported format shares: the result of an import, the per-task source record
(the *ledger*), Markdown scanning that skips what is not content, and the order rule
that turns "these may run in parallel" into explicit dependencies.

An import never calls a model: the file already says what the tasks are, so reading it
exactly is both free and faithful.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from autonomous.tasks import NewTask, Priority, TaskStatus

FORMATS = ("speckit", "kiro", "taskmaster", "beads", "autonomous")
IMPORTED = ("speckit", "kiro", "taskmaster", "beads")

OPTIONAL_LABEL = "optional"
PARALLEL_LABEL = "parallel"


@dataclass(slots=True)
class SpecTask:
    """A task as the spec states it: the provider's :class:`NewTask` plus where it came from."""

    task: NewTask
    phase: str = ""  # the heading it sits under, e.g. "Phase 1: Core Authentication"
    line: int = 0  # 1-based line of the task in the spec (0 for model output)

    @property
    def key(self) -> str:
        return self.task.key

    def to_dict(self) -> dict:
        t = self.task
        return {
            "key": t.key,
            "title": t.title,
            "description": t.description,
            "acceptance_criteria": list(t.acceptance_criteria),
            "test_steps": list(t.test_steps),
            "priority": t.priority.value,
            "labels": list(t.labels),
            "dependencies": list(t.dependencies),
            "phase": self.phase,
        }


@dataclass(slots=True)
class Source:
    """Where a task came from, and what is kept about it that the task model has no field
    for (``fields``: the source's unknown or format-only fields, never dropped)."""

    line: int = 0  # 1-based line of a Markdown task (0 for JSON formats)
    line_sha: str = ""  # sha256 of that line as imported: the guard of the checkbox tick
    parent: str = ""  # key of the group it belongs to (Kiro / Task Master parent)
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.line:
            out["line"], out["line_sha"] = self.line, self.line_sha
        if self.parent:
            out["parent"] = self.parent
        if self.fields:
            out["fields"] = self.fields
        return out


@dataclass(slots=True)
class Group:
    """A parent with sub-tasks: not a task of its own, done when its sub-tasks are."""

    key: str
    title: str
    line: int = 0
    line_sha: str = ""
    members: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # the parent's own fields (Task Master)

    def to_dict(self) -> dict[str, Any]:
        out = {"title": self.title, "line": self.line, "line_sha": self.line_sha, "members": list(self.members)}
        return {**out, "fields": self.fields} if self.fields else out


@dataclass(slots=True)
class Imported:
    """An imported task list: tasks in file order with the status the file gives each,
    and the ledger (sources, groups) that keeps the file in step later."""

    format: str
    title: str | None = None
    tasks: list[SpecTask] = field(default_factory=list)
    statuses: dict[str, TaskStatus] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    checklist: bool = False  # a Markdown checklist whose boxes are ticked as tasks finish

    def add(self, task: NewTask, *, phase: str = "", line: int = 0, status: TaskStatus = TaskStatus.TODO,
            source: Source | None = None) -> None:  # fmt: skip
        self.tasks.append(SpecTask(task=task, phase=phase, line=line))
        self.statuses[task.key] = status
        self.sources[task.key] = source or Source(line=line)

    def ledger(self, source_path: str) -> dict[str, Any]:
        """The JSON the initializer stores beside the task store (see :mod:`autonomous.init.ledger`)."""
        return {
            "schema_version": 1,
            "format": self.format,
            "source": source_path,
            "checklist": self.checklist,
            "tasks": {st.key: {**self.sources[st.key].to_dict(), "phase": st.phase} for st in self.tasks},
            "groups": {k: g.to_dict() for k, g in self.groups.items()},
        }


def line_sha(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


# -- Markdown ----------------------------------------------------------------------------------

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")  # opens or closes a code block
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")  # an ATX heading: its marks, its text


def content_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based number, line) of the lines that are Markdown content: YAML front matter,
    code fences and HTML comments are skipped (a task line shown as an example inside
    them is not a task). A line that is partly comment keeps its other part."""
    lines = text.split("\n")
    start = 0
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                start = i + 1
                break
    fence: str | None = None
    in_comment = False
    for i in range(start, len(lines)):
        raw = lines[i]
        if fence is not None:
            m = FENCE.match(raw)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not raw.strip()[len(m.group(1)) :]:
                fence = None
            continue
        if not in_comment:
            m = FENCE.match(raw)
            if m:
                fence = m.group(1)
                continue
        if in_comment or "<!--" in raw:
            raw, in_comment = _strip_comments(raw, in_comment)
            if not raw.strip():
                continue
        yield i + 1, raw


def _strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    out = []
    pos = 0
    while pos < len(line):
        if in_comment:
            end = line.find("-->", pos)
            if end == -1:
                return "".join(out), True
            pos, in_comment = end + 3, False
        else:
            start = line.find("<!--", pos)
            if start == -1:
                out.append(line[pos:])
                break
            out.append(line[pos:start])
            pos, in_comment = start + 4, True
    return "".join(out), in_comment


# A checkbox item: "- [ ] rest", with Kiro's optional star ("- [ ]*", "- [ ]\*").
CHECKBOX = re.compile(r"^(?P<indent>[ \t]*)[-*+]\s+\[(?P<mark>[^\]]?)\](?P<star>\\?\*)?(?:\s+|$)(?P<rest>.*)$")
DONE_MARKS = frozenset("xX")
OPEN_MARKS = frozenset(" -~/")  # in progress ("[-]", "[~]", "[/]") is still open work


def is_box(mark: str) -> bool:
    """Whether ``[mark]`` is a checkbox some tool writes (``[P]`` starting a line is prose)."""
    return mark in DONE_MARKS or mark in OPEN_MARKS or mark == ""


def checkbox_status(mark: str, line_no: int) -> TaskStatus:
    """The status a checkbox mark says; SpecError for a mark no tool writes."""
    from autonomous.errors import SpecError

    if mark in DONE_MARKS:
        return TaskStatus.DONE
    if mark in OPEN_MARKS or mark == "":
        return TaskStatus.TODO
    raise SpecError(f"line {line_no}: checkbox [{mark}] is not [ ], [x] or [-]")


# -- order -------------------------------------------------------------------------------------


def sequence(keys: list[str], parallel: list[bool]) -> dict[str, list[str]]:
    """The dependencies that keep a run of tasks in file order, except that consecutive
    tasks marked parallel form one step: each runs beside the others of its step, after
    the step before it. Returns key -> the keys it waits for (empty lists left out)."""
    out: dict[str, list[str]] = {}
    previous: list[str] = []  # the step before the current one
    step: list[str] = []  # the current step
    step_parallel = False
    for key, par in zip(keys, parallel, strict=True):
        if step and par and step_parallel:
            step.append(key)
        else:
            if step:
                previous = step
            step, step_parallel = [key], par
        if previous:
            out[key] = list(previous)
    return out


def add_dependencies(task: NewTask, keys: list[str]) -> None:
    for k in keys:
        if k != task.key and k not in task.dependencies:
            task.dependencies.append(k)


_PRIORITY_WORDS = {
    "critical": Priority.URGENT,
    "urgent": Priority.URGENT,
    "high": Priority.HIGH,
    "medium": Priority.NORMAL,
    "normal": Priority.NORMAL,
    "low": Priority.LOW,
}


def word_priority(value: Any) -> Priority | None:
    return _PRIORITY_WORDS.get(str(value).strip().lower()) if value is not None else None


def phased_title(phase: int, number: int, text: str) -> str:
    """``"2.3: text"``: the title key the scheduler orders by (phase, then number)."""
    return f"{phase}.{number}: {text}"


_PHASED_PREFIX = re.compile(r"^\d+\.\d+[a-z]?:\s*")


def plain_title(title: str) -> str:
    """A title without the ``2.3:`` order key an import put in front of it."""
    return _PHASED_PREFIX.sub("", title, count=1)
