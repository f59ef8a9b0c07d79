"""How a backend run ends: one :class:`Outcome` (status, cost, turns, token usage).

Backends build it from structured signals (DESIGN.md, "Backend"); the runner decides
from it, with verification, what becomes of the task.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
