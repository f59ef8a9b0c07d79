"""A Claude Code run's structured signals → :class:`Outcome`: the rules both Claude Code
backends (``claude-code``, reading stream-json lines, and ``claude-code-sdk``, reading the
Agent SDK's messages converted to the same dict shapes) decide with.

* :func:`outcome_from_result`: the ``result`` message. ``is_error`` decides, never
  ``subtype`` alone (the CLI reports a failed API call as ``subtype: success`` with
  ``is_error: true``); ``error_max_turns`` is max_turns, ``error_max_budget_usd`` is
  budget_exceeded, a usage-limit text is rate_limited, an aborted turn is interrupted, an
  API status of 401/403 is auth_error and 429/529 rate_limited; a success needs the
  model's completion report, else :data:`~autonomous.backends.report.NUDGE`.
* :func:`init_events`, :func:`api_retry_event`: the ``system`` messages (the session's
  start, with its tools and MCP servers; the CLI's own retry of a failed API call) as events.
* :func:`stop_for_api_retry`, :func:`stop_for_rate_limit`: the messages after which
  waiting longer cannot help (refused credentials, throttling past the retry limit, a
  rejected usage limit), so the backend ends the run before the CLI gives up on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from autonomous.backends.report import Nudge, report_outcome
from autonomous.backends.text import clip
from autonomous.events import ApiRetry, BackendStart, Event, Outcome, OutcomeStatus, Usage, WarningEvent

AUTH_STATUSES = frozenset({401, 403})
THROTTLE_STATUSES = frozenset({429, 529})
# How long to wait when the API throttled and no reset time is known.
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
_AUTH_TYPES = ("authentication_error", "permission_error")
_THROTTLE_TYPES = ("rate_limit_error", "overloaded_error")
_AUTH_TEXT = re.compile(r"authentication_error|invalid (?:x-)?api[ -]key|please run /login|oauth token", re.I)


def as_int(value: Any) -> int:
    """A JSON number as an int; anything else (booleans included) is 0."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def usage_from(data: Any) -> Usage:
    """A ``usage`` object of the CLI (a dict) as :class:`Usage`; anything else is no usage."""
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=as_int(data.get("input_tokens")),
        output_tokens=as_int(data.get("output_tokens")),
        cache_creation_input_tokens=as_int(data.get("cache_creation_input_tokens")),
        cache_read_input_tokens=as_int(data.get("cache_read_input_tokens")),
    )


def context_tokens(usage: Usage) -> int:
    """The whole prompt of a request (input + cache reads + cache writes): how full the context is."""
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def outcome_from_result(
    result: dict[str, Any],
    final_text: str = "",
    *,
    now: datetime,
    api_error: dict[str, Any] | None = None,
    rate_limit_reset: datetime | None = None,
) -> Outcome | Nudge:
    """The outcome of one ``result`` message (status, error, retry_at, report fields), or a nudge.

    ``final_text``: the model's last top-level text (the report may be there when
    ``result`` lacks it); ``api_error``: an API error message seen before the result
    (``status``, ``type``); ``rate_limit_reset``: the reset time of the last rate-limit event.
    """
    subtype = str(result.get("subtype") or "")
    terminal = str(result.get("terminal_reason") or "")
    is_error = result.get("is_error") is True
    text = result.get("result") if isinstance(result.get("result"), str) else ""
    errors = [str(e) for e in result.get("errors") or [] if e] if isinstance(result.get("errors"), list) else []
    detail = "; ".join(errors) or text
    if subtype == "error_max_turns" or terminal == "max_turns":
        return Outcome(OutcomeStatus.MAX_TURNS, error=detail or "reached the turn limit")
    if subtype == "error_max_budget_usd" or terminal in ("max_budget", "max_budget_usd", "budget_exhausted"):
        return Outcome(OutcomeStatus.BUDGET_EXCEEDED, error=detail or "reached the budget")
    # A usage limit is known from structured signals only (the rate_limit_event, a 429):
    # the CLI's wording and its "resets 3pm" change between versions and time zones.
    if terminal.startswith("aborted"):
        return Outcome(OutcomeStatus.INTERRUPTED, error=f"the CLI stopped the turn ({terminal})")
    if terminal in UNFINISHED_TERMINAL_REASONS:
        # the turn ended for a reason other than the model finishing: never a success, whatever the subtype
        why = UNFINISHED_TERMINAL_REASONS[terminal]
        return Outcome(
            OutcomeStatus.FAILED, error=f"{why} (terminal_reason {terminal})" + (f": {clip(detail)}" if detail else "")
        )
    if is_error or subtype != "success":
        status = result.get("api_error_status")
        if status is None and api_error is not None:
            status = api_error.get("status")
        err_type = result.get("api_error_type") or (api_error or {}).get("type")
        if status is not None or err_type or terminal == "api_error" or _AUTH_TEXT.search(detail):
            return api_failure(status, err_type, detail, now=now, rate_limit_reset=rate_limit_reset)
        return Outcome(
            OutcomeStatus.ERROR,
            error=clip(detail) or f"the CLI reported an error (subtype {subtype or '?'})",
        )
    return report_outcome(text, final_text)


