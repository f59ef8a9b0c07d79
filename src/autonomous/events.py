"""Typed events and outcomes, and redaction of secrets before anything leaves the process.

Backends yield :class:`Event` objects while they run and finish with one :class:`Outcome`.
The runner adds its own events (claims, verification, checkpoints). Sinks (log file,
JSONL, terminal, status, Slack) consume events; every sink receives them through a
:class:`Redactor`, so a token that shows up in model output or an error message is
replaced before it is written or sent anywhere.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autonomous.tasks import utcnow


class EventKind(enum.StrEnum):
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    TASK_CLAIMED = "task_claimed"
    TASK_RECORDED = "task_recorded"
    BACKEND_START = "backend_start"  # system init: model, tools, session id
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    USAGE = "usage"  # tokens and cost so far
    API_RETRY = "api_retry"
    RATE_LIMIT = "rate_limit"
    NUDGE = "nudge"
    PERMISSION_DENIED = "permission_denied"
    CHECKPOINT = "checkpoint"
    VERIFICATION = "verification"
    OUTCOME = "outcome"
    WARNING = "warning"
    ERROR = "error"


@dataclass(slots=True)
class Event:
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    backend: str | None = None
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "task_id": self.task_id,
            "backend": self.backend,
            **self.data,
        }


class OutcomeStatus(enum.StrEnum):
    COMPLETED = "completed"
    BLOCKED = "blocked"
    FAILED = "failed"
    MAX_TURNS = "max_turns"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    AUTH_ERROR = "auth_error"
    INTERRUPTED = "interrupted"
    ERROR = "error"


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass(slots=True)
class Outcome:
    """How one backend run ended, built from structured signals (DESIGN.md)."""

    status: OutcomeStatus
    summary: str = ""
    blocker: str = ""
    error: str = ""
    cost_usd: float = 0.0
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    session_id: str | None = None
    files_changed: list[str] = field(default_factory=list)
    retry_at: datetime | None = None  # for rate_limited
    context_tokens: int = 0  # input tokens of the last request: how full the context is
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "summary": self.summary,
            "blocker": self.blocker,
            "error": self.error,
            "cost_usd": round(self.cost_usd, 6),
            "turns": self.turns,
            "usage": self.usage.to_dict(),
            "session_id": self.session_id,
            "files_changed": list(self.files_changed),
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "context_tokens": self.context_tokens,
            "duration_s": round(self.duration_s, 3),
        }


# Shapes of well-known credentials, redacted even when nobody told us about them.
_TOKEN_SHAPES = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|lin_api_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]+|xox[abpr]-[A-Za-z0-9\-]{8,})"
)
REDACTED = "***"


class Redactor:
    """Replaces known secret values and credential-shaped strings with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first so a secret containing another is replaced whole; very short
        # values would redact ordinary words, so they are not treated as secrets.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _TOKEN_SHAPES.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def event(self, event: Event) -> Event:
        return Event(event.kind, self.value(event.data), event.task_id, event.backend, event.at)
