"""The ``anthropic-sdk`` backend: the runner drives the Messages API tool loop itself.

There is no Claude Code underneath: this module sends the conversation to the Messages API
(``anthropic.AsyncAnthropic``, streaming), runs the tools the model asks for with
:mod:`autonomous.backends.tools` (confined to the project, bash checked by the command
policy) and sends the results back, until the model ends its turn with a completion report.

Decisions, each in one place here:

* **One turn is one model request** (nudges and tool-result rounds included), so
  ``max_turns`` bounds spending even when the model loops on tools.
* **Budget before spending**: ``budget_usd`` is checked *before* every request; once the
  cost so far reaches it, the run ends ``budget_exceeded`` without sending another. Cost
  comes from the response's usage and :mod:`autonomous.backends.pricing`.
* **Retries are ours, not the client's** (``max_retries=0`` on the client): each retry is an
  ``API_RETRY`` event the user can see, ``retry-after`` is honoured exactly, and a server
  asking for a long wait ends the run ``rate_limited`` with ``retry_at`` instead of
  blocking. 429 and 529 (overloaded) that persist end ``rate_limited``; other transient
  failures (5xx, connection errors) that persist end ``error``; 401/403 end
  ``auth_error`` at once; any other API error ends ``error``.
* **Pacing**: requests are spaced at least ``60 / rate_limit_rpm`` seconds apart (a
  minimum interval, shared by every run of one backend instance). The clock and the sleep
  are injectable so tests never wait.
* **Completion** is the model's report (:func:`~autonomous.backends.report.parse_report`).
  A turn that ends without one gets :data:`~autonomous.backends.report.NUDGE_PROMPT`, at
  most :attr:`AnthropicBackend.max_nudges` times; then the run has ``failed``.
* ``context_tokens`` is the whole prompt of the last request (input + cache reads + cache
  writes): how full the context window is.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from autonomous.backends import pricing
from autonomous.backends.base import Backend, RunOptions
from autonomous.backends.report import NUDGE_PROMPT, Nudges, report_outcome
from autonomous.backends.result import context_tokens
from autonomous.backends.text import clip_middle, summarize_input
from autonomous.backends.tools import INPUT_KEYS, LocalTools
from autonomous.errors import BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus, Usage
from autonomous.policy import CommandPolicy

INSTALL_HINT = "pip install 'autonomous-runner[api]'"
API_KEY_ENV = "ANTHROPIC_API_KEY"

# Claude Code's aliases mean nothing to the Messages API.
MODEL_ALIASES = {"opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}

SYSTEM_PROMPT = """\
You are an autonomous software engineer working on one task in the project directory {cwd}.
Work with the tools you are given: read_file, write_file, edit_file, list_dir, search and bash. \
Paths are relative to the project directory and cannot leave it; bash runs in it. \
Make the changes yourself, run the project's tests or checks when there are any, and keep going \
until the task is done or you are blocked. Nobody will answer questions during the task.\
"""

_RATE_LIMIT_STATUSES = {429, 529}
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


