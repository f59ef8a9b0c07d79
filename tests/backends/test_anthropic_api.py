"""The anthropic-sdk backend with the real ``anthropic`` client against the scripted server.

Only time is faked (the backend's clock and sleep are injectable): requests, streaming,
retries, tool execution and files on disk are real.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autonomous.backends import get_backend
from autonomous.backends.anthropic_api import AnthropicBackend
from autonomous.backends.base import RunOptions
from autonomous.backends.report import NUDGE_PROMPT
from autonomous.errors import BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.testing.model_server import (
    Match,
    Response,
    Rule,
    ScriptedModelServer,
    ToolCall,
    blocked_rules,
)

MODEL = "claude-sonnet-4-6"
USAGE = {"input_tokens": 1000, "output_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def report(status: str = "complete", **extra) -> str:
    import json

    body = {"status": status, "summary": "did it", "files_changed": [], "blocker": None, **extra}
    return f"Done.\n\n```json\n{json.dumps(body)}\n```\n"


class FakeTime:
    """The backend's clock and sleep: sleeping advances the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def backend(fake_time: FakeTime) -> AnthropicBackend:
    return AnthropicBackend(clock=fake_time.clock, sleep=fake_time.sleep, max_retries=2, bash_timeout=20)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("top secret\n")
    return root


def options(server: ScriptedModelServer, project: Path, **kw) -> RunOptions:
    kw.setdefault("model", MODEL)
    kw.setdefault("max_turns", 10)
    kw.setdefault("rate_limit_rpm", 0)
    return RunOptions(
        cwd=project,
        env={"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test-key-not-real"},
        task_id="T-1",
        **kw,
    )


def run(backend: AnthropicBackend, prompt: str, opts: RunOptions) -> tuple[list[Event], Outcome]:
    async def collect() -> list[Event | Outcome]:
        return [item async for item in backend.run(prompt, opts)]

    items = asyncio.run(collect())
    assert isinstance(items[-1], Outcome)
    assert not any(isinstance(i, Outcome) for i in items[:-1])
    return items[:-1], items[-1]  # type: ignore[return-value]


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def test_registered():
    assert isinstance(get_backend("anthropic-sdk"), AnthropicBackend)


