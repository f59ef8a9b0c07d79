"""The CLI's stream-json lines → events → one :class:`Outcome` for one CLI process.

:class:`StreamParser` is pure (no I/O, no clock except through ``clock``), so recorded
transcripts replay exactly (:func:`parse_stream`). The outcome is built from structured
signals only (``subtype``, ``is_error``, ``terminal_reason``, ``api_error_status``,
``permission_denials``, the ``api_retry`` and ``rate_limit_event`` lines), never from the
exit code alone: the CLI exits 0 with no result line when it crashes late, and prints
``subtype: success`` with ``is_error: true`` when authentication fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from autonomous.backends import pricing
from autonomous.backends.report import Nudge
from autonomous.backends.result import (
    api_failure,
    api_retry_event,
    as_int,
    context_tokens,
    init_events,
    outcome_from_result,
    resets_at,
    stop_for_api_retry,
    stop_for_rate_limit,
    usage_from,
)
from autonomous.backends.text import clip, summarize_input, tool_result_text
from autonomous.events import (
    ErrorEvent,
    Event,
    Outcome,
    OutcomeStatus,
    PermissionDenied,
    RateLimit,
    Text,
    ToolResult,
    ToolUse,
    UsageUpdate,
    WarningEvent,
)
from autonomous.events.model import E

# Message types the CLI prints that carry nothing for us; unknown ones get one warning.
_QUIET_TYPES = frozenset(
    {"stream_event", "control_request", "control_response", "control_cancel_request", "keep_alive", "tool_progress",
     "auth_status", "prompt_suggestion", "hook_event"}
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


class StreamParser:
    """Turns the CLI's stream-json lines into events, then into an :class:`Outcome`.

    Pure: no I/O, no clock except through ``clock``, so recorded transcripts replay exactly.
    ``stop`` is set when a line shows that waiting longer cannot help (a 401/403 being
    retried, a 429/529 retried more than ``max_api_retries`` times, a usage limit that
    was rejected): the backend then kills the CLI and reports ``stop``.
    """

    def __init__(
        self,
        *,
        backend: str = "claude-code",
        task_id: str | None = None,
        max_api_retries: int = 3,
        early_stop: bool = True,
        clock: Callable[[], datetime] = _now,
    ):
        self.backend = backend
        self.early_stop = early_stop
        self.task_id = task_id
        self.max_api_retries = max_api_retries
        self.clock = clock
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.final_text = ""  # text of the last top-level assistant message
        self.context_tokens = 0
        self.turns_seen = 0  # assistant messages (API responses) so far, for live progress
        self._estimates: dict[str | None, float] = {}  # message id -> its cost priced from its usage
        self.stop: Outcome | None = None
        self.needs_nudge = False
        self.denials: list[str] = []
        self.api_error: dict[str, Any] | None = None
        self.last_retry: dict[str, Any] | None = None
        self.rate_limit_reset: datetime | None = None  # from the last rate_limit_event that had one
        self.injected_results: list[dict[str, Any]] = []  # result frames of turns the CLI started itself
        self.background: list[str] = []  # background work the agent started (tool, what)
        self.conversation_resets = 0
        self._background_calls: dict[str, str] = {}  # tool_use id -> what, for calls asking for the background
        self.lines = 0
        self._message_id: str | None = None
        self._tools: dict[str, str] = {}
        self._denied_ids: set[str] = set()
        self._warned: set[str] = set()

    # -- lines -------------------------------------------------------------------------------
    def _ev(self, kind: type[E], **fields: Any) -> E:
        return kind(task_id=self.task_id, backend=self.backend, **fields)

    def feed(self, line: str | bytes) -> list[Event]:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.strip()
        if not line:
            return []
        self.lines += 1
        try:
            msg = json.loads(line)
        except ValueError:
            return [self._ev(WarningEvent, message="claude printed a line that is not JSON", line=clip(line, 300))]
        if not isinstance(msg, dict):
            return [self._ev(WarningEvent, message="claude printed JSON that is not an object", line=clip(line, 300))]
        if isinstance(msg.get("session_id"), str) and msg["session_id"]:
            self.session_id = msg["session_id"]
        kind = msg.get("type")
        handler = {
            "system": self._system,
            "assistant": self._assistant,
            "user": self._user,
            "result": self._result,
            "rate_limit_event": self._rate_limit,
            "conversation_reset": self._conversation_reset,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            if kind in _QUIET_TYPES or kind in self._warned:
                return []
            self._warned.add(str(kind))
            return [self._ev(WarningEvent, message=f"unknown stream-json message type {kind!r} (ignored)")]
        try:
            return handler(msg)
        except Exception as exc:  # a shape we did not expect must not end the run
            return [self._ev(WarningEvent, message=f"could not read a {kind!r} message: {exc}")]

    def _system(self, msg: dict[str, Any]) -> list[Event]:
        subtype = msg.get("subtype")
        if subtype == "init":
            self.model = msg.get("model") if isinstance(msg.get("model"), str) else self.model
            return init_events({**msg, "session_id": self.session_id, "model": self.model}, self._ev)
        if subtype == "api_retry":
            return self._api_retry(msg)
        return []  # hook responses, compaction boundaries, status lines: informational

    def _api_retry(self, msg: dict[str, Any]) -> list[Event]:
        self.last_retry = msg
        events = [api_retry_event(msg, self._ev)]
        if self.stop is not None or not self.early_stop:
            return events
        self.stop = stop_for_api_retry(msg, self.max_api_retries, self.clock())
        if self.stop is not None and self.stop.retry_at is not None:
            retry_at = self.stop.retry_at.isoformat()
            events.append(self._ev(RateLimit, status=msg.get("error_status"), retry_at=retry_at))
        return events

    def _assistant(self, msg: dict[str, Any]) -> list[Event]:
        message = msg.get("message") if isinstance(msg.get("message"), dict) else {}
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            content = []
        top_level = not msg.get("parent_tool_use_id")
        synthetic = message.get("model") == "<synthetic>"
        events: list[Event] = []
        message_id = message.get("id")
        new_message = message_id != self._message_id or message_id is None
        usage = message.get("usage")
        if top_level and isinstance(usage, dict) and not synthetic and self.model and pricing.is_known(self.model):
            # The CLI states the cost only when the run ends; priced from each message's
            # usage, the allowance and the session budget see it grow meanwhile (the
            # result's figure replaces the estimate).
            self._estimates[message_id] = pricing.cost(self.model, usage_from(usage))
        if top_level and new_message:
            self._message_id = message_id
            self.final_text = ""
            if not synthetic:
                self.turns_seen += 1
                live = {"cost_usd_estimate": round(sum(self._estimates.values()), 6)} if self._estimates else {}
                events.append(self._ev(UsageUpdate, turns=self.turns_seen, **live))
        texts: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
                events.append(self._ev(Text, text=block["text"], subagent=not top_level))
            elif btype in ("tool_use", "server_tool_use", "mcp_tool_use"):
                name = str(block.get("name", "?"))
                tool_id = str(block.get("id", ""))
                self._tools[tool_id] = name
                tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
                if tool_input.get("run_in_background") is True:
                    self._background_calls[tool_id] = f"{name}: {summarize_input(tool_input)}"
                events.append(
                    self._ev(
                        ToolUse,
                        id=tool_id,
                        name=name,
                        input=summarize_input(block.get("input")),
                        subagent=not top_level,
                    )
                )
        if top_level and texts:
            self.final_text = (self.final_text + "\n" + "\n".join(texts)).strip()
        if top_level and isinstance(usage, dict) and not synthetic:
            self.context_tokens = context_tokens(usage_from(usage))
        if msg.get("is_api_error_message") or (msg.get("error") and synthetic):
            text = "\n".join(texts)
            self.api_error = {
                "status": msg.get("api_error_status"),
                "type": msg.get("api_error_type"),
                "error": msg.get("error"),
                "text": text,
            }
            events.append(
                self._ev(ErrorEvent, message=clip(text or str(msg.get("error"))), status=msg.get("api_error_status"))
            )
        return events

    def _user(self, msg: dict[str, Any]) -> list[Event]:
        message = msg.get("message") if isinstance(msg.get("message"), dict) else {}
        content = message.get("content")
        if not isinstance(content, list):
            return []
        events: list[Event] = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            tool_id = str(block.get("tool_use_id", ""))
            text = tool_result_text(block.get("content"))
            is_error = bool(block.get("is_error"))
            name = self._tools.get(tool_id, "?")
            if tool_id in self._background_calls and not is_error:
                self.background.append(self._background_calls.pop(tool_id))  # it started: it outlives the turn
            events.append(self._ev(ToolResult, id=tool_id, name=name, is_error=is_error, excerpt=clip(text)))
            if is_error and _looks_denied(text):
                self._denied_ids.add(tool_id)
                self.denials.append(f"{name}: {clip(' '.join(text.split()), 200)}")
                events.append(self._ev(PermissionDenied, id=tool_id, name=name, reason=clip(text, 300)))
        return events

    def _result(self, msg: dict[str, Any]) -> list[Event]:
        origin = msg.get("origin") if isinstance(msg.get("origin"), dict) else {}
        if origin.get("kind") not in (None, "human", "person"):
            # A turn the CLI started itself after the run's own result (a background task's
            # notification, an auto-continuation): not the answer to our prompt. Its cost is
            # counted, its text is not the report.
            self.injected_results.append(msg)
            cost = float(msg.get("total_cost_usd") or 0.0)  # the process's total so far (observed in 2.1.332)
            kind = str(origin.get("kind"))
            if kind == "task-notification":
                self.background.append(f"a background task reported back after the turn ({kind})")
            return [
                self._ev(WarningEvent, message=f"the CLI ran a turn of its own after the result ({kind})"),
                self._ev(UsageUpdate, turns=as_int((self.result or {}).get("num_turns")), cost_usd=cost),
            ]
        self.result = msg
        events = [
            self._ev(
                UsageUpdate,
                turns=as_int(msg.get("num_turns")),
                cost_usd=float(msg.get("total_cost_usd") or 0.0),
                usage=usage_from(msg.get("usage")).to_dict(),
            )
        ]
        denials = msg.get("permission_denials")
        for denial in denials if isinstance(denials, list) else []:
            if not isinstance(denial, dict):
                continue
            tool_id = str(denial.get("tool_use_id", ""))
            if tool_id and tool_id in self._denied_ids:
                continue
            name = str(denial.get("tool_name", "?"))
            what = summarize_input(denial.get("tool_input"))
            self._denied_ids.add(tool_id)
            self.denials.append(f"{name}: {what}")
            events.append(self._ev(PermissionDenied, id=tool_id, name=name, input=what))
        return events

    def _conversation_reset(self, msg: dict[str, Any]) -> list[Event]:
        """The CLI discarded the conversation (``/clear``, leaving plan mode): the agent lost
        its context, and a resume must name the new conversation."""
        self.conversation_resets += 1
        new_id = msg.get("new_conversation_id")
        if isinstance(new_id, str) and new_id:
            self.session_id = new_id
        trigger = msg.get("trigger") or "unspecified"
        return [self._ev(WarningEvent, message=f"the CLI reset the conversation (trigger {trigger})")]

    def _rate_limit(self, msg: dict[str, Any]) -> list[Event]:
        info = msg.get("rate_limit_info") if isinstance(msg.get("rate_limit_info"), dict) else {}
        retry_at = resets_at(info)
        self.rate_limit_reset = retry_at or self.rate_limit_reset
        events = [
            self._ev(
                RateLimit,
                status=info.get("status"),
                limit_type=info.get("rateLimitType"),
                utilization=info.get("utilization"),
                retry_at=retry_at.isoformat() if retry_at else None,
            )
        ]
        if self.stop is None and self.early_stop:
            self.stop = stop_for_rate_limit(info)
        return events

    # -- the outcome ----------------------------------------------------------------------
    def outcome(self, returncode: int | None = None, stderr: str = "") -> Outcome:
        """The outcome of this one CLI process (the backend adds nudges and totals)."""
        self.needs_nudge = False
        out = Outcome(OutcomeStatus.ERROR, session_id=self.session_id, context_tokens=self.context_tokens)
        r = self.result
        if r is not None:
            last = self.injected_results[-1] if self.injected_results else r  # totals grow frame by frame
            out.cost_usd = float(last.get("total_cost_usd") or r.get("total_cost_usd") or 0.0)
            out.turns = as_int(r.get("num_turns"))
            out.usage = usage_from(r.get("usage"))
            out.duration_s = as_int(r.get("duration_ms")) / 1000
        if self.stop is not None:
            out.status, out.error, out.retry_at = self.stop.status, self.stop.error, self.stop.retry_at
        elif r is None:
            self._no_result(out, returncode, stderr)
        else:
            self._from_result(out, r)
        if self.background and (out.status is OutcomeStatus.COMPLETED or self.needs_nudge):
            # the end of the turn kills it: what it was doing is not part of a finished task
            out.status = OutcomeStatus.FAILED
            out.error = "background work outlived the turn: " + "; ".join(self.background)
            self.needs_nudge = False
        if self.denials:
            note = "permission denied: " + "; ".join(self.denials)
            out.error = f"{out.error}; {note}" if out.error else note
        return out

    def _no_result(self, out: Outcome, returncode: int | None, stderr: str) -> None:
        if self.api_error is not None:
            failure = api_failure(
                self.api_error.get("status"),
                self.api_error.get("type"),
                self.api_error["text"],
                now=self.clock(),
                rate_limit_reset=self.rate_limit_reset,
            )
            out.status, out.error, out.retry_at = failure.status, failure.error, failure.retry_at
            return
        out.status = OutcomeStatus.ERROR
        tail = clip(" ".join(stderr.split()[-60:]), 400) if stderr else ""
        out.error = f"claude exited with code {returncode} without a result" + (f": {tail}" if tail else "")

    def _from_result(self, out: Outcome, r: dict[str, Any]) -> None:
        verdict = outcome_from_result(
            r, self.final_text, now=self.clock(), api_error=self.api_error, rate_limit_reset=self.rate_limit_reset
        )
        if isinstance(verdict, Nudge):
            out.status, out.error = OutcomeStatus.FAILED, "no completion report"
            self.needs_nudge = True
            return
        out.status, out.error, out.retry_at = verdict.status, verdict.error, verdict.retry_at
        out.summary, out.blocker, out.files_changed = verdict.summary, verdict.blocker, verdict.files_changed


_DENIAL_MARKERS = (
    "denied by command policy",
    "not in the command allow list",
    "command policy hook failed",
    "permission to use",
    "has been denied",
    "requested permissions",
    "haven't granted",
)


def _looks_denied(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _DENIAL_MARKERS)


def parse_stream(
    lines: Iterable[str | bytes], *, returncode: int | None = 0, **kwargs: Any
) -> tuple[list[Event], Outcome]:
    """Replay a whole transcript (tests, post-mortems): every event and the single-process outcome."""
    parser = StreamParser(**kwargs)
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line))
        if parser.stop is not None:
            break
    return events, parser.outcome(returncode)
