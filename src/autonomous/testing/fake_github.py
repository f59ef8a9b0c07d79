"""A fake GitHub REST API (issues and pull requests), for tests and rehearsals that touch no network.

A real HTTP server on 127.0.0.1 (a free port), holding one repository in memory: issues
with numbers, labels, comments, ``state``/``state_reason``, issue dependencies
("blocked by"), and pull requests mixed into the issue listings (as GitHub does) so a
client can prove it ignores them. This module is the server and the protocol; what the
issues endpoints answer is in fake_github_issues.py, the pulls endpoints, reviews and
merges in fake_github_pulls.py. It speaks the parts of the protocol a careful client
must handle: ``Link`` pagination, ETags with ``304 Not Modified`` (which, as on GitHub,
cost no rate limit), the ``x-ratelimit-*`` headers, and a fault plan for the failures
worth rehearsing.

Usage::

    with FakeGitHub(owner="acme", repo="widgets", token="t0k") as gh:
        provider = GitHubProvider("acme/widgets", api_url=gh.url, ...)
        ...
        gh.fail("GET", "/repos/acme/widgets/issues", status=403, retry_after=2)  # secondary limit once
        gh.fail(status=502, times=2)                                             # two 5xx, then fine
        gh.hang(times=1)                 # the next request gets no answer until the client gives up
        gh.delete_issue(7)               # later reads of #7 answer 410 Gone
        gh.add_token("ro", permissions={"issues": "read"})  # writes answer 403 + X-Accepted-GitHub-Permissions
        gh.requests                      # every exchange, in order (see Exchange)

Responses are shaped after GitHub's OpenAPI description (``tests/test_github_schema.py``
validates every one a whole run produces against it).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx

from autonomous.testing.fake_github_pulls import PullsMixin

API_VERSION = "2022-11-28"


@dataclass
class Exchange:
    """One request the fake received and what it answered."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    status: int = 0
    response: Any = None  # parsed JSON, or None (304, 204)
    response_headers: dict[str, str] = field(default_factory=dict)
    template: str = ""  # the OpenAPI path template it matched, e.g. /repos/{owner}/{repo}/issues/{issue_number}


@dataclass
class Fault:
    """A planned failure: the next ``times`` requests matching (method, path regex) get it."""

    status: int = 0  # 0 with hang=True: no answer
    method: str | None = None
    path: str | None = None  # a regular expression, searched in the path
    times: int = 1
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    hang: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or re.search(self.path, path))


