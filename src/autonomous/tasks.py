"""The task model shared by every provider, the scheduler, the initializer and the runner.

Tasks are plain dataclasses rather than pydantic models: the scheduler orders tens of
thousands of them per call, and a provider builds them from rows, so construction must
be cheap. Validation of user input happens at the edges (config, spec parser, CLI).

A task's *title key* is what its title says about its place in the plan:
``META: ...`` (the project's tracking record), ``[PREFIX-X.Y]`` with an optional
letter (``[AUTH-1.2a]``), ``X.Y:`` at the start, ``Phase X.Y``, ``Task X.Y``, or a
tracker id such as ``ARK-123``. :func:`parse_title` reads it once; everything that
orders tasks uses the resulting :class:`TitleKey`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any


class TaskStatus(enum.StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    IN_REVIEW = "in_review"  # finished and verified, waiting for a person (execution.handoff: review)
    BLOCKED = "blocked"
    DONE = "done"
    CANCELED = "canceled"

    @property
    def satisfied(self) -> bool:
        """Whether this status lets dependants go ahead.

        ``canceled`` counts as satisfied: a task someone decided not to do must not
        hold the rest of the plan hostage. Blocked does not, and neither does
        ``in_review``: its work has not reached the integration branch yet.
        """
        return self in (TaskStatus.DONE, TaskStatus.CANCELED)


class Priority(enum.StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for urgent .. 3 for low: smaller runs first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class TitleKind(enum.IntEnum):
    """Groups in scheduling order: META first, then phased work, tracker ids, the rest."""

    META = 0
    PHASED = 1
    TRACKER = 2
    OTHER = 3


@dataclass(frozen=True, slots=True)
class TitleKey:
    kind: TitleKind
    key: str | None = None  # "AUTH-1.2a", "1.2", "ARK-123", "META"; None for OTHER
    phase: int | None = None
    number: int | None = None
    letter: str = ""

    @property
    def position(self) -> tuple[int, int, str]:
        """(phase, number, letter) for phased titles; tracker ids sort by their number."""
        return (self.phase or 0, self.number or 0, self.letter)


_META = re.compile(r"^\s*META\s*:", re.IGNORECASE)
_BRACKET = re.compile(r"^\s*\[(?P<prefix>[A-Za-z][A-Za-z0-9_]*)-(?P<phase>\d+)\.(?P<num>\d+)(?P<letter>[a-z]?)\]")
_LEADING = re.compile(r"^\s*(?P<phase>\d+)\.(?P<num>\d+)(?P<letter>[a-z]?)\s*:")
_WORDED = re.compile(r"^\s*(?:Phase|Task)\s+(?P<phase>\d+)\.(?P<num>\d+)(?P<letter>[a-z]?)\b", re.IGNORECASE)
_TRACKER = re.compile(r"^\s*\[?(?P<key>[A-Z][A-Z0-9]{1,9}-(?P<num>\d+))\]?(?![.\d])")


# The largest phase, task or tracker number a title key may carry: nine digits. Every
# store keeps these numbers in a 32-bit integer column (PostgreSQL ``integer``), and no
# plan has a billion phases; a title beyond it has no key (it sorts with untitled tasks),
# and the spec parser and ``tasks add`` refuse it (:func:`check_title_numbers`).
MAX_TITLE_NUMBER = 999_999_999


def _in_range(*numbers: str) -> bool:
    """Whether these digit strings are at most MAX_TITLE_NUMBER, without ``int()`` of a
    string that may be thousands of digits long."""
    return all(len(n) <= 9 or len(n.lstrip("0")) <= 9 for n in numbers)


def _title_match(title: str) -> tuple[TitleKind, re.Match[str]] | None:
    m = _BRACKET.match(title) or _LEADING.match(title) or _WORDED.match(title)
    if m:
        return TitleKind.PHASED, m
    m = _TRACKER.match(title)
    return (TitleKind.TRACKER, m) if m else None


@functools.lru_cache(maxsize=262_144)
def parse_title(title: str) -> TitleKey:
    """Read the scheduling key a title carries (see the module docstring). Cached: a
    spec's title is read by the parser, the key, the cycle check and the store alike."""
    if _META.match(title):
        return TitleKey(TitleKind.META, "META")
    found = _title_match(title)
    if found is None:
        return TitleKey(TitleKind.OTHER)
    kind, m = found
    if kind is TitleKind.TRACKER:
        if not _in_range(m["num"]):
            return TitleKey(TitleKind.OTHER)
        return TitleKey(TitleKind.TRACKER, m["key"], None, int(m["num"]))
    if not _in_range(m["phase"], m["num"]):
        return TitleKey(TitleKind.OTHER)
    prefix = f"{m['prefix']}-" if "prefix" in m.re.groupindex else ""
    key = f"{prefix}{m['phase']}.{m['num']}{m['letter']}"
    return TitleKey(TitleKind.PHASED, key, int(m["phase"]), int(m["num"]), m["letter"])


