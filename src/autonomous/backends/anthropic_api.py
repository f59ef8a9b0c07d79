"""The ``anthropic-sdk`` backend: the runner drives the Messages API tool loop itself.

There is no Claude Code underneath: this module sends the conversation to the Messages API
(``anthropic.AsyncAnthropic``, streaming), runs the tools the model asks for with
:mod:`autonomous.backends.tools` (confined to the project, bash checked by the command
policy) and sends the results back, until the model ends its turn.
:class:`~autonomous.backends.base.Backend` does the rest (the task allowance, nudges, the
watchdog, one outcome); what is decided here:

* **One turn is one model request** (nudges and tool-result rounds included), so the
  allowance bounds spending even when the model loops on tools; the allowance is asked
  (:meth:`~autonomous.backends.base.Run.limit_reached`) *before* every request, never
  after spending. Cost comes from the response's usage and :mod:`autonomous.backends.pricing`.
* **Retries are ours, not the client's** (``max_retries=0`` on the client), through the
  base's hooks: 408/409/429/5xx/529, connection errors and an untrustworthy stream (cut
  before ``message_stop``, a malformed SSE event, a body that is not SSE) are retried;
  ``retry-after`` is honoured exactly; a server asking for a long wait ends the run
  ``rate_limited`` with ``retry_at``; 401/403 end ``auth_error`` at once.
* **Pacing**: requests are spaced at least ``60 / rate_limit_rpm`` seconds apart (a
  minimum interval, shared by every run of one backend instance). The clock and the sleep
  are injectable so tests never wait.
* ``context_tokens`` is the whole prompt of the last request (input + cache reads + cache
  writes): how full the context window is.
* **Sessions live in this process.** Each run gets a session id and its conversation is
  kept (the last few, in memory), so a second run of the task with that id (verification
  feedback, a review's request for changes) continues the conversation as ``--resume``
  does for Claude Code. An id this process does not hold (the runner restarted) ends the
  run with an ``error`` and no turns, and the runner starts the task afresh with its full prompt.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from autonomous.backends import pricing
from autonomous.backends.base import Backend, NoReport, Run, RunOptions, Spend, StreamItem
from autonomous.backends.policy import CommandPolicy
from autonomous.backends.registry import import_extra
from autonomous.backends.report import report_outcome
from autonomous.backends.result import context_tokens
from autonomous.backends.text import clip_middle, summarize_input
from autonomous.backends.tools import INPUT_KEYS, LocalTools
from autonomous.errors import BackendError, IncompleteStream
from autonomous.events import (
    BackendStart,
    Event,
    Outcome,
    OutcomeStatus,
    PermissionDenied,
    Text,
    ToolResult,
    ToolUse,
    Usage,
    WarningEvent,
)

API_KEY_ENV = "ANTHROPIC_API_KEY"

MODEL_ALIASES = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}

SYSTEM_PROMPT = """\
You are an autonomous software engineer working on one task in the project directory {cwd}.
Work with the tools you are given: read_file, write_file, edit_file, list_dir, search and bash. \
Paths are relative to the project directory and cannot leave it; bash runs in it. \
Make the changes yourself, run the project's tests or checks when there are any, and keep going \
until the task is done or you are blocked. Nobody will answer questions during the task.\
"""

_RATE_LIMIT_STATUSES = {429, 529}
KEPT_SESSIONS = 8  # conversations one backend keeps for resuming (a worker runs one task at a time)
_RETRYABLE_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
_AUTH_STATUSES = {401, 403}
_ERROR_TYPE_STATUS = {
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "authentication_error": 401,
    "permission_error": 403,
    "api_error": 500,
}