# ``terminal_reason`` values of a turn the model did not finish (Claude Code 2.1.332's list;
# ``completed``, ``max_turns``, ``budget_exhausted``, ``api_error`` and ``aborted_*`` are
# handled above). A value not listed here falls through to ``is_error``/``subtype``.
UNFINISHED_TERMINAL_REASONS = {
    "background_requested": "the turn ended with background work still running",
    "blocking_limit": "the context is full",
    "prompt_too_long": "the context is full",
    "rapid_refill_breaker": "the context kept refilling after compaction",
    "stop_hook_prevented": "a Stop hook prevented the turn from ending normally",
    "hook_stopped": "a hook stopped the turn",
    "tool_deferred": "a tool call was deferred",
    "tool_deferred_unavailable": "a deferred tool was not available",
    "model_error": "the model failed",
    "image_error": "an image could not be processed",
    "malformed_tool_use_exhausted": "the model kept sending malformed tool calls",
    "structured_output_retry_exhausted": "the structured output kept failing",
    "turn_setup_failed": "the turn could not be set up",
}


def api_failure(
    status: Any, err_type: Any, detail: str, *, now: datetime, rate_limit_reset: datetime | None = None
) -> Outcome:
    """A failed API call: auth_error, rate_limited (retry at the known reset, else soon) or error."""
    out = Outcome(OutcomeStatus.ERROR)
    if status in AUTH_STATUSES or err_type in _AUTH_TYPES or _AUTH_TEXT.search(detail):
        out.status = OutcomeStatus.AUTH_ERROR
    elif status in THROTTLE_STATUSES or err_type in _THROTTLE_TYPES:
        out.status = OutcomeStatus.RATE_LIMITED
        out.retry_at = rate_limit_reset or now + DEFAULT_RETRY_AFTER
    label = f"HTTP {status}" if status is not None else str(err_type or "API error")
    out.error = clip(f"{label}: {detail}" if detail else label)
    return out


def init_events(msg: dict[str, Any], ev: Callable[..., Event]) -> list[Event]:
    """The ``system`` / ``init`` message: a warning for each MCP server that did not start,
    then the run's :class:`BackendStart` (session, model, tools, MCP servers, version)."""
    tools = msg.get("tools") if isinstance(msg.get("tools"), list) else []
    errors = msg.get("mcp_server_errors") if isinstance(msg.get("mcp_server_errors"), list) else []
    warnings = [
        ev(
            WarningEvent,
            message=f"MCP server {e.get('name')!r} skipped ({e.get('type')}): {clip(str(e.get('message')))}",
        )
        for e in errors
        if isinstance(e, dict)
    ]
    session_id = msg.get("session_id")
    model = msg.get("model")
    start = ev(
        BackendStart,
        session_id=session_id if isinstance(session_id, str) and session_id else None,
        model=model if isinstance(model, str) else None,
        tools=[str(t) for t in tools],
        mcp_servers=msg.get("mcp_servers") or [],
        permission_mode=msg.get("permissionMode"),
        cwd=msg.get("cwd"),
        version=msg.get("claude_code_version"),
        **({"mcp_server_errors": errors} if errors else {}),
    )
    return [*warnings, start]


def api_retry_event(msg: dict[str, Any], ev: Callable[..., Event]) -> Event:
    """The ``system`` / ``api_retry`` message: the CLI retries a failed API call itself."""
    return ev(
        ApiRetry,
        attempt=as_int(msg.get("attempt")),
        max_retries=msg.get("max_retries"),
        retry_delay_ms=as_int(msg.get("retry_delay_ms")),
        error_status=msg.get("error_status"),
        error=msg.get("error"),
    )


def stop_for_api_retry(msg: dict[str, Any], max_api_retries: int, now: datetime) -> Outcome | None:
    """A ``system``/``api_retry`` message: the outcome to stop with now, or ``None`` to let the CLI retry.

    The CLI retries refused credentials and throttling with long backoffs; neither ends
    sooner by waiting on it.
    """
    status, error = msg.get("error_status"), msg.get("error")
    attempt = as_int(msg.get("attempt"))
    if status in AUTH_STATUSES or error == "authentication_failed":
        return Outcome(
            OutcomeStatus.AUTH_ERROR,
            error=f"the API refused the credentials (HTTP {status}, {error}); retrying cannot fix that",
        )
    if (status in THROTTLE_STATUSES or error in ("rate_limit", "overloaded")) and attempt > max_api_retries:
        delay = max(timedelta(milliseconds=as_int(msg.get("retry_delay_ms"))), timedelta(seconds=1))
        return Outcome(
            OutcomeStatus.RATE_LIMITED,
            error=f"the API is still refusing after {attempt} retries (HTTP {status}, {error})",
            retry_at=now + delay,
        )
    return None


def resets_at(info: dict[str, Any]) -> datetime | None:
    """When the window of a ``rate_limit_info`` (``resetsAt``, epoch seconds) resets."""
    resets = info.get("resetsAt")
    return datetime.fromtimestamp(resets, UTC) if isinstance(resets, int | float) and resets > 0 else None


def stop_for_rate_limit(info: dict[str, Any]) -> Outcome | None:
    """A ``rate_limit_event``'s ``rate_limit_info``: rate_limited when the usage limit
    rejected us and no overage allows going on, else ``None``."""
    rejected = info.get("status") == "rejected" and info.get("overageStatus") not in ("allowed", "allowed_warning")
    if not rejected:
        return None
    return Outcome(
        OutcomeStatus.RATE_LIMITED,
        error=f"usage limit reached ({info.get('rateLimitType') or 'unknown window'})",
        retry_at=resets_at(info),
    )
