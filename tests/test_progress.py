import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from autonomous import runner_state
from autonomous.config import parse_config
from autonomous.events import Redactor, SessionStart, TaskClaimed, Text, ToolUse, Verification
from autonomous.events.bus import EventBus
from autonomous.events.sinks.files import EVENTS_FILENAME, JsonlSink
from autonomous.progress import build_status, read_events, render_event, render_status, tail_events, task_refs
from autonomous.providers.file import FileProvider
from autonomous.runner_state import CurrentTask, RunnerState
from autonomous.tasks import NewTask, TaskStatus

NOW = datetime(2026, 5, 9, 10, 0, 0, tzinfo=UTC)
HOST = socket.gethostname()


@pytest.fixture
def project(tmp_path):
    """A project with a real task store, runner state dir and log dir."""
    config = parse_config({}, root=tmp_path)
    state_dir, log_dir = tmp_path / ".ai-agents/state", tmp_path / ".ai-agents/logs"
    assert (config.state_dir, config.log_dir) == (state_dir, log_dir)
    provider = FileProvider(state_dir)
    provider.create_tasks(
        [
            NewTask("META: project tracking", labels=["meta"]),
            NewTask("[AUTH-1.1] Login form"),
            NewTask("[AUTH-1.2] Password reset"),
            NewTask("[AUTH-1.3] Sessions"),
            NewTask("[AUTH-2.1] Rate limiting"),
            NewTask("[AUTH-2.2] Audit log"),
        ]
    )
    by_key = {t.key: t for t in provider.list_tasks()}
    provider.update_task(by_key["AUTH-1.1"].id, status=TaskStatus.DONE)
    provider.update_task(by_key["AUTH-2.1"].id, status=TaskStatus.BLOCKED)
    provider.add_note(by_key["AUTH-2.1"].id, "Blocked: needs the Redis URL\nin the environment", "runner")
    claimed = provider.claim(by_key["AUTH-1.2"].id, f"{HOST}:1:ab", 600)
    provider.release(claimed.id, claimed.claim.token, status=TaskStatus.TODO, cost_usd=0.75, turns=9)
    claimed = provider.claim(by_key["AUTH-1.2"].id, f"{HOST}:1:ab", 600)
    yield SimpleNamespace(
        config=config, provider=provider, state_dir=state_dir, log_dir=log_dir, by_key=by_key, claimed=claimed
    )
    provider.close()


def save_state(project, pid: int, state: str = "running", **changes) -> RunnerState:
    current = CurrentTask(
        id=project.claimed.id,
        key="AUTH-1.2",
        title="[AUTH-1.2] Password reset",
        started_at=(NOW - timedelta(minutes=5)).isoformat(),
        token=project.claimed.claim.token,
        turns=12,
        cost_usd=0.5,
        tool="Bash",
        worker_id=f"{HOST}:{pid}:ab",
    )
    rs = RunnerState(
        session_id="s-20260509",
        worker_id=f"{HOST}:{pid}:ab",
        state=state,
        pid=pid,
        started_at=(NOW - timedelta(hours=2)).isoformat(),
        updated_at=NOW.isoformat(),
        backend="claude-code",
        tasks_completed=["AUTH-1.1", "AUTH-0.1", "AUTH-0.2", "AUTH-0.3"],
        tasks_blocked=["AUTH-2.1"],
        cost_usd=2.5,
        turns=80,
        current=[current],
    )
    for name, value in changes.items():
        setattr(rs, name, value)
    runner_state.save(project.state_dir, rs)
    return rs


