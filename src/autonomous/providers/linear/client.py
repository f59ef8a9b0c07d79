"""Linear's GraphQL over HTTP: one POST per document, with what the provider must not
think about: retries with backoff (network errors, timeouts, 5xx), rate limits (Linear
answers HTTP 400 ``RATELIMITED``, not 429, and says when its budgets reset in
``X-RateLimit-*`` headers), paging and the translation of refusals into
:class:`ProviderAuthError` naming the key's variable. It counts the requests it sends, so
tests and benchmarks can hold the provider to its request economy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from autonomous.errors import LinearGraphQLError, ProviderAuthError, ProviderError
from autonomous.providers.linear.queries import PAGE_SIZE

DEFAULT_ENDPOINT = "https://api.linear.app/graphql"
DEFAULT_API_KEY_ENV = "LINEAR_API_KEY"
ENDPOINT_ENV = "LINEAR_API_URL"


@dataclass
class RateLimit:
    """What the last response's headers said about the budgets."""

    requests_remaining: int | None = None
    requests_reset: float | None = None  # epoch seconds
    complexity_remaining: int | None = None
    complexity_reset: float | None = None
    last_complexity: int | None = None


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


class LinearClient:
    """Sends documents to one endpoint with one key. ``sleep`` and ``wall`` (epoch
    seconds, for the reset headers) are injectable so tests never wait; ``transport`` is
    httpx's seam for tests."""

    def __init__(
        self,
        key: str,
        *,
        api_key_env: str,
        endpoint: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_rate_limit_wait: float = 120.0,
    ) -> None:
        self.api_key_env = api_key_env
        self.endpoint = endpoint
        self._sleep = sleep
        self._wall = wall
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_rate_limit_wait = max_rate_limit_wait
        self._client = httpx.Client(
            transport=transport,
            timeout=timeout,
            headers={"Authorization": key, "Content-Type": "application/json", "User-Agent": "autonomous-runner"},
        )
        self.requests = 0  # HTTP requests sent, retries included
        self.requests_by_operation: dict[str, int] = {}
        self.rate_limit = RateLimit()
        self.rate_limit_waits: list[float] = []

    def close(self) -> None:
        self._client.close()

    def request(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one document; retry what is worth retrying; return ``data``."""
        name = operation_name(document)
        waited = 0.0
        attempt = 0
        while True:
            self._wait_for_budget()
            self.requests += 1
            self.requests_by_operation[name] = self.requests_by_operation.get(name, 0) + 1
            try:
                return self._send(document, variables or {})
            except _Retry as retry:
                attempt += 1
                if retry.wait is not None:  # rate limited: wait for the reset, bounded in total
                    wait = max(0.0, retry.wait)
                    if waited + wait > self._max_rate_limit_wait:
                        raise ProviderError(
                            f"Linear: rate limited ({retry}); the budget resets in {wait:.0f}s, more than the "
                            f"{self._max_rate_limit_wait:.0f}s this provider waits"
                        ) from None
                    waited += wait
                    self.rate_limit_waits.append(wait)
                    self._sleep(wait)
                    self.rate_limit.requests_remaining = self.rate_limit.complexity_remaining = None  # reset now
                    if attempt <= self._max_retries + 3:
                        continue
                elif attempt <= self._max_retries:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise ProviderError(f"Linear: {name} failed after {attempt} attempts: {retry}") from None

    def _wait_for_budget(self) -> None:
        """Honour an exhausted budget before sending, rather than spending a request to learn it."""
        rl = self.rate_limit
        for remaining, reset in (
            (rl.requests_remaining, rl.requests_reset),
            (rl.complexity_remaining, rl.complexity_reset),
        ):
            if remaining is not None and remaining <= 0 and reset is not None:
                wait = reset - self._wall()
                if wait > 0:
                    wait = min(wait, self._max_rate_limit_wait)
                    self.rate_limit_waits.append(wait)
                    self._sleep(wait)
                rl.requests_remaining = rl.complexity_remaining = None

    def _send(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(self.endpoint, json={"query": document, "variables": variables})
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"network error: {exc}") from exc
        self._read_rate_headers(response.headers)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = body.get("errors") or [] if isinstance(body, dict) else []
        codes = [str((e.get("extensions") or {}).get("code", "")) for e in errors if isinstance(e, dict)]
        messages = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict)) or response.text[:200]
        if "RATELIMITED" in codes or status == 429:
            raise _Retry(f"rate limited: {messages}", wait=self._reset_wait())
        if status in (401, 403) or "AUTHENTICATION_ERROR" in codes or "FORBIDDEN" in codes:
            raise self._auth_error(status, codes, messages)
        if status >= 500 or "INTERNAL_SERVER_ERROR" in codes:
            raise _Retry(f"HTTP {status}: {messages}")
        if errors:
            raise LinearGraphQLError(f"Linear: {messages}", codes[0] if codes else "", errors)
        if status != 200 or not isinstance(body, dict) or "data" not in body:
            raise LinearGraphQLError(f"Linear: unexpected HTTP {status} answer: {response.text[:200]}")
        return body["data"] or {}

    def _auth_error(self, status: int, codes: list[str], messages: str) -> ProviderAuthError:
        if status == 403 or "FORBIDDEN" in codes:
            return ProviderAuthError(
                f"Linear refused the API key in {self.api_key_env}: it lacks a permission ({messages}). "
                "The key needs Read and Write access (or Create issues and Create comments) to the team; "
                "create a new key with those scopes"
            )
        return ProviderAuthError(
            f"Linear rejected the API key in {self.api_key_env} (HTTP {status}: {messages}); "
            "check that it is a valid, unrevoked personal API key with Read and Write access"
        )

    def _read_rate_headers(self, headers: httpx.Headers) -> None:
        rl = self.rate_limit

        def num(name: str) -> float | None:
            try:
                return float(headers[name])
            except (KeyError, ValueError):
                return None

        if (v := num("x-ratelimit-requests-remaining")) is not None:
            rl.requests_remaining = int(v)
        if (v := num("x-ratelimit-requests-reset")) is not None:
            rl.requests_reset = v / 1000.0  # Linear sends epoch milliseconds
        if (v := num("x-ratelimit-complexity-remaining")) is not None:
            rl.complexity_remaining = int(v)
        if (v := num("x-ratelimit-complexity-reset")) is not None:
            rl.complexity_reset = v / 1000.0
        if (v := num("x-complexity")) is not None:
            rl.last_complexity = int(v)

    def _reset_wait(self) -> float:
        rl = self.rate_limit
        resets = [r for r in (rl.requests_reset, rl.complexity_reset) if r is not None]
        if not resets:
            return 60.0  # no header: Linear's buckets refill within a minute
        exhausted = [
            r
            for rem, r in ((rl.requests_remaining, rl.requests_reset), (rl.complexity_remaining, rl.complexity_reset))
            if r is not None and rem is not None and rem <= 0
        ]
        return max(0.0, max(exhausted or resets) - self._wall())

    def pages(
        self, document: str, variables: dict[str, Any], path: Sequence[str], after: str | None = None
    ) -> list[dict[str, Any]]:
        """Every node of a connection from ``after`` on, following ``pageInfo`` to the end."""
        nodes: list[dict[str, Any]] = []
        while True:
            data = self.request(document, {**variables, "after": after})
            conn: Any = data
            for step in path:
                conn = conn[step]
            nodes.extend(conn["nodes"])
            info = conn["pageInfo"]
            if not info["hasNextPage"]:
                return nodes
            after = info["endCursor"]

    def rest(self, document: str, owner: dict[str, Any], conn: dict[str, Any], path: Sequence[str]) -> list[dict]:
        """The nodes of a connection read inline after its first page (none when it fit)."""
        if not conn["pageInfo"]["hasNextPage"]:
            return []
        return self.pages(document, {**owner, "first": PAGE_SIZE}, path, after=conn["pageInfo"]["endCursor"])


def operation_name(document: str) -> str:
    m = re.search(r"\b(?:query|mutation)\s+(\w+)", document)
    return m.group(1) if m else "anonymous"


def not_found(exc: LinearGraphQLError) -> bool:
    text = str(exc).lower()
    return "not found" in text or "could not find" in text or exc.code in ("NOT_FOUND", "ENTITY_NOT_FOUND")
