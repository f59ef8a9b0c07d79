"""Issues <-> tasks: the labels, the body's rendering and hidden markers, notes as comments.

Pure functions over GitHub's JSON (the provider does the HTTP). The mapping is the table
in docs/providers.md: open + ``status:todo`` / ``status:in-progress`` / ``status:blocked``
/ ``status:in-review``; closed as ``completed`` is done, as ``not_planned`` (or
``duplicate``) canceled; ``priority:*`` labels; the body holds the description, a visible
rendering of criteria, steps and the "Blocked by" list, and two hidden markers: the key
(what makes ``init`` idempotent) and the state (exact criteria, steps, label order,
timestamps, cost, turns, and the claim).
"""

from __future__ import annotations

import json
import re
from typing import Any

from autonomous import scheduler
from autonomous.errors import TaskNotFound
from autonomous.providers.base import iso_time as _iso
from autonomous.providers.base import parse_time as _dt
from autonomous.tasks import Claim, Note, Priority, Task, TaskStatus, derive_key

STATUS_LABELS = {
    TaskStatus.TODO: "status:todo",
    TaskStatus.IN_PROGRESS: "status:in-progress",
    TaskStatus.BLOCKED: "status:blocked",
    TaskStatus.IN_REVIEW: "status:in-review",
}
PRIORITY_LABELS = {Priority.URGENT: "priority:urgent", Priority.HIGH: "priority:high", Priority.LOW: "priority:low"}
META_LABEL = "meta"
SESSIONS_LABEL = "autonomous:sessions"
LABEL_COLORS = {
    "status:todo": "ededed", "status:in-progress": "fbca04", "status:blocked": "d93f0b", "status:in-review": "0e8a16",
    "priority:urgent": "b60205", "priority:high": "d93f0b", "priority:low": "c5def5",
    META_LABEL: "5319e7", SESSIONS_LABEL: "bfdadc",
}  # fmt: skip
_OURS = {*STATUS_LABELS.values(), *PRIORITY_LABELS.values(), "priority:normal"}

DIVIDER = "<!-- autonomous:generated (below this line is written by autonomous) -->"
_KEY = re.compile(r"<!-- autonomous:key=(.+?) -->")
_STATE = re.compile(r"<!-- autonomous:state (\{.*?\}) -->", re.S)
_NOTE = re.compile(r"\n*<!-- autonomous:note (\{.*?\}) -->\s*$", re.S)
CLAIM = re.compile(r"<!-- autonomous:claim (\{.*?\}) -->")
SESSION = re.compile(r"<!-- autonomous:session (\{.*?\}) -->", re.S)
_BLOCKED_BY = re.compile(r"^- \[[ xX]\] #(\d+)\s*$", re.M)


def marker(kind: str, data: dict[str, Any]) -> str:
    # "--" cannot appear inside an HTML comment; JSON escapes keep it out of strings.
    text = json.dumps(data, separators=(",", ":")).replace("--", "-\\u002d")
    return f"<!-- autonomous:{kind} {text} -->"


def is_number(ref: str) -> bool:
    return ref.removeprefix("#").isdigit()


def number(task_id: str) -> int:
    if not is_number(str(task_id)):
        raise TaskNotFound(f"no task with id {task_id!r} (github task ids are issue numbers)")
    return int(str(task_id).removeprefix("#"))


def label_names(issue: dict[str, Any]) -> list[str]:
    return [label["name"] if isinstance(label, dict) else str(label) for label in issue.get("labels", [])]


def is_task(issue: dict[str, Any]) -> bool:
    """Pull requests (GitHub lists them among issues) and the sessions issue are not tasks."""
    return "pull_request" not in issue and SESSIONS_LABEL not in label_names(issue)


def state(body: str) -> dict[str, Any]:
    m = _STATE.search(body.partition(DIVIDER)[2])
    if not m:
        return {}
    try:
        return json.loads(m.group(1))
    except ValueError:
        return {}


def fence(issue: dict[str, Any]) -> int:
    return int(state(issue.get("body") or "").get("fence", 0))


def description(body: str) -> str:
    head, divider, _ = body.partition(DIVIDER)
    if not divider:  # an issue written by a person: the whole body, minus any markers
        return _KEY.sub("", body).strip()
    return head[:-2] if head.endswith("\n\n") else head.rstrip("\n")


def listed_dependencies(body: str) -> list[str]:
    """The body's "Blocked by" task list."""
    section = body.partition(DIVIDER)[2].partition("### Blocked by\n")[2].split("\n###", 1)[0]
    return list(dict.fromkeys(m.group(1) for m in _BLOCKED_BY.finditer(section)))