class RatePacer:
    """Spaces requests at least ``60 / rpm`` seconds apart; ``rpm <= 0`` means no limit."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[Any]]):
        self._clock = clock
        self._sleep = sleep
        self._next_at: float | None = None
        self._lock = asyncio.Lock()

    async def wait(self, rpm: int) -> float:
        """Wait for the next slot; returns how long it waited."""
        if rpm <= 0:
            return 0.0
        interval = 60.0 / rpm
        async with self._lock:
            now = self._clock()
            waited = 0.0
            if self._next_at is not None and self._next_at > now:
                waited = self._next_at - now
                await self._sleep(waited)
                now = self._next_at
            self._next_at = now + interval
            return waited


class AnthropicBackend(Backend):
    name = "anthropic-sdk"

    def __init__(
        self,
        *,
        max_retries: int = 4,
        max_retry_wait: float = 60.0,
        backoff_base: float = 1.0,
        max_nudges: int = 2,
        request_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        bash_timeout: float = 120.0,
    ):
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.max_nudges = max_nudges
        self.request_timeout = request_timeout
        self.bash_timeout = bash_timeout
        self._sleep = sleep
        self.pacer = RatePacer(clock, sleep)
        self._sdk: Any = None
        self._sessions: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # id -> messages

    # -- hooks
    def preflight(self, options: RunOptions) -> None:
        self._sdk = import_extra("anthropic", "api", self.name)
        if not _api_key(options):
            raise BackendError(
                f"{API_KEY_ENV} is not set: the anthropic-sdk backend calls the Messages API with an API key "
                f"(export {API_KEY_ENV}=..., or use the claude-code backend with your subscription)"
            )
        CommandPolicy(options.command_allow, options.command_deny)  # ConfigError on a bad rule
        if options.sandbox is not None and options.sandbox.network == "allow":
            raise BackendError(
                "autonomous.sandbox.network: allow is enforced by Claude Code's proxy, which the anthropic-sdk "
                "backend does not have: use network: off or on, or the claude-code backend"
            )

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, self._sdk.APIStatusError):
            return _status_of(exc) in _RETRYABLE_STATUSES
        return isinstance(exc, self._sdk.APIConnectionError | IncompleteStream)

    def retry_after(self, exc: BaseException) -> float | None:
        return _retry_after(exc)

    def is_auth_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, self._sdk.APIStatusError) and _status_of(exc) in _AUTH_STATUSES

    def is_rate_limit(self, exc: BaseException) -> bool:
        return isinstance(exc, self._sdk.APIStatusError) and _status_of(exc) in _RATE_LIMIT_STATUSES

    def status_of(self, exc: BaseException) -> int | None:
        return _status_of(exc) if isinstance(exc, self._sdk.APIStatusError) else None

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, self._sdk.APIStatusError):
            return _describe(exc, _status_of(exc))
        if isinstance(exc, self._sdk.APIConnectionError):
            return f"connection error: {exc}"
        return super().describe(exc)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    # -- one exchange
    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[StreamItem]:
        if run.exchange == 0:
            if run.options.session_id and run.options.session_id not in self._sessions:
                yield Outcome(
                    OutcomeStatus.ERROR,
                    error=f"session {run.options.session_id} is not held by this process: it cannot be resumed",
                )
                return
            for event in await self._open(run):
                yield event
        tools, messages, model = run.state["tools"], run.state["messages"], run.state["model"]
        _answer_open_tool_calls(messages)
        _append_user_text(messages, prompt)
        while True:
            stop = run.limit_reached()  # before a request is sent, never after spending
            if stop is not None:
                yield stop
                return
            request = {
                "model": model,
                "max_tokens": run.options.max_tokens,
                "system": [{"type": "text", "text": run.state["system"], "cache_control": {"type": "ephemeral"}}],
                "tools": [t for t in tools.definitions() if t["name"] in run.state["offered"]],
                "messages": messages,
            }
            message: Any = None
            async for item in self._retrying(run, functools.partial(self._request, run.state["client"], request, run)):
                if isinstance(item, Event):
                    yield item
                else:
                    message = item
            req_usage = _usage(message.usage)
            yield Spend(1, pricing.cost(model, req_usage), req_usage, context_tokens(req_usage))

            content = [_block_param(b) for b in message.content]
            tool_uses = [b for b in message.content if getattr(b, "type", None) == "tool_use"]
            stop_reason = message.stop_reason
            if content:
                messages.append({"role": "assistant", "content": content})
            if tool_uses:
                results: list[dict[str, Any]] = []
                for block in tool_uses:
                    async for item in self._tool(run, tools, block, truncated=stop_reason == "max_tokens"):
                        if isinstance(item, Event):
                            yield item
                        else:
                            results.append(item)
                messages.append({"role": "user", "content": results})
                continue
            if stop_reason == "pause_turn":
                continue  # the API paused a long turn; sending it back resumes it
            if stop_reason == "refusal":
                yield Outcome(OutcomeStatus.FAILED, error="the model refused the request (stop_reason: refusal)")
                return
            if stop_reason == "model_context_window_exceeded":
                yield Outcome(OutcomeStatus.FAILED, error="the conversation exceeded the model's context window")
                return
            text = "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", None) == "text")
            verdict = report_outcome(text)
            yield verdict if isinstance(verdict, Outcome) else NoReport(text)
            return

    async def _open(self, run: Run) -> list[Event]:
        """The conversation's tools, system prompt and client (closed with the run); the start events."""
        options = run.options
        model = MODEL_ALIASES.get(options.model, options.model)
        policy = CommandPolicy(options.command_allow, options.command_deny)
        tools = LocalTools(
            options.cwd, policy, bash_timeout=self.bash_timeout, env=options.env, sandbox=options.sandbox
        )
        system = SYSTEM_PROMPT.format(cwd=tools.root)
        if options.append_system_prompt:
            system += "\n\n" + options.append_system_prompt
        base_url = options.env.get("ANTHROPIC_BASE_URL")  # else the client reads the environment itself
        client = self._sdk.AsyncAnthropic(
            api_key=_api_key(options), base_url=base_url or None, max_retries=0, timeout=self.request_timeout
        )
        await run.cleanup.enter_async_context(client)
        offered = {name for tool, name in CLAUDE_CODE_TOOLS.items() if tool in options.allowed_tools}
        session_id = options.session_id or uuid.uuid4().hex
        messages = self._sessions.pop(session_id, [])
        self._sessions[session_id] = messages  # the newest last: the oldest is forgotten first
        while len(self._sessions) > KEPT_SESSIONS:
            self._sessions.popitem(last=False)
        run.state.update(tools=tools, system=system, client=client, messages=messages, model=model, offered=offered)
        names = [t["name"] for t in tools.definitions() if t["name"] in offered]
        events = [run.ev(BackendStart, model=model, tools=names, session_id=session_id)]
        if not pricing.is_known(model):
            message = f"no price for model {model!r}: cost is estimated at the most expensive model's rates"
            events.append(run.ev(WarningEvent, message=message))
        return events

    @staticmethod
    async def _tool(run: Run, tools: LocalTools, block: Any, *, truncated: bool) -> AsyncIterator[Any]:
        """Run one tool call: its events, then the ``tool_result`` block to send back."""
        yield run.ev(ToolUse, id=block.id, name=block.name, input=summarize_input(block.input, INPUT_KEYS))
        if truncated:
            # The call may have been cut off mid-input; never run a truncated command.
            text = "not run: your response hit max_tokens, so this call may be incomplete; send it again, shorter"
            is_error, denied = True, False
        elif block.name not in run.state["offered"]:
            text, is_error, denied = f"{block.name} is not available in this session", True, True
        else:
            result = await tools.execute(block.name, block.input)
            text, is_error, denied = result.content, result.is_error, result.denied
        excerpt = clip_middle(text)
        yield run.ev(ToolResult, id=block.id, name=block.name, is_error=is_error, excerpt=excerpt)
        if denied:
            yield run.ev(PermissionDenied, id=block.id, name=block.name, reason=excerpt)
        yield {"type": "tool_result", "tool_use_id": block.id, "content": text, "is_error": is_error}

    async def _request(self, client: Any, request: dict[str, Any], run: Run) -> AsyncIterator[Any]:
        """One model request (paced): TEXT events, then the final Message.

        A stream is trusted only when it ends with ``message_stop``: one cut short, with a
        malformed event, or whose body is not SSE at all raises :class:`IncompleteStream`,
        which the hooks retry like a 5xx.
        """
        await self.pacer.wait(run.options.rate_limit_rpm)
        try:
            async with client.messages.stream(**request) as stream:
                finished = False
                async for event in stream:
                    if event.type == "message_stop":
                        finished = True
                    elif event.type == "content_block_stop" and _text_of(event.content_block):
                        yield run.ev(Text, text=event.content_block.text)
                if not finished:
                    raise IncompleteStream("the stream ended before message_stop")
                message = await stream.get_final_message()
        except (self._sdk.APIError, IncompleteStream):
            raise
        except Exception as exc:
            # How the SDK fails on a malformed or cut stream varies (its SSE decoder's JSON
            # errors, its accumulator's event-order errors, its transport's protocol errors):
            # whatever is not an API answer is a stream that cannot be trusted, retried like a 5xx.
            raise IncompleteStream(f"malformed stream: {type(exc).__name__}: {exc}") from exc
        yield message