class FakeGitHub(PullsMixin):
    """See the module docstring. ``now`` is the clock of the timestamps it writes;
    ``git_dir`` the bare repository its pull requests live in (fake_github_pulls.py)."""

    def __init__(
        self,
        owner: str = "acme",
        repo: str = "widgets",
        token: str = "test-token",
        *,
        login: str = "autonomous-bot",
        dependencies_api: bool = True,
        rate_limit: int = 5000,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        git_dir: Path | None = None,
    ) -> None:
        self.owner, self.repo, self.login = owner, repo, login
        self.git_dir = git_dir
        self.tokens: dict[str, dict[str, str]] = {
            token: {"issues": "write", "pull_requests": "write", "contents": "read", "metadata": "read"}
        }
        self.dependencies_api = dependencies_api
        self.rate_limit = rate_limit
        self.rate_remaining = rate_limit
        self.rate_reset = int(time.time()) + 3600
        self.now = now
        self.issues: dict[int, dict[str, Any]] = {}  # number -> stored issue or pull request
        self.comments: list[dict[str, Any]] = []  # stored comments, in creation order
        self.labels: dict[str, dict[str, Any]] = {}  # name -> label
        self.blocked_by: dict[int, list[int]] = {}  # number -> numbers of its blockers
        self.gone: set[int] = set()  # deleted issue numbers (410)
        self.faults: list[Fault] = []
        self.requests: list[Exchange] = []
        self._next_number = 1
        self._next_id = 1000
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)  # notified on every request (wait_for_request)
        self._release = threading.Event()  # set at shutdown: ends every hanging request
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server's base URL (``http://fake-github.invalid`` when used only as a transport)."""
        if self._server is None:
            return "http://fake-github.invalid"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def transport(self) -> httpx.BaseTransport:
        """The same fake as an in-process httpx transport: no socket, no thread, the same
        answers (hangs excepted: they need a real socket to time out on). For suites that
        send thousands of requests; the HTTP server is what proves the wire behaviour."""
        fake = self

        class Transport(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                raw = request.read()
                query = {k: v for k, v in request.url.params.items()}
                ex = Exchange(
                    request.method, unquote(request.url.path), query,
                    {k.lower(): v for k, v in request.headers.items()}, json.loads(raw) if raw else None,
                )  # fmt: skip
                fault = fake._receive(ex)
                if fault is not None and fault.hang:
                    raise httpx.ReadTimeout("fake hang", request=request)
                with fake._lock:
                    status, payload, headers = fake._answer(ex, fault)
                    headers = fake._headers(ex, status, payload, headers)
                data = b"" if payload is None else json.dumps(payload).encode()
                return httpx.Response(status, headers=headers, content=data, request=request)

        return Transport()

    # -- test controls ---------------------------------------------------------------
    def add_token(self, token: str, permissions: dict[str, str]) -> None:
        """Accept another token with these fine-grained permissions (``{"issues": "read"}``)."""
        self.tokens[token] = permissions

    def fail(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        message: str = "",
    ) -> Fault:
        fault = Fault(status, method, path, times, retry_after, dict(headers or {}), message)
        with self._lock:
            self.faults.append(fault)
        return fault

    def secondary_rate_limit(self, *, retry_after: int = 60, times: int = 1, status: int = 403) -> Fault:
        return self.fail(
            status=status,
            times=times,
            retry_after=retry_after,
            message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )

    def hang(self, method: str | None = None, path: str | None = None, *, times: int = 1) -> Fault:
        fault = Fault(0, method, path, times, hang=True)
        with self._lock:
            self.faults.append(fault)
        return fault

    def delete_issue(self, number: int) -> None:
        with self._lock:
            self.issues.pop(number, None)
            self.gone.add(number)
            self.comments = [c for c in self.comments if c["_number"] != number]
            self.blocked_by.pop(number, None)
            for blockers in self.blocked_by.values():
                if number in blockers:
                    blockers.remove(number)

    def add_blocker_line(self, number: int, blocker: int) -> None:
        """Append ``- [ ] #blocker`` to the "Blocked by" list of an issue body, as a person editing
        the body would (the blocker need not exist: what a deleted dependency looks like)."""
        with self._lock:
            body = self.issues[number]["body"]
            marker = "### Blocked by\n"
            if marker in body:
                body = body.replace(marker, f"{marker}- [ ] #{blocker}\n", 1)
            else:
                at = body.find("<!-- autonomous:key=")
                at = len(body) if at < 0 else at
                body = body[:at] + f"{marker}- [ ] #{blocker}\n\n" + body[at:]
            self.issues[number]["body"] = body

    def add_pull_request(self, title: str = "A pull request") -> int:
        """A pull request: GitHub lists these among the issues, with a ``pull_request`` key."""
        with self._lock:
            number = self._new_issue(title, "", [])
            self.issues[number]["_pull_request"] = True
            return number

    def add_issue(self, title: str, body: str = "", labels: list[str] | None = None) -> int:
        """An issue made by a person (no autonomous markers)."""
        with self._lock:
            return self._new_issue(title, body, labels or [])

    def wait_for_request(self, method: str, path: str, count: int = 1, timeout: float = 60.0) -> None:
        """Block until ``count`` requests ``method`` ``path`` (a regular expression, searched)
        arrived in all; AssertionError after ``timeout`` seconds. What a test waits on while
        a client in another process works, instead of sleeping."""

        def arrived() -> bool:
            return sum(1 for ex in self.requests if ex.method == method and re.search(path, ex.path)) >= count

        with self._arrived:
            if not self._arrived.wait_for(arrived, timeout):
                raise AssertionError(f"fake GitHub: {count} x {method} {path} did not arrive within {timeout}s")

    def counts(self) -> dict[str, int]:
        """Requests received by method, and 304s."""
        out: dict[str, int] = {}
        for ex in self.requests:
            out[ex.method] = out.get(ex.method, 0) + 1
            if ex.status == 304:
                out["304"] = out.get("304", 0) + 1
        return out

    # -- state ---------------------------------------------------------------------
    def _stamp(self) -> str:
        """Now, as GitHub writes times (UTC, whole seconds)."""
        return self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _new_issue(self, title: str, body: str, labels: list[str]) -> int:
        number = self._next_number
        self._next_number += 1
        now = self._stamp()
        for name in labels:
            self._label(name)
        self.issues[number] = {
            "id": self._id(), "number": number, "title": title, "body": body, "labels": list(dict.fromkeys(labels)),
            "state": "open", "state_reason": None, "created_at": now, "updated_at": now, "closed_at": None,
        }  # fmt: skip
        return number

    def _label(self, name: str, color: str = "ededed", description: str | None = None) -> dict[str, Any]:
        if name not in self.labels:
            self.labels[name] = {
                "id": self._id(), "node_id": f"LA_{name}", "url": f"{self._api}/labels/{name}", "name": name,
                "description": description, "color": color, "default": False,
            }  # fmt: skip
        return self.labels[name]

    @property
    def _api(self) -> str:
        return f"https://api.github.com/repos/{self.owner}/{self.repo}"

    def _user(self) -> dict[str, Any]:
        base = f"https://api.github.com/users/{self.login}"
        return {
            "login": self.login, "id": 1, "node_id": "U_1", "avatar_url": "https://avatars.githubusercontent.com/u/1",
            "gravatar_id": "", "url": base, "html_url": f"https://github.com/{self.login}",
            "followers_url": f"{base}/followers", "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}", "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions", "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events", "type": "Bot", "site_admin": False,
        }  # fmt: skip

    # -- HTTP ----------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        ex = Exchange(h.command, path, query, {k.lower(): v for k, v in h.headers.items()}, body)
        fault = self._receive(ex)
        if fault is not None and fault.hang:
            self._release.wait(30)  # the client's timeout ends the exchange first
            ex.status = 0
            return
        with self._lock:
            status, payload, headers = self._answer(ex, fault)
        self._send(h, ex, status, payload, headers)

    def _receive(self, ex: Exchange) -> Fault | None:
        """Record a request (waking ``wait_for_request``) and take the fault planned for it."""
        with self._lock:
            self.requests.append(ex)
            self._arrived.notify_all()
            fault = next((f for f in self.faults if f.times > 0 and f.matches(ex.method, ex.path)), None)
            if fault is not None:
                fault.times -= 1
            return fault

    def _send(
        self, h: BaseHTTPRequestHandler, ex: Exchange, status: int, payload: Any, headers: dict[str, str]
    ) -> None:
        headers = self._headers(ex, status, payload, headers)
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            if data:
                h.wfile.write(data)
        except OSError:  # the client gave up (timeout) while we answered
            pass

    def _headers(self, ex: Exchange, status: int, payload: Any, headers: dict[str, str]) -> dict[str, str]:
        data = b"" if payload is None else json.dumps(payload).encode()
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_remaining),
            "x-ratelimit-reset": str(self.rate_reset),
            "x-ratelimit-used": str(self.rate_limit - self.rate_remaining),
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": API_VERSION,
            **headers,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Content-Length"] = str(len(data))
        ex.status, ex.response, ex.response_headers = status, payload, headers
        return headers

    @staticmethod
    def _error(status: int, message: str) -> dict[str, Any]:
        return {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}

    def _answer(self, ex: Exchange, fault: Fault | None) -> tuple[int, Any, dict[str, str]]:
        if fault is not None:
            headers = dict(fault.headers)
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            return fault.status, self._error(fault.status, fault.message or "Server Error"), headers
        auth = ex.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").removeprefix("token ").strip()
        if token not in self.tokens:
            return 401, self._error(401, "Bad credentials"), {}
        prefix = f"/repos/{self.owner}/{self.repo}"
        if not ex.path.startswith(prefix + "/"):
            return 404, self._error(404, "Not Found"), {}
        route = self._route(ex.method, ex.path[len(prefix) :])
        if route is None:
            return 404, self._error(404, "Not Found"), {}
        handler, template, args, needs = route
        ex.template = "/repos/{owner}/{repo}" + template
        perms = self.tokens[token]
        scope, level = needs
        granted = "read" if scope == "metadata" else perms.get(scope)  # metadata: always readable
        if granted is None or (level == "write" and granted != "write"):
            return (
                403,
                self._error(403, "Resource not accessible by personal access token"),
                {"X-Accepted-GitHub-Permissions": f"{scope}={level}"},
            )
        self.rate_remaining = max(0, self.rate_remaining - 1)  # refunded below for a 304
        status, payload, headers = handler(ex, *args)
        if ex.method == "GET" and status == 200:
            etag = 'W/"' + hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest() + '"'
            headers["ETag"] = etag
            if ex.headers.get("if-none-match") == etag:
                self.rate_remaining += 1  # as on GitHub: a 304 does not count against the limit
                return 304, None, {"ETag": etag}
        return status, payload, headers

    def _route(self, method: str, rest: str) -> tuple[Any, str, tuple[Any, ...], tuple[str, str]] | None:
        table: list[tuple[str, str, str, Any, tuple[str, str]]] = [
            *self.issue_routes(),
            *self.pull_routes(),
        ]  # fmt: skip
        for m, pattern, template, handler, needs in table:
            found = re.fullmatch(pattern, rest)
            if m == method and found:
                if "dependencies" in template and not self.dependencies_api:
                    return None
                return handler, template, tuple(int(g) for g in found.groups()), needs
        return None

    def _page(self, ex: Exchange, items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        per_page = max(1, min(100, int(ex.query.get("per_page", 30))))
        page = max(1, int(ex.query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            q = urlencode({**ex.query, "page": n})
            return f'<{self.url}{ex.path}?{q}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        return 200, chunk, ({"Link": ", ".join(links)} if links else {})


def open_test_provider(
    now: Callable[[], datetime] | None = None, *, fake: FakeGitHub | None = None, **options: Any
) -> Any:
    """A :class:`~autonomous.providers.github.GitHubProvider` on a fake of its own, tuned
    for tests (no write spacing, instant waits); ``provider.close()`` also stops the fake,
    which stays reachable as ``provider.fake``. A fake that is not started is reached
    through its in-process transport (what the contract suite's kit uses, for speed);
    a started one over HTTP."""
    from autonomous.providers.github import GitHubProvider

    class FakeBackedProvider(GitHubProvider):
        def close(self) -> None:
            super().close()
            self.fake.stop()

    fake = fake or FakeGitHub()
    settings: dict[str, Any] = {
        "api_url": fake.url,
        "env": {"GITHUB_TOKEN": next(iter(fake.tokens))},
        "write_interval": 0.0,
        "sleep": lambda seconds: None,
        "backoff": 0.0,
        "timeout": 5.0,
        **({"now": now} if now else {}),
        **({} if fake._server is not None else {"transport": fake.transport()}),
        **options,
    }
    provider = FakeBackedProvider(f"{fake.owner}/{fake.repo}", **settings)
    provider.fake = fake  # type: ignore[attr-defined]
    return provider
