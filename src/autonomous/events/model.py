"""One frozen class per kind of event, with fixed, typed fields.

Backends yield these while they run (text, tools, usage, retries); the runner adds its own
(claims, verification, checkpoints, records, the session's start and end). Every event
carries the same common fields (:class:`Event`); a kind adds its own. A field a producer
does not know is ``None``, never missing, so a reader of ``events.jsonl`` finds the same
keys in every line of a kind whichever backend wrote it.

``to_dict()`` is the JSON line of ``events.jsonl``: ``{"at", "kind", "task_id", "backend",
"worker_id", "key", ...the kind's fields}``; :func:`from_dict` reads one back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from autonomous.events.kinds import COMMON, EventKind
from autonomous.events.outcome import Outcome
from autonomous.tasks import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has: when, which task (id and key), which backend and worker.

    The backend stamps ``task_id`` and ``backend``; the worker that relays the event adds
    ``worker_id`` and ``key`` (:meth:`stamped`)."""

    kind: ClassVar[EventKind]
    task_id: str | None = None
    backend: str | None = None
    worker_id: str | None = None
    key: str | None = None
    at: datetime = field(default_factory=utcnow)

    @property
    def data(self) -> dict[str, Any]:
        """The kind's own fields (everything but the common ones)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in COMMON}

    def stamped(self, **common: Any) -> Event:
        """This event with common fields filled in where they are still empty."""
        missing = {name: value for name, value in common.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **missing) if missing else self

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "task_id": self.task_id,
            "backend": self.backend,
            "worker_id": self.worker_id,
            "key": self.key,
            **self.data,
        }


E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStart(Event):
    kind: ClassVar[EventKind] = EventKind.SESSION_START
    session_id: str
    resumed: bool = False
    pid: int | None = None
    backend_check: str | None = None  # what preflight found the backend to be
    sandbox: str = ""
    allowed_dirty: list[str] = field(default_factory=list)  # files modified before the run (--allow-dirty)
    tasks_done: int | None = None  # the project's tasks done and in all, at the start
    tasks_total: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnd(Event):
    kind: ClassVar[EventKind] = EventKind.SESSION_END
    session_id: str
    exit_code: int
    reason: str = ""
    tasks_completed: list[str] = field(default_factory=list)
    tasks_blocked: list[str] = field(default_factory=list)
    tasks_failed: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    notify: bool = False  # worth a notification (paused for review)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskClaimed(Event):
    kind: ClassVar[EventKind] = EventKind.TASK_CLAIMED
    title: str
    token: int | None = None  # the claim's fencing token


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecorded(Event):
    kind: ClassVar[EventKind] = EventKind.TASK_RECORDED
    status: str  # the task's new status: done, blocked, todo ...
    verdict: str = ""
    message: str = ""
    commit: str | None = None
    cost_usd: float | None = None  # the task's whole spend, all attempts
    turns: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendStart(Event):
    kind: ClassVar[EventKind] = EventKind.BACKEND_START
    session_id: str | None = None
    model: str | None = None
    tools: list[str] = field(default_factory=list)
    mcp_servers: list[Any] = field(default_factory=list)
    mcp_server_errors: list[Any] = field(default_factory=list)
    permission_mode: str | None = None
    cwd: str | None = None
    version: str | None = None
    pid: int | None = None  # the agent's process, when it is one


@dataclass(frozen=True, slots=True, kw_only=True)
class Text(Event):
    kind: ClassVar[EventKind] = EventKind.TEXT
    text: str
    subagent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUse(Event):
    kind: ClassVar[EventKind] = EventKind.TOOL_USE
    name: str
    id: str | None = None
    input: Any = None  # a short summary of the call's input
    subagent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult(Event):
    kind: ClassVar[EventKind] = EventKind.TOOL_RESULT
    name: str
    id: str | None = None
    is_error: bool = False
    excerpt: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageUpdate(Event):
    """The run's totals so far (``turns``, ``cost_usd``); ``cost_usd_estimate`` is a
    price from tokens while the backend has not stated its own figure yet."""

    kind: ClassVar[EventKind] = EventKind.USAGE
    turns: int | None = None
    cost_usd: float | None = None
    cost_usd_estimate: float | None = None
    usage: dict[str, int] | None = None
    request_cost_usd: float | None = None
    context_tokens: int | None = None
    context_window: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRetry(Event):
    kind: ClassVar[EventKind] = EventKind.API_RETRY
    attempt: int | None = None
    max_retries: int | None = None
    retry_delay_ms: int | None = None
    error_status: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit(Event):
    """A rate limit seen by the backend (``status``, ``limit_type``, ``utilization``) or a
    wait of the runner (``wait_s``, then ``remaining_s`` while it waits)."""

    kind: ClassVar[EventKind] = EventKind.RATE_LIMIT
    retry_at: str | None = None
    status: Any = None
    limit_type: str | None = None
    utilization: float | None = None
    wait_s: float | None = None
    remaining_s: float | None = None
    notify: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Nudge(Event):
    kind: ClassVar[EventKind] = EventKind.NUDGE
    nudge: int
    max_nudges: int
    turns_left: int | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PermissionDenied(Event):
    kind: ClassVar[EventKind] = EventKind.PERMISSION_DENIED
    name: str | None = None
    id: str | None = None
    reason: str | None = None
    input: Any = None  # what was asked, when the denial names no reason


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointReached(Event):
    """A checkpoint: when it is reached (``review``: whether it stops for a person, in
    ``mode``), and again with the person's ``decision``."""

    kind: ClassVar[EventKind] = EventKind.CHECKPOINT
    checkpoint: str
    task_key: str | None = None  # the task the checkpoint is about (``Checkpoint.task_key``)
    reason: str = ""
    review: bool | None = None
    mode: str | None = None
    decision: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification(Event):
    """One verification of a task's work (``autonomous.verify.VerificationResult``)."""

    kind: ClassVar[EventKind] = EventKind.VERIFICATION
    attempt: int
    passed: bool
    reason: str = ""
    changed: list[str] = field(default_factory=list)
    diffstat: str = ""
    notes: list[str] = field(default_factory=list)
    review: dict[str, Any] | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeEvent(Event):
    """How one backend run ended (:class:`~autonomous.events.outcome.Outcome`)."""

    kind: ClassVar[EventKind] = EventKind.OUTCOME
    status: str
    summary: str = ""
    blocker: str = ""
    error: str = ""
    cost_usd: float = 0.0
    turns: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    session_id: str | None = None
    files_changed: list[str] = field(default_factory=list)
    retry_at: str | None = None
    context_tokens: int = 0
    duration_s: float = 0.0

    @classmethod
    def of(cls, outcome: Outcome, **common: Any) -> OutcomeEvent:
        return cls(**outcome.to_dict(), **common)


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEvent(Event):
    kind: ClassVar[EventKind] = EventKind.WARNING
    message: str
    line: str | None = None  # the output line that was not understood
    worktree: dict[str, Any] | None = None  # a worktree kept from an earlier run


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    kind: ClassVar[EventKind] = EventKind.ERROR
    message: str
    status: int | None = None  # the API's HTTP status, when one caused it


TYPES: dict[EventKind, type[Event]] = {
    cls.kind: cls
    for cls in (
        SessionStart,
        SessionEnd,
        TaskClaimed,
        TaskRecorded,
        BackendStart,
        Text,
        ToolUse,
        ToolResult,
        UsageUpdate,
        ApiRetry,
        RateLimit,
        Nudge,
        PermissionDenied,
        CheckpointReached,
        Verification,
        OutcomeEvent,
        WarningEvent,
        ErrorEvent,
    )
}


def from_dict(record: dict[str, Any]) -> Event:
    """The event a ``to_dict()`` line came from (keys it does not know are ignored)."""
    cls = TYPES[EventKind(record["kind"])]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in record.items() if k in names and k != "at"}
    at = record.get("at")
    if isinstance(at, str):
        values["at"] = datetime.fromisoformat(at)
    return cls(**values)
