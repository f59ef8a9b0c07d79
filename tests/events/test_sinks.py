import io
import json
import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from autonomous.config import parse_config
from autonomous.events import (
    Event,
    Outcome,
    OutcomeEvent,
    OutcomeStatus,
    Redactor,
    SessionEnd,
    SessionStart,
    TaskClaimed,
    TaskRecorded,
    Text,
    ToolUse,
    UsageUpdate,
    WarningEvent,
)
from autonomous.events.bus import EventBus, build_bus
from autonomous.events.format import format_event
from autonomous.events.sinks.files import EVENTS_FILENAME, LOG_FILENAME, JsonlSink, LogFileSink
from autonomous.events.sinks.terminal import TerminalSink

SECRET = "s3cr3t-value-planted-42"
ANTHROPIC = "sk-ant-api03-abcdefghijklmnop"
AT = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)
TASK = {"task_id": "T-2", "key": "AUTH-1.2", "worker_id": "host:1:ab", "at": AT}  # as the worker stamps them


def leaky_events() -> list[Event]:
    """A session whose events carry secrets everywhere an agent could put them."""
    return [
        SessionStart(session_id="s-1", worker_id="host:1:ab", at=AT),
        TaskClaimed(title="[AUTH-1.2] Login form", **TASK),
        Text(text=f"I found the token {SECRET} in .env", **TASK),
        ToolUse(name="Bash", input={"command": f"curl -H 'x-api-key: {ANTHROPIC}' https://x"}, **TASK),
        UsageUpdate(turns=3, cost_usd=0.0123, **TASK),
        OutcomeEvent.of(Outcome(OutcomeStatus.BLOCKED, blocker=f"needs {SECRET}", cost_usd=0.02, turns=4), **TASK),
        TaskRecorded(status="blocked", cost_usd=0.02, turns=4, message=f"blocked: [{SECRET}]", **TASK),
        SessionEnd(session_id="s-1", exit_code=1, reason=f"done ({SECRET})", at=AT),
    ]


def test_bus_writes_log_and_jsonl_without_secrets(tmp_path):
    out = io.StringIO()
    bus = EventBus([LogFileSink(tmp_path), JsonlSink(tmp_path), TerminalSink(out, live=False)], Redactor([SECRET]))
    with bus:
        for event in leaky_events():
            bus.emit(event)

    log_text = (tmp_path / LOG_FILENAME).read_text()
    jsonl_text = (tmp_path / EVENTS_FILENAME).read_text()
    for text in (log_text, jsonl_text, out.getvalue()):
        assert SECRET not in text
        assert ANTHROPIC not in text
        assert "***" in text

    # JSONL: one Event.to_dict() per line, in order, with the common fields first
    records = [json.loads(line) for line in jsonl_text.splitlines()]
    assert [r["kind"] for r in records] == [e.kind.value for e in leaky_events()]
    assert records[2] == {
        "at": AT.isoformat(),
        "kind": "text",
        "task_id": "T-2",
        "backend": None,
        "worker_id": "host:1:ab",
        "key": "AUTH-1.2",
        "text": "I found the token *** in .env",
        "subagent": False,
    }
    # The human log: one line per event, labelled with the task's key.
    lines = log_text.splitlines()
    assert len(lines) == len(leaky_events())
    assert lines[3].startswith("2026-05-09T07:35:25 INFO  [AUTH-1.2] tool_use")
    assert "Bash curl -H 'x-api-key: ***' https://x" in lines[3]
    assert "blocked (4 turns, $0.0200)" in lines[6]


def test_events_emitted_after_close_are_dropped(tmp_path):
    bus = EventBus([JsonlSink(tmp_path)])
    bus.emit(WarningEvent(message="one"))
    bus.close()
    bus.close()  # idempotent
    bus.emit(WarningEvent(message="two"))
    assert len((tmp_path / EVENTS_FILENAME).read_text().splitlines()) == 1


