"""A scripted Anthropic Messages API server, for rehearsals and tests that cost nothing.

Point the real Claude Code CLI (``ANTHROPIC_BASE_URL``) or the real ``anthropic`` client
(``base_url=``) at it and it answers from a *scenario* instead of a model. Because the
clients are real, a rehearsal exercises the same retries, stream parsing and tool
execution as a paid run: a scripted ``Write`` tool call really creates the file.

Usage::

    with ScriptedModelServer(scenario) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, ...}
        ...
        assert server.message_requests()[1].conversation.has_tool_result

    python -m autonomous.testing.model_server --scenario rehearsal.yml [--port 8080]

Scenario format (YAML or JSON; the Python objects :class:`Scenario`, :class:`Rule`,
:class:`Match`, :class:`Response` mirror it one to one)::

    default:                     # optional; answer when no rule matches
      text: "No scripted response matched."
    rules:                       # tried in order; the first match that is not used up answers
      - name: rate limited once  # optional; shown in logs and RecordedRequest.rule
        times: 1                 # optional; fire at most N times, then fall through
        match:                   # all optional, all must hold (AND)
          contains: AUTH-1.2         # substring of the conversation (every message, every role,
                                     # tool inputs and tool results; not the top-level system prompt)
          last_user_contains: ...    # substring of the latest user message, tool results included
          turn: 1                    # assistant messages so far in this request + 1
          has_tool_result: true      # the latest user message carries a tool_result
          tool_result_contains: ...  # substring of the tool results in the latest user message
          system_contains: ...       # substring of the system prompt (top-level and role=system)
          model: opus                # substring of the requested model id
          has_tools: true            # the request offers tools (the CLI's main loop always does)
          stream: true               # the request asked for a stream
        response:
          text: "..."                # a text block
          tool_use:                  # tool_use blocks after the text; ids are generated
            - {name: Write, input: {file_path: app.py, content: "print(1)\\n"}}
          thinking: "..."            # optional thinking block before everything else
          stop_reason: end_turn      # default: tool_use if there are tool calls, else end_turn
          usage: {input_tokens: 1000, output_tokens: 50,
                  cache_creation_input_tokens: 0, cache_read_input_tokens: 0}  # default: ~chars/4
          error: {status: 429, type: rate_limit_error, message: "...", retry_after: 1,
                  after_events: 3}   # after_events: streams only; HTTP 200, then an SSE error event
          delay: 2.5                 # seconds to wait before answering
          truncate_after_events: 3   # send 3 SSE events, then cut the connection
          malformed_event: true      # one SSE data line is not JSON
          stall: true                # send the headers (and truncate_after_events events), then
                                     # nothing until the server stops
          html: "<html>...</html>"   # answer 200 with this text/html body instead of a message
                                     # (a proxy's or captive portal's page)
          headers: {anthropic-ratelimit-unified-status: rejected}  # extra response headers

An error needs ``status`` or ``type``; the other is inferred (429 rate_limit_error,
529 overloaded_error, 500 api_error, 401 authentication_error, 403 permission_error,
400 invalid_request_error, 404 not_found_error). ``retry_after`` is sent as both
``retry-after`` and ``retry-after-ms``, so fractions of a second work with clients that
read the latter.

Why the conditions look like this: the CLI sends the whole conversation on every request,
so "which task, which turn, did a tool just run" is all readable from the request itself
and the server needs no session state. Requests that are not the agent's main loop (title
generation, quota probes, a small model for summaries) carry no tools, so rules meant for
the main loop should say ``has_tools: true`` (the helpers :func:`complete_task_rules` and
:func:`blocked_rules` do). See docs/testing.md for what the CLI actually sends.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from autonomous import safe_yaml
from autonomous.errors import ScenarioError

__all__ = [
    "DEFAULT_TEXT",
    "Conversation",
    "ErrorSpec",
    "Match",
    "RecordedRequest",
    "Response",
    "Rule",
    "Scenario",
    "ScenarioError",
    "ScriptedModelServer",
    "ToolCall",
    "blocked_rules",
    "complete_task_rules",
    "load_scenario",
    "main",
]

log = logging.getLogger(__name__)

DEFAULT_TEXT = "No scripted response matched."

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_SECRET_HEADERS = {"x-api-key", "authorization", "proxy-authorization", "cookie"}
_MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5")
_CHUNK = 40  # characters per text / input_json delta: small enough that streams have several


# --------------------------------------------------------------------------- scenario data


def _check_keys(data: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return dict(data)


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python; a scenario saying `turn: true` is a mistake, not turn 1.
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ScenarioError(f"{where}: expected a number, got a boolean")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ScenarioError(f"{where}: expected {name}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ToolCall:
    """One scripted tool_use block. ``id`` is generated when empty, as the real API would."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str = "tool_use") -> ToolCall:
        d = _check_keys(data, ("name", "input", "id"), where)
        if "name" not in d:
            raise ScenarioError(f"{where}: missing key 'name'")
        return cls(
            name=_typed(d["name"], str, f"{where}.name"),
            input=_typed(d.get("input", {}), Mapping, f"{where}.input"),
            id=_typed(d.get("id", ""), str, f"{where}.id"),
        )