def emit_session(log_dir, task_id: str) -> None:
    with EventBus([JsonlSink(log_dir)], Redactor()) as bus:
        bus.emit(SessionStart(session_id="s-20260509"))
        bus.emit(TaskClaimed(title="[AUTH-1.2] Password reset", task_id=task_id))
        bus.emit(ToolUse(name="Bash", input={"command": "pytest -q"}, task_id=task_id))
        bus.emit(Verification(attempt=1, passed=False, reason="pytest", task_id=task_id))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_status_of_a_running_session(project):
    save_state(project, os.getpid())
    emit_session(project.log_dir, project.claimed.id)
    status = build_status(project.config, project.provider, now=NOW, events=3)

    assert status["state"] == "running"
    assert status["runner"]["pid_alive"] is True
    assert status["runner"]["session_id"] == "s-20260509"
    assert status["tasks"] == {
        "total": 5,  # META is not work
        "completed": 1,
        "remaining": 3,
        "blocked": 1,
        "in_review": 0,
        "by_status": {"todo": 2, "in_progress": 1, "in_review": 0, "blocked": 1, "done": 1, "canceled": 0},
    }
    assert status["blocked"] == [
        {
            "id": project.by_key["AUTH-2.1"].id,
            "key": "AUTH-2.1",
            "title": "[AUTH-2.1] Rate limiting",
            "reason": "Blocked: needs the Redis URL in the environment",
        }
    ]
    [current] = status["current"]
    assert current["key"] == "AUTH-1.2" and current["tool"] == "Bash" and current["turns"] == 12
    assert current["phase"] == "verifying"  # from its latest event
    assert current["elapsed_s"] == 300
    m = status["metrics"]
    assert m["cost_usd"] == 2.5 and m["total_cost_usd"] == 0.75
    assert m["tasks_per_hour"] == 2.0  # 4 completed in 2 hours
    assert m["mean_task_s"] == 1440.0  # 2 h over 5 finished tasks
    assert [e["kind"] for e in status["recent_events"]] == ["task_claimed", "tool_use", "verification"]
    json.dumps(status)  # JSON-ready for `status --json`

    text = render_status(status)
    assert "Runner:   running (session s-20260509" in text
    assert "Current:  AUTH-1.2 [AUTH-1.2] Password reset - verifying, tool Bash, 12 turns, $0.5000, 5m00s" in text
    assert "Tasks:    1 done, 3 remaining (1 in progress), 1 blocked, 0 canceled (5 total)" in text
    assert "Blocked:  AUTH-2.1 [AUTH-2.1] Rate limiting - Blocked: needs the Redis URL" in text
    assert "2.0 tasks/h" in text and "24m00s per task" in text
    assert "verification   failed pytest" in text


def test_running_state_with_a_dead_pid_is_crashed(project):
    save_state(project, dead_pid())
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "crashed"
    assert status["runner"]["recorded_state"] == "running"
    assert status["runner"]["pid_alive"] is False
    assert status["current"][0]["phase"] == "interrupted (runner gone)"
    assert "start --resume" in render_status(status)


def test_a_runner_on_another_host_is_not_judged_by_pid(project):
    rs = save_state(project, dead_pid())
    rs.worker_id = "some-other-host:1:ab"
    runner_state.save(project.state_dir, rs)
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "running" and status["runner"]["pid_alive"] is None


def test_paused_and_finished_states(project):
    save_state(project, dead_pid(), state="paused", pause_reason="checkpoint regression_failure on AUTH-1.3")
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "paused"
    assert "paused: checkpoint regression_failure on AUTH-1.3" in render_status(status)

    save_state(project, dead_pid(), state="completed", ended_at=(NOW - timedelta(hours=1)).isoformat(), current=[])
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "completed"
    assert status["metrics"]["elapsed_s"] == 3600.0  # up to the end, not to now


def test_status_without_any_run_or_log(project):
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "never_run" and status["current"] == [] and status["recent_events"] == []
    assert "never run here" in render_status(status)


def test_damaged_state_file_is_reported_not_raised(project):
    project.state_dir.joinpath("runner_state.json").write_text("{broken")
    status = build_status(project.config, project.provider, now=NOW)
    assert status["state"] == "unreadable" and "runner_state.json" in status["runner"]["error"]


