"""Slack notifications through an incoming webhook.

:class:`SlackSink` is an event sink: it turns the runner's events into a few messages a
person wants on their phone (progress every ``notification_interval`` seconds, tasks done,
tasks blocked, pauses awaiting review, rate-limit waits, the end of the session). Progress
is driven by the events themselves and the clock they are read against: there is no timer
thread that could outlive the run.

:class:`SlackNotifier` delivers them. ``post`` only queues, so the runner never waits on
Slack; one sender thread posts at most one message per ``min_interval`` (Slack's limit is
one per second per webhook), merging whatever queued up meanwhile into one message. HTTP
errors, timeouts and 429s (honouring ``Retry-After``, once) are logged and dropped, never
raised. ``close`` drains the queue within a bounded time and stops the thread.

The events come from the bus already redacted, so the messages built from them hold no
secret. The webhook URL is itself a secret the sink alone knows: it is never logged
(httpx's own request log line and the notifier's warnings are scrubbed of it) and never
put into an event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from autonomous.errors import ConfigError
from autonomous.events.model import (
    CheckpointReached,
    Event,
    RateLimit,
    SessionEnd,
    SessionStart,
    TaskClaimed,
    TaskRecorded,
    UsageUpdate,
)
from autonomous.events.redact import REDACTED, Redactor

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config

log = logging.getLogger("autonomous.slack")

MAX_BLOCKS = 50  # Slack's limit per message
MAX_SECTION = 2900  # a section's text may hold 3000 characters
MAX_RETRY_AFTER = 60.0

Message = dict[str, Any]


def _esc(text: Any) -> str:
    """Escape what Slack's mrkdwn treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = MAX_SECTION) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message(text: str, *, detail: str = "", context: str = "") -> Message:
    """A Block Kit message: a section (``text`` bold-free mrkdwn), optional detail and a
    context line; ``text`` doubles as the fallback shown in notifications."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}]
    if detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(detail)}})
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(context)}]})
    fallback = text if not detail else f"{text}\n{detail}"
    return {"text": _cut(fallback, 3000), "blocks": blocks}


def merge(messages: list[Message]) -> Message:
    """Several queued messages as one (texts joined, blocks separated by dividers)."""
    if len(messages) == 1:
        return messages[0]
    blocks: list[dict[str, Any]] = []
    for m in messages:
        if blocks:
            blocks.append({"type": "divider"})
        blocks.extend(m.get("blocks", []))
    return {"text": _cut("\n".join(m.get("text", "") for m in messages), 3000), "blocks": blocks[:MAX_BLOCKS]}


class _Scrub(logging.Filter):
    """Replaces the webhook URL in httpx's ``HTTP Request: POST <url>`` log lines."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in self.secrets:
                text = text.replace(s, REDACTED)
            record.msg, record.args = text, ()
        return True


