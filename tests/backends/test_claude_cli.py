"""The claude-code backend driving the REAL Claude Code CLI against the scripted model server.

Nothing here talks to Anthropic: the CLI's ``ANTHROPIC_BASE_URL`` points at
:class:`ScriptedModelServer` on 127.0.0.1, with a throwaway HOME (``claude_cli_env``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autonomous.backends import get_backend
from autonomous.backends.base import RunOptions
from autonomous.backends.claude_cli import INSTALL_HINT, ClaudeCodeBackend, find_claude
from autonomous.backends.policy import CommandPolicy
from autonomous.backends.report import NUDGE_PROMPT
from autonomous.errors import BackendError, ConfigError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import (
    Match,
    Response,
    Rule,
    ScriptedModelServer,
    blocked_rules,
    complete_task_rules,
)

CLAUDE = bundled_claude_path()
needs_cli = pytest.mark.skipif(
    CLAUDE is None, reason="the bundled Claude Code CLI needs claude_agent_sdk: pip install 'autonomous-runner[sdk]'"
)
MAIN = Match(has_tools=True)  # the agent loop's requests (side requests offer no tools)


def bash(command: str) -> Response:
    return Response(tool_use=[{"name": "Bash", "input": {"command": command}}])


def report(status: str, **fields: Any) -> Response:
    return Response(text=f"Here is my report.\n```json\n{json.dumps({'status': status, **fields})}\n```")


@dataclass
class Run:
    events: list[Event]
    outcome: Outcome
    server: ScriptedModelServer
    project: Path
    elapsed: float = 0.0
    pids: list[int] = field(default_factory=list)

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(tmp_path: Path, project: Path):
    servers: list[ScriptedModelServer] = []

    def start(rules: list[Rule]) -> tuple[ScriptedModelServer, RunOptions]:
        server = ScriptedModelServer(rules).start()
        servers.append(server)
        options = RunOptions(
            cwd=project,
            claude_path=str(CLAUDE),
            env=claude_cli_env(server.url, tmp_path / "home"),
            inactivity_timeout=60,
            max_turns=10,
            task_id="T-1",
        )
        return server, options

    def run(
        rules: list[Rule], prompt: str = "Implement DEMO-1.1.", backend: ClaudeCodeBackend | None = None, **opts: Any
    ) -> Run:
        server, options = start(rules)
        for key, value in opts.items():
            setattr(options, key, value)
        backend = backend or ClaudeCodeBackend()

        async def collect() -> tuple[list[Event], Outcome, float]:
            loop = asyncio.get_running_loop()
            began = loop.time()
            events: list[Event] = []
            outcomes: list[Outcome] = []
            async for item in backend.run(prompt, options):
                (outcomes if isinstance(item, Outcome) else events).append(item)
            assert len(outcomes) == 1, "exactly one outcome, last"
            return events, outcomes[0], loop.time() - began

        events, outcome, elapsed = asyncio.run(collect())
        pids = [e.data["pid"] for e in events if e.kind is EventKind.BACKEND_START]
        for pid in pids:
            assert not alive(pid), f"CLI process {pid} was not reaped"
        return Run(events, outcome, server, project, elapsed, pids)

    run.start = start  # type: ignore[attr-defined]
    yield run
    for server in servers:
        server.stop()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for a (re)parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


# -- completion, blocked, nudges ---------------------------------------------------------------------------


@needs_cli
def test_writes_a_file_and_completes(run_cli):
    run = run_cli(complete_task_rules("DEMO-1.1", {"hello.txt": "hello from the agent\n"}))
    out = run.outcome
    assert out.status is OutcomeStatus.COMPLETED, out.error
    assert (run.project / "hello.txt").read_text() == "hello from the agent\n"  # the real CLI wrote it
    assert out.files_changed == ["hello.txt"] and out.summary == "DEMO-1.1 implemented."
    assert out.turns == 2 and out.cost_usd > 0 and out.usage.input_tokens > 0 and out.context_tokens > 0
    (start,) = run.of(EventKind.BACKEND_START)
    assert start.data["session_id"] == out.session_id and start.task_id == "T-1"
    (tool,) = run.of(EventKind.TOOL_USE)
    assert tool.data["name"] == "Write" and tool.data["input"] == "hello.txt"
    (result,) = run.of(EventKind.TOOL_RESULT)
    assert result.data["is_error"] is False
    # the prompt went in on stdin, not as an argument
    assert "DEMO-1.1" in run.server.message_requests()[0].conversation.text


@needs_cli
def test_blocked_report(run_cli):
    run = run_cli(blocked_rules("DEMO-2.1", "the staging database URL is not in the spec"), "Implement DEMO-2.1.")
    assert run.outcome.status is OutcomeStatus.BLOCKED
    assert run.outcome.blocker == "the staging database URL is not in the spec"


@needs_cli
def test_no_report_is_nudged_in_the_same_session(run_cli):
    nudged = Match(last_user_contains=NUDGE_PROMPT[:40], has_tools=True)
    rules = [
        Rule(name="nudged", match=nudged, response=report("complete", summary="finished after the nudge")),
        Rule(
            name="silent", match=Match(contains="DEMO-3.1", has_tools=True), response=Response(text="I looked at it.")
        ),
    ]
    run = run_cli(rules, "Implement DEMO-3.1.")
    out = run.outcome
    assert out.status is OutcomeStatus.COMPLETED and out.summary == "finished after the nudge"
    (nudge,) = run.of(EventKind.NUDGE)
    assert nudge.data["nudge"] == 1
    starts = run.of(EventKind.BACKEND_START)
    assert len(starts) == 2 and starts[0].data["session_id"] == starts[1].data["session_id"] == out.session_id
    (second,) = [r for r in run.server.message_requests() if r.rule == "nudged"]
    conversation = second.conversation.text
    assert "DEMO-3.1" in conversation and "I looked at it." in conversation  # --resume continued it
    assert out.turns == 2  # one per CLI run, summed
    costs = [e.data["cost_usd"] for e in run.of(EventKind.USAGE) if "cost_usd" in e.data]
    # every USAGE event carries the run's totals so far: they only grow, and the last is the outcome's
    assert costs == sorted(costs) and out.cost_usd == pytest.approx(costs[-1]) and costs[-1] > costs[0]


@needs_cli
def test_nudges_run_out(run_cli):
    rules = [Rule(match=MAIN, response=Response(text="Still thinking."))]
    run = run_cli(rules, backend=ClaudeCodeBackend(max_nudges=1))
    assert run.outcome.status is OutcomeStatus.FAILED
    assert run.outcome.error == "no completion report after 1 nudge"  # one wording for every backend
    assert len(run.of(EventKind.BACKEND_START)) == 2


@needs_cli
def test_nudges_stop_at_the_turn_budget(run_cli):
    rules = [Rule(match=MAIN, response=Response(text="Still thinking."))]
    run = run_cli(rules, max_turns=1)
    # the turns ran out before a report: max_turns, the same in every backend (no nudge is sent)
    assert run.outcome.status is OutcomeStatus.MAX_TURNS and run.outcome.turns == 1
    assert "no completion report" in run.outcome.error
    assert not run.of(EventKind.NUDGE)


# -- API errors ---------------------------------------------------------------------------------------------


@needs_cli
def test_429_then_success(run_cli):
    rules = [
        Rule(times=2, match=MAIN, response=Response(error={"status": 429, "retry_after": 0.1})),
        *complete_task_rules("DEMO-1.1"),
    ]
    run = run_cli(rules, backend=ClaudeCodeBackend(max_api_retries=3))
    assert run.outcome.status is OutcomeStatus.COMPLETED
    retries = run.of(EventKind.API_RETRY)
    assert [r.data["error_status"] for r in retries] == [429, 429]


@needs_cli
def test_persistent_529_stops_early_as_rate_limited(run_cli):
    run = run_cli(
        [Rule(match=MAIN, response=Response(error={"status": 529}))], backend=ClaudeCodeBackend(max_api_retries=1)
    )
    out = run.outcome
    assert out.status is OutcomeStatus.RATE_LIMITED and out.retry_at is not None
    assert "529" in out.error
    assert len(run.of(EventKind.API_RETRY)) == 2
    assert run.elapsed < 30  # not the CLI's three minutes of retries


@needs_cli
def test_401_is_an_auth_error_in_seconds(run_cli):
    run = run_cli([Rule(match=MAIN, response=Response(error={"status": 401}))])
    assert run.outcome.status is OutcomeStatus.AUTH_ERROR
    assert "401" in run.outcome.error
    assert run.elapsed < 30


@needs_cli
def test_max_turns(run_cli):
    rules = [Rule(match=MAIN, response=bash("echo hi"))]
    run = run_cli(rules, max_turns=1)
    assert run.outcome.status is OutcomeStatus.MAX_TURNS
    assert run.outcome.error == "Reached maximum number of turns (1)"
    assert not run.of(EventKind.NUDGE)


@needs_cli
def test_budget_exceeded(run_cli):
    rules = [Rule(match=MAIN, response=bash("echo hi"))]
    run = run_cli(rules, budget_usd=0.001)
    assert run.outcome.status is OutcomeStatus.BUDGET_EXCEEDED
    assert run.outcome.cost_usd > 0


# -- the watchdog, the policy, cancellation -------------------------------------------------------------------


@needs_cli
def test_watchdog_kills_a_hung_stream(run_cli):
    run = run_cli([Rule(match=MAIN, response=Response(stall=True))], inactivity_timeout=3)
    assert run.outcome.status is OutcomeStatus.ERROR
    assert run.outcome.error == "no output for 3 s: the run was stopped"
    assert 3 <= run.elapsed < 30
    assert run.of(EventKind.ERROR)[-1].data["message"] == run.outcome.error


@needs_cli
def test_denied_command_does_not_run(run_cli, project):
    sentinel = project / "sentinel"
    sentinel.write_text("keep me")
    rules = [
        Rule(match=Match(has_tools=True, has_tool_result=True), response=report("blocked", blocker="denied")),
        Rule(match=MAIN, response=bash("rm -f sentinel && sudo rm -rf /")),
    ]
    run = run_cli(rules)
    assert sentinel.read_text() == "keep me"
    (result,) = run.of(EventKind.TOOL_RESULT)
    assert result.data["is_error"] is True
    (denied,) = run.of(EventKind.PERMISSION_DENIED)
    assert "sudo" in denied.data["reason"]
    assert run.outcome.status is OutcomeStatus.BLOCKED
    assert "permission denied" in run.outcome.error and "sudo" in run.outcome.error


@needs_cli
def test_hook_enforces_regex_rules_the_cli_cannot_express(run_cli, project):
    assert not any("touch" in rule for rule in CommandPolicy(deny=[r"touch\s+forbidden"]).to_cli_disallowed_tools())
    rules = [
        Rule(match=Match(has_tools=True, has_tool_result=True), response=report("complete", summary="tried")),
        Rule(match=MAIN, response=bash("echo ok; touch forbidden")),
    ]
    run = run_cli(rules, command_deny=[r"touch\s+forbidden"])
    assert not (project / "forbidden").exists()
    (denied,) = run.of(EventKind.PERMISSION_DENIED)
    assert "command_deny" in denied.data["reason"]


def _pid_reporting_command(port: int) -> str:
    """A Bash tool command that reports its pid to the test over TCP, then runs for a minute."""
    code = (
        f"import os, socket, time; s = socket.create_connection(('127.0.0.1', {port})); "
        "s.sendall(str(os.getpid()).encode()); s.close(); time.sleep(60)"
    )
    return f'{sys.executable} -c "{code}"'


@needs_cli
@pytest.mark.parametrize("how", ["aclose", "cancel", "interrupt"])
def test_stopping_a_run_reaps_the_cli_and_its_tools(run_cli, how):
    async def scenario() -> tuple[int, int, Outcome | None]:
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.set_result((await reader.read()).decode())
            writer.close()
            await writer.wait_closed()

        listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        rules = [Rule(match=MAIN, response=bash(_pid_reporting_command(port)))]
        _, options = run_cli.start(rules)
        backend = ClaudeCodeBackend(kill_grace=5)
        stream = backend.run("Implement DEMO-1.1.", options)
        cli_pid = 0
        outcome: Outcome | None = None
        try:
            async for item in stream:
                if isinstance(item, Event) and item.kind is EventKind.BACKEND_START:
                    cli_pid = item.data["pid"]
                if isinstance(item, Event) and item.kind is EventKind.TOOL_USE:
                    break
            tool_pid = int(await asyncio.wait_for(got, 60))
            assert alive(tool_pid) and alive(cli_pid)
            if how == "aclose":
                await stream.aclose()
            elif how == "interrupt":
                backend.interrupt()
                async for item in stream:
                    if isinstance(item, Outcome):
                        outcome = item
            else:

                async def consume() -> None:
                    async for _ in stream:
                        pass

                task = asyncio.ensure_future(consume())
                await asyncio.sleep(0)  # one loop step (not a timed wait): the task is now inside the run
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        finally:
            listener.close()
            await listener.wait_closed()
        return cli_pid, tool_pid, outcome

    cli_pid, tool_pid, outcome = asyncio.run(scenario())
    assert not alive(cli_pid), "the CLI survived"
    assert not alive(tool_pid), "the Bash tool's process survived"
    assert group_members(cli_pid) == []
    if how == "interrupt":
        assert outcome is not None and outcome.status is OutcomeStatus.INTERRUPTED


# -- without the CLI: discovery, command line, registry ----------------------------------------------------------


def test_missing_cli_names_both_install_routes(monkeypatch):
    import autonomous.backends.claude_cli.discovery as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    monkeypatch.setattr(module, "bundled_claude", lambda: None)
    with pytest.raises(BackendError) as err:
        find_claude()
    assert "npm install -g @anthropic-ai/claude-code" in str(err.value)
    assert "pip install 'autonomous-runner[sdk]'" in str(err.value)


def test_discovery_order(monkeypatch, tmp_path):
    import autonomous.backends.claude_cli.discovery as module

    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_claude(str(fake)) == str(fake)
    monkeypatch.setattr(module.shutil, "which", lambda name: "/on/path/claude" if name == "claude" else None)
    assert find_claude() == "/on/path/claude"
    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    monkeypatch.setattr(module, "bundled_claude", lambda: "/bundled/claude")
    assert find_claude() == "/bundled/claude"


def test_bad_claude_path_ends_in_an_error_outcome(tmp_path):
    async def collect() -> list[Any]:
        options = RunOptions(cwd=tmp_path, claude_path=str(tmp_path / "nope"))
        return [item async for item in ClaudeCodeBackend().run("hi", options)]

    items = asyncio.run(collect())
    assert items[0].kind is EventKind.ERROR
    assert isinstance(items[-1], Outcome) and items[-1].status is OutcomeStatus.ERROR
    assert INSTALL_HINT in items[-1].error


def test_command_line(tmp_path):
    backend = ClaudeCodeBackend(extra_args=["--bare"])
    policy = CommandPolicy()
    options = RunOptions(
        cwd=tmp_path,
        model="sonnet",
        allowed_tools=["Read", "Bash(git *)"],
        append_system_prompt="Be brief.",
        mcp_servers={"docs": {"command": "docs-server"}},
        permission_mode="acceptEdits",
    )
    args = backend.build_args(
        "/bin/claude", options, policy=policy, session_id="abc", resume=False, max_turns=7, budget_usd=1.5
    )
    assert args[:5] == ["/bin/claude", "-p", "--output-format", "stream-json", "--verbose"]

    def after(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert after("--max-turns") == "7" and after("--model") == "sonnet" and after("--permission-mode") == "acceptEdits"
    assert args[args.index("--allowedTools") + 1 : args.index("--allowedTools") + 3] == ["Read", "Bash(git *)"]
    assert "Bash(sudo:*)" in args
    assert json.loads(after("--settings")) == policy.to_cli_settings()
    assert after("--append-system-prompt") == "Be brief."
    assert json.loads(after("--mcp-config")) == {"mcpServers": {"docs": {"command": "docs-server"}}}
    assert after("--max-budget-usd") == "1.5000"
    assert "--bare" in args
    assert args[-2:] == ["--session-id", "abc"]
    resumed = backend.build_args(
        "/bin/claude", RunOptions(cwd=tmp_path), policy=policy, session_id="abc", resume=True, max_turns=0
    )
    assert resumed[-2:] == ["--resume", "abc"] and resumed[resumed.index("--max-turns") + 1] == "1"
    assert (
        "--mcp-config" not in resumed and "--append-system-prompt" not in resumed and "--max-budget-usd" not in resumed
    )


def test_child_env_carries_the_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUDECODE", "1")
    policy = CommandPolicy(deny=["docker"])
    env = ClaudeCodeBackend.child_env(RunOptions(cwd=tmp_path, env={"X_TEST": "1"}), policy)
    assert env["X_TEST"] == "1" and "CLAUDECODE" not in env
    assert CommandPolicy.from_env(env).deny == ["docker"]


def test_registry():
    backend = get_backend("claude-code")
    assert isinstance(backend, ClaudeCodeBackend) and backend.name == "claude-code"
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        get_backend("nope")
