"""Task Master ``.taskmaster/tasks/tasks.json``: tagged (``{"master": {"tasks": [...]}}``,
chosen with ``--tag``) or legacy (``{"tasks": [...]}``).

The mapping (docs/initializer.md has the table): ``id`` is the key (``p.s`` for a
sub-task); ``title``; ``description`` and ``details`` make the description;
``testStrategy`` the test steps; ``priority`` high/medium/low; ``dependencies`` (ids of
tasks, and of sibling sub-tasks inside ``subtasks``); ``status``. A task with sub-tasks
is a group: its sub-tasks are the tasks, they inherit its dependencies and a dependency
on it means all of them. Titles carry no order key: Task Master orders by dependencies,
then priority, then id, which is what the scheduler does with such titles and the file's
order. Fields the task model has no place for are kept in the ledger.
"""

from __future__ import annotations

import json
from typing import Any

from autonomous.errors import SpecError
from autonomous.init.common import Group, Imported, Source, word_priority
from autonomous.tasks import NewTask, Priority, TaskStatus

STATUS = {
    "pending": TaskStatus.TODO,
    "in-progress": TaskStatus.TODO,  # someone began it; the runner takes it up again
    "review": TaskStatus.IN_REVIEW,  # finished work awaiting a person: not to be redone
    "blocked": TaskStatus.BLOCKED,
    "done": TaskStatus.DONE,
    "completed": TaskStatus.DONE,
    "deferred": TaskStatus.CANCELED,  # postponed: not taken, holds nobody up
    "cancelled": TaskStatus.CANCELED,
    "canceled": TaskStatus.CANCELED,
}
EXPORT_STATUS = {
    TaskStatus.TODO: "pending",
    TaskStatus.IN_PROGRESS: "in-progress",
    TaskStatus.BLOCKED: "blocked",
    TaskStatus.IN_REVIEW: "review",
    TaskStatus.DONE: "done",
    TaskStatus.CANCELED: "cancelled",
}
_KNOWN = {"id", "title", "description", "details", "testStrategy", "priority", "dependencies", "status", "subtasks"}


def looks_like(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("tasks"), list):
        return True
    return bool(data) and all(isinstance(v, dict) and isinstance(v.get("tasks"), list) for v in data.values())


def parse(text: str, *, tag: str | None = None) -> Imported:
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise SpecError(f"line {line}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not looks_like(data):
        raise SpecError('not a Task Master file: expected {"tasks": [...]} or {"<tag>": {"tasks": [...]}}')
    result = Imported("taskmaster")
    if isinstance(data.get("tasks"), list):
        if tag not in (None, "master"):
            raise SpecError(f"--tag {tag}: this is a legacy Task Master file without tags")
        tasks = data["tasks"]
    else:
        if tag is None:
            tag = "master" if "master" in data else next(iter(data)) if len(data) == 1 else None
            if tag is None:
                raise SpecError(f"the file has several tags ({', '.join(data)}); choose one with --tag")
        if tag not in data:
            raise SpecError(f"--tag {tag}: no such tag (the file has {', '.join(data)})")
        tasks = data[tag]["tasks"]
        meta = data[tag].get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("description"), str):
            result.title = meta["description"] or None
    result.title = result.title or (tag if tag and tag != "master" else None)

    groups: dict[str, list[str]] = {}
    group_deps: dict[str, list[str]] = {}
    pending: list[tuple[NewTask, TaskStatus, Source, str]] = []
    for i, raw in enumerate(tasks):
        where = f"tasks[{i}]"
        key = _id(raw, where)
        subtasks = raw.get("subtasks") or []
        if not isinstance(subtasks, list):
            raise SpecError(f"{where} ({key}): subtasks is not a list")
        deps = [_ref(d, where) for d in raw.get("dependencies") or []]
        if subtasks:
            groups[key] = []
            group_deps[key] = deps
            result.groups[key] = Group(
                key, str(raw.get("title", "")), fields={k: v for k, v in raw.items() if k != "subtasks"}
            )
            for j, sub in enumerate(subtasks):
                swhere = f"{where}.subtasks[{j}]"
                sid = _id(sub, swhere)
                skey = sid if "." in sid else f"{key}.{sid}"
                sdeps = [_sub_ref(d, key, swhere) for d in sub.get("dependencies") or []]
                task, status, source = _task(sub, skey, sdeps, swhere, parent=raw)
                source.parent = key
                groups[key].append(skey)
                result.groups[key].members.append(skey)
                pending.append((task, status, source, key))
        else:
            task, status, source = _task(raw, key, deps, where)
            pending.append((task, status, source, ""))
    for task, status, source, parent in pending:
        if parent:
            task.dependencies = group_deps[parent] + task.dependencies
        expanded: list[str] = []
        for d in task.dependencies:
            expanded += groups.get(d, [d])
        task.dependencies = list(dict.fromkeys(d for d in expanded if d != task.key))
        result.add(task, phase=f"{parent}. {result.groups[parent].title}" if parent else "", status=status,
                   source=source)  # fmt: skip
    return result


def _id(raw: Any, where: str) -> str:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object, got {type(raw).__name__}")
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise SpecError(f"{where}: missing or invalid id {value!r}")
    if not isinstance(raw.get("title"), str) or not raw["title"].strip():
        raise SpecError(f"{where} ({value}): missing title")
    return str(value).strip()


def _ref(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise SpecError(f"{where}: dependency {value!r} is not a task id")
    return str(value).strip()


def _sub_ref(value: Any, parent: str, where: str) -> str:
    """A sub-task's dependency: a bare number is a sibling sub-task, ``p.s`` is a full id."""
    text = _ref(value, where)
    return text if "." in text else f"{parent}.{text}"


def _task(
    raw: dict, key: str, deps: list[str], where: str, parent: dict | None = None
) -> tuple[NewTask, TaskStatus, Source]:
    status_text = str(raw.get("status") or "pending").strip().lower()
    status = STATUS.get(status_text)
    fields: dict[str, Any] = {k: v for k, v in raw.items() if k not in _KNOWN}
    if status is None:
        raise SpecError(f"{where} ({key}): unknown status {raw.get('status')!r} (expected {', '.join(STATUS)})")
    if status_text not in ("pending", "done", "blocked", "cancelled"):
        fields["status"] = status_text  # what EXPORT_STATUS cannot say back
    priority = word_priority(raw.get("priority")) if raw.get("priority") is not None else None
    if raw.get("priority") is not None and priority is None:
        raise SpecError(f"{where} ({key}): unknown priority {raw.get('priority')!r} (expected high, medium, low)")
    if priority is None and parent is not None:
        priority = word_priority(parent.get("priority"))
    parts = [str(raw.get("description") or "").strip(), str(raw.get("details") or "").strip()]
    if str(raw.get("description") or "").strip() and str(raw.get("details") or "").strip():
        fields["split"] = len(parts[0])  # where description ends and details begin, for export
    steps = [s.strip(" -*\t") for s in str(raw.get("testStrategy") or "").splitlines() if s.strip(" -*\t")]
    task = NewTask(
        title=raw["title"].strip(),
        key=key,
        description="\n\n".join(p for p in parts if p),
        test_steps=steps,
        priority=priority or Priority.NORMAL,
        dependencies=list(dict.fromkeys(deps)),
    )
    return task, status, Source(fields=fields)
