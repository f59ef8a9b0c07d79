"""A fake GitHub REST API (the issues part), for tests and rehearsals that touch no network.

A real HTTP server on 127.0.0.1 (a free port), holding one repository in memory: issues
with numbers, labels, comments, ``state``/``state_reason``, issue dependencies
("blocked by"), and pull requests mixed into the issue listings (as GitHub does) so a
client can prove it ignores them; the pulls endpoints, reviews and merges are in
fake_github_pulls.py. It speaks the parts of the protocol a careful client
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


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
                with fake._lock:
                    fake.requests.append(ex)
                    fake._arrived.notify_all()
                    fault = next((f for f in fake.faults if f.times > 0 and f.matches(ex.method, ex.path)), None)
                    if fault is not None:
                        fault.times -= 1
                    if fault is not None and fault.hang:
                        raise httpx.ReadTimeout("fake hang", request=request)
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
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _new_issue(self, title: str, body: str, labels: list[str]) -> int:
        number = self._next_number
        self._next_number += 1
        now = _iso(self.now())
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

    def _issue_json(self, number: int) -> dict[str, Any]:
        st = self.issues[number]
        url = f"{self._api}/issues/{number}"
        html = f"https://github.com/{self.owner}/{self.repo}/issues/{number}"
        out = {
            "id": st["id"], "node_id": f"I_{st['id']}", "url": url, "repository_url": self._api,
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
            "html_url": html, "number": number, "state": st["state"], "state_reason": st["state_reason"],
            "title": st["title"], "body": st["body"], "user": self._user(),
            "labels": [self.labels[n] for n in st["labels"] if n in self.labels],
            "assignee": None, "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
            "comments": sum(1 for c in self.comments if c["_number"] == number),
            "closed_at": st["closed_at"], "created_at": st["created_at"], "updated_at": st["updated_at"],
            "author_association": "OWNER",
        }  # fmt: skip
        if st.get("_pull_request"):
            pr = f"https://github.com/{self.owner}/{self.repo}/pull/{number}"
            out["pull_request"] = {
                "url": f"{self._api}/pulls/{number}", "html_url": pr, "diff_url": f"{pr}.diff",
                "patch_url": f"{pr}.patch",
                "merged_at": st["closed_at"] if st.get("_pull", {}).get("merged") else None,
            }  # fmt: skip
        elif self.dependencies_api:
            blockers = self.blocked_by.get(number, [])
            blocking = [n for n, bs in self.blocked_by.items() if number in bs]
            out["issue_dependencies_summary"] = {
                "blocked_by": sum(1 for b in blockers if self.issues.get(b, {}).get("state") == "open"),
                "blocking": sum(1 for b in blocking if self.issues.get(b, {}).get("state") == "open"),
                "total_blocked_by": len(blockers),
                "total_blocking": len(blocking),
            }
        return out

    def _comment_json(self, c: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._api}/issues/comments/{c['id']}"
        return {
            "id": c["id"], "node_id": f"IC_{c['id']}", "url": url, "body": c["body"],
            "html_url": f"https://github.com/{self.owner}/{self.repo}/issues/{c['_number']}#issuecomment-{c['id']}",
            "user": self._user(), "created_at": c["created_at"], "updated_at": c["updated_at"],
            "issue_url": f"{self._api}/issues/{c['_number']}", "author_association": "OWNER",
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
        with self._lock:
            self.requests.append(ex)
            self._arrived.notify_all()
            fault = next((f for f in self.faults if f.times > 0 and f.matches(h.command, path)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None and fault.hang:
            self._release.wait(30)  # the client's timeout ends the exchange first
            ex.status = 0
            return
        with self._lock:
            status, payload, headers = self._answer(ex, fault)
        self._send(h, ex, status, payload, headers)

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
        read, write = ("issues", "read"), ("issues", "write")
        table: list[tuple[str, str, str, Any, tuple[str, str]]] = [
            ("GET", r"/labels", "/labels", self._list_labels, ("metadata", "read")),
            ("POST", r"/labels", "/labels", self._create_label, write),
            ("GET", r"/issues", "/issues", self._list_issues, read),
            ("POST", r"/issues", "/issues", self._create_issue, write),
            ("GET", r"/issues/comments", "/issues/comments", self._list_repo_comments, read),
            ("PATCH", r"/issues/comments/(\d+)", "/issues/comments/{comment_id}", self._edit_comment, write),
            ("GET", r"/issues/(\d+)", "/issues/{issue_number}", self._get_issue, read),
            ("PATCH", r"/issues/(\d+)", "/issues/{issue_number}", self._edit_issue, write),
            ("GET", r"/issues/(\d+)/comments", "/issues/{issue_number}/comments", self._list_comments, read),
            ("POST", r"/issues/(\d+)/comments", "/issues/{issue_number}/comments", self._create_comment, write),
            ("GET", r"/issues/(\d+)/dependencies/blocked_by", "/issues/{issue_number}/dependencies/blocked_by",
             self._list_blocked_by, read),
            ("POST", r"/issues/(\d+)/dependencies/blocked_by", "/issues/{issue_number}/dependencies/blocked_by",
             self._add_blocked_by, write),
            ("DELETE", r"/issues/(\d+)/dependencies/blocked_by/(\d+)",
             "/issues/{issue_number}/dependencies/blocked_by/{issue_id}", self._remove_blocked_by, write),
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

    def _issue_or_error(self, number: int) -> tuple[int, Any, dict[str, str]] | None:
        if number in self.gone:
            return 410, self._error(410, "This issue was deleted"), {}
        if number not in self.issues or self.issues[number].get("_pull_request"):
            return 404, self._error(404, "Not Found"), {}
        return None

    # labels
    def _list_labels(self, ex: Exchange) -> tuple[int, Any, dict[str, str]]:
        return self._page(ex, list(self.labels.values()))

    def _create_label(self, ex: Exchange) -> tuple[int, Any, dict[str, str]]:
        body = ex.body or {}
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "name"}]}, {}
        if name in self.labels:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"code": "already_exists"}]}, {}
        return 201, self._label(name, body.get("color", "ededed"), body.get("description")), {}

    # issues
    def _list_issues(self, ex: Exchange) -> tuple[int, Any, dict[str, str]]:
        state = ex.query.get("state", "open")
        wanted = [s for s in ex.query.get("labels", "").split(",") if s]
        numbers = sorted(self.issues)
        if ex.query.get("direction", "desc") == "desc":
            numbers.reverse()
        items = [
            self._issue_json(n)
            for n in numbers
            if (state == "all" or self.issues[n]["state"] == state)
            and all(w in self.issues[n]["labels"] for w in wanted)
        ]
        return self._page(ex, items)

    def _create_issue(self, ex: Exchange) -> tuple[int, Any, dict[str, str]]:
        body = ex.body or {}
        if not isinstance(body.get("title"), str) or not body["title"]:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "title"}]}, {}
        number = self._new_issue(body["title"], body.get("body") or "", [str(n) for n in body.get("labels") or []])
        return 201, self._issue_json(number), {"Location": f"{self._api}/issues/{number}"}

    def _get_issue(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        return self._issue_or_error(number) or (200, self._issue_json(number), {})

    def _edit_issue(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        st, body = self.issues[number], ex.body or {}
        if "title" in body:
            st["title"] = str(body["title"])
        if "body" in body:
            st["body"] = body["body"] or ""
        if "labels" in body:
            names = [str(n) for n in body["labels"]]
            for name in names:
                self._label(name)
            st["labels"] = list(dict.fromkeys(names))
        if "state" in body and body["state"] != st["state"]:
            st["state"] = body["state"]
            if st["state"] == "closed":
                st["closed_at"] = _iso(self.now())
                st["state_reason"] = body.get("state_reason") or "completed"
            else:
                st["closed_at"] = None
                st["state_reason"] = "reopened"
        elif "state_reason" in body and st["state"] == "closed" and body["state_reason"]:
            st["state_reason"] = body["state_reason"]
        st["updated_at"] = _iso(self.now())
        return 200, self._issue_json(number), {}

    # comments
    def _list_repo_comments(self, ex: Exchange) -> tuple[int, Any, dict[str, str]]:
        items = [self._comment_json(c) for c in self.comments]
        if ex.query.get("direction") == "desc":
            items.reverse()
        return self._page(ex, items)

    def _list_comments(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        return self._page(ex, [self._comment_json(c) for c in self.comments if c["_number"] == number])

    def _create_comment(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        text = (ex.body or {}).get("body")
        if not isinstance(text, str) or not text:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "body"}]}, {}
        now = _iso(self.now())
        c = {"id": self._id(), "_number": number, "body": text, "created_at": now, "updated_at": now}
        self.comments.append(c)
        self.issues[number]["updated_at"] = now
        return 201, self._comment_json(c), {"Location": f"{self._api}/issues/comments/{c['id']}"}

    def _edit_comment(self, ex: Exchange, comment_id: int) -> tuple[int, Any, dict[str, str]]:
        c = next((c for c in self.comments if c["id"] == comment_id), None)
        if c is None:
            return 404, self._error(404, "Not Found"), {}
        text = (ex.body or {}).get("body")
        if not isinstance(text, str) or not text:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "body"}]}, {}
        c["body"], c["updated_at"] = text, _iso(self.now())
        return 200, self._comment_json(c), {}

    # dependencies
    def _list_blocked_by(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        return self._page(ex, [self._issue_json(n) for n in self.blocked_by.get(number, []) if n in self.issues])

    def _add_blocked_by(self, ex: Exchange, number: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        issue_id = (ex.body or {}).get("issue_id")
        blocker = next((n for n, st in self.issues.items() if st["id"] == issue_id), None)
        if blocker is None:
            return 404, self._error(404, "Not Found"), {}
        if blocker == number or blocker in self.blocked_by.get(number, []):
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"code": "invalid"}]}, {}
        self.blocked_by.setdefault(number, []).append(blocker)
        return 201, self._issue_json(blocker), {"Location": f"{self._api}/issues/{blocker}"}

    def _remove_blocked_by(self, ex: Exchange, number: int, issue_id: int) -> tuple[int, Any, dict[str, str]]:
        err = self._issue_or_error(number)
        if err:
            return err
        blocker = next((n for n, st in self.issues.items() if st["id"] == issue_id), None)
        if blocker is None or blocker not in self.blocked_by.get(number, []):
            return 404, self._error(404, "Not Found"), {}
        self.blocked_by[number].remove(blocker)
        return 200, self._issue_json(blocker), {}


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