def test_task_writes_a_file_and_completes(backend, project):
    rules = [
        Rule(
            name="write",
            match=Match(contains="TASK-1", turn=1),
            response=Response(
                text="Writing the file.",
                tool_use=[ToolCall("write_file", {"path": "src/hello.py", "content": "print('hi')\n"})],
                usage=USAGE,
            ),
        ),
        Rule(
            name="done",
            match=Match(has_tool_result=True, tool_result_contains="created src/hello.py"),
            response=Response(text=report(files_changed=["src/hello.py"]), usage=USAGE),
        ),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-1", options(server, project, append_system_prompt="EXTRA-RULES"))
        requests = server.message_requests()

    assert out.status is OutcomeStatus.COMPLETED, out
    assert (project / "src/hello.py").read_text() == "print('hi')\n"
    assert out.files_changed == ["src/hello.py"]
    assert out.summary == "did it"
    assert out.turns == 2
    # 2 requests x (1000 input x $3 + 100 output x $15) / 1M
    assert out.cost_usd == pytest.approx(2 * (1000 * 3 + 100 * 15) / 1e6)
    assert out.usage.input_tokens == 2000
    assert out.context_tokens == 1000
    assert out.session_id  # kept in this process, so a second run can continue it

    assert len(requests) == 2
    body = requests[0].body
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["max_tokens"] == 8192
    assert "EXTRA-RULES" in requests[0].conversation.system_text
    assert {t["name"] for t in body["tools"]} == {"read_file", "write_file", "edit_file", "list_dir", "search", "bash"}
    # The second request carries the assistant's tool call and our result for it.
    second = requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[2]["content"][0]["tool_use_id"] == second[1]["content"][1]["id"]

    k = kinds(events)
    assert k[0] is EventKind.BACKEND_START
    assert k.count(EventKind.USAGE) == 2
    tool_use = next(e for e in events if e.kind is EventKind.TOOL_USE)
    assert tool_use.data["name"] == "write_file"
    assert tool_use.data["input"] == "src/hello.py"
    result = next(e for e in events if e.kind is EventKind.TOOL_RESULT)
    assert result.data["is_error"] is False
    assert any(e.kind is EventKind.TEXT and e.data["text"] == "Writing the file." for e in events)
    assert all(e.task_id == "T-1" and e.backend == "anthropic-sdk" for e in events)
    last_usage = [e for e in events if e.kind is EventKind.USAGE][-1]
    assert last_usage.data["cost_usd"] == pytest.approx(out.cost_usd)


def test_blocked(backend, project):
    with ScriptedModelServer(blocked_rules("TASK-2", "needs the database password")) as server:
        _, out = run(backend, "Do TASK-2", options(server, project))
    assert out.status is OutcomeStatus.BLOCKED
    assert out.blocker == "needs the database password"


def test_no_signal_is_nudged_then_completes(backend, project):
    rules = [
        Rule(name="nudged", match=Match(last_user_contains=NUDGE_PROMPT[:40]), response=Response(text=report())),
        Rule(name="forgot", match=Match(contains="TASK-3"), response=Response(text="I changed some things.")),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-3", options(server, project))
        requests = server.message_requests()
    assert out.status is OutcomeStatus.COMPLETED
    assert kinds(events).count(EventKind.NUDGE) == 1
    assert len(requests) == 2
    assert requests[1].body["messages"][-1] == {"role": "user", "content": NUDGE_PROMPT}


def test_no_signal_after_two_nudges_fails(backend, project):
    with ScriptedModelServer([Rule(response=Response(text="Still thinking."))]) as server:
        events, out = run(backend, "Do TASK-4", options(server, project))
        assert len(server.message_requests()) == 3
    assert out.status is OutcomeStatus.FAILED
    assert "no completion report after 2 nudges" in out.error
    assert kinds(events).count(EventKind.NUDGE) == 2


@pytest.mark.parametrize("retry_after", [0, 1])
def test_rate_limited_then_success_honours_retry_after(backend, project, fake_time, retry_after):
    rules = [
        Rule(name="429", times=1, response=Response(error={"status": 429, "retry_after": retry_after})),
        Rule(name="ok", response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-5", options(server, project))
        assert len(server.message_requests()) == 2
    assert out.status is OutcomeStatus.COMPLETED
    retries = [e for e in events if e.kind is EventKind.API_RETRY]
    assert len(retries) == 1
    assert retries[0].data["error_status"] == 429
    assert retries[0].data["retry_delay_ms"] == retry_after * 1000
    assert fake_time.sleeps == ([1.0] if retry_after else [])
    assert out.turns == 1  # a retried request is one turn


def test_overloaded_then_success(backend, project, fake_time):
    rules = [
        Rule(name="529", times=1, response=Response(error={"status": 529})),
        Rule(name="ok", response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-6", options(server, project))
    assert out.status is OutcomeStatus.COMPLETED
    retry = next(e for e in events if e.kind is EventKind.API_RETRY)
    assert retry.data["error_status"] == 529
    assert fake_time.sleeps == [1.0]  # no retry-after: exponential backoff from 1 s


def test_overloaded_mid_stream_is_retried(backend, project):
    rules = [
        Rule(name="sse error", times=1, response=Response(text="partial", error={"status": 529, "after_events": 2})),
        Rule(name="ok", response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-6b", options(server, project))
    assert out.status is OutcomeStatus.COMPLETED
    assert next(e for e in events if e.kind is EventKind.API_RETRY).data["error_status"] == 529


def test_persistent_overload_ends_rate_limited_with_retry_at(backend, project, fake_time):
    started = datetime.now(UTC)
    with ScriptedModelServer([Rule(response=Response(error={"status": 529, "retry_after": 2}))]) as server:
        events, out = run(backend, "Do TASK-7", options(server, project))
        assert len(server.message_requests()) == 3  # the first try and max_retries=2 retries
    assert out.status is OutcomeStatus.RATE_LIMITED
    assert out.retry_at is not None
    assert out.retry_at >= started + timedelta(seconds=2)
    assert fake_time.sleeps == [2.0, 2.0]
    assert kinds(events).count(EventKind.API_RETRY) == 2


def test_long_retry_after_ends_at_once(backend, project, fake_time):
    with ScriptedModelServer([Rule(response=Response(error={"status": 429, "retry_after": 3600}))]) as server:
        _, out = run(backend, "Do TASK-8", options(server, project))
        assert len(server.message_requests()) == 1
    assert out.status is OutcomeStatus.RATE_LIMITED
    assert out.retry_at is not None
    assert out.retry_at > datetime.now(UTC) + timedelta(minutes=59)
    assert fake_time.sleeps == []


def test_unauthorized_is_auth_error_at_once(backend, project):
    with ScriptedModelServer([Rule(response=Response(error={"status": 401}))]) as server:
        events, out = run(backend, "Do TASK-9", options(server, project))
        assert len(server.message_requests()) == 1
    assert out.status is OutcomeStatus.AUTH_ERROR
    assert "401" in out.error
    assert EventKind.API_RETRY not in kinds(events)


def test_other_api_error_is_error(backend, project):
    with ScriptedModelServer([Rule(response=Response(error={"status": 400, "message": "bad request"}))]) as server:
        _, out = run(backend, "Do TASK-10", options(server, project))
        assert len(server.message_requests()) == 1
    assert out.status is OutcomeStatus.ERROR
    assert "bad request" in out.error


def test_max_turns(backend, project):
    looping = Rule(response=Response(tool_use=[ToolCall("list_dir", {"path": "."})]))
    with ScriptedModelServer([looping]) as server:
        _, out = run(backend, "Do TASK-11", options(server, project, max_turns=3))
        assert len(server.message_requests()) == 3
    assert out.status is OutcomeStatus.MAX_TURNS
    assert out.turns == 3


def test_budget_is_checked_before_each_request(backend, project):
    looping = Rule(response=Response(tool_use=[ToolCall("list_dir", {"path": "."})], usage=USAGE))
    with ScriptedModelServer([looping]) as server:
        # One request costs $0.0045; the budget allows starting one, not a second.
        _, out = run(backend, "Do TASK-12", options(server, project, budget_usd=0.001))
        assert len(server.message_requests()) == 1
    assert out.status is OutcomeStatus.BUDGET_EXCEEDED
    assert out.cost_usd == pytest.approx(0.0045)

    with ScriptedModelServer([looping]) as server:
        _, out = run(backend, "Do TASK-12", options(server, project, budget_usd=0.0))
        assert server.message_requests() == []
    assert out.status is OutcomeStatus.BUDGET_EXCEEDED


def test_path_escape_is_refused(backend, project):
    rules = [
        Rule(
            name="escape",
            match=Match(turn=1),
            response=Response(
                tool_use=[
                    ToolCall("read_file", {"path": "../secret.txt"}),
                    ToolCall("write_file", {"path": str(project.parent / "planted.txt"), "content": "x"}),
                ]
            ),
        ),
        Rule(name="done", match=Match(tool_result_contains="outside the project"), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-13", options(server, project))
        results = server.message_requests()[1].body["messages"][-1]["content"]
    assert out.status is OutcomeStatus.COMPLETED
    assert [r["is_error"] for r in results] == [True, True]
    assert "top secret" not in str(results)
    assert not (project.parent / "planted.txt").exists()
    assert kinds(events).count(EventKind.PERMISSION_DENIED) == 2


def test_denied_command_never_runs(backend, project):
    sentinel = project / "sentinel.txt"
    sentinel.write_text("untouched")
    rules = [
        Rule(
            name="danger",
            match=Match(turn=1),
            response=Response(tool_use=[ToolCall("bash", {"command": f"sudo rm -rf / ; echo gone > {sentinel}"})]),
        ),
        Rule(name="done", match=Match(has_tool_result=True), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "Do TASK-14", options(server, project))
        result = server.message_requests()[1].body["messages"][-1]["content"][0]
    assert out.status is OutcomeStatus.COMPLETED
    assert result["is_error"] is True
    assert "refused" in result["content"]
    assert sentinel.read_text() == "untouched"
    denied = next(e for e in events if e.kind is EventKind.PERMISSION_DENIED)
    assert denied.data["name"] == "bash"


def test_allowed_command_runs_in_the_project(backend, project):
    rules = [
        Rule(name="run", match=Match(turn=1), response=Response(tool_use=[ToolCall("bash", {"command": "pwd"})])),
        Rule(name="done", match=Match(tool_result_contains=str(project.resolve())), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        _, out = run(backend, "Do TASK-15", options(server, project))
    assert out.status is OutcomeStatus.COMPLETED


def test_requests_are_paced(fake_time, project):
    backend = AnthropicBackend(clock=fake_time.clock, sleep=fake_time.sleep)
    rules = [
        Rule(name="t1", match=Match(turn=1), response=Response(tool_use=[ToolCall("list_dir", {})])),
        Rule(name="t2", match=Match(turn=2), response=Response(tool_use=[ToolCall("list_dir", {})])),
        Rule(name="done", response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        _, out = run(backend, "Do TASK-16", options(server, project, rate_limit_rpm=30))
        assert len(server.message_requests()) == 3
    assert out.status is OutcomeStatus.COMPLETED
    # 30 per minute: the 2nd and 3rd requests wait 2 s each (the fake clock stands still otherwise).
    assert fake_time.sleeps == [2.0, 2.0]


def test_unknown_model_warns_and_is_not_free(backend, project):
    with ScriptedModelServer([Rule(response=Response(text=report(), usage=USAGE))]) as server:
        events, out = run(backend, "Do TASK-17", options(server, project, model="claude-experimental-9"))
    assert out.status is OutcomeStatus.COMPLETED
    assert out.cost_usd > 0
    assert any(e.kind is EventKind.WARNING and "no price" in e.data["message"] for e in events)


def test_alias_is_sent_as_a_model_id(backend, project):
    with ScriptedModelServer([Rule(response=Response(text=report()))]) as server:
        run(backend, "Do TASK-18", options(server, project, model="haiku"))
        assert server.message_requests()[0].body["model"] == "claude-haiku-4-5"


def test_missing_api_key_names_the_variable(backend, project, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY"):
        backend.run("x", RunOptions(cwd=project))


def test_missing_package_gives_the_install_hint(backend, project, monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # "import anthropic" now raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'autonomous-runner\[api\]'"):
        backend.run("x", RunOptions(cwd=project, env={"ANTHROPIC_API_KEY": "k"}))


def test_allowed_tools_narrow_the_tools_a_read_only_review_gets(backend, project):
    rules = [
        Rule(
            name="try to write",
            match=Match(contains="REVIEW-1", turn=1),
            response=Response(tool_use=[ToolCall("write_file", {"path": "x.txt", "content": "no\n"})], usage=USAGE),
        ),
        Rule(name="verdict", match=Match(has_tool_result=True), response=Response(text=report(), usage=USAGE)),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run(backend, "REVIEW-1", options(server, project, allowed_tools=["Read", "Glob", "Grep"]))
        offered = [t["name"] for t in server.message_requests()[0].body["tools"]]
    assert offered == ["read_file", "list_dir", "search"]
    assert not (project / "x.txt").exists()
    refused = next(e for e in events if e.kind is EventKind.TOOL_RESULT)
    assert refused.data["is_error"] and "not available" in refused.data["excerpt"]
    assert out.status is OutcomeStatus.COMPLETED