@dataclass(frozen=True)
class ErrorSpec:
    """An API error answer. ``after_events`` makes a streamed answer fail mid-way instead."""

    status: int = 0
    type: str = ""
    message: str = ""
    retry_after: float | None = None
    after_events: int | None = None

    def __post_init__(self) -> None:
        status = self.status or _ERROR_STATUS.get(self.type, 0)
        if not status:
            raise ScenarioError("error: needs 'status' or a known 'type'")
        etype = self.type or _ERROR_TYPES.get(status, "api_error")
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "type", etype)
        if not self.message:
            object.__setattr__(self, "message", f"Scripted {etype} ({status}).")

    @classmethod
    def from_dict(cls, data: Any, where: str = "error") -> ErrorSpec:
        d = _check_keys(data, ("status", "type", "message", "retry_after", "after_events"), where)
        try:
            return cls(
                status=_typed(d.get("status", 0), int, f"{where}.status"),
                type=_typed(d.get("type", ""), str, f"{where}.type"),
                message=_typed(d.get("message", ""), str, f"{where}.message"),
                retry_after=_opt(d, "retry_after", (int, float), where),
                after_events=_opt(d, "after_events", int, where),
            )
        except ScenarioError as exc:
            if str(exc).startswith("error:"):
                raise ScenarioError(f"{where}:{str(exc)[len('error:') :]}") from None
            raise


def _opt(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = d.get(key)
    return None if value is None else _typed(value, kind, f"{where}.{key}")


@dataclass(frozen=True)
class Response:
    """What the server answers: content blocks, or an error, plus transport misbehaviour."""

    text: str | None = None
    tool_use: Sequence[ToolCall] = ()
    thinking: str | None = None
    stop_reason: str | None = None
    usage: Mapping[str, int] | None = None
    error: ErrorSpec | None = None
    delay: float = 0.0
    truncate_after_events: int | None = None
    malformed_event: bool = False
    stall: bool = False
    html: str | None = None
    headers: Mapping[str, str] | None = None  # extra response headers (the usage limiter's, say)

    def __post_init__(self) -> None:
        # Accept plain dicts from Python callers, so tests read like the YAML format.
        calls = tuple(c if isinstance(c, ToolCall) else ToolCall.from_dict(c) for c in self.tool_use)
        object.__setattr__(self, "tool_use", calls)
        if isinstance(self.error, Mapping):
            object.__setattr__(self, "error", ErrorSpec.from_dict(self.error))

    @classmethod
    def from_dict(cls, data: Any, where: str = "response") -> Response:
        keys = [f.name for f in fields(cls)]
        d = _check_keys(data, keys, where)
        calls = _typed(d.get("tool_use") or [], list, f"{where}.tool_use")
        usage = _opt(d, "usage", Mapping, where)
        if usage is not None:
            _check_keys(usage, _USAGE_KEYS, f"{where}.usage")
            for k, v in usage.items():
                _typed(v, int, f"{where}.usage.{k}")
        return cls(
            text=_opt(d, "text", str, where),
            tool_use=tuple(ToolCall.from_dict(c, f"{where}.tool_use[{i}]") for i, c in enumerate(calls)),
            thinking=_opt(d, "thinking", str, where),
            stop_reason=_opt(d, "stop_reason", str, where),
            usage=usage,
            error=None if d.get("error") is None else ErrorSpec.from_dict(d["error"], f"{where}.error"),
            delay=float(_typed(d.get("delay", 0.0), (int, float), f"{where}.delay")),
            truncate_after_events=_opt(d, "truncate_after_events", int, where),
            malformed_event=_typed(d.get("malformed_event", False), bool, f"{where}.malformed_event"),
            stall=_typed(d.get("stall", False), bool, f"{where}.stall"),
            html=_opt(d, "html", str, where),
            headers=_opt(d, "headers", Mapping, where),
        )


_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True)
class Match:
    """Conditions on one request; every condition that is set must hold."""

    contains: str | None = None
    last_user_contains: str | None = None
    turn: int | None = None
    has_tool_result: bool | None = None
    tool_result_contains: str | None = None
    system_contains: str | None = None
    model: str | None = None
    has_tools: bool | None = None
    stream: bool | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "match") -> Match:
        kinds: dict[str, type] = {
            "contains": str,
            "last_user_contains": str,
            "turn": int,
            "has_tool_result": bool,
            "tool_result_contains": str,
            "system_contains": str,
            "model": str,
            "has_tools": bool,
            "stream": bool,
        }
        d = _check_keys(data or {}, kinds, where)
        return cls(**{k: _opt(d, k, kinds[k], where) for k in d})

    def matches(self, conv: Conversation) -> bool:
        checks = (
            (self.contains, lambda v: v in conv.text),
            (self.last_user_contains, lambda v: v in conv.last_user_text),
            (self.turn, lambda v: v == conv.turn),
            (self.has_tool_result, lambda v: v == conv.has_tool_result),
            (self.tool_result_contains, lambda v: v in conv.tool_result_text),
            (self.system_contains, lambda v: v in conv.system_text),
            (self.model, lambda v: v in conv.model),
            (self.has_tools, lambda v: v == conv.has_tools),
            (self.stream, lambda v: v == conv.stream),
        )
        return all(check(value) for value, check in checks if value is not None)