def note_body(note: Note) -> str:
    return f"{note.text}\n\n" + marker("note", {"author": note.author, "at": _iso(note.at)})


def notes(comments: list[dict[str, Any]]) -> list[Note]:
    found = []
    for c in comments:
        body = c.get("body") or ""
        if CLAIM.search(body) or SESSION.search(body):
            continue
        m = _NOTE.search(body)
        if m:
            data = json.loads(m.group(1))
            found.append(Note(text=body[: m.start()], author=data["author"], at=_dt(data["at"])))
        else:
            login = (c.get("user") or {}).get("login", "unknown")
            found.append(Note(text=body, author=login, at=_dt(c["created_at"])))
    return found


def status(issue: dict[str, Any], names: list[str]) -> TaskStatus:
    if issue["state"] == "closed":
        canceled = issue.get("state_reason") in ("not_planned", "duplicate")
        return TaskStatus.CANCELED if canceled else TaskStatus.DONE
    for candidate in (TaskStatus.BLOCKED, TaskStatus.IN_REVIEW, TaskStatus.IN_PROGRESS):
        if STATUS_LABELS[candidate] in names:
            return candidate
    return TaskStatus.TODO


def to_task(issue: dict[str, Any], comments: list[dict[str, Any]] | None, dependencies: list[str]) -> Task:
    body = issue.get("body") or ""
    data = state(body)
    names = label_names(issue)
    user = [n for n in names if n not in _OURS]
    hint = [n for n in data.get("labels", []) if n in user]
    key_match = _KEY.search(body)
    claim = None
    if data.get("worker"):
        claim = Claim(data["worker"], _dt(data["expires"]), int(data.get("fence", 0)))
    return Task(
        id=str(issue["number"]),
        key=key_match.group(1) if key_match else derive_key(issue["title"]),
        title=issue["title"],
        description=description(body),
        acceptance_criteria=list(data.get("criteria", [])),
        test_steps=list(data.get("steps", [])),
        status=status(issue, names),
        priority=next((p for p, label in PRIORITY_LABELS.items() if label in names), Priority.NORMAL),
        labels=hint + [n for n in user if n not in hint],
        dependencies=dependencies,
        notes=notes(comments or []),
        claim=claim,
        created_at=_dt(data.get("created") or issue["created_at"]),
        updated_at=_dt(data.get("updated") or issue["updated_at"]),
        cost_usd=float(data.get("cost_usd", 0.0)),
        turns=int(data.get("turns", 0)),
    )


def render(task: Task, fence: int) -> str:
    parts = [task.description, "", DIVIDER]
    if task.acceptance_criteria:
        parts += ["### Acceptance criteria", *(f"- [ ] {c}" for c in task.acceptance_criteria), ""]
    if task.test_steps:
        parts += ["### Test steps", *(f"{i}. {s}" for i, s in enumerate(task.test_steps, 1)), ""]
    if task.dependencies:
        parts += ["### Blocked by", *(f"- [ ] #{d}" for d in task.dependencies), ""]
    data = {
        "v": 1,
        "created": _iso(task.created_at),
        "updated": _iso(task.updated_at),
        "criteria": task.acceptance_criteria,
        "steps": task.test_steps,
        "labels": task.labels,
        "fence": fence,
        "worker": task.claim.worker_id if task.claim else None,
        "expires": _iso(task.claim.expires_at) if task.claim else None,
        "cost_usd": task.cost_usd,
        "turns": task.turns,
    }
    parts += [f"<!-- autonomous:key={task.key} -->", marker("state", data)]
    return "\n".join(parts)


def labels_for(task: Task) -> list[str]:
    names = list(task.labels)
    if scheduler.is_meta(task) and META_LABEL not in names:
        names.append(META_LABEL)
    if task.status in STATUS_LABELS:
        names.append(STATUS_LABELS[task.status])
    if task.priority in PRIORITY_LABELS:
        names.append(PRIORITY_LABELS[task.priority])
    return names


def payload(task: Task, fence: int) -> dict[str, Any]:
    """The issue's whole writable state (title, body, labels, open/closed)."""
    body: dict[str, Any] = {"title": task.title, "body": render(task, fence), "labels": labels_for(task)}
    if task.status is TaskStatus.DONE:
        body.update(state="closed", state_reason="completed")
    elif task.status is TaskStatus.CANCELED:
        body.update(state="closed", state_reason="not_planned")
    else:
        body["state"] = "open"
    return body
