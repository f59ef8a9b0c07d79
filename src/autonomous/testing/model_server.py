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
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autonomous.errors import ScenarioError
from autonomous.testing.answers import build_message, error_body, new_id, sse, stream_events
from autonomous.testing.scenario import (
    DEFAULT_TEXT,
    Conversation,
    ErrorSpec,
    Match,
    RecordedRequest,
    Response,
    Rule,
    Scenario,
    ToolCall,
    blocked_rules,
    complete_task_rules,
    input_tokens,
    load_scenario,
)

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

_SECRET_HEADERS = {"x-api-key", "authorization", "proxy-authorization", "cookie"}
_MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5")


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
        self._request_id = new_id("req")
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
                    400, error_body(ErrorSpec(400, message="body must be JSON with 'messages'"), self._request_id)
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
            self._send_json(200, {"input_tokens": input_tokens(body if isinstance(body, Mapping) else {})})
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
                404, error_body(ErrorSpec(404, message=f"{self.command} {path} is not scripted"), self._request_id)
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
            self._send_json(resp.error.status, error_body(resp.error, self._request_id), extra)
            return
        message = build_message(resp, body)
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
        events: Iterable[tuple[str, dict[str, Any]]] = stream_events(message)
        if resp.error is not None:  # mid-stream error: the real API's overloaded-while-answering
            events = itertools.chain(
                itertools.islice(events, resp.error.after_events),
                [("error", error_body(resp.error, self._request_id))],
            )
        sent = 0
        for name, data in events:
            if limit is not None and sent >= limit:
                if resp.stall:
                    self._hold()
                else:
                    self._cut()
                return
            self._chunk(sse(name, data))
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
