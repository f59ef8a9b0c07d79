"""The Backend contract, the same scenarios over every backend, against the scripted model server.

Each backend is the real one: ``claude-code`` runs the CLI bundled with claude-agent-sdk,
``claude-code-sdk`` drives that CLI through the Agent SDK, ``anthropic-sdk`` uses the real
``anthropic`` client. Only the model is scripted (:mod:`autonomous.testing.model_server`).
What every backend must do is written once in :class:`autonomous.backends.base.Backend`;
these tests hold all three to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autonomous.backends.agent_sdk import AgentSDKBackend
from autonomous.backends.anthropic_api import AnthropicBackend
from autonomous.backends.base import Backend, RunOptions, TaskAllowance
from autonomous.backends.claude_cli import ClaudeCodeBackend
from autonomous.backends.report import NUDGE_PROMPT
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall

MODEL = "claude-sonnet-4-6"
CLAUDE = bundled_claude_path()
MAIN = Match(has_tools=True)  # the agent loop's requests (the CLI's side requests offer no tools)


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass(frozen=True)
class Kit:
    """How one backend is made, pointed at a server, and asked to run a shell command."""

    name: str
    make: Callable[[], Backend]
    env: Callable[[str, Path], dict[str, str]]
    bash_tool: str
    needs_cli: bool = True

    def bash(self, command: str) -> Response:
        return Response(tool_use=[ToolCall(self.bash_tool, {"command": command})])


def _cli_env(url: str, home: Path) -> dict[str, str]:
    # the CLI retries failed requests itself: a few fast ones keep the storm tests short
    return claude_cli_env(url, home, extra={"CLAUDE_CODE_MAX_RETRIES": "2"})


KITS = {
    "claude-code": Kit("claude-code", lambda: ClaudeCodeBackend(max_api_retries=2), _cli_env, "Bash"),
    "claude-code-sdk": Kit("claude-code-sdk", lambda: AgentSDKBackend(max_api_retries=2), _cli_env, "Bash"),
    "anthropic-sdk": Kit(
        "anthropic-sdk",
        lambda: AnthropicBackend(max_retries=2, sleep=_no_wait, bash_timeout=20),
        lambda url, home: {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "test-key-not-real"},
        "bash",
        needs_cli=False,
    ),
}


@pytest.fixture(params=list(KITS))
def kit(request: pytest.FixtureRequest) -> Kit:
    chosen = KITS[request.param]
    if chosen.needs_cli and CLAUDE is None:
        pytest.fail("the bundled Claude Code CLI is missing: pip install -e '.[dev]' installs claude-agent-sdk")
    return chosen


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Agent SDK merges options.env over this process's environment: nothing real may leak in.
    for key in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"):
        monkeypatch.delenv(key, raising=False)


@dataclass
class Result:
    events: list[Event]
    outcome: Outcome
    server: ScriptedModelServer

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    @property
    def main_requests(self) -> int:
        return sum(1 for r in self.server.message_requests() if r.conversation.body.get("tools"))


@dataclass
class Harness:
    kit: Kit
    tmp_path: Path
    servers: list[ScriptedModelServer] = field(default_factory=list)

    @property
    def project(self) -> Path:
        path = self.tmp_path / "project"
        path.mkdir(exist_ok=True)
        return path

    def options(self, server: ScriptedModelServer, **kw: Any) -> RunOptions:
        kw.setdefault("max_turns", 10)
        kw.setdefault("inactivity_timeout", 60)
        return RunOptions(
            cwd=self.project,
            model=MODEL,
            claude_path=str(CLAUDE) if self.kit.needs_cli else None,
            env=self.kit.env(server.url, self.tmp_path / "home"),
            task_id="T-1",
            rate_limit_rpm=0,
            **kw,
        )

    def run(
        self,
        rules: list[Rule],
        prompt: str = "Implement DEMO-1.1.",
        server: ScriptedModelServer | None = None,
        backend: Backend | None = None,
        **kw: Any,
    ) -> Result:
        if server is None:
            server = ScriptedModelServer(rules).start()
            self.servers.append(server)
        options = self.options(server, **kw)
        backend = backend or self.kit.make()

        async def collect() -> list[Event | Outcome]:
            return [item async for item in backend.run(prompt, options)]

        items = asyncio.run(collect())
        outcomes = [i for i in items if isinstance(i, Outcome)]
        assert len(outcomes) == 1 and items[-1] is outcomes[0], "exactly one outcome, last"
        return Result(items[:-1], outcomes[0], server)  # type: ignore[arg-type]


@pytest.fixture
def harness(kit: Kit, tmp_path: Path):
    h = Harness(kit, tmp_path)
    yield h
    for server in h.servers:
        server.stop()


def report(status: str = "complete", **fields: Any) -> str:
    body = {"status": status, "summary": "did it", "files_changed": [], "blocker": None, **fields}
    return f"Here is my report.\n```json\n{json.dumps(body)}\n```"


def done(**fields: Any) -> Response:
    return Response(text=report(**fields))


# -- how a run ends ----------------------------------------------------------------------------------


def test_completes(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=done(summary="built it"))])
    assert r.outcome.status is OutcomeStatus.COMPLETED and r.outcome.summary == "built it"
    assert r.outcome.turns == 1
    assert r.outcome.session_id
    usage = r.of(EventKind.USAGE)
    assert usage and usage[-1].data["turns"] == r.outcome.turns and usage[-1].data["cost_usd"] == r.outcome.cost_usd


def test_blocked(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(text=report("blocked", blocker="no database password")))])
    assert r.outcome.status is OutcomeStatus.BLOCKED and r.outcome.blocker == "no database password"


def test_max_turns(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=harness.kit.bash("echo hi"))], max_turns=2)
    assert r.outcome.status is OutcomeStatus.MAX_TURNS
    assert r.outcome.turns <= 2 and r.main_requests <= 2


def test_the_allowance_spans_runs(harness: Harness) -> None:
    """Two runs of one task share its allowance: together they never spend more turns than it held."""
    rules = [
        Rule(
            match=Match(contains="FIRST", has_tool_result=True, has_tools=True),
            response=Response(text=report("blocked", blocker="x")),
        ),
        Rule(match=Match(contains="FIRST", has_tools=True), response=harness.kit.bash("echo one")),
        Rule(match=MAIN, response=harness.kit.bash("echo again")),  # the second run never reports
    ]
    allowance = TaskAllowance(turns_left=3)
    server = ScriptedModelServer(rules).start()
    harness.servers.append(server)
    first = harness.run(rules, "FIRST attempt", server=server, allowance=allowance)
    assert first.outcome.status is OutcomeStatus.BLOCKED and first.outcome.turns == 2
    assert allowance.turns_left == 1
    second = harness.run(rules, "SECOND attempt", server=server, allowance=allowance)
    assert second.outcome.status is OutcomeStatus.MAX_TURNS
    assert first.outcome.turns + second.outcome.turns <= 3
    assert second.main_requests <= 3  # the server saw every request of both runs
    third = harness.run(rules, "THIRD attempt", server=server, allowance=allowance)
    assert third.outcome.status is OutcomeStatus.MAX_TURNS and third.outcome.turns == 0
    assert third.main_requests == second.main_requests  # a spent allowance sends nothing


def test_a_second_run_continues_the_session(harness: Harness) -> None:
    """Verification feedback goes to the same conversation: the model still sees the task it was given."""
    rules = [
        Rule(match=Match(last_user_contains="checks FAILED", has_tools=True), response=done(summary="fixed")),
        Rule(match=MAIN, response=done(summary="first")),
    ]
    server = ScriptedModelServer(rules).start()
    harness.servers.append(server)
    backend = harness.kit.make()
    first = harness.run(rules, "Implement DEMO-1.1: the parser.", server=server, backend=backend)
    assert first.outcome.summary == "first" and first.outcome.session_id
    second = harness.run(
        rules,
        "The runner's checks FAILED: fix it.",
        server=server,
        backend=backend,
        session_id=first.outcome.session_id,
    )
    assert second.outcome.status is OutcomeStatus.COMPLETED and second.outcome.summary == "fixed"
    last = [r for r in server.message_requests() if r.conversation.body.get("tools")][-1]
    assert "DEMO-1.1: the parser" in json.dumps(last.conversation.body["messages"])


def test_a_session_that_cannot_be_resumed_is_an_error_without_turns(harness: Harness) -> None:
    """The runner then starts the task afresh with its whole prompt (runner/worker.py)."""
    r = harness.run([Rule(match=MAIN, response=done())], session_id="00000000-0000-4000-8000-000000000000")
    assert r.outcome.status is OutcomeStatus.ERROR and r.outcome.turns == 0
    assert r.main_requests == 0


def test_the_budget_stops_a_run_mid_task(harness: Harness) -> None:
    # every request costs about $3 (a million input tokens at Sonnet's $3/M)
    expensive = Response(
        tool_use=[ToolCall(harness.kit.bash_tool, {"command": "echo hi"})],
        usage={"input_tokens": 1_000_000, "output_tokens": 10},
    )
    allowance = TaskAllowance(turns_left=20, usd_left=5.0)
    r = harness.run([Rule(match=MAIN, response=expensive)], allowance=allowance)
    assert r.outcome.status is OutcomeStatus.BUDGET_EXCEEDED
    assert 2 <= r.main_requests <= 3  # over the limit by at most the request that crossed it
    assert r.outcome.cost_usd <= 5.0 + 3.1
    assert allowance.usd_left is not None and allowance.usd_left <= 0


# -- API failures ------------------------------------------------------------------------------------


def test_401_is_an_auth_error(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(error={"status": 401}))])
    assert r.outcome.status is OutcomeStatus.AUTH_ERROR and "401" in r.outcome.error


def test_429_then_success(harness: Harness) -> None:
    rules = [
        Rule(times=1, match=MAIN, response=Response(error={"status": 429, "retry_after": 0.1})),
        Rule(match=MAIN, response=done()),
    ]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED
    assert [e.data["error_status"] for e in r.of(EventKind.API_RETRY)] == [429]


@pytest.mark.parametrize("status", [429, 529])
def test_a_throttling_storm_ends_rate_limited_with_a_retry_time(harness: Harness, status: int) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(error={"status": status, "retry_after": 0.1}))])
    assert r.outcome.status is OutcomeStatus.RATE_LIMITED and r.outcome.retry_at is not None
    assert str(status) in r.outcome.error
    assert r.of(EventKind.API_RETRY)


def test_a_5xx_is_retried(harness: Harness) -> None:
    rules = [Rule(times=1, match=MAIN, response=Response(error={"status": 500})), Rule(match=MAIN, response=done())]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED
    assert r.of(EventKind.API_RETRY)


# -- streams that cannot be trusted ------------------------------------------------------------------


def test_a_cut_stream_is_never_a_success(harness: Harness) -> None:
    """A stream cut before message_stop after a complete-looking report: never completed."""
    cut = Response(text=report(), truncate_after_events=4)
    r = harness.run([Rule(match=MAIN, response=cut)])
    assert r.outcome.status is not OutcomeStatus.COMPLETED
    assert r.outcome.status in (OutcomeStatus.ERROR, OutcomeStatus.FAILED)


def test_a_cut_stream_is_retried(harness: Harness) -> None:
    rules = [
        Rule(times=1, match=MAIN, response=Response(text=report(), truncate_after_events=4)),
        Rule(match=MAIN, response=done()),
    ]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED
    assert r.main_requests == 2


def test_a_malformed_event_is_retried(harness: Harness) -> None:
    rules = [
        Rule(times=1, match=MAIN, response=Response(text="hello", malformed_event=True)),
        Rule(match=MAIN, response=done()),
    ]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED
    assert r.main_requests == 2


def test_an_html_body_with_status_200_is_retried(harness: Harness) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    rules = [Rule(times=1, match=MAIN, response=Response(html=page)), Rule(match=MAIN, response=done())]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED
    assert r.main_requests == 2


def test_html_bodies_only_end_in_an_error(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(html="<html>portal</html>"))])
    assert r.outcome.status is OutcomeStatus.ERROR


def test_a_stalled_stream_is_stopped_by_the_watchdog(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(stall=True))], inactivity_timeout=3)
    assert r.outcome.status is OutcomeStatus.ERROR
    assert r.outcome.error == "no output for 3 s: the run was stopped"


# -- tools and nudges --------------------------------------------------------------------------------


def test_a_denied_command_is_reported_and_not_run(harness: Harness) -> None:
    marker = harness.project / "ran.txt"
    rules = [
        Rule(match=Match(has_tool_result=True, has_tools=True), response=done()),
        Rule(match=MAIN, response=harness.kit.bash(f"sudo touch {marker}")),
    ]
    r = harness.run(rules)
    (denied,) = r.of(EventKind.PERMISSION_DENIED)
    assert "sudo" in json.dumps(denied.data)
    assert not marker.exists()
    assert r.outcome.status is OutcomeStatus.COMPLETED


def test_a_missing_report_is_nudged_in_the_same_conversation(harness: Harness) -> None:
    rules = [
        Rule(
            match=Match(last_user_contains=NUDGE_PROMPT[:40], has_tools=True), response=done(summary="after the nudge")
        ),
        Rule(match=MAIN, response=Response(text="I looked at it.")),
    ]
    r = harness.run(rules)
    assert r.outcome.status is OutcomeStatus.COMPLETED and r.outcome.summary == "after the nudge"
    (nudge,) = r.of(EventKind.NUDGE)
    assert nudge.data["nudge"] == 1 and nudge.data["max_nudges"] == 2
    nudged = [req for req in r.server.message_requests() if NUDGE_PROMPT[:40] in req.conversation.last_user_text]
    assert nudged and "I looked at it." in nudged[-1].conversation.text  # the same conversation went on
    assert r.outcome.turns == 2


def test_nudges_run_out(harness: Harness) -> None:
    r = harness.run([Rule(match=MAIN, response=Response(text="Still thinking."))])
    assert r.outcome.status is OutcomeStatus.FAILED
    assert r.outcome.error == "no completion report after 2 nudges"
    assert len(r.of(EventKind.NUDGE)) == 2 and r.outcome.turns == 3