class Exploding:
    def __init__(self):
        self.calls = 0

    def handle(self, event: Event) -> None:
        self.calls += 1
        raise OSError(f"disk full while writing {event.data.get('text')}")

    def close(self) -> None:
        raise RuntimeError("cannot close")


def test_a_failing_sink_never_stops_emit_and_warns_once(tmp_path, caplog):
    bad = Exploding()
    bus = EventBus([bad, JsonlSink(tmp_path)], Redactor([SECRET]))
    with caplog.at_level(logging.WARNING, logger="autonomous.events"):
        for i in range(3):
            bus.emit(Text(text=f"message {i} with {SECRET}"))
        bus.close()
    # every event still reached the healthy sink, and the broken one kept being tried
    assert len((tmp_path / EVENTS_FILENAME).read_text().splitlines()) == 3
    assert bad.calls == 3
    warnings = [r for r in caplog.records if r.name == "autonomous.events"]
    assert len(warnings) == 1  # once, although it failed three times and on close
    assert "Exploding" in warnings[0].getMessage() and "disk full" in warnings[0].getMessage()
    assert SECRET not in caplog.text


def test_log_file_rotates_by_size(tmp_path):
    sink = LogFileSink(tmp_path, max_bytes=2000, backups=2)
    for i in range(100):
        sink.handle(Text(text=f"line {i} " + "x" * 50, at=AT))
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["autonomous.log", "autonomous.log.1", "autonomous.log.2"]
    assert (tmp_path / "autonomous.log.1").stat().st_size >= 2000
    assert "line 99 " in (tmp_path / "autonomous.log").read_text()


def test_jsonl_appends_from_several_processes_never_interleave(tmp_path):
    # Big lines (well over PIPE_BUF) from 4 processes at once: each must stay whole.
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from autonomous.events import Text
        from autonomous.events.sinks.files import JsonlSink
        sink = JsonlSink(Path(sys.argv[1]))
        for i in range(200):
            sink.handle(Text(text=sys.argv[2] * 20000, task_id=str(i)))
        sink.close()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), letter]) for letter in "abcd"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = (tmp_path / EVENTS_FILENAME).read_bytes().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]
    for letter in "abcd":
        assert sorted(int(r["task_id"]) for r in records if r["text"] == letter * 20000) == list(range(200))


def test_jsonl_is_visible_at_once(tmp_path):
    sink = JsonlSink(tmp_path)
    sink.handle(WarningEvent(message="hello"))
    # no close, no flush: another reader sees the line immediately
    assert json.loads((tmp_path / EVENTS_FILENAME).read_text())["message"] == "hello"
    sink.close()


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"at": AT.isoformat(), "kind": "tool_use", "task_id": "T-1", "name": "Read", "input": {"file_path": "a"}},
            "2026-05-09T07:35:25 INFO  [T-1] tool_use       Read a",
        ),
        (
            {"at": AT.isoformat(), "kind": "warning", "task_id": None, "message": "lost\nthe lease"},
            "2026-05-09T07:35:25 WARN  warning        lost the lease",
        ),
        (
            {"at": AT.isoformat(), "kind": "task_recorded", "task_key": "A-1.1", "status": "done", "turns": 3},
            "2026-05-09T07:35:25 INFO  [A-1.1] task_recorded  done (3 turns)",
        ),
        (
            {"at": AT.isoformat(), "kind": "verification", "task_id": "T-1", "passed": False, "command": "pytest"},
            "2026-05-09T07:35:25 INFO  [T-1] verification   failed pytest",
        ),
    ],
)
def test_format_event(event, expected):
    assert format_event(event) == expected


def test_terminal_plain_output_is_one_line_per_notable_event(tmp_path):
    out = io.StringIO()
    sink = TerminalSink(out, live=False)
    for event in leaky_events():
        sink.handle(event)
    sink.close()
    lines = out.getvalue().splitlines()
    # text and usage stay in the logs
    assert not any("I found the token" in line for line in lines)
    assert any("→ AUTH-1.2 [AUTH-1.2] Login form" in line for line in lines)
    assert any(line.startswith("✗ AUTH-1.2 [AUTH-1.2] Login form: blocked (4 turns, $0.0200") for line in lines)
    assert "\x1b[" not in out.getvalue()  # nothing fancy