# ``allowed_tools`` speaks Claude Code's tool names; these are the runner's own tools that
# do the same (a read-only review allows Read, Glob and Grep only).
CLAUDE_CODE_TOOLS = {
    "Read": "read_file",
    "Write": "write_file",
    "Edit": "edit_file",
    "Glob": "list_dir",
    "Grep": "search",
    "Bash": "bash",
}


def _text_of(block: Any) -> str:
    return block.text if getattr(block, "type", None) == "text" else ""


def _api_key(options: RunOptions) -> str | None:
    return options.env.get(API_KEY_ENV) or os.environ.get(API_KEY_ENV)


def _status_of(exc: Any) -> int:
    """HTTP status, or for an error event inside a 200 stream, the status its type stands for."""
    status = getattr(exc, "status_code", None)
    err_type = getattr(exc, "type", None)
    if err_type is None and isinstance(getattr(exc, "body", None), dict):
        err_type = (exc.body.get("error") or {}).get("type")
    if (not isinstance(status, int) or status < 400) and err_type in _ERROR_TYPE_STATUS:
        return _ERROR_TYPE_STATUS[err_type]
    return status if isinstance(status, int) else 0


def _describe(exc: Any, status: int) -> str:
    message = getattr(exc, "api_message", None) or getattr(exc, "message", None) or str(exc)
    err_type = getattr(exc, "type", None)
    return f"API error {status}" + (f" {err_type}" if err_type else "") + f": {message}"