def test_tail_of_a_huge_events_file_reads_only_its_end(tmp_path):
    # A 4 GiB sparse file (no disk used): reading it whole would take many seconds.
    path = tmp_path / EVENTS_FILENAME
    with open(path, "wb") as fh:
        fh.truncate(4 * 1024**3)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n")
        for i in range(1000):
            fh.write(json.dumps({"kind": "text", "task_id": f"T-{i % 3}", "text": f"event {i}"}).encode() + b"\n")
    started = time.perf_counter()
    events = tail_events(tmp_path, 5)
    assert time.perf_counter() - started < 0.5
    assert [e["text"] for e in events] == [f"event {i}" for i in range(995, 1000)]
    by_task = list(read_events(tmp_path, tail=3, task="T-1"))
    assert [e["text"] for e in by_task] == ["event 991", "event 994", "event 997"]


def test_tail_handles_lines_across_blocks_and_torn_lines(tmp_path):
    path = tmp_path / EVENTS_FILENAME
    lines = [json.dumps({"kind": "text", "text": "x" * (i * 997 % 70000), "i": i}) for i in range(60)]
    path.write_text("\n".join(lines) + '\n{"kind": "te')  # the last line torn by a crash
    assert [e["i"] for e in tail_events(tmp_path, 50)] == list(range(10, 60))
    assert [e["i"] for e in read_events(tmp_path)] == list(range(60))


def test_logs_filtered_by_task_key_or_id(project):
    emit_session(project.log_dir, project.claimed.id)
    with EventBus([JsonlSink(project.log_dir)]) as bus:
        bus.emit(TaskClaimed(title="other", task_id="T-99"))
    refs = task_refs(project.provider, "AUTH-1.2")
    assert refs == {"AUTH-1.2", project.claimed.id}
    events = list(read_events(project.log_dir, task=refs))
    assert [e["kind"] for e in events] == ["task_claimed", "tool_use", "verification"]
    assert task_refs(project.provider, "NOPE-9") == {"NOPE-9"}
    assert [e["task_id"] for e in read_events(project.log_dir, task="T-99")] == ["T-99"]
    assert render_event(events[1]).endswith(f"[{project.claimed.id}] tool_use       Bash pytest -q")


def test_follow_yields_appended_events_and_survives_partial_writes(tmp_path):
    path = tmp_path / EVENTS_FILENAME
    sink = JsonlSink(tmp_path)
    sink.handle(Text(text="old"))
    # stop() is called once per poll: it lets the test act between polls, without sleeping
    actions: list = []
    polls = []

    def between_polls() -> bool:
        polls.append(1)
        if actions:
            actions.pop(0)()
        return False

    stream = read_events(tmp_path, tail=10, follow=True, poll_interval=0.001, stop=between_polls)
    assert next(stream)["text"] == "old"

    sink.handle(Text(text="new"))
    assert next(stream)["text"] == "new"

    # A line written in two pieces, with polls in between, is yielded once, whole.
    line = json.dumps({"kind": "text", "text": "split"}).encode()

    def append(data: bytes):
        def act() -> None:
            with open(path, "ab") as fh:
                fh.write(data)

        return act

    actions += [append(line[:10]), lambda: None, lambda: None, append(line[10:] + b"\n")]
    before = len(polls)
    assert next(stream)["text"] == "split"
    assert len(polls) - before >= 4  # it did poll while the line was torn

    # Truncated (someone cleared the log): read again from the start.
    path.write_text(json.dumps({"kind": "text", "text": "fresh"}) + "\n")
    assert next(stream)["text"] == "fresh"
    stream.close()
    sink.close()


def test_follow_stops_when_asked(tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    assert list(read_events(tmp_path, follow=True, poll_interval=0.001, stop=stop)) == []
    assert len(calls) == 4


def test_status_import_stays_light():
    heavy = ("rich", "httpx", "pydantic", "autonomous.runner", "autonomous.events.model")
    code = f"import sys, autonomous.progress; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