def test_terminal_plain_when_not_a_tty_or_in_ci(monkeypatch):
    assert TerminalSink(io.StringIO()).live is False

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert TerminalSink(Tty()).live is True
    monkeypatch.setenv("CI", "true")
    assert TerminalSink(Tty()).live is False


def test_terminal_live_panel_shows_task_tool_turns_cost():
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    sink = TerminalSink(buffer, live=True, console=console)
    sink.handle(SessionStart(session_id="s-1"))
    sink.handle(TaskClaimed(title="[AUTH-1.2] Login form", task_id="T-2"))
    sink.handle(ToolUse(name="Bash", input={"command": "pytest"}, task_id="T-2"))
    sink.handle(UsageUpdate(turns=7, cost_usd=0.5, task_id="T-2"))
    panel = buffer.getvalue()
    assert "[AUTH-1.2] Login form" in panel and "Bash" in panel and "$0.5000" in panel and " 7 " in panel
    sink.handle(TaskRecorded(status="done", turns=7, cost_usd=0.5, task_id="T-2"))
    sink.close()
    assert "✓ [AUTH-1.2] Login form: done (7 turns, $0.5000" in buffer.getvalue()
    assert sink._live is None  # the refresh thread is stopped


def test_terminal_live_panel_keeps_the_history_above_it_and_shows_progress_and_live_cost():
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    sink = TerminalSink(buffer, live=True, console=console)
    sink.handle(SessionStart(session_id="s-1", tasks_done=3, tasks_total=8))
    sink.handle(TaskClaimed(key="AUTH-1.2", title="Login form", task_id="T-2"))
    sink.handle(ToolUse(name="Bash", input={"command": "pytest -q"}, task_id="T-2"))
    # the CLI backend's running estimate: the cost grows before the task ends
    sink.handle(UsageUpdate(turns=2, cost_usd_estimate=0.0123, task_id="T-2"))
    assert "$0.0123" in buffer.getvalue()
    assert "done 3 of 8" in buffer.getvalue()
    sink.handle(OutcomeEvent(status="completed", turns=2, cost_usd=0.02, task_id="T-2"))
    sink.handle(TaskRecorded(status="done", turns=2, cost_usd=0.02, task_id="T-2"))
    assert "done 4 of 8" in buffer.getvalue()
    sink.close()
    # the panel is gone (transient); what was printed above it stays, in order
    lines = [line for line in buffer.getvalue().splitlines() if "[AUTH-1.2]" in line or "AUTH-1.2 Login" in line]
    printed = "\n".join(lines)
    assert "tool_use: Bash pytest -q" in printed and "outcome: completed" in printed
    assert printed.index("tool_use: Bash") < printed.index("outcome: completed") < printed.index("✓ AUTH-1.2")


def test_build_bus_writes_where_the_config_says_and_scrubs_its_secrets(tmp_path):
    config = parse_config(
        {"logging": {"dir": "var/logs"}, "progress": {"slack_webhook": "${HOOK}"}},
        root=tmp_path,
        environ={"HOOK": "http://127.0.0.1:9/hook-secret-123"},
    )
    bus = build_bus(config, terminal=False)
    assert [type(s).__name__ for s in bus.sinks] == ["LogFileSink", "JsonlSink", "SlackSink"]
    bus.sinks.pop().close()  # nothing listens on port 9: only the files are checked here
    bus.emit(Text(text="posting to http://127.0.0.1:9/hook-secret-123"))
    bus.close()
    assert config.log_dir == tmp_path / "var" / "logs"
    written = (config.log_dir / EVENTS_FILENAME).read_text() + (config.log_dir / LOG_FILENAME).read_text()
    assert "posting to" in written and "hook-secret-123" not in written
