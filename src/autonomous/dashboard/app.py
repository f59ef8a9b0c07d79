"""The dashboard's ASGI application: pages, JSON API, server-sent events, and the guard
that checks every request (see the package docstring for the security model)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autonomous import actions
from autonomous.config import Config, build_redactor
from autonomous.dashboard import views
from autonomous.errors import ActionRefused, AutonomousError, TaskNotFound
from autonomous.events import Redactor
from autonomous.events.format import describe
from autonomous.jsondoc import envelope
from autonomous.progress import build_status, read_events, with_task_keys
from autonomous.providers import get_provider
from autonomous.providers.base import StateProvider
from autonomous.tasks import TaskStatus

COOKIE = "autonomous_dashboard"
CSRF_HEADER = "x-csrf-token"
KEEPALIVE_S = 15.0
POLL_S = 0.2  # how often the event stream looks for new lines in events.jsonl

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class Guard:
    """Checks every HTTP request before the app sees it: the ``Host`` header (loopback
    without a token), the token (when there is one), and for POST the CSRF token, the
    ``Origin`` and ``--read-only``. A token given as ``?token=`` on a page is kept in an
    HttpOnly, SameSite=Strict cookie so the page's own requests carry it."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, csrf: str, read_only: bool, hosts: Collection[str] | None
    ) -> None:
        self.app, self.token, self.csrf, self.read_only = app, token, csrf, read_only
        self.hosts = {h.lower() for h in hosts} if hosts is not None else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        query_token = request.query_params.get("token")
        if self.token and query_token and request.method == "GET":
            await self.app(scope, receive, _with_cookie(send, self.token))
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return _error(403, f"unexpected Host {host!r}: open the dashboard at the address it printed")
        if self.token and not self._has_token(request):
            return _error(401, "this dashboard needs its token (?token=... or Authorization: Bearer ...)")
        if request.method not in ("GET", "HEAD"):
            if self.read_only:
                return _error(403, "the dashboard is read-only (started with --read-only)")
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
                return _error(403, "missing or wrong CSRF token: reload the page")
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1].lower() != host:
                return _error(403, f"cross-origin request from {origin} refused")
        return None

    def _has_token(self, request: Request) -> bool:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        for candidate in (
            header[7:] if header.lower().startswith("bearer ") else "",
            request.query_params.get("token", ""),
            request.cookies.get(COOKIE, ""),
        ):
            if candidate and hmac.compare_digest(candidate.encode(), self.token.encode()):
                return True
        return False