def check_title_numbers(title: str, *, phased_only: bool = False) -> str | None:
    """What is wrong with a title whose key carries a number beyond MAX_TITLE_NUMBER
    (None when nothing is): for the spec parser (with the line) and ``tasks add``,
    which refuse it rather than store a task that silently lost its place in the plan.
    ``phased_only``: look only at phased keys (a spec's task lines)."""
    if _META.match(title):
        return None
    found = _title_match(title)
    if found is None or (phased_only and found[0] is not TitleKind.PHASED):
        return None
    kind, m = found
    numbers = [m["num"]] if kind is TitleKind.TRACKER else [m["phase"], m["num"]]
    for number in numbers:
        if not _in_range(number):
            digits = number.lstrip("0")
            shown = number if len(number) <= 20 else f"{number[:12]}... ({len(digits)} digits)"
            return f"number {shown} in the title key is out of range (at most {MAX_TITLE_NUMBER:,})"
    return None


_SLUG = re.compile(r"[^a-z0-9]+")


def derive_key(title: str) -> str:
    """A task's stable key: its title key when it has one, else a slug of the title."""
    parsed = parse_title(title)
    if parsed.key and parsed.kind is not TitleKind.META:
        return parsed.key
    if parsed.kind is TitleKind.META:
        return "META"
    return _SLUG.sub("-", title.lower()).strip("-")[:80] or "task"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Note:
    text: str
    author: str
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "author": self.author, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Note:
        return cls(text=data["text"], author=data["author"], at=datetime.fromisoformat(data["at"]))


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease on a task. ``token`` is the fencing token: it grows with every claim of
    the task, and every write made under the claim must present it."""

    worker_id: str
    expires_at: datetime
    token: int

    def live(self, now: datetime | None = None) -> bool:
        return self.expires_at > (now or utcnow())

    def to_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "expires_at": self.expires_at.isoformat(), "token": self.token}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        return cls(data["worker_id"], datetime.fromisoformat(data["expires_at"]), int(data["token"]))


@dataclass(slots=True)
class Task:
    id: str
    key: str
    title: str
    description: str = ""
    acceptance_criteria: list[str] = field(default_factory=list)
    test_steps: list[str] = field(default_factory=list)
    status: TaskStatus = TaskStatus.TODO
    priority: Priority = Priority.NORMAL
    labels: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)  # task ids
    notes: list[Note] = field(default_factory=list)
    claim: Claim | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    cost_usd: float = 0.0
    turns: int = 0

    @property
    def title_key(self) -> TitleKey:
        return parse_title(self.title)

    @property
    def is_meta(self) -> bool:
        return "meta" in self.labels or self.title_key.kind is TitleKind.META

    def copy(self, **changes: Any) -> Task:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a task (DESIGN.md's field names; enums as lower-case names)."""
        return {
            "id": self.id,
            "key": self.key,
            "title": self.title,
            "description": self.description,
            "acceptance_criteria": list(self.acceptance_criteria),
            "test_steps": list(self.test_steps),
            "status": self.status.value,
            "priority": self.priority.value,
            "labels": list(self.labels),
            "dependencies": list(self.dependencies),
            "notes": [n.to_dict() for n in self.notes],
            "claim": self.claim.to_dict() if self.claim else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "cost_usd": self.cost_usd,
            "turns": self.turns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return cls(
            id=data["id"],
            key=data["key"],
            title=data["title"],
            description=data.get("description", ""),
            acceptance_criteria=list(data.get("acceptance_criteria", [])),
            test_steps=list(data.get("test_steps", [])),
            status=TaskStatus(data.get("status", "todo")),
            priority=Priority(data.get("priority", "normal")),
            labels=list(data.get("labels", [])),
            dependencies=list(data.get("dependencies", [])),
            notes=[Note.from_dict(n) for n in data.get("notes", [])],
            claim=Claim.from_dict(data["claim"]) if data.get("claim") else None,
            created_at=datetime.fromisoformat(data["created_at"]) if "created_at" in data else utcnow(),
            updated_at=datetime.fromisoformat(data["updated_at"]) if "updated_at" in data else utcnow(),
            cost_usd=float(data.get("cost_usd", 0.0)),
            turns=int(data.get("turns", 0)),
        )


@dataclass(slots=True)
class NewTask:
    """What the initializer (or ``tasks add``) asks a provider to create.

    ``dependencies`` name other tasks by *key*, because ids do not exist yet when a
    spec is parsed; providers resolve them to ids.
    """

    title: str
    key: str = ""
    description: str = ""
    acceptance_criteria: list[str] = field(default_factory=list)
    test_steps: list[str] = field(default_factory=list)
    priority: Priority = Priority.NORMAL
    labels: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)  # keys

    def __post_init__(self) -> None:
        if not self.key:
            self.key = derive_key(self.title)