class _ApiFailure(Exception):
    """A request failed for good; carries the outcome it should end the run with."""

    def __init__(self, status: OutcomeStatus, error: str, retry_at: datetime | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.retry_at = retry_at


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
        self._clock = clock
        self._sleep = sleep
        self.pacer = RatePacer(clock, sleep)

    # The checks that need no network run when run() is called, not on first iteration,
    # so a missing extra or key fails before the runner claims anything.
    def run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        anthropic = _import_anthropic()
        api_key = options.env.get(API_KEY_ENV) or os.environ.get(API_KEY_ENV)
        if not api_key:
            raise BackendError(
                f"{API_KEY_ENV} is not set: the anthropic-sdk backend calls the Messages API with an API key "
                f"(export {API_KEY_ENV}=..., or use the claude-code backend with your subscription)"
            )
        policy = CommandPolicy(options.command_allow, options.command_deny)  # ConfigError on a bad rule
        return self._run(anthropic, api_key, policy, prompt, options)

    async def _run(
        self, anthropic: Any, api_key: str, policy: CommandPolicy, prompt: str, options: RunOptions
    ) -> AsyncIterator[Event | Outcome]:
        started = self._clock()
        model = MODEL_ALIASES.get(options.model, options.model)
        usage = Usage()
        state = {"cost": 0.0, "turns": 0, "context": 0}

        def ev(kind: EventKind, **data: Any) -> Event:
            return Event(kind, data, task_id=options.task_id, backend=self.name)

        def outcome(status: OutcomeStatus | Outcome, **kw: Any) -> Outcome:
            """An outcome (or ``status`` and fields) with this run's totals."""
            out = status if isinstance(status, Outcome) else Outcome(status, **kw)
            out.cost_usd, out.turns, out.usage = state["cost"], state["turns"], usage
            out.context_tokens, out.duration_s = state["context"], max(0.0, self._clock() - started)
            return out

        tools = LocalTools(options.cwd, policy, bash_timeout=self.bash_timeout, env=options.env)
        system = SYSTEM_PROMPT.format(cwd=tools.root)
        if options.append_system_prompt:
            system += "\n\n" + options.append_system_prompt
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        nudges = Nudges(self.max_nudges)

        yield ev(EventKind.BACKEND_START, model=model, tools=[t["name"] for t in tools.definitions()])
        if not pricing.is_known(model):
            yield ev(
                EventKind.WARNING,
                message=f"no price for model {model!r}: cost is estimated at the most expensive model's rates",
            )
        if options.session_id:
            yield ev(EventKind.WARNING, message="the anthropic-sdk backend cannot resume a session; starting fresh")

        base_url = options.env.get("ANTHROPIC_BASE_URL")  # else the client reads the environment itself
        client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url or None, max_retries=0, timeout=self.request_timeout
        )
        async with client:
            while True:
                # Limits are checked before a request is sent, never after spending.
                if options.budget_usd is not None and state["cost"] >= options.budget_usd:
                    yield outcome(
                        OutcomeStatus.BUDGET_EXCEEDED,
                        error=f"budget of ${options.budget_usd:.4f} reached (spent ${state['cost']:.4f})",
                    )
                    return
                if state["turns"] >= options.max_turns:
                    yield outcome(OutcomeStatus.MAX_TURNS, error=f"reached max_turns ({options.max_turns})")
                    return

                request = {
                    "model": model,
                    "max_tokens": options.max_tokens,
                    "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                    "tools": tools.definitions(),
                    "messages": messages,
                }
                message = None
                try:
                    async for item in self._request(anthropic, client, request, options, ev):
                        if isinstance(item, Event):
                            yield item
                        else:
                            message = item
                except _ApiFailure as failure:
                    yield outcome(failure.status, error=failure.error, retry_at=failure.retry_at)
                    return
                assert message is not None
                state["turns"] += 1

                req_usage = _usage(message.usage)
                usage.add(req_usage)
                req_cost = pricing.cost(model, req_usage)
                state["cost"] += req_cost
                state["context"] = context_tokens(req_usage)
                yield ev(
                    EventKind.USAGE,
                    usage=usage.to_dict(),
                    request_usage=req_usage.to_dict(),
                    cost_usd=state["cost"],
                    request_cost_usd=req_cost,
                    turns=state["turns"],
                    context_tokens=state["context"],
                    context_window=options.context_window,
                )

                content = [_block_param(b) for b in message.content]
                tool_uses = [b for b in message.content if getattr(b, "type", None) == "tool_use"]
                stop = message.stop_reason
                if content:
                    messages.append({"role": "assistant", "content": content})

                if tool_uses:
                    results: list[dict[str, Any]] = []
                    for block in tool_uses:
                        yield ev(
                            EventKind.TOOL_USE,
                            id=block.id,
                            name=block.name,
                            input=summarize_input(block.input, INPUT_KEYS),
                        )
                        if stop == "max_tokens":
                            # The call may have been cut off mid-input; never run a truncated command.
                            content_text, is_error, denied = (
                                "not run: your response hit max_tokens, so this call may be incomplete; "
                                "send it again, shorter",
                                True,
                                False,
                            )
                        else:
                            result = await tools.execute(block.name, block.input)
                            content_text, is_error, denied = result.content, result.is_error, result.denied
                        yield ev(
                            EventKind.TOOL_RESULT,
                            id=block.id,
                            name=block.name,
                            is_error=is_error,
                            excerpt=clip_middle(content_text),
                        )
                        if denied:
                            yield ev(
                                EventKind.PERMISSION_DENIED,
                                id=block.id,
                                name=block.name,
                                reason=clip_middle(content_text),
                            )
                        results.append(
                            {
                                "type": "tool_result",
                                "tool_use_id": block.id,
                                "content": content_text,
                                "is_error": is_error,
                            }
                        )
                    messages.append({"role": "user", "content": results})
                    continue

                if stop == "pause_turn":
                    continue  # the API paused a long turn; sending it back resumes it
                if stop == "refusal":
                    yield outcome(OutcomeStatus.FAILED, error="the model refused the request (stop_reason: refusal)")
                    return
                if stop == "model_context_window_exceeded":
                    yield outcome(OutcomeStatus.FAILED, error="the conversation exceeded the model's context window")
                    return

                text = "".join(getattr(b, "text", "") for b in message.content if getattr(b, "type", None) == "text")
                verdict = report_outcome(text)
                if isinstance(verdict, Outcome):
                    yield outcome(verdict)
                    return
                if nudges.exhausted:
                    yield outcome(nudges.given_up(text))
                    return
                yield ev(EventKind.NUDGE, nudge=nudges.take(), max_nudges=self.max_nudges, stop_reason=stop)
                _append_user_text(messages, NUDGE_PROMPT)

    async def _request(
        self,
        anthropic: Any,
        client: Any,
        request: dict[str, Any],
        options: RunOptions,
        ev: Callable[..., Event],
    ) -> AsyncIterator[Event | Any]:
        """One model request with pacing and retries; yields events, then the final Message."""
        attempt = 0
        while True:
            await self.pacer.wait(options.rate_limit_rpm)
            try:
                async with client.messages.stream(**request) as stream:
                    async for event in stream:
                        if event.type == "content_block_stop" and getattr(event.content_block, "type", None) == "text":
                            text = event.content_block.text
                            if text:
                                yield ev(EventKind.TEXT, text=text)
                    message = await stream.get_final_message()
                yield message
                return
            except anthropic.APIStatusError as exc:
                status = _status_of(exc)
                detail = _describe(exc, status)
                if status in _AUTH_STATUSES:
                    raise _ApiFailure(OutcomeStatus.AUTH_ERROR, detail) from None
                if status not in _RETRYABLE_STATUSES:
                    raise _ApiFailure(OutcomeStatus.ERROR, detail) from None
                retry_after = _retry_after(exc)
            except anthropic.APIConnectionError as exc:  # includes timeouts
                status, detail, retry_after = None, f"connection error: {exc}", None

            final = OutcomeStatus.RATE_LIMITED if status in _RATE_LIMIT_STATUSES else OutcomeStatus.ERROR
            delay = retry_after if retry_after is not None else min(self.backoff_base * 2**attempt, self.max_retry_wait)
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            if attempt >= self.max_retries:
                raise _ApiFailure(final, f"{detail} (gave up after {attempt} retries)", retry_at) from None
            if delay > self.max_retry_wait:
                # The server wants a long pause: end the run and let the runner schedule it.
                raise _ApiFailure(final, f"{detail} (retry after {delay:g}s)", retry_at) from None
            attempt += 1
            yield ev(
                EventKind.API_RETRY,
                attempt=attempt,
                max_retries=self.max_retries,
                retry_delay_ms=int(delay * 1000),
                error_status=status,
                error=detail,
            )
            if delay > 0:
                await self._sleep(delay)


def _import_anthropic() -> Any:
    try:
        import anthropic
    except ImportError:
        raise BackendError(f"the anthropic-sdk backend needs the anthropic package: {INSTALL_HINT}") from None
    return anthropic


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