def _with_cookie(send: Callable, token: str) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
        await send(message)

    return wrapped


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _static_text(name: str) -> str:
    return resources.files("autonomous.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def create_app(
    config: Config,
    *,
    read_only: bool = False,
    token: str | None = None,
    hosts: Collection[str] | None = None,
    provider: StateProvider | None = None,
) -> ASGIApp:
    """The dashboard for ``config``'s project. ``hosts``: the ``Host`` header values
    accepted (None: any; the server passes the loopback names when there is no token).
    ``provider``: an open store to use (default: opened from the config at startup)."""
    redactor = build_redactor(config)
    csrf = secrets.token_urlsafe(32)
    ordering = config.execution.ordering
    review = config.execution.review_unblocks_dependents  # an in_review task lets its dependents go
    state: dict[str, StateProvider] = {}
    page = _static_text("index.html").replace("{{csrf}}", csrf).replace("{{read_only}}", str(read_only).lower())

    def store() -> StateProvider:
        return state["provider"]

    def reply(payload: dict[str, Any]) -> Response:
        # serialised as ``--json`` output is, so /api/status is byte for byte ``status --json``'s data
        body = json.dumps(redactor.value(envelope(payload)), default=str)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking store call, in a thread so the event streams keep flowing."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def status(request: Request) -> Response:
        return reply(await call(build_status, config, store()))

    async def tasks(request: Request) -> Response:
        try:
            statuses = [TaskStatus(s) for s in request.query_params.getlist("status")] or None
        except ValueError as exc:
            return _error(400, f"status: {exc}")
        offset, limit = views.page_bounds(request.query_params.get("offset"), request.query_params.get("limit"), 200)
        return reply(await call(views.tasks_page, store(), statuses, offset, limit))

    async def board(request: Request) -> Response:
        column = request.query_params.get("column")
        if column is not None and column not in views.COLUMNS:
            return _error(400, f"column: {column!r} is not one of {', '.join(views.COLUMNS)}")
        offset, limit = views.page_bounds(request.query_params.get("offset"), request.query_params.get("limit"), 50)
        return reply(
            await call(
                views.board,
                store(),
                ordering=ordering,
                review_satisfies=review,
                column=column,
                offset=offset,
                limit=limit,
            )
        )

    async def task(request: Request) -> Response:
        ref = request.path_params["ref"]
        return reply(
            await call(views.task_page, store(), ref, config.project_dir, ordering=ordering, review_satisfies=review)
        )

    async def cost(request: Request) -> Response:
        return reply({"points": await call(views.cost_series, config.log_dir)})

    async def events(request: Request) -> Response:
        try:
            tail = min(views.MAX_PAGE, max(0, int(request.query_params.get("tail", "0"))))
        except ValueError:
            return _error(400, "tail: not a number")
        return StreamingResponse(
            _event_stream(config, store(), redactor, tail),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def action(fn: Callable[..., Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await request.json() if request.headers.get("content-length", "0") != "0" else {}
            except ValueError:
                return _error(400, "the body is not JSON")
            who = actions.person("dashboard")
            done = await call(fn, store(), request.path_params["ref"], who, **(body if isinstance(body, dict) else {}))
            return reply({"task": done.to_dict()})

        return endpoint

    def reject(provider: StateProvider, ref: str, who: str, note: str = "") -> Any:
        return actions.reject(provider, ref, who, note if isinstance(note, str) else "")

    def set_priority(provider: StateProvider, ref: str, who: str, priority: str = "") -> Any:
        try:
            return actions.set_priority(provider, ref, priority, who)
        except ValueError:
            raise ActionRefused(f"priority: {priority!r} is not urgent, high, normal or low") from None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["provider"] = provider if provider is not None else await asyncio.to_thread(get_provider, config)
        try:
            yield
        finally:
            if provider is None:
                state["provider"].close()

    async def library_error(request: Request, exc: Exception) -> Response:
        code = 404 if isinstance(exc, TaskNotFound) else 409
        return _error(code, redactor.text(str(exc)))

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/status", status),
            Route("/api/board", board),
            Route("/api/tasks", tasks),
            Route("/api/tasks/{ref}/retry", action(actions.retry), methods=["POST"]),
            Route("/api/tasks/{ref}/cancel", action(actions.cancel), methods=["POST"]),
            Route("/api/tasks/{ref}/priority", action(set_priority), methods=["POST"]),
            Route("/api/tasks/{ref}/approve", action(actions.approve), methods=["POST"]),
            Route("/api/tasks/{ref}/reject", action(reject), methods=["POST"]),
            Route("/api/tasks/{ref}", task),
            Route("/api/cost", cost),
            Route("/api/events", events),
            Mount("/static", StaticFiles(packages=[("autonomous.dashboard", "static")]), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={AutonomousError: library_error},
    )
    return Guard(app, token=token, csrf=csrf, read_only=read_only, hosts=hosts)


async def _event_stream(config: Config, provider: StateProvider, redactor: Redactor, tail: int) -> AsyncIterator[str]:
    """Server-sent events: the last ``tail`` events, then each new one as the runner
    appends it, each with ``line``, what happened in a few words (as ``autonomous logs``
    says it). The file is followed by :func:`read_events` in a thread of its own, which
    ends when the client goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def pump() -> None:
        followed = read_events(config.log_dir, tail=tail, follow=True, poll_interval=POLL_S, stop=stop.is_set)
        for event in with_task_keys(followed, provider):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the server's loop is gone
                return

    threading.Thread(target=pump, name="dashboard-events", daemon=True).start()
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            shown = redactor.value({**event, "line": describe(event)})
            yield f"data: {json.dumps(shown, default=str)}\n\n"
    finally:
        stop.set()
