"""A fake Linear GraphQL API on 127.0.0.1, for tests and rehearsals that touch no network.

It executes the documents a client sends (with graphql-core) against in-memory
workspaces: teams with workflow states of every type, labels, projects, issues, comments
and relations. Its schema, :data:`SCHEMA_SDL`, is a small subset of Linear's official one
(``tests/providers/test_linear_schema.py`` checks that every type, field and argument it declares
exists there with the same type), so a document the fake accepts is shaped like one
Linear accepts.

Usage::

    with FakeLinear() as server:
        key = server.add_workspace(teams=["Engineering"])      # a fresh workspace and its API key
        provider = LinearProvider(endpoint=server.url, env={"LINEAR_API_KEY": key})
        ...
        server.fail_next("ratelimit")                          # fault injection, see below
        assert server.operations().count("IssueUpdate") == 1

Faults (:meth:`FakeLinear.fail_next`, each for the next ``times`` requests):
``ratelimit`` (HTTP 400, ``extensions.code: RATELIMITED``, reset headers ``reset_in``
seconds ahead, as Linear does), ``5xx`` (HTTP ``status``, default 500), ``internal``
(HTTP 200 with an ``INTERNAL_SERVER_ERROR`` error), ``hang`` (no answer until the
server stops or ``hang_seconds`` pass: the client's timeout fires). A key added with
``scopes="read"`` gets ``FORBIDDEN`` on every mutation, an unknown key HTTP 401
``AUTHENTICATION_ERROR``. :meth:`Workspace.delete_issue` trashes an issue mid-run.
``on_request`` is called before each request is executed (outside the lock), which lets
a test interleave two clients deterministically.

Timestamps come from each workspace's clock (``now=``) and strictly increase, so
``createdAt`` order is commit order, as the provider's claim rule assumes.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

import graphql

from autonomous.testing.fake_linear_workspace import FakeComment, Root, Workspace

__all__ = [
    "SCHEMA_SDL",
    "FakeComment",
    "FakeLinear",
    "RecordedRequest",
    "Workspace",
    "open_test_provider",
    "shared_server",
]

# The schema the fake executes: package data, a subset of Linear's official SDL.
SCHEMA_SDL = (files("autonomous.testing") / "fake_linear.graphql").read_text(encoding="utf-8")

# -- the HTTP server ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    operation: str
    variables: dict[str, Any]
    api_key: str
    status: int = 0
    fault: str = ""


@dataclass
class _Fault:
    kind: str
    times: int
    options: dict[str, Any]


class FakeLinear:
    """The server. ``with FakeLinear() as server:`` starts it on a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.schema = graphql.build_schema(SCHEMA_SDL)
        self._host, self._port = host, port
        self.keys: dict[str, tuple[Workspace, str]] = {}  # api key -> (workspace, scopes)
        self.requests: list[RecordedRequest] = []
        self.faults: list[_Fault] = []
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self.requests_limit = 5000
        self._remaining: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._parsed: dict[str, graphql.DocumentNode] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------
    def add_workspace(
        self, teams: list[str] | None = None, *, now: Callable[[], datetime] | None = None, key: str | None = None
    ) -> str:
        """A fresh workspace with these teams; returns the API key that sees it."""
        ws = Workspace(["Engineering"] if teams is None else teams, now)
        key = key or f"lin_api_{uuid.uuid4().hex}"
        self.keys[key] = (ws, "write")
        return key

    def add_key(self, workspace_key: str, *, scopes: str = "write") -> str:
        """Another key on the workspace of ``workspace_key``; ``scopes="read"`` cannot write."""
        key = f"lin_api_{uuid.uuid4().hex}"
        self.keys[key] = (self.keys[workspace_key][0], scopes)
        return key

    def workspace(self, key: str) -> Workspace:
        return self.keys[key][0]

    def fail_next(self, kind: str, times: int = 1, **options: Any) -> None:
        if kind not in ("ratelimit", "5xx", "internal", "hang"):
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self.faults.append(_Fault(kind, times, options))

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not running"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/graphql"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeLinear:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out as two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add 40 ms to every answer
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body, headers = server._handle(self.headers.get("Authorization") or "", raw)
                if status == 0:  # hung: the client gave up; close without an answer
                    self.close_connection = True
                    return
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-linear", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLinear:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------------
    def _rate_headers(self, key: str, remaining: int | None = None, reset_in: float = 3600.0) -> dict[str, str]:
        left = self._remaining.get(key, self.requests_limit) if remaining is None else remaining
        reset = str(int((time.time() + reset_in) * 1000))
        return {
            "X-RateLimit-Requests-Limit": str(self.requests_limit),
            "X-RateLimit-Requests-Remaining": str(left),
            "X-RateLimit-Requests-Reset": reset,
            "X-RateLimit-Complexity-Limit": "3000000",
            "X-RateLimit-Complexity-Remaining": "2999000",
            "X-RateLimit-Complexity-Reset": reset,
            "X-Complexity": "100",
        }

    def _handle(self, key: str, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            payload = json.loads(raw or b"{}")
            query, variables = payload["query"], payload.get("variables") or {}
        except (ValueError, KeyError):
            return 400, {"errors": [{"message": "Body must be JSON with a query"}]}, {}
        operation = self._operation(query)
        record = RecordedRequest(operation, variables, key)
        with self._lock:
            self.requests.append(record)
            fault = self.faults[0] if self.faults else None
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.pop(0)
            self._remaining[key] = max(0, self._remaining.get(key, self.requests_limit) - 1)
        if self.on_request is not None:
            self.on_request(record)
        status, body, headers = self._answer(key, query, variables, fault, record)
        record.status = status
        return status, body, headers

    def _answer(
        self, key: str, query: str, variables: dict[str, Any], fault: _Fault | None, record: RecordedRequest
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if key.lower().startswith("bearer ") or key not in self.keys:
            return (
                401,
                {
                    "errors": [
                        {
                            "message": "Authentication required, not authenticated",
                            "extensions": {"code": "AUTHENTICATION_ERROR", "type": "authentication error"},
                        }
                    ]
                },
                {},
            )
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "ratelimit":
                reset_in = float(fault.options.get("reset_in", 2.0))
                body = {
                    "errors": [
                        {
                            "message": "Rate limit exceeded",
                            "extensions": {"code": "RATELIMITED", "type": "ratelimited"},
                        }
                    ]
                }
                return 400, body, self._rate_headers(key, remaining=0, reset_in=reset_in)
            if fault.kind == "5xx":
                return int(fault.options.get("status", 500)), {"errors": [{"message": "Internal error"}]}, {}
            if fault.kind == "internal":
                error = {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
                return 200, {"data": None, "errors": [error]}, self._rate_headers(key)
            if fault.kind == "hang":
                self._stopping.wait(float(fault.options.get("hang_seconds", 5.0)))
                return 0, {}, {}
        ws, scopes = self.keys[key]
        document = self._parse(query)
        if isinstance(document, list):
            return 400, {"errors": document}, self._rate_headers(key)
        is_mutation = any(
            isinstance(d, graphql.OperationDefinitionNode) and d.operation is graphql.OperationType.MUTATION
            for d in document.definitions
        )
        if is_mutation and scopes != "write":
            error = {
                "message": "Forbidden: the API key lacks the write scope (Invalid scope: `write` required)",
                "extensions": {"code": "FORBIDDEN", "type": "forbidden"},
            }
            return 400, {"data": None, "errors": [error]}, self._rate_headers(key)
        with ws.lock:
            result = graphql.execute(self.schema, document, root_value=Root(ws), variable_values=variables)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_error(e) for e in result.errors]
        status = 400 if result.errors and result.data is None else 200
        return status, body, self._rate_headers(key)

    def _parse(self, query: str) -> graphql.DocumentNode | list[dict[str, Any]]:
        cached = self._parsed.get(query)
        if cached is not None:
            return cached
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            return [{"message": exc.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]
        problems = graphql.validate(self.schema, document)
        if problems:
            return [{"message": p.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for p in problems]
        self._parsed[query] = document
        return document

    @staticmethod
    def _operation(query: str) -> str:
        m = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
        return m.group(1) if m else "anonymous"


def _error(error: graphql.GraphQLError) -> dict[str, Any]:
    original = error.original_error
    extensions = getattr(original, "extensions", None) or {"code": "INTERNAL_SERVER_ERROR"}
    if original is None:
        extensions = {"code": "GRAPHQL_VALIDATION_FAILED"}
    return {"message": error.message, "path": error.path, "extensions": extensions}


# -- for tests: one shared server, a fresh workspace per provider ---------------------------------

_shared: FakeLinear | None = None
_shared_lock = threading.Lock()


def shared_server() -> FakeLinear:
    """One server for a whole test session (a daemon thread; it dies with the process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FakeLinear().start()
        return _shared


def open_test_provider(
    clock: Callable[[], datetime], state_dir: Any, *, project_name: str | None = "Contract", **options: Any
) -> Any:
    """A LinearProvider on a fresh workspace of the shared server, on the test's clock and
    never sleeping; ``provider.fake`` is the server, ``provider.fake_key`` its API key."""
    from autonomous.providers.linear import LinearProvider

    server = shared_server()
    key = server.add_workspace(now=clock)
    options = {"sleep": lambda seconds: None, **options}
    provider = LinearProvider(
        endpoint=server.url,
        env={"LINEAR_API_KEY": key},
        project_name=project_name,
        state_dir=state_dir,
        now=clock,
        **options,
    )
    provider.fake, provider.fake_key = server, key  # type: ignore[attr-defined]
    return provider
