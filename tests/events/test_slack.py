"""Slack notifications against a real HTTP webhook server on 127.0.0.1."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autonomous.config import parse_config
from autonomous.events import (
    CheckpointReached,
    RateLimit,
    Redactor,
    SessionEnd,
    SessionStart,
    TaskClaimed,
    TaskRecorded,
    Text,
    UsageUpdate,
)
from autonomous.events.bus import EventBus
from autonomous.events.sinks.slack import SlackNotifier, SlackSink

SECRET = "planted-secret-9f8e7d6c"
HOOK_TOKEN = "XXhookTOKENsecretXX"


class Webhook:
    """A threaded webhook server recording (arrival time, body) of every POST.

    ``replies`` is a queue of what to answer next: an int status, ``(429, retry_after)``,
    or ``"hang"`` (hold the request until the test ends: a timeout for the client).
    """

    def __init__(self):
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.replies: list = []
        self.release = threading.Event()
        self.received = threading.Event()  # set at each arrival
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.lock:
                    hook.arrivals.append(time.monotonic())
                    hook.bodies.append(json.loads(body))
                    reply = hook.replies.pop(0) if hook.replies else 200
                hook.received.set()
                if reply == "hang":
                    hook.release.wait(30)
                    reply = 200
                status, headers = reply, {}
                if isinstance(reply, tuple):
                    status, headers = reply[0], {"Retry-After": str(reply[1])}
                text = b"ok" if status == 200 else b"no_service"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/{HOOK_TOKEN}"

    def raw(self) -> str:
        return json.dumps(self.bodies)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    server = Webhook()
    yield server
    server.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session(bus: EventBus, clock: Clock | None = None) -> None:
    def at(t: float) -> None:
        if clock is not None:
            clock.now = 1000.0 + t

    at(0)
    bus.emit(SessionStart(session_id="s-42"))
    bus.emit(TaskClaimed(title="[AUTH-1.1] Login", key="AUTH-1.1", task_id="T-1"))
    at(100)
    bus.emit(Text(text=f"the password is {SECRET}", task_id="T-1"))
    bus.emit(UsageUpdate(turns=5, cost_usd=0.25, task_id="T-1"))
    at(200)
    bus.emit(TaskRecorded(status="done", cost_usd=0.25, turns=5, task_id="T-1"))
    bus.emit(TaskClaimed(title=f"[AUTH-1.2] Reset {SECRET}", task_id="T-2"))
    at(310)
    bus.emit(UsageUpdate(turns=2, cost_usd=0.1, task_id="T-2"))
    bus.emit(TaskRecorded(status="blocked", cost_usd=0.1, turns=2, message=f"SMTP refused {SECRET}", task_id="T-2"))
    bus.emit(SessionEnd(session_id="s-42", exit_code=1, reason="stop on failure", tasks_completed=["AUTH-1.1"]))


def test_messages_arrive_with_blocks_and_text_and_no_secret(hook, caplog):
    clock = Clock()
    notifier = SlackNotifier(hook.url)
    sink = SlackSink(notifier, interval=300, clock=clock)
    bus = EventBus([sink], Redactor([SECRET, hook.url]))
    with caplog.at_level(logging.DEBUG):
        session(bus, clock)
        bus.close()  # flushes: everything queued is delivered before close returns

    assert hook.bodies, "nothing arrived"
    for body in hook.bodies:
        assert isinstance(body["text"], str) and body["text"]
        assert isinstance(body["blocks"], list) and body["blocks"]
        assert all(b["type"] in ("section", "context", "divider") for b in body["blocks"])
    everything = hook.raw()
    assert "session started" in everything
    assert "Done: *AUTH-1.1*" in everything
    assert "Blocked: *[AUTH-1.2] Reset ***" in everything and "SMTP refused ***" in everything
    assert "Progress `s-42`: 1 done, 0 blocked" in everything  # after 300 s of the clock
    assert sum(b["text"].count(":bar_chart:") for b in hook.bodies) == 1
    assert "Session `s-42` ended: 1 done" in everything
    assert SECRET not in everything
    # the webhook URL is a secret too: never in a body, never in any log line (httpx's included)
    assert HOOK_TOKEN not in everything
    assert HOOK_TOKEN not in caplog.text
    assert "HTTP Request: POST" in caplog.text  # httpx did log, scrubbed


def test_at_most_one_message_per_second_and_bursts_are_merged(hook):
    notifier = SlackNotifier(hook.url)
    sink = SlackSink(notifier, interval=0)

    def done(i: int) -> None:
        sink.handle(TaskClaimed(title=f"task {i}", task_id=f"T-{i}"))
        sink.handle(TaskRecorded(status="done", task_id=f"T-{i}"))

    done(0)
    assert hook.received.wait(10)
    for i in range(1, 5):  # a burst while the notifier must wait a second
        done(i)
    assert notifier.flush(30)
    done(5)
    sink.close()

    assert len(hook.arrivals) == 3
    gaps = [b - a for a, b in zip(hook.arrivals, hook.arrivals[1:], strict=False)]
    assert min(gaps) >= 1.0, gaps
    # the burst was merged into one message, nothing lost
    assert hook.bodies[1]["text"].count("Done:") == 4
    assert [b["type"] for b in hook.bodies[1]["blocks"]].count("divider") == 3
    assert sum(body["text"].count("Done:") for body in hook.bodies) == 6


def test_post_never_blocks_on_slack(hook):
    hook.replies = ["hang"]
    notifier = SlackNotifier(hook.url, timeout=5)
    started = time.monotonic()
    notifier.post({"text": "one", "blocks": []})
    assert hook.received.wait(10)  # the server now holds the request
    notifier.post({"text": "two", "blocks": []})
    assert time.monotonic() - started < 0.5  # queued; the runner did not wait for Slack
    hook.release.set()
    notifier.close()
    assert [b["text"] for b in hook.bodies] == ["one", "two"]
    assert notifier.sent == 2


def test_server_error_and_timeout_are_logged_not_raised(hook, caplog):
    hook.replies = [500, "hang"]
    notifier = SlackNotifier(hook.url, timeout=0.5, min_interval=0.0)
    with caplog.at_level(logging.WARNING, logger="autonomous.slack"):
        notifier.post({"text": "first", "blocks": []})
        assert notifier.flush(10)
        notifier.post({"text": "second", "blocks": []})
        assert notifier.flush(10)
        notifier.post({"text": "third", "blocks": []})
        notifier.close()
    assert notifier.failed == 2 and notifier.sent == 1
    assert [b["text"] for b in hook.bodies] == ["first", "second", "third"]
    messages = [r.getMessage() for r in caplog.records if r.name == "autonomous.slack"]
    assert any("HTTP 500" in m for m in messages)
    assert any("timed out" in m for m in messages)
    assert HOOK_TOKEN not in caplog.text


def test_429_waits_retry_after_then_resends_once(hook):
    hook.replies = [(429, 1)]
    notifier = SlackNotifier(hook.url, min_interval=0.0)
    notifier.post({"text": "hello", "blocks": []})
    notifier.close()
    assert [b["text"] for b in hook.bodies] == ["hello", "hello"]
    assert hook.arrivals[1] - hook.arrivals[0] >= 1.0
    assert notifier.sent == 1


def test_unreachable_webhook_does_not_raise(caplog):
    notifier = SlackNotifier(f"http://127.0.0.1:9/services/T/B/{HOOK_TOKEN}", timeout=1)
    with caplog.at_level(logging.WARNING):
        notifier.post({"text": "x", "blocks": []})
        notifier.close()
    assert notifier.failed == 1
    assert "unreachable" in caplog.text and HOOK_TOKEN not in caplog.text
    assert HOOK_TOKEN not in repr(notifier)


def test_close_is_bounded_when_slack_keeps_saying_wait(hook):
    hook.replies = [(429, 60)]
    notifier = SlackNotifier(hook.url)
    notifier.post({"text": "a", "blocks": []})
    assert hook.received.wait(10)  # answered 429: the retry of "a" must wait 60 s
    notifier.post({"text": "b", "blocks": []})
    started = time.monotonic()
    notifier.close(timeout=0.5)
    assert time.monotonic() - started < 3
    assert notifier.dropped == 2  # the retry of "a", and "b"
    assert len(hook.bodies) == 1


def test_switches_respect_config(hook, tmp_path):
    config = parse_config(
        {
            "progress": {
                "slack_webhook": hook.url,
                "notification_interval": 0,
                "notify_on_complete": False,
                "notify_on_blocked": False,
            }
        },
        root=tmp_path,
    )
    sink = SlackSink.from_config(config)
    bus = EventBus([sink], Redactor([SECRET]))
    session(bus)
    bus.emit(CheckpointReached(checkpoint="blocker", review=True, reason="x"))
    bus.close()
    texts = [b["text"] for b in hook.bodies]
    joined = "\n".join(texts)
    assert ":white_check_mark:" not in joined and ":no_entry:" not in joined and "Checkpoint" not in joined
    assert "session started" in joined and "ended" in joined  # start and end always
    assert ":bar_chart:" not in joined  # interval 0: no progress messages


def test_pause_and_rate_limit_are_announced(hook):
    sink = SlackSink(SlackNotifier(hook.url, min_interval=0.0), interval=0)
    sink.handle(
        CheckpointReached(
            checkpoint="regression_failure", key="AUTH-1.3", reason="tests broke", review=True, task_id="T-3"
        )
    )
    sink.handle(RateLimit(retry_at="2026-05-09T08:00:00+00:00", notify=True))
    sink.handle(SessionEnd(session_id="s-1", exit_code=3, reason="paused at checkpoint"))
    sink.close()
    joined = "\n".join(b["text"] for b in hook.bodies)
    assert "Checkpoint *regression_failure* on AUTH-1.3: awaiting review" in joined
    assert "Rate limited; waiting until 2026-05-09T08:00:00+00:00" in joined
    assert "paused, awaiting review" in joined
