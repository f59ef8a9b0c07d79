"""How a task is written on a Linear issue and read back (the mapping the package docstring
describes): status by workflow-state type and labels, priority, the description with its
sections and hidden marker, and the claim log kept in comments. Pure functions over
GraphQL nodes: no requests here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autonomous.providers.base import iso_time as _ts
from autonomous.providers.base import parse_time as _dt
from autonomous.tasks import Claim, Note, Priority, Task, TaskStatus, derive_key

BLOCKED_LABEL = "blocked"
REVIEW_LABEL = "in-review"  # in_review on a team without an "In Review" state


TYPE_TO_STATUS = {
    "triage": TaskStatus.TODO,
    "backlog": TaskStatus.TODO,
    "unstarted": TaskStatus.TODO,
    "started": TaskStatus.IN_PROGRESS,
    "completed": TaskStatus.DONE,
    "canceled": TaskStatus.CANCELED,
}
# state types to write for a status, in order of preference
STATUS_TO_TYPES = {
    TaskStatus.TODO: ("unstarted", "backlog", "triage"),
    TaskStatus.BLOCKED: ("unstarted", "backlog", "triage"),
    TaskStatus.IN_PROGRESS: ("started",),
    TaskStatus.IN_REVIEW: ("started",),
    TaskStatus.DONE: ("completed",),
    TaskStatus.CANCELED: ("canceled",),
}
PRIORITY_TO_LINEAR = {Priority.URGENT: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 4}
_LINEAR_TO_PRIORITY = {1: Priority.URGENT, 2: Priority.HIGH, 3: Priority.NORMAL, 4: Priority.LOW}


def priority_from_linear(value: float | int | None) -> Priority:
    """Linear's 0 ("no priority") and anything unknown read as low: they sort last."""
    return _LINEAR_TO_PRIORITY.get(int(value or 0), Priority.LOW)


def status_from_state_type(state_type: str, labels: Iterable[str] = (), *, in_review_state: bool = False) -> TaskStatus:
    """``in_review_state``: the issue is in the team's "In Review" state (see the module docstring)."""
    status = TYPE_TO_STATUS.get(state_type, TaskStatus.TODO)
    labels = set(labels)
    if status is TaskStatus.TODO and BLOCKED_LABEL in labels:
        return TaskStatus.BLOCKED
    if status is TaskStatus.IN_PROGRESS and (in_review_state or REVIEW_LABEL in labels):
        return TaskStatus.IN_REVIEW
    return status


def review_state(states: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The team's state for in_review: its first started state named like "In Review"."""
    return next((s for s in states if s["type"] == "started" and "review" in s.get("name", "").lower()), None)


# -- the description: text, sections, hidden marker -------------------------------------------

_MARKER = re.compile(r"\n*<!-- autonomous (\{.*?\}) -->\s*$", re.S)
_CRITERIA = "## Acceptance criteria"
_STEPS = "## Test steps"
_ITEM = re.compile(r"^(?:[-*+]\s+(?:\[[ xX]\]\s+)?|\d+[.)]\s+)")


def render_description(description: str, criteria: Sequence[str], steps: Sequence[str], marker: dict[str, Any]) -> str:
    parts = [description] if description else []
    if criteria:
        parts.append(_CRITERIA + "\n" + "\n".join("- " + _indent(c) for c in criteria))
    if steps:
        parts.append(_STEPS + "\n" + "\n".join(f"{i}. " + _indent(s) for i, s in enumerate(steps, 1)))
    blob = json.dumps(marker, sort_keys=True, separators=(",", ":")).replace(">", "\\u003e").replace("<", "\\u003c")
    parts.append(f"<!-- autonomous {blob} -->")
    return "\n\n".join(parts)


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")


def parse_description(text: str | None) -> tuple[str, list[str], list[str], dict[str, Any]]:
    """(description, acceptance criteria, test steps, marker) from an issue description."""
    text = text or ""
    marker: dict[str, Any] = {}
    m = _MARKER.search(text)
    if m:
        try:
            marker = json.loads(m.group(1))
        except ValueError:
            marker = {}
        text = text[: m.start()]
    sections: dict[str, list[str]] = {}
    for heading in (_STEPS, _CRITERIA):  # the sections are last, steps after criteria
        at = text.rfind("\n\n" + heading + "\n")
        start = at + 2 if at >= 0 else (0 if text.startswith(heading + "\n") else -1)
        if start >= 0:
            body = text[start + len(heading) + 1 :]
            sections[heading] = _items(body)
            text = text[: max(at, 0)]
    return text, sections.get(_CRITERIA, []), sections.get(_STEPS, []), marker


def _items(body: str) -> list[str]:
    items: list[str] = []
    for line in body.split("\n"):
        m = _ITEM.match(line)
        if m:
            items.append(line[m.end() :])
        elif items and line.startswith("   "):
            items[-1] += "\n" + line[3:]
        elif items and line.strip():
            items[-1] += "\n" + line.strip()
    return items


# -- the claim log in comments ------------------------------------------------------------------

_ENTRY = re.compile(r"\Aautonomous:(claim|released|fence|note)((?: \w+=`[^`\n]*`)*)[ \t]*(?:\n\n(.*))?\Z", re.S)
_FIELD = re.compile(r"(\w+)=`([^`\n]*)`")


def _tick(value: object) -> str:
    return "`" + str(value).replace("`", "'").replace("\n", " ") + "`"


def entry_body(kind: str, text: str | None = None, **fields: object) -> str:
    head = "autonomous:" + kind + "".join(f" {k}={_tick(v)}" for k, v in fields.items())
    return head + ("\n\n" + text if text is not None else "")


@dataclass(slots=True)
class Entry:
    comment_id: str
    kind: str  # claim, released, fence, note, or "" for a person's comment
    fields: dict[str, str]
    text: str | None
    created_at: datetime
    author: str

    @property
    def token(self) -> int:
        try:
            return int(self.fields.get("token", "0"))
        except ValueError:
            return 0


def parse_entry(node: dict[str, Any]) -> Entry:
    body = node.get("body") or ""
    created = _dt(node["createdAt"])
    user = (node.get("user") or {}).get("name") or "linear"
    m = _ENTRY.match(body)
    if not m:
        return Entry(node["id"], "", {}, body, created, user)
    fields = dict(_FIELD.findall(m.group(2)))
    return Entry(node["id"], m.group(1), fields, m.group(3), created, fields.get("author") or fields.get("by") or user)


@dataclass(slots=True)
class ClaimState:
    fence: int  # the highest token in the log
    claim: Claim | None  # the live-or-lapsed claim holding the highest token, if not ended
    entry: Entry | None  # its claim entry


def claim_state_of(entries: Sequence[Entry]) -> ClaimState:
    tokened = [e for e in entries if e.kind in ("claim", "released", "fence")]
    if not tokened:
        return ClaimState(0, None, None)
    top = max(e.token for e in tokened)
    at_top = [e for e in tokened if e.token == top]
    claims = [e for e in at_top if e.kind == "claim"]
    ended = any(e.kind in ("released", "fence") for e in at_top)
    if not claims or ended:
        return ClaimState(top, None, None)
    winner = claims[0]  # entries are in (createdAt, id) order: the earliest wins
    try:
        expires = _dt(winner.fields["until"])
    except (KeyError, ValueError):
        return ClaimState(top, None, None)
    return ClaimState(top, Claim(winner.fields.get("worker", "?"), expires, top), winner)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}-\d+$")


