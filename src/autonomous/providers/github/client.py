"""GitHub's REST API with its etiquette, shared by the issues provider and pull requests.

Over httpx (a core dependency) with a transport seam; ``Link`` pagination at 100 per page;
ETags on every GET (a ``304`` is served from the cache and costs no rate limit); the
primary rate limit (``x-ratelimit-remaining``/``-reset``) and secondary limits (403/429
with ``retry-after``) are waited out up to ``max_wait``; mutating requests are spaced
``write_interval`` apart (1 s, GitHub's advice); network errors and 5xx are retried with
exponential backoff. ``request_count`` counts every request sent. Errors map to the
exception tree: a refused token or a missing permission is a ProviderAuthError naming
the token's variable (never the token), anything else a GitHubAPIError with the status.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from autonomous.errors import GitHubAPIError, ProviderAuthError, ProviderError

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_TOKEN_ENV = "GITHUB_TOKEN"
API_VERSION = "2022-11-28"
PER_PAGE = 100

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
_RETRY_STATUSES = {500, 502, 503, 504}
_REPO = re.compile(r"[\w.-]+/[\w.-]+")


class GitHubClient:
    """One repository's REST API. ``repo_key`` is the config key that names the
    repository and ``need`` the permission the caller needs, both for error messages;
    ``sleep``/``monotonic``/``wall`` are the waits, injectable so tests never sleep."""

    def __init__(
        self,
        repo: str,
        *,
        token_env: str | None = None,
        api_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        env: Mapping[str, str] | None = None,
        repo_key: str = "state_provider.repo",
        need: str = "issues: write",
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        write_interval: float = 1.0,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 900.0,
    ) -> None:
        env = os.environ if env is None else env
        if not _REPO.fullmatch(repo or ""):
            raise ProviderError(f"{repo_key}: expected owner/name, got {repo!r}")
        self.repo, self.repo_key, self.need = repo, repo_key, need
        self.token_env = token_env or DEFAULT_TOKEN_ENV
        token = env.get(self.token_env)
        if not token:
            raise ProviderAuthError(
                f"{self.token_env} is not set: autonomous needs a GitHub token with {need} access to {repo} "
                "(see docs/providers.md)"
            )
        self.api_url = (api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self._client = httpx.Client(
            base_url=self.api_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "autonomous-runner",
            },
        )
        self._sleep, self._monotonic, self._wall = sleep, monotonic, wall
        self.write_interval, self.max_retries = write_interval, max_retries
        self.backoff, self.max_wait = backoff, max_wait
        self.request_count = 0  # every HTTP request sent (304s included)
        self.not_modified_count = 0  # of which answered 304 from the cache
        self.waited = 0.0  # seconds spent waiting for rate limits, backoff and write spacing
        self.lock = threading.RLock()
        self._etags: dict[str, tuple[str, Any, str | None]] = {}  # url -> (etag, json, next link)
        self._last_write = -1e18
        self._rate_remaining: int | None = None
        self._rate_reset = 0.0

    @property
    def repo_path(self) -> str:
        return f"/repos/{self.repo}"

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One request on a path under the repository; the answer's JSON."""
        with self.lock:
            return self._send(method, self.repo_path + path, params, body)[0]

    def all(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every page of a listing (``Link: rel="next"``), each page a conditional GET."""
        with self.lock:
            items: list[Any] = []
            data, nxt = self._send("GET", self.repo_path + path, {"per_page": PER_PAGE, **(params or {})}, None)
            items.extend(data or [])
            while nxt:
                data, nxt = self._send("GET", nxt.removeprefix(self.api_url), None, None)
                items.extend(data or [])
            return items

    def _wait(self, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        if seconds > self.max_wait:
            raise ProviderError(
                f"GitHub {why}: waiting {seconds:.0f}s is longer than the allowed {self.max_wait:.0f}s; try again later"
            )
        self.waited += seconds
        self._sleep(seconds)

    def _send(self, method: str, url: str, params: dict[str, Any] | None, body: Any) -> tuple[Any, str | None]:
        """One call with GitHub's etiquette; returns (json, next page url)."""
        conditional = method == "GET"
        key = url + ("?" + "&".join(f"{k}={v}" for k, v in sorted(params.items())) if params else "")
        attempt = 0
        while True:
            headers = {}
            cached = self._etags.get(key) if conditional else None
            if cached:
                headers["If-None-Match"] = cached[0]
            if self._rate_remaining == 0 and self._rate_reset > self._wall():
                self._wait(self._rate_reset - self._wall() + 1, "primary rate limit exhausted")
                self._rate_remaining = None
            if method != "GET" and self.write_interval > 0:
                gap = self._last_write + self.write_interval - self._monotonic()
                if gap > 0:
                    self.waited += gap
                    self._sleep(gap)
            try:
                self.request_count += 1
                resp = self._client.request(method, url, params=params, json=body, headers=headers)
            except httpx.TransportError as exc:
                # A write that timed out may have happened; retrying a read is always safe, a
                # write only when the connection was never made.
                safe = method == "GET" or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if safe and attempt < self.max_retries:
                    self._wait(self.backoff * 2**attempt, "did not answer")
                    attempt += 1
                    continue
                raise ProviderError(f"GitHub {method} {url}: {type(exc).__name__}: {exc}") from exc
            finally:
                if method != "GET":
                    self._last_write = self._monotonic()
            self._note_rate(resp)
            status = resp.status_code
            if status == 304 and cached:
                self.not_modified_count += 1
                return cached[1], cached[2]
            if 200 <= status < 300:
                data = resp.json() if resp.content else None
                nxt = _NEXT.search(resp.headers.get("link", ""))
                next_url = nxt.group(1) if nxt else None
                etag = resp.headers.get("etag")
                if conditional and etag:
                    self._etags[key] = (etag, data, next_url)
                return data, next_url
            delay = self._retry_delay(resp)
            if delay is not None and attempt < self.max_retries:
                self._wait(delay if delay > 0 else self.backoff * 2**attempt, f"rate limit ({status})")
                attempt += 1
                continue
            if status in _RETRY_STATUSES and attempt < self.max_retries:
                self._wait(self.backoff * 2**attempt, f"server error {status}")
                attempt += 1
                continue
            raise self._error(method, url, resp)

    def _note_rate(self, resp: httpx.Response) -> None:
        remaining, reset = resp.headers.get("x-ratelimit-remaining"), resp.headers.get("x-ratelimit-reset")
        if remaining is not None and remaining.isdigit():
            self._rate_remaining = int(remaining)
        if reset is not None and reset.isdigit():
            self._rate_reset = float(reset)

    def _retry_delay(self, resp: httpx.Response) -> float | None:
        """Seconds to wait before retrying a rate-limited answer (0: use backoff), or None."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("retry-after")
        if retry_after and retry_after.isdigit():
            return float(retry_after)  # secondary rate limit
        if resp.headers.get("x-ratelimit-remaining") == "0":
            return max(1.0, self._rate_reset - self._wall() + 1)  # primary rate limit
        if resp.status_code == 429 or "rate limit" in message(resp).lower():
            return 60.0  # GitHub: without headers, wait at least a minute
        return None

    def _error(self, method: str, url: str, resp: httpx.Response) -> ProviderError:
        status, text = resp.status_code, message(resp)
        where = f"GitHub {method} {url.removeprefix(self.api_url)}"
        if status == 401:
            return ProviderAuthError(
                f"GitHub refused the token in {self.token_env} (401 {text}): it is wrong, expired or revoked"
            )
        accepted = resp.headers.get("x-accepted-github-permissions")
        if status in (403, 404) and self._is_repo_level(url):
            scopes = resp.headers.get("x-accepted-oauth-scopes")
            if accepted or scopes or status == 403:
                need = ", ".join(p.replace("=", ": ") for p in (accepted or "").split(",") if p) or (
                    f"scope {scopes}" if scopes else self.need
                )
                return ProviderAuthError(
                    f"the token in {self.token_env} lacks the permission {need} on {self.repo} "
                    f"({where} answered {status} {text})"
                )
            return ProviderAuthError(
                f"{self.repo} was not found with the token in {self.token_env} ({where} answered 404): check "
                f"{self.repo_key}, and that the token can read the repository ({self.need.split(':')[0]}: read)"
            )
        if status == 403 and accepted:
            need = ", ".join(p.replace("=", ": ") for p in accepted.split(",") if p)
            return ProviderAuthError(
                f"the token in {self.token_env} lacks the permission {need} on {self.repo} "
                f"({where} answered 403 {text})"
            )
        return GitHubAPIError(status, f"{where} answered {status}: {text}")

    def _is_repo_level(self, url: str) -> bool:
        """A listing or create on the repository itself: a 403/404 there means the token cannot use it."""
        path = url.removeprefix(self.api_url).split("?")[0]
        return re.fullmatch(re.escape(self.repo_path) + r"/(labels|issues|issues/comments|pulls)", path) is not None


def message(resp: httpx.Response) -> str:
    """The message of GitHub's error answer (or the start of a body that is not JSON)."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    return str(data.get("message", "")) if isinstance(data, dict) else str(data)[:200]
