"""The claude-code-sdk backend: the real Agent SDK and its bundled Claude Code CLI, offline.

The CLI talks to the scripted Messages API server (``ANTHROPIC_BASE_URL``) with a throwaway
HOME, so these runs cost nothing and touch no real configuration; the tools it runs
(Write, Bash) are real and act on a temporary project.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autonomous.backends import get_backend
from autonomous.backends.agent_sdk import AgentSDKBackend
from autonomous.backends.base import RunOptions
from autonomous.backends.report import NUDGE_PROMPT
from autonomous.errors import BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall, blocked_rules

pytestmark = pytest.mark.skipif(bundled_claude_path() is None, reason="needs the CLI bundled with claude-agent-sdk")

MODEL = "claude-sonnet-4-6"


def report(status: str = "complete", **extra) -> str:
    body = {"status": status, "summary": "did it", "files_changed": [], "blocker": None, **extra}
    return f"Done.\n\n```json\n{json.dumps(body)}\n```\n"


def main_loop(**match) -> Match:
    """Rules for the agent's own requests: the CLI's side requests (titles, probes) offer no tools."""
    return Match(has_tools=True, **match)


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch):
    # The SDK merges options.env over this process's environment: make sure nothing real leaks in.
    for key in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def options(server: ScriptedModelServer, project: Path, **kw) -> RunOptions:
    home = project.parent / "home"
    home.mkdir(exist_ok=True)
    kw.setdefault("model", MODEL)
    kw.setdefault("max_turns", 10)
    # A few fast CLI-side retries, so the retry tests stay quick.
    env = claude_cli_env(server.url, home, extra={"CLAUDE_CODE_MAX_RETRIES": "2"})
    return RunOptions(cwd=project, env=env, task_id="T-1", **kw)


def run(prompt: str, opts: RunOptions, backend: AgentSDKBackend | None = None) -> tuple[list[Event], Outcome]:
    backend = backend or AgentSDKBackend()

    async def collect() -> list[Event | Outcome]:
        return [item async for item in backend.run(prompt, opts)]

    items = asyncio.run(collect())
    assert isinstance(items[-1], Outcome)
    assert not any(isinstance(i, Outcome) for i in items[:-1])
    return items[:-1], items[-1]  # type: ignore[return-value]


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def test_registered():
    assert isinstance(get_backend("claude-code-sdk"), AgentSDKBackend)


def test_task_writes_a_file_and_completes(project):
    target = project / "src" / "hello.py"
    rules = [
        Rule(
            name="write",
            match=main_loop(contains="TASK-1", turn=1),
            response=Response(
                text="Writing.", tool_use=[ToolCall("Write", {"file_path": str(target), "content": "x = 1\n"})]
            ),
        ),
        Rule(
            name="done",
            match=main_loop(has_tool_result=True),
            response=Response(text=report(files_changed=["src/hello.py"])),
        ),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run("Do TASK-1", options(server, project, append_system_prompt="EXTRA-RULES"))
        main = [r for r in server.message_requests() if r.conversation.has_tools]

    assert out.status is OutcomeStatus.COMPLETED, out
    assert target.read_text() == "x = 1\n"  # allowed_tools made Write really write
    assert out.files_changed == ["src/hello.py"]
    assert out.turns == 2
    assert out.cost_usd > 0
    assert out.usage.input_tokens > 0
    assert out.context_tokens > 0
    assert out.session_id
    assert "EXTRA-RULES" in main[0].conversation.system_text
    # Claude Code's own system prompt is kept (the preset), ours is appended to it.
    assert len(main[0].conversation.system_text) > 2000

    k = kinds(events)
    assert k[0] is EventKind.BACKEND_START
    tool_use = next(e for e in events if e.kind is EventKind.TOOL_USE)
    assert tool_use.data["name"] == "Write"
    tool_result = next(e for e in events if e.kind is EventKind.TOOL_RESULT)
    assert tool_result.data["name"] == "Write"
    assert tool_result.data["is_error"] is False
    assert EventKind.USAGE in k
    assert all(e.task_id == "T-1" and e.backend == "claude-code-sdk" for e in events)


def test_blocked(project):
    with ScriptedModelServer(blocked_rules("TASK-2", "the API spec is missing")) as server:
        _, out = run("Do TASK-2", options(server, project))
    assert out.status is OutcomeStatus.BLOCKED
    assert out.blocker == "the API spec is missing"


def test_no_signal_is_nudged_in_the_same_session(project):
    rules = [
        Rule(name="nudged", match=main_loop(last_user_contains=NUDGE_PROMPT[:40]), response=Response(text=report())),
        Rule(name="forgot", match=main_loop(contains="TASK-3"), response=Response(text="I changed some things.")),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run("Do TASK-3", options(server, project))
        nudged = [r for r in server.message_requests() if r.rule == "nudged"]
    assert out.status is OutcomeStatus.COMPLETED
    assert kinds(events).count(EventKind.NUDGE) == 1
    # Same session: the nudge request carries the first exchange too.
    assert len(nudged) == 1
    assert "I changed some things." in nudged[0].conversation.text
    assert out.turns == 2


def test_no_signal_after_two_nudges_fails(project):
    with ScriptedModelServer([Rule(match=main_loop(), response=Response(text="Thinking."))]) as server:
        events, out = run("Do TASK-4", options(server, project))
    assert out.status is OutcomeStatus.FAILED
    assert kinds(events).count(EventKind.NUDGE) == 2


@pytest.mark.parametrize("retry_after", [0, 1])
def test_rate_limited_once_then_success(project, retry_after):
    rules = [
        Rule(
            name="429", times=1, match=main_loop(), response=Response(error={"status": 429, "retry_after": retry_after})
        ),
        Rule(name="ok", match=main_loop(), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run("Do TASK-5", options(server, project))
        assert server.rule_hits == {"429": 1, "ok": 1}
    assert out.status is OutcomeStatus.COMPLETED
    retry = next(e for e in events if e.kind is EventKind.API_RETRY)
    assert retry.data["error_status"] == 429


def test_overloaded_once_then_success(project):
    rules = [
        Rule(name="529", times=1, match=main_loop(), response=Response(error={"status": 529, "retry_after": 0})),
        Rule(name="ok", match=main_loop(), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run("Do TASK-6", options(server, project))
    assert out.status is OutcomeStatus.COMPLETED
    assert next(e for e in events if e.kind is EventKind.API_RETRY).data["error_status"] == 529


@pytest.mark.parametrize(
    "max_api_retries",
    [
        1,  # we stop the CLI at its 2nd retry (system api_retry message)
        4,  # the CLI gives up first (CLAUDE_CODE_MAX_RETRIES=2): an is_error result with api_error_status 429
    ],
)
def test_persistent_rate_limit_ends_rate_limited(project, max_api_retries):
    rule = Rule(name="429", match=main_loop(), response=Response(error={"status": 429, "retry_after": 0}))
    started = datetime.now(UTC)
    with ScriptedModelServer([rule]) as server:
        _, out = run("Do TASK-7", options(server, project), AgentSDKBackend(max_api_retries=max_api_retries))
    assert out.status is OutcomeStatus.RATE_LIMITED, out
    assert out.retry_at is not None
    # Later than the start (comparing with "now" would race the time disconnecting takes).
    assert out.retry_at > started


def test_unauthorized_is_auth_error(project):
    with ScriptedModelServer([Rule(match=main_loop(), response=Response(error={"status": 401}))]) as server:
        _, out = run("Do TASK-8", options(server, project))
    assert out.status is OutcomeStatus.AUTH_ERROR


def test_max_turns(project):
    looping = Rule(match=main_loop(), response=Response(tool_use=[ToolCall("Bash", {"command": "echo again"})]))
    with ScriptedModelServer([looping]) as server:
        _, out = run("Do TASK-9", options(server, project, max_turns=2))
    assert out.status is OutcomeStatus.MAX_TURNS


def test_budget_exceeded(project):
    looping = Rule(match=main_loop(), response=Response(tool_use=[ToolCall("Bash", {"command": "echo again"})]))
    with ScriptedModelServer([looping]) as server:
        _, out = run("Do TASK-10", options(server, project, budget_usd=0.0001))
        main = [r for r in server.message_requests() if r.conversation.has_tools]
    assert out.status is OutcomeStatus.BUDGET_EXCEEDED
    assert len(main) == 1  # the first request spent the budget; no second one was sent


def test_denied_command_never_runs(project):
    sentinel = project / "sentinel.txt"
    sentinel.write_text("untouched")
    rules = [
        Rule(
            name="danger",
            match=main_loop(turn=1),
            response=Response(tool_use=[ToolCall("Bash", {"command": f"echo gone > {sentinel} && sudo reboot"})]),
        ),
        Rule(name="done", match=main_loop(has_tool_result=True), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        events, out = run("Do TASK-11", options(server, project))
        done = next(r for r in server.message_requests() if r.rule == "done")
    assert out.status is OutcomeStatus.COMPLETED
    assert sentinel.read_text() == "untouched"
    assert "denied by command policy" in done.conversation.tool_result_text
    denied = next(e for e in events if e.kind is EventKind.PERMISSION_DENIED)
    assert denied.data["name"] == "Bash"
    assert "sudo" in denied.data["reason"]


def test_allowed_command_runs(project):
    rules = [
        Rule(name="run", match=main_loop(turn=1), response=Response(tool_use=[ToolCall("Bash", {"command": "pwd"})])),
        Rule(name="done", match=main_loop(tool_result_contains=str(project)), response=Response(text=report())),
    ]
    with ScriptedModelServer(rules) as server:
        _, out = run("Do TASK-12", options(server, project))
    assert out.status is OutcomeStatus.COMPLETED


def test_missing_package_gives_the_install_hint(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", None)
    with pytest.raises(BackendError, match=r"pip install 'autonomous-runner\[sdk\]'"):
        AgentSDKBackend().run("x", RunOptions(cwd=project))


def test_missing_cli_path_is_a_backend_error(project):
    with pytest.raises(BackendError, match="not found"):
        AgentSDKBackend().run("x", RunOptions(cwd=project, claude_path=str(project / "no-claude")))


def test_the_sdk_reads_the_init_message_as_the_cli_parser_does():
    """One mapping of Claude Code's system messages for both Claude Code backends
    (backends/result.py): a real CLI transcript's init line, through the Agent SDK's own
    message parser, gives the same start event and the same MCP warning as the CLI parser."""
    import claude_agent_sdk as sdk
    from claude_agent_sdk._internal.message_parser import parse_message

    from autonomous.backends.claude_cli.parser import parse_stream
    from autonomous.events import BackendStart, WarningEvent

    transcript = Path(__file__).resolve().parents[1] / "fixtures" / "claude-code-cli" / "mcp-server-errors.jsonl"
    init = json.loads(transcript.read_text().splitlines()[0])
    events = AgentSDKBackend._translate(sdk, parse_message(init), {}, [], lambda kind, **fields: kind(**fields))
    cli_events, _ = parse_stream([json.dumps(init)])
    assert [type(e) for e in events] == [type(e) for e in cli_events] == [WarningEvent, BackendStart]
    assert events[0].message == cli_events[0].message and "'broken'" in events[0].message
    sdk_start, cli_start = events[1], cli_events[1]
    assert sdk_start.data == cli_start.data and sdk_start.session_id == init["session_id"]