def _retry_after(exc: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _usage(raw: Any) -> Usage:
    return Usage(
        input_tokens=getattr(raw, "input_tokens", 0) or 0,
        output_tokens=getattr(raw, "output_tokens", 0) or 0,
        cache_creation_input_tokens=getattr(raw, "cache_creation_input_tokens", 0) or 0,
        cache_read_input_tokens=getattr(raw, "cache_read_input_tokens", 0) or 0,
    )


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as a request content block."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(mode="json", exclude_none=True)


def _answer_open_tool_calls(messages: list[dict[str, Any]]) -> None:
    """A resumed conversation may end with tool calls the run was stopped before answering:
    the API refuses a ``tool_use`` without its ``tool_result``, so each is answered "not run"."""
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant" or not isinstance(last["content"], list):
        return
    ids = [b["id"] for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
    if ids:
        text = "not run: the run was stopped before this call"
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": i, "content": text, "is_error": True} for i in ids],
            }
        )


def _append_user_text(messages: list[dict[str, Any]], text: str) -> None:
    """Add a user text; merged into the last message when that is the user's already
    (an empty assistant turn is not sent back, and roles must alternate)."""
    last = messages[-1] if messages else None
    if last is None or last["role"] != "user":
        messages.append({"role": "user", "content": text})
        return
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"].append({"type": "text", "text": text})
