"""Events as text: the one place that turns an event into a line a person reads.

The log file, the plain terminal output, ``autonomous logs``, ``status`` and the dashboard
all use :func:`format_event` / :func:`describe`. They work on the JSON form
(``Event.to_dict()``), so lines read back from ``events.jsonl`` format the same way.
"""

from __future__ import annotations

import json
from typing import Any

from autonomous.events.kinds import COMMON, EventKind

_LEVELS = {
    EventKind.ERROR.value: "ERROR",
    EventKind.WARNING.value: "WARN",
    EventKind.RATE_LIMIT.value: "WARN",
    EventKind.PERMISSION_DENIED.value: "WARN",
    EventKind.API_RETRY.value: "WARN",
}
MAX_TEXT = 300


def _one_line(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, "", [], {}):
            return value
    return None


def _money(value: Any) -> str:
    try:
        return f"${float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


def _tool_summary(data: dict[str, Any]) -> str:
    name = _first(data, "tool", "name") or "tool"
    arg = _first(data, "summary", "command", "file_path", "path", "pattern")
    tool_input = data.get("input")
    if arg is None and isinstance(tool_input, dict):
        arg = _first(tool_input, "command", "file_path", "path", "pattern", "url", "description")
    if arg is None and tool_input:
        arg = tool_input
    return f"{name} {_one_line(arg, 160)}" if arg is not None else str(name)


def describe(event: dict[str, Any]) -> str:
    """What happened, in a few words, from an event's JSON form (``Event.to_dict()``).
    The kind is not repeated: :func:`format_event` puts it in front."""
    kind = event.get("kind", "?")
    data = {k: v for k, v in event.items() if k not in COMMON and k != "task_key" and v is not None}
    if kind == EventKind.TASK_CLAIMED:
        return _one_line(_first(data, "title", "key") or "", 200)
    if kind == EventKind.TOOL_USE:
        return _tool_summary(data)
    if kind == EventKind.TEXT:
        return _one_line(_first(data, "text") or "")
    if kind == EventKind.USAGE:
        parts = []
        if "turns" in data:
            parts.append(f"turns {data['turns']}")
        if "cost_usd" in data:
            parts.append(f"cost {_money(data['cost_usd'])}")
        return ", ".join(parts) or _one_line(data)
    if kind in (EventKind.OUTCOME, EventKind.TASK_RECORDED):
        text = str(_first(data, "status") or "?")
        extra = []
        if data.get("turns"):
            extra.append(f"{data['turns']} turns")
        if data.get("cost_usd"):
            extra.append(_money(data["cost_usd"]))
        if data.get("duration_s"):
            extra.append(f"{float(data['duration_s']):.0f}s")
        if extra:
            text += f" ({', '.join(extra)})"
        detail = _first(data, "blocker", "error", "summary")
        return text + (f": {_one_line(detail, 200)}" if detail else "")
    if kind == EventKind.SESSION_START:
        return str(_first(data, "session_id") or "")
    if kind == EventKind.SESSION_END:
        return _one_line(_first(data, "reason", "stop_reason", "state") or "", 200)
    if kind == EventKind.RATE_LIMIT:
        until = _first(data, "retry_at")
        return f"until {until}" if until else _one_line(data)
    if kind == EventKind.VERIFICATION:
        passed = data.get("passed", data.get("ok"))
        verdict = "passed" if passed else "failed" if passed is not None else ""
        what = _first(data, "reason", "command", "summary", "message")
        return " ".join(p for p in (verdict, _one_line(what, 200) if what else "") if p)
    message = _first(data, "message", "reason", "text", "summary", "error")
    if message is not None:
        return _one_line(message)
    return _one_line(data) if data else ""


def format_event(event: dict[str, Any]) -> str:
    """One human line: ``2026-05-09T07:35:25 INFO  [AUTH-1.2] tool_use       Bash pytest -q``."""
    at = str(event.get("at", ""))[:19]
    kind = str(event.get("kind", "?"))
    level = _LEVELS.get(kind, "INFO")
    task = _first(event, "task_key", "key") or event.get("task_id")
    where = f"[{task}] " if task else ""
    return f"{at} {level:<5} {where}{kind:<14} {describe(event)}".rstrip()