def is_issue_id(text: str) -> bool:
    """An issue's UUID or identifier (``ENG-12``): anything else is no task, asked or not."""
    return bool(_UUID.match(text) or _IDENTIFIER.match(text))


@dataclass(slots=True)
class Issue:
    """An issue as read, with what the write paths need beside the task."""

    task: Task
    state_id: str
    state_type: str
    label_ids: dict[str, str]  # name -> id, including "blocked"
    relation_ids: dict[str, str]  # dependency task id -> relation id
    entries: list[Entry]
    marker: dict[str, Any]
    updated_at: str
    claim_state: ClaimState


def marker_of(issue: Issue, **changes: Any) -> dict[str, Any]:
    """The issue's hidden marker with ``changes``; empty values drop out."""
    marker = dict(issue.marker)
    marker.setdefault("key", issue.task.key)
    marker.setdefault("created", _ts(issue.task.created_at))
    marker.update(changes)
    return {k: v for k, v in marker.items() if v not in (None, [], "")}


def description_of(issue: Issue, marker: dict[str, Any], **fields: Any) -> str:
    """The issue's description rewritten with ``marker`` and any changed ``fields``."""
    task = issue.task
    return render_description(
        fields.get("description", task.description),
        fields.get("acceptance_criteria", task.acceptance_criteria),
        fields.get("test_steps", task.test_steps),
        marker,
    )


def parse_issue(node: dict[str, Any], review_state_id: str | None) -> Issue:
    """The task of a complete issue node (every nested connection read to its end)."""
    description, criteria, steps, marker = parse_description(node.get("description"))
    label_ids = {label["name"]: label["id"] for label in node["labels"]["nodes"]}
    relations = [r for r in node["inverseRelations"]["nodes"] if r["type"] == "blocks"]
    order = {dep: i for i, dep in enumerate(marker.get("deps", []))}
    relations.sort(key=lambda r: order.get(r["issue"]["id"], len(order)))
    comments = sorted(node["comments"]["nodes"], key=lambda c: (c["createdAt"], c["id"]))
    entries = [parse_entry(c) for c in comments]
    claim_state = claim_state_of(entries)
    notes = []
    for e in entries:
        if e.kind in ("note", "released", "fence") and e.text is not None:
            at = _dt(e.fields["at"]) if "at" in e.fields else e.created_at
            notes.append(Note(text=e.text, author=e.author, at=at))
        elif e.kind == "" and e.text is not None:
            notes.append(Note(text=e.text, author=e.author, at=e.created_at))
    state_type = node["state"]["type"]
    created = _dt(marker["created"]) if "created" in marker else _dt(node["createdAt"])
    task = Task(
        id=node["id"],
        key=str(marker.get("key") or derive_key(node["title"])),
        title=node["title"],
        description=description,
        acceptance_criteria=criteria,
        test_steps=steps,
        status=status_from_state_type(state_type, label_ids, in_review_state=node["state"]["id"] == review_state_id),
        priority=priority_from_linear(node.get("priority")),
        labels=[name for name in label_ids if name not in (BLOCKED_LABEL, REVIEW_LABEL)],
        dependencies=[r["issue"]["id"] for r in relations],
        notes=notes,
        claim=claim_state.claim,
        created_at=created,
        updated_at=_dt(node["updatedAt"]),
        cost_usd=float(marker.get("cost", 0.0)),
        turns=int(marker.get("turns", 0)),
    )
    return Issue(
        task=task,
        state_id=node["state"]["id"],
        state_type=state_type,
        label_ids=label_ids,
        relation_ids={r["issue"]["id"]: r["id"] for r in relations},
        entries=entries,
        marker=marker,
        updated_at=node["updatedAt"],
        claim_state=claim_state,
    )
