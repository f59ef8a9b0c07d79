"""beads ``.beads/issues.jsonl``: one JSON object per line, each parsed as JSON.

The mapping (docs/initializer.md has the table): ``id`` is the key; ``title``;
``description`` and ``design`` make the description; ``acceptance_criteria`` the
acceptance criteria (one per line); ``status`` open/in_progress -> todo, blocked,
closed -> done (canceled when its ``close_reason`` says so), deferred -> canceled;
``priority`` 0-4 (0 urgent .. 3 and 4 low); ``issue_type`` and ``labels`` are labels;
``dependencies`` of type ``blocks`` are dependencies, ``parent-child`` too (the parent,
an epic, waits for its children: it is done when they are), ``related`` and
``discovered-from`` are kept as references. Deleted issues (``tombstone``) are skipped.
Fields the task model has no place for are kept in the ledger.
"""

from __future__ import annotations

import json
from typing import Any

from autonomous.errors import SpecError
from autonomous.init.common import Imported, Source
from autonomous.tasks import NewTask, Priority, TaskStatus

STATUS = {
    "open": TaskStatus.TODO,
    "in_progress": TaskStatus.TODO,
    "hooked": TaskStatus.TODO,
    "pinned": TaskStatus.TODO,
    "blocked": TaskStatus.BLOCKED,
    "closed": TaskStatus.DONE,
    "deferred": TaskStatus.CANCELED,
}
EXPORT_STATUS = {
    TaskStatus.TODO: "open",
    TaskStatus.IN_PROGRESS: "in_progress",
    TaskStatus.BLOCKED: "blocked",
    TaskStatus.IN_REVIEW: "in_progress",  # beads has no review state: the work is not closed yet
    TaskStatus.DONE: "closed",
    TaskStatus.CANCELED: "closed",
}
CANCELED_REASON = "canceled"
PRIORITY = {0: Priority.URGENT, 1: Priority.HIGH, 2: Priority.NORMAL, 3: Priority.LOW, 4: Priority.LOW}
EXPORT_PRIORITY = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
_KNOWN = {"id", "title", "description", "design", "acceptance_criteria", "status", "priority", "issue_type",
          "labels", "dependencies"}  # fmt: skip
_CANCELED_WORDS = ("cancel", "wontfix", "won't fix", "not planned", "obsolete", "duplicate")


def looks_like(text: str) -> bool:
    for line in text.split("\n"):
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            return isinstance(obj, dict) and "id" in obj and "title" in obj
    return False


def parse(text: str) -> Imported:
    result = Imported("beads")
    rows: list[tuple[int, dict[str, Any]]] = []
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise SpecError(f"line {line_no}: not a JSON object ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(obj, dict):
            raise SpecError(f"line {line_no}: expected a JSON object, got {type(obj).__name__}")
        rows.append((line_no, obj))
    seen: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    pending: list[tuple[NewTask, TaskStatus, Source]] = []
    for line_no, obj in rows:
        key = obj.get("id")
        if not isinstance(key, str) or not key.strip():
            raise SpecError(f"line {line_no}: missing or invalid id {key!r}")
        key = key.strip()
        if not isinstance(obj.get("title"), str) or not obj["title"].strip():
            raise SpecError(f"line {line_no} ({key}): missing title")
        status_text = str(obj.get("status") or "open").strip().lower()
        if status_text == "tombstone":
            continue
        if key in seen:
            raise SpecError(f"duplicate id {key} on lines {seen[key]} and {line_no}")
        seen[key] = line_no
        status = STATUS.get(status_text)
        if status is None:
            raise SpecError(f"line {line_no} ({key}): unknown status {obj.get('status')!r}")
        reason = str(obj.get("close_reason") or "").lower()
        if status is TaskStatus.DONE and any(w in reason for w in _CANCELED_WORDS):
            status = TaskStatus.CANCELED
        priority = PRIORITY.get(obj.get("priority", 2)) if not isinstance(obj.get("priority"), bool) else None
        if priority is None:
            raise SpecError(f"line {line_no} ({key}): priority {obj.get('priority')!r} is not 0-4")
        fields: dict[str, Any] = {k: v for k, v in obj.items() if k not in _KNOWN}
        if status_text not in ("open", "blocked", "closed"):
            fields["status"] = status_text
        if obj.get("priority") == 4:
            fields["priority"] = 4
        labels = [str(x) for x in obj.get("labels") or [] if str(x).strip()]
        issue_type = str(obj.get("issue_type") or "").strip()
        if issue_type and issue_type != "task" and issue_type not in labels:  # "task" is beads' default
            labels.insert(0, issue_type)
        if issue_type:
            fields["issue_type"] = issue_type
        deps: list[str] = []
        refs: dict[str, list[str]] = {}
        for d in obj.get("dependencies") or []:
            if not isinstance(d, dict) or not isinstance(d.get("depends_on_id"), str):
                raise SpecError(f"line {line_no} ({key}): dependency {d!r} has no depends_on_id")
            kind = str(d.get("type") or "blocks")
            target = d["depends_on_id"]
            if kind == "blocks":
                deps.append(target)
            elif kind == "parent-child":
                children.setdefault(target, []).append(key)
            else:
                refs.setdefault(kind, []).append(target)
        if refs:
            fields["references"] = refs
        parts = [str(obj.get("description") or "").strip()]
        design = str(obj.get("design") or "").strip()
        if design:
            parts.append(f"Design:\n{design}")
        criteria = [c.strip(" -*\t") for c in str(obj.get("acceptance_criteria") or "").splitlines()]
        task = NewTask(
            title=obj["title"].strip(),
            key=key,
            description="\n\n".join(p for p in parts if p),
            acceptance_criteria=[c for c in criteria if c],
            priority=priority,
            labels=labels,
            dependencies=list(dict.fromkeys(deps)),
        )
        pending.append((task, status, Source(fields=fields)))
    for task, status, source in pending:
        for child in children.get(task.key, []):
            if child not in task.dependencies:
                task.dependencies.append(child)
        result.add(task, status=status, source=source)
    return result
