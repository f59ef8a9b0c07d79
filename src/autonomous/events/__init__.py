"""Typed events, the one bus that redacts them, and the sinks they go to.

* :mod:`.kinds`: the kinds' names and the fields every event has (all a reader of
  ``events.jsonl`` needs).
* :mod:`.model`: one frozen class per kind of event, with fixed fields.
* :mod:`.outcome`: how a backend run ends (:class:`Outcome`).
* :mod:`.redact`: :class:`Redactor`, which the bus applies once to every event.
* :mod:`.bus`: :class:`EventBus` (redaction, fan-out, each worker's live progress).
* :mod:`.format`: an event as a line of text.
* :mod:`.sinks`: files (log, ``events.jsonl``), terminal, Slack; they never redact and
  never import each other.
"""

from __future__ import annotations

import importlib
from typing import Any

# What ``from autonomous.events import X`` gives, and the module X lives in. Imported on
# first use (PEP 562): ``status`` and ``logs`` import ``events.format`` through this package
# and must not pay for building the event classes.
_HOMES = {
    **dict.fromkeys(
        (
            "ApiRetry",
            "BackendStart",
            "CheckpointReached",
            "ErrorEvent",
            "Event",
            "Nudge",
            "OutcomeEvent",
            "PermissionDenied",
            "RateLimit",
            "SessionEnd",
            "SessionStart",
            "TaskClaimed",
            "TaskRecorded",
            "Text",
            "ToolResult",
            "ToolUse",
            "UsageUpdate",
            "Verification",
            "WarningEvent",
        ),
        "model",
    ),
    "EventKind": "kinds",
    "Outcome": "outcome",
    "OutcomeStatus": "outcome",
    "Usage": "outcome",
    "REDACTED": "redact",
    "Redactor": "redact",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'autonomous.events' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autonomous.events.{home}"), name)


def __dir__() -> list[str]:
    return __all__