@dataclass(frozen=True)
class Rule:
    """A match and its response; ``times`` lets "fail once, then succeed" be two rules."""

    response: Response
    match: Match = field(default_factory=Match)
    times: int | None = None
    name: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str = "rule") -> Rule:
        d = _check_keys(data, ("name", "match", "response", "times"), where)
        if "response" not in d:
            raise ScenarioError(f"{where}: missing key 'response'")
        return cls(
            name=_typed(d.get("name", ""), str, f"{where}.name"),
            match=Match.from_dict(d.get("match"), f"{where}.match"),
            response=Response.from_dict(d["response"], f"{where}.response"),
            times=_opt(d, "times", int, where),
        )


@dataclass(frozen=True)
class Scenario:
    """An ordered list of rules and the answer for requests none of them match."""

    rules: Sequence[Rule] = ()
    default: Response = field(default_factory=lambda: Response(text=DEFAULT_TEXT))

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))

    @classmethod
    def from_dict(cls, data: Any, where: str = "scenario") -> Scenario:
        d = _check_keys(data if data is not None else {}, ("rules", "default"), where)
        rules = _typed(d.get("rules") or [], list, f"{where}.rules")
        default = d.get("default")
        return cls(
            rules=tuple(Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(rules)),
            default=Response(text=DEFAULT_TEXT) if default is None else Response.from_dict(default, "default"),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Scenario:
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{p}: cannot read scenario: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw) if p.suffix == ".json" else safe_yaml.load(raw, max_bytes=16 * 1024 * 1024)
        except (ValueError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ScenarioError as exc:
            raise ScenarioError(f"{p}: {exc}") from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a YAML (or ``.json``) scenario file; errors name the file and key path."""
    return Scenario.from_file(path)


# --------------------------------------------------------------------------- reading requests


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, Mapping):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"{block.get('name', '')} {json.dumps(block.get('input', {}), ensure_ascii=False)}"
    if kind == "tool_result":
        return _content_text(block.get("content", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(_block_text(b) for b in content)
    return _block_text(content)


class Conversation:
    """What rules can see of one Messages request, computed once per request."""

    def __init__(self, body: Mapping[str, Any]):
        self.body = body
        messages = body.get("messages")
        self.messages: list[Mapping[str, Any]] = (
            [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []
        )
        self.model: str = str(body.get("model", ""))
        self.stream: bool = bool(body.get("stream", False))
        self.has_tools: bool = bool(body.get("tools"))

    @cached_property
    def text(self) -> str:
        return "\n".join(_content_text(m.get("content", "")) for m in self.messages)

    @cached_property
    def _last_user(self) -> Mapping[str, Any]:
        return next((m for m in reversed(self.messages) if m.get("role") == "user"), {})

    @cached_property
    def last_user_text(self) -> str:
        return _content_text(self._last_user.get("content", ""))

    @cached_property
    def _tool_results(self) -> list[Mapping[str, Any]]:
        content = self._last_user.get("content", "")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result"]

    @property
    def has_tool_result(self) -> bool:
        return bool(self._tool_results)

    @cached_property
    def tool_result_text(self) -> str:
        return "\n".join(_block_text(b) for b in self._tool_results)

    @cached_property
    def system_text(self) -> str:
        parts = [_content_text(self.body.get("system", ""))]
        parts += [_content_text(m.get("content", "")) for m in self.messages if m.get("role") == "system"]
        return "\n".join(parts)

    @property
    def turn(self) -> int:
        return 1 + sum(1 for m in self.messages if m.get("role") == "assistant")


def _estimate_tokens(*parts: Any) -> int:
    # ~4 characters per token is the usual rule of thumb; plausible is all cost tests need.
    chars = sum(len(p) if isinstance(p, str) else len(json.dumps(p, ensure_ascii=False)) for p in parts)
    return max(1, chars // 4)


def _input_tokens(body: Mapping[str, Any]) -> int:
    return _estimate_tokens(body.get("system", ""), body.get("messages", []), body.get("tools", []))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; secrets in headers are redacted."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    time: float
    rule: str | None = None  # name of the rule that answered; None for the default or non-message paths
    status: int = 200

    @cached_property
    def conversation(self) -> Conversation:
        return Conversation(self.body if isinstance(self.body, Mapping) else {})


# --------------------------------------------------------------------------- building answers


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _content_blocks(resp: Response) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if resp.thinking is not None:
        blocks.append({"type": "thinking", "thinking": resp.thinking, "signature": "scripted-" + uuid.uuid4().hex})
    if resp.text is not None:
        blocks.append({"type": "text", "text": resp.text})
    for call in resp.tool_use:
        blocks.append(
            {"type": "tool_use", "id": call.id or _new_id("toolu"), "name": call.name, "input": dict(call.input)}
        )
    return blocks


def _usage(resp: Response, body: Mapping[str, Any], blocks: list[dict[str, Any]]) -> dict[str, int]:
    out = _estimate_tokens(*(b.get("text") or b.get("thinking") or b.get("input") or "" for b in blocks))
    usage = {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": out,
    }
    usage.update(resp.usage or {})
    return usage


def _message(resp: Response, body: Mapping[str, Any]) -> dict[str, Any]:
    blocks = _content_blocks(resp)
    stop = resp.stop_reason or ("tool_use" if resp.tool_use else "end_turn")
    return {
        "id": _new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or "claude-scripted"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(resp, body, blocks),
    }


def _chunks(s: str) -> list[str]:
    return [s[i : i + _CHUNK] for i in range(0, len(s), _CHUNK)] or [""]


def _stream_events(message: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event sequence of a real streamed answer, as (event name, data)."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    yield (
        "message_start",
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}},
    )
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            start, deltas = (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": c} for c in _chunks(block["text"])],
            )
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": c} for c in _chunks(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            js = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": c} for c in ["", *_chunks(js)]]
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        if index == 0:
            yield "ping", {"type": "ping"}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": usage,
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _error_body(error: ErrorSpec, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.type, "message": error.message}, "request_id": request_id}


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams: what the real API speaks
    server: _HTTPServer
    server_version = "scripted-anthropic"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    # -- plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self._request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
            self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the connection the way a network failure would: no terminator, no goodbye."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _hold(self) -> None:
        """Hang until the server stops: the hung upstream a watchdog must notice."""
        self.server.owner._stopping.wait()
        self._cut()

    # -- routing

    def _dispatch(self) -> None:
        self._request_id = _new_id("req")
        owner = self.server.owner
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        headers = {k.lower(): ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers.items()}

        def record(rule: str | None = None, status: int = 200) -> None:
            owner._record(RecordedRequest(self.command, path, parts.query, headers, body, time.time(), rule, status))

        if self.command == "POST" and path == "/v1/messages":
            if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
                record(status=400)
                self._send_json(
                    400, _error_body(ErrorSpec(400, message="body must be JSON with 'messages'"), self._request_id)
                )
                return
            conv = Conversation(body)
            name, resp = owner._choose(conv)
            mid_stream = conv.stream and resp.error is not None and resp.error.after_events is not None
            record(name, resp.error.status if resp.error and not mid_stream else 200)
            log.info("POST /v1/messages model=%s turn=%s -> %s", conv.model, conv.turn, name or "default")
            self._answer(resp, body)
        elif self.command == "POST" and path == "/v1/messages/count_tokens":
            record()
            self._send_json(200, {"input_tokens": _input_tokens(body if isinstance(body, Mapping) else {})})
        elif self.command == "GET" and path == "/v1/models":
            record()
            data = [_model_info(m) for m in _MODELS]
            self._send_json(
                200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
            )
        elif self.command == "GET" and path.startswith("/v1/models/"):
            record()
            self._send_json(200, _model_info(path.rsplit("/", 1)[1]))
        else:
            record(status=404)
            log.warning("unscripted request %s %s: answered 404", self.command, self.path)
            self._send_json(
                404, _error_body(ErrorSpec(404, message=f"{self.command} {path} is not scripted"), self._request_id)
            )

    # -- answers

    def _answer(self, resp: Response, body: Mapping[str, Any]) -> None:
        stopping = self.server.owner._stopping
        if resp.delay > 0 and stopping.wait(resp.delay):
            self._cut()
            return
        if resp.html is not None:
            self._send_html(resp.html)
            return
        streaming = bool(body.get("stream"))
        if resp.error and not (streaming and resp.error.after_events is not None):
            extra: dict[str, str] = {}
            if resp.error.retry_after is not None:
                ra = resp.error.retry_after
                extra["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                extra["retry-after-ms"] = str(math.ceil(ra * 1000))
            extra.update(resp.headers or {})
            self._send_json(resp.error.status, _error_body(resp.error, self._request_id), extra)
            return
        message = _message(resp, body)
        if streaming:
            self._stream(resp, message)
        else:
            self._whole(resp, message)

    def _send_html(self, page: str) -> None:
        data = page.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _whole(self, resp: Response, message: Mapping[str, Any]) -> None:
        data = json.dumps(message).encode()
        if resp.malformed_event:
            data = data[: len(data) // 2]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self._request_id)
        for name, value in (resp.headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        if resp.stall:
            self._hold()
            return
        if resp.truncate_after_events is not None:
            self.wfile.write(data[: len(data) // 2])
            self._cut()
            return
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, resp: Response, message: Mapping[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self._request_id)
        for name, value in (resp.headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.flush()
        limit = resp.truncate_after_events
        if resp.stall and limit is None:
            self._hold()
            return
        events: Iterable[tuple[str, dict[str, Any]]] = _stream_events(message)
        if resp.error is not None:  # mid-stream error: the real API's overloaded-while-answering
            events = itertools.chain(
                itertools.islice(events, resp.error.after_events),
                [("error", _error_body(resp.error, self._request_id))],
            )
        sent = 0
        for name, data in events:
            if limit is not None and sent >= limit:
                if resp.stall:
                    self._hold()
                else:
                    self._cut()
                return
            self._chunk(_sse(name, data))
            sent += 1
            if resp.malformed_event and name == "content_block_start" and data["index"] == 0:
                self._chunk(
                    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {\n\n'
                )
                sent += 1
        if resp.malformed_event and not message["content"]:
            self._chunk(b"event: message_delta\ndata: {not json\n\n")
        self._chunk(b"")


def _model_info(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must never keep the process (or stop()) waiting
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ScriptedModelServer):
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on purpose in tests (timeouts, truncation); that is not a server bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.exception("error answering %s", client_address)


class ScriptedModelServer:
    """The Messages API on 127.0.0.1, answering from a scenario, recording every request.

    ``scenario`` may be a :class:`Scenario`, a sequence of :class:`Rule`, a path to a
    scenario file, or ``None`` (every request gets the default answer).
    """

    def __init__(
        self,
        scenario: Scenario | Sequence[Rule] | str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if scenario is None:
            scenario = Scenario()
        elif isinstance(scenario, str | os.PathLike):
            scenario = Scenario.from_file(scenario)
        elif not isinstance(scenario, Scenario):
            scenario = Scenario(rules=tuple(scenario))
        self.scenario: Scenario = scenario
        self.host = host
        self._requested_port = port
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._hits: dict[int, int] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> ScriptedModelServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled and delayed answers are released and their connections closed."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # idle keep-alive connections would otherwise block in recv forever
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for ``ANTHROPIC_BASE_URL`` / ``anthropic.Anthropic(base_url=...)`` (no ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    # -- recording

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def count_tokens_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/messages/count_tokens"]

    def wait_for_requests(
        self, count: int, *, path: str | None = "/v1/messages", timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Block until ``count`` requests (to ``path``; None = any) arrived; for tests that race a client."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if path is None or r.path == path]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} requests to {path or 'any path'}, got {len(matching())}")
            return matching()

    @property
    def rule_hits(self) -> dict[str, int]:
        """How often each rule fired, by name (unnamed rules are ``rules[i]``)."""
        with self._lock:
            return {self._rule_name(i): n for i, n in sorted(self._hits.items())}

    # -- internals used by the handler

    def _rule_name(self, index: int) -> str:
        return self.scenario.rules[index].name or f"rules[{index}]"

    def _choose(self, conv: Conversation) -> tuple[str | None, Response]:
        # Matching and counting happen under one lock so `times` holds under concurrent requests.
        with self._lock:
            for i, rule in enumerate(self.scenario.rules):
                if rule.times is not None and self._hits.get(i, 0) >= rule.times:
                    continue
                if rule.match.matches(conv):
                    self._hits[i] = self._hits.get(i, 0) + 1
                    return self._rule_name(i), rule.response
        return None, self.scenario.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


# --------------------------------------------------------------------------- scenario helpers


def _report_text(report: Mapping[str, Any], lead: str) -> str:
    return f"{lead}\n\n```json\n{json.dumps(report)}\n```\n"


def complete_task_rules(
    key: str,
    files: Mapping[str, str] | None = None,
    summary: str | None = None,
) -> list[Rule]:
    """Rules for the common happy path: write ``files`` on turn 1, then report completion.

    Both rules require ``has_tools`` so the CLI's side requests (titles, quota probes),
    which quote the prompt but offer no tools, cannot use them up.
    """
    files = dict(files or {})
    report = {
        "status": "complete",
        "summary": summary or f"{key} implemented.",
        "files_changed": list(files),
        "blocker": None,
    }
    done = Response(text=_report_text(report, f"{key} is done."))
    if not files:
        return [Rule(name=f"{key}: complete", match=Match(contains=key, has_tools=True), response=done)]
    write = Response(
        text=f"Working on {key}.",
        tool_use=tuple(ToolCall("Write", {"file_path": path, "content": content}) for path, content in files.items()),
    )
    return [
        Rule(name=f"{key}: write files", match=Match(contains=key, turn=1, has_tools=True), response=write),
        Rule(name=f"{key}: complete", match=Match(contains=key, has_tool_result=True, has_tools=True), response=done),
    ]


def blocked_rules(key: str, blocker: str, summary: str | None = None) -> list[Rule]:
    """A rule for a task the model cannot finish: it answers with a blocked report at once."""
    report = {
        "status": "blocked",
        "summary": summary or f"Could not finish {key}.",
        "files_changed": [],
        "blocker": blocker,
    }
    return [
        Rule(
            name=f"{key}: blocked",
            match=Match(contains=key, has_tools=True),
            response=Response(text=_report_text(report, f"{key} is blocked.")),
        )
    ]


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a scenario until interrupted; prints the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(
        prog="python -m autonomous.testing.model_server",
        description="Scripted Anthropic Messages API server for offline rehearsals.",
    )
    parser.add_argument(
        "--scenario", type=Path, help="YAML or JSON scenario file (default: answer everything with the default text)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--check", action="store_true", help="validate the scenario file and exit")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    args = parser.parse_args(argv)

    try:
        scenario = Scenario.from_file(args.scenario) if args.scenario else Scenario()
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"ok: {len(scenario.rules)} rules")
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    done = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: done.set())
    try:
        server = ScriptedModelServer(scenario, host=args.host, port=args.port).start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        print(server.url, flush=True)
        done.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
