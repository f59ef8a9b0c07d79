"""Typed events, the one bus that redacts them, and the sinks they go to.

* :mod:`.model`: one frozen class per kind of event, with fixed fields.
* :mod:`.outcome`: how a backend run ends (:class:`Outcome`).
* :mod:`.redact`: :class:`Redactor`, which the bus applies once to every event.
* :mod:`.bus`: :class:`EventBus` (redaction, fan-out, each worker's live progress).
* :mod:`.format`: an event as a line of text.
* :mod:`.sinks`: files (log, ``events.jsonl``), terminal, Slack; they never redact and
  never import each other.
"""

from autonomous.events.model import (
    ApiRetry,
    BackendStart,
    CheckpointReached,
    ErrorEvent,
    Event,
    EventKind,
    Nudge,
    OutcomeEvent,
    PermissionDenied,
    RateLimit,
    SessionEnd,
    SessionStart,
    TaskClaimed,
    TaskRecorded,
    Text,
    ToolResult,
    ToolUse,
    UsageUpdate,
    Verification,
    WarningEvent,
)
from autonomous.events.outcome import Outcome, OutcomeStatus, Usage
from autonomous.events.redact import REDACTED, Redactor

__all__ = [
    "REDACTED",
    "ApiRetry",
    "BackendStart",
    "CheckpointReached",
    "ErrorEvent",
    "Event",
    "EventKind",
    "Nudge",
    "Outcome",
    "OutcomeEvent",
    "OutcomeStatus",
    "PermissionDenied",
    "RateLimit",
    "Redactor",
    "SessionEnd",
    "SessionStart",
    "TaskClaimed",
    "TaskRecorded",
    "Text",
    "ToolResult",
    "ToolUse",
    "Usage",
    "UsageUpdate",
    "Verification",
    "WarningEvent",
]
