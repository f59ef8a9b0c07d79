"""The names of the event kinds and the fields every event has: all that readers of
``events.jsonl`` (``status``, ``logs``, the dashboard) need, without building the event
classes (:mod:`.model`), so the reading commands start fast."""

from __future__ import annotations

import enum


class EventKind(enum.StrEnum):
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    TASK_CLAIMED = "task_claimed"
    TASK_RECORDED = "task_recorded"
    BACKEND_START = "backend_start"  # system init: model, tools, session id
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    USAGE = "usage"  # turns, tokens and cost so far
    API_RETRY = "api_retry"
    RATE_LIMIT = "rate_limit"
    NUDGE = "nudge"
    PERMISSION_DENIED = "permission_denied"
    CHECKPOINT = "checkpoint"
    VERIFICATION = "verification"
    OUTCOME = "outcome"
    WARNING = "warning"
    ERROR = "error"


COMMON = ("at", "kind", "task_id", "backend", "worker_id", "key")
