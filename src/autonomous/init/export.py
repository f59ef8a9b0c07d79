"""``autonomous export --format taskmaster|beads|speckit``: the project's tasks written in
another tool's format, so a project can move between tools. Importing the result gives
the same tasks back (a property test holds the exporters and importers to that).

Each format says what it can: Spec Kit has no blocked or canceled (blocked is written
``[ ]``, canceled ``[x]``) and no test steps (a description is the task line and the
indented lines under it);
Task Master has no acceptance criteria and no labels; beads has no test steps. The
fields an import kept in the ledger (Task Master's ``complexity``, beads' ``assignee``
...) are written back when the tasks came from that format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from autonomous.init import beads, taskmaster
from autonomous.init.common import PARALLEL_LABEL, plain_title, sequence
from autonomous.init.speckit import TASK_ID
from autonomous.init.structured import parse_priority
from autonomous.tasks import Priority, Task, TaskStatus, TitleKind, parse_title

EXPORTS = ("taskmaster", "beads", "speckit")


def export(tasks: Sequence[Task], fmt: str, *, project_name: str = "", ledger: dict[str, Any] | None = None) -> str:
    """``tasks`` (in scheduling order, META left out) as the text of a ``fmt`` file."""
    fields: dict[str, dict[str, Any]] = {}
    if ledger and ledger.get("format") == fmt:
        fields = {k: v.get("fields", {}) for k, v in ledger.get("tasks", {}).items() if isinstance(v, dict)}
    if fmt == "taskmaster":
        return _taskmaster(tasks, project_name, fields)
    if fmt == "beads":
        return _beads(tasks, fields)
    if fmt == "speckit":
        phases = {k: v.get("phase", "") for k, v in (ledger or {}).get("tasks", {}).items() if isinstance(v, dict)}
        return _speckit(tasks, project_name, phases)
    raise ValueError(f"unknown export format {fmt!r}")


# -- Task Master -------------------------------------------------------------------------------

_TM_PRIORITY = {Priority.URGENT: "critical", Priority.HIGH: "high", Priority.NORMAL: "medium", Priority.LOW: "low"}


def _taskmaster(tasks: Sequence[Task], project_name: str, fields: dict[str, dict[str, Any]]) -> str:
    numeric = all(t.key.isdigit() for t in tasks) and len({t.key for t in tasks}) == len(tasks)
    ids = {t.id: int(t.key) if numeric else n for n, t in enumerate(tasks, 1)}
    out = []
    for t in tasks:
        extra = dict(fields.get(t.key, {}))
        split = extra.pop("split", None)
        source_status = extra.pop("status", None)
        status = taskmaster.EXPORT_STATUS[t.status]
        if source_status and taskmaster.STATUS.get(source_status) is t.status:
            status = source_status
        description, details = t.description, ""
        if isinstance(split, int) and t.description[split : split + 2] == "\n\n":
            description, details = t.description[:split], t.description[split + 2 :]
        out.append(
            {
                "id": ids[t.id],
                "title": t.title,
                "description": description,
                "details": details,
                "testStrategy": "\n".join(t.test_steps),
                "priority": _TM_PRIORITY[t.priority],
                "dependencies": [ids[d] for d in t.dependencies if d in ids],
                "status": status,
                "subtasks": [],
                **extra,
            }
        )
    now = datetime.now(UTC).isoformat()
    meta = {"created": now, "updated": now, "description": project_name}
    return json.dumps({"master": {"tasks": out, "metadata": meta}}, indent=2, ensure_ascii=False) + "\n"


# -- beads --------------------------------------------------------------------------------------

_BEADS_TYPES = ("bug", "feature", "epic", "chore")  # "task", the default, is no label


def _beads(tasks: Sequence[Task], fields: dict[str, dict[str, Any]]) -> str:
    keys = {t.id: t.key for t in tasks}
    lines = []
    for t in tasks:
        extra = dict(fields.get(t.key, {}))
        source_status = extra.pop("status", None)
        priority = extra.pop("priority", None)
        issue_type = extra.pop("issue_type", None)
        extra.pop("references", None)
        labels = list(t.labels)
        if labels and labels[0] in _BEADS_TYPES and issue_type in (None, labels[0]):
            issue_type = labels.pop(0)  # the importer makes the type the first label
        status = beads.EXPORT_STATUS[t.status]
        if source_status and beads.STATUS.get(source_status) is t.status:
            status = source_status
        row: dict[str, Any] = {
            "id": t.key,
            "title": t.title,
            "description": t.description,
            "acceptance_criteria": "\n".join(t.acceptance_criteria),
            "status": status,
            "priority": priority if priority == 4 and t.priority is Priority.LOW else beads.EXPORT_PRIORITY[t.priority],
            "issue_type": issue_type or "task",
            "labels": labels,
            "dependencies": [
                {"issue_id": t.key, "depends_on_id": keys[d], "type": "blocks"} for d in t.dependencies if d in keys
            ],
            "created_at": t.created_at.isoformat(),
            "updated_at": t.updated_at.isoformat(),
            **extra,
        }
        if t.status is TaskStatus.CANCELED:
            row["close_reason"] = beads.CANCELED_REASON
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


# -- Spec Kit -----------------------------------------------------------------------------------

_SK_PRIORITY = {Priority.URGENT: "P0", Priority.HIGH: "P1", Priority.LOW: "P3"}
_MARKER_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")


def _speckit(tasks: Sequence[Task], project_name: str, phase_names: dict[str, str]) -> str:
    if all(TASK_ID.match(t.key) for t in tasks) and len({t.key for t in tasks}) == len(tasks):
        ids = {t.id: t.key for t in tasks}
    else:
        width = max(3, len(str(len(tasks))))
        ids = {t.id: f"T{n:0{width}d}" for n, t in enumerate(tasks, 1)}
    phases: dict[int, list[Task]] = {}
    for t in tasks:
        tk = parse_title(t.title)
        phases.setdefault(tk.phase if tk.kind is TitleKind.PHASED and tk.phase else 1, []).append(t)
    lines = [f"# Tasks: {project_name or 'project'}", ""]
    for n, (_phase, members) in enumerate(sorted(phases.items()), 1):
        name = next((phase_names[t.key] for t in members if phase_names.get(t.key)), "")
        name = name.split(":", 1)[1].strip() if name.lower().startswith("phase") and ":" in name else name
        prios = {t.priority for t in members}
        written = _STRIP_PRIORITY.search(name)
        if not (written and len(prios) == 1 and parse_priority(written["p"]) in prios):
            name = _STRIP_PRIORITY.sub("", name).strip() or f"Tasks {n}"  # the story's priority changed: say the new
            if len(prios) == 1 and (p := _SK_PRIORITY.get(next(iter(prios)))):
                name += f" (Priority: {p})"
        lines += [f"## Phase {n}: {name}", ""]
        implied = sequence([t.id for t in members], [PARALLEL_LABEL in t.labels for t in members])
        for t in members:
            box = "x" if t.status in (TaskStatus.DONE, TaskStatus.CANCELED) else " "
            markers = ["[P]"] if PARALLEL_LABEL in t.labels else []
            markers += [f"[{lb}]" for lb in t.labels if lb != PARALLEL_LABEL and _MARKER_OK.match(lb)]
            waits = set(implied.get(t.id, ()))
            deps = [ids[d] for d in t.dependencies if d in ids and d not in waits]
            text = " ".join([f"- [{box}] {ids[t.id]}", *markers, plain_title(t.title)])
            if deps:
                text += f" (depends on {', '.join(deps)})"
            lines.append(text)
            first, _, more = t.description.partition("\n")
            if first == plain_title(t.title):  # lines under the task line: the rest of its description
                lines += [f"  - {line}" for line in more.split("\n") if line.strip()]
        for criterion in members[-1].acceptance_criteria:
            lines += ["", f"**Checkpoint**: {criterion}"]
        lines.append("")
    return "\n".join(lines)


_STRIP_PRIORITY = re.compile(r"\s*\(\s*Priority\s*:\s*(?P<p>P\d)\s*\)", re.I)