class SlackNotifier:
    """Queue messages and post them to one webhook from a background sender.

    ``transport`` is an httpx transport (tests point a real client at a local server, or
    pass ``httpx.MockTransport``); ``clock`` is what the rate limit is measured against.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
        min_interval: float = 1.0,
        max_pending: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._url = webhook_url
        url = httpx.URL(webhook_url)
        self._hide_url = Redactor([webhook_url, str(url), url.path if len(url.path) > 8 else ""])
        self.min_interval = min_interval
        self.max_pending = max_pending
        self._clock = clock
        self._client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self._scrub = _Scrub([webhook_url, str(url), url.path if len(url.path) > 8 else ""])
        logging.getLogger("httpx").addFilter(self._scrub)
        self._pending: deque[Message] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = float("inf")
        self._next_at = 0.0
        self._busy = False
        self._warned: set[str] = set()
        self.sent = 0  # messages (merged batches) delivered
        self.failed = 0
        self.dropped = 0

    def __repr__(self) -> str:  # never the URL
        return f"SlackNotifier(webhook={REDACTED}, sent={self.sent}, failed={self.failed})"

    def post(self, msg: Message) -> None:
        """Queue a message; returns at once."""
        with self._cond:
            if self._closing:
                return
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(msg)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="autonomous-slack", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued has been tried; False if ``timeout`` passed first."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (within ``timeout``), then stop the sender. Idempotent."""
        with self._cond:
            if self._closing and self._thread is None:
                return
            self._closing = True
            self._deadline = self._clock() + timeout
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._cond:
            self._thread = None
        self._client.close()
        logging.getLogger("httpx").removeFilter(self._scrub)

    # -- the sender thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                now = self._clock()
                if self._closing and now >= self._deadline:
                    self.dropped += len(self._pending)
                    self._warn("close", f"Slack: {len(self._pending)} message(s) not sent before shutdown")
                    self._pending.clear()
                    self._cond.notify_all()
                    return
                if now < self._next_at:
                    self._cond.wait(min(self._next_at, self._deadline) - now)
                    continue
                batch = self._take()
                self._busy = True
            retry_after = self._send(batch)
            with self._cond:
                self._busy = False
                self._next_at = self._clock() + max(self.min_interval, retry_after or 0.0)
                if retry_after is not None and not batch.get("_retried"):
                    batch["_retried"] = True
                    self._pending.appendleft(batch)
                self._cond.notify_all()

    def _take(self) -> Message:
        batch: list[Message] = []
        blocks = 0
        while self._pending:
            size = len(self._pending[0].get("blocks", [])) + (1 if batch else 0)
            if batch and blocks + size > MAX_BLOCKS:
                break
            batch.append(self._pending.popleft())
            blocks += size
        if len(batch) == 1:
            return batch[0]
        return merge([{k: v for k, v in m.items() if k != "_retried"} for m in batch])

    def _send(self, batch: Message) -> float | None:
        """Post one message. Returns the wait Slack asked for on a 429, else None."""
        payload = self._clean({k: v for k, v in batch.items() if not k.startswith("_")})
        try:
            response = self._client.post(self._url, json=payload)
        except httpx.TimeoutException:
            return self._failure("timeout", "Slack webhook timed out; message dropped")
        except httpx.HTTPError as exc:  # the message may quote the URL: name the class only
            return self._failure("transport", f"Slack webhook unreachable ({type(exc).__name__}); message dropped")
        except Exception as exc:
            return self._failure("other", f"Slack notification failed ({type(exc).__name__}); message dropped")
        if response.status_code == 429:
            self.failed += 1
            try:
                wait = float(response.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            wait = min(max(wait, 0.0), MAX_RETRY_AFTER)
            self._warn("429", f"Slack rate limit (429): waiting {wait:.0f}s before the next message")
            return wait
        if response.status_code >= 300:
            return self._failure(
                f"http{response.status_code}",
                f"Slack webhook answered HTTP {response.status_code} "
                f"({self._clean(response.text[:100])!r}); message dropped",
            )
        self.sent += 1
        return None

    def _clean(self, value: Any) -> Any:
        return self._hide_url.value(value)

    def _failure(self, key: str, text: str) -> None:
        self.failed += 1
        self._warn(key, text)
        return None

    def _warn(self, key: str, text: str) -> None:
        # Once per kind of failure: a Slack outage overnight must not flood the log.
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", self._clean(text))
        else:
            log.debug("%s", self._clean(text))


class SlackSink:
    """Events in, a few Slack messages out (see the module docstring)."""

    def __init__(
        self,
        notifier: SlackNotifier,
        *,
        interval: float = 300.0,
        notify_on_complete: bool = True,
        notify_on_blocked: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.notifier = notifier
        self.interval = interval
        self.notify_on_complete = notify_on_complete
        self.notify_on_blocked = notify_on_blocked
        self._clock = clock
        self._session: str | None = None
        self._started: float | None = None
        self._last_progress: float | None = None
        self._labels: dict[str, str] = {}
        self._current: dict[str, float] = {}  # task id -> cost so far
        self._done: list[str] = []
        self._blocked: list[str] = []
        self._cost = 0.0

    @classmethod
    def from_config(cls, config: Config, *, transport: httpx.BaseTransport | None = None) -> SlackSink:
        """The sink for ``progress.slack_webhook`` (which must be set)."""
        progress = config.progress
        if not progress.slack_webhook:
            raise ConfigError("progress.slack_webhook: not set, so there is nowhere to post")
        notifier = SlackNotifier(progress.slack_webhook, transport=transport)
        return cls(
            notifier,
            interval=progress.notification_interval,
            notify_on_complete=progress.notify_on_complete,
            notify_on_blocked=progress.notify_on_blocked,
        )

    # -- the sink ---------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        tid, now = event.task_id, self._clock()
        if self._started is None:
            self._started = self._last_progress = now
        if isinstance(event, SessionStart):
            self._session = event.session_id or None
            self._started = self._last_progress = now
            self.notifier.post(message(f":rocket: Autonomous session started{self._sid()}"))
        elif isinstance(event, TaskClaimed) and tid:
            self._labels[tid] = event.key or event.title or tid
            self._current[tid] = 0.0
        elif isinstance(event, TaskRecorded) and tid:
            self._recorded(tid, event)
        elif isinstance(event, CheckpointReached) and event.review and self.notify_on_blocked:
            what = event.decision or "awaiting review"
            self.notifier.post(
                message(
                    f":double_vertical_bar: Checkpoint *{_esc(event.checkpoint)}* on "
                    f"{_esc(event.task_key or event.key or self._label(tid))}: {_esc(what)}",
                    detail=_esc(event.reason),
                )
            )
        elif isinstance(event, RateLimit) and event.notify and self.notify_on_blocked:
            self.notifier.post(message(f":hourglass: Rate limited; waiting until {_esc(event.retry_at or '?')}"))
        elif isinstance(event, SessionEnd):
            self._ended(event)
            return
        if tid in self._current and isinstance(event, UsageUpdate) and event.cost_usd is not None:
            self._current[tid] = event.cost_usd
        if self.interval > 0 and self._last_progress is not None and now - self._last_progress >= self.interval:
            self._last_progress = now
            self.notifier.post(self._progress(now))

    def close(self) -> None:
        self.notifier.close()

    # -- messages -----------------------------------------------------------------------------
    def _sid(self) -> str:
        return f" `{_esc(self._session)}`" if self._session else ""

    def _label(self, tid: str | None) -> str:
        return self._labels.get(tid or "", tid or "")

    def _recorded(self, tid: str, event: TaskRecorded) -> None:
        label = self._labels.pop(tid, tid)
        self._current.pop(tid, None)
        cost = event.cost_usd or 0.0
        self._cost += cost
        spent = f"{event.turns or 0} turns, ${cost:.4f}"
        if event.status == "done":
            self._done.append(label)
            if self.notify_on_complete:
                self.notifier.post(message(f":white_check_mark: Done: *{_esc(label)}* ({spent})"))
        elif event.status == "blocked":
            self._blocked.append(label)
            if self.notify_on_blocked:
                self.notifier.post(
                    message(f":no_entry: Blocked: *{_esc(label)}* ({spent})", detail=_esc(event.message))
                )

    def _progress(self, now: float) -> Message:
        elapsed = now - (self._started or now)
        working = ", ".join(_esc(self._label(t)) for t in self._current) or "nothing"
        cost = self._cost + sum(self._current.values())
        rate = len(self._done) / (elapsed / 3600) if elapsed > 0 else 0.0
        return message(
            f":bar_chart: Progress{self._sid()}: {len(self._done)} done, {len(self._blocked)} blocked, "
            f"${cost:.2f} spent, {elapsed / 60:.0f} min",
            detail=f"Working on: {working}",
            context=f"{rate:.1f} tasks/hour",
        )

    def _ended(self, event: SessionEnd) -> None:
        paused = event.exit_code == 3
        icon = ":double_vertical_bar:" if paused else ":checkered_flag:"
        head = "paused, awaiting review" if paused else "ended"
        text = (
            f"{icon} Session{self._sid()} {head}: {len(event.tasks_completed)} done, "
            f"{len(event.tasks_blocked)} blocked, {len(event.tasks_failed)} failed, ${event.cost_usd:.2f}, "
            f"{event.duration_s / 60:.0f} min"
        )
        detail = _esc(event.reason)
        if event.tasks_blocked:
            detail += ("\n" if detail else "") + "Blocked: " + ", ".join(_esc(b) for b in event.tasks_blocked[:20])
        self.notifier.post(message(text, detail=detail))
