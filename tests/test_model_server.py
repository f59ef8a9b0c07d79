"""The scripted Messages API server, driven by the real ``anthropic`` client and the real CLI.

Nothing here mocks the server: every test talks HTTP to it on 127.0.0.1. The CLI tests
run the binary bundled in the claude-agent-sdk wheel and are skipped without it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from autonomous.testing.cli_env import ClaudeRun, bundled_claude_path, claude_cli_env, run_bundled_claude
from autonomous.testing.model_server import (
    DEFAULT_TEXT,
    Conversation,
    Match,
    Response,
    Rule,
    Scenario,
    ScenarioError,
    ScriptedModelServer,
    ToolCall,
    blocked_rules,
    complete_task_rules,
    load_scenario,
    main,
)

MODEL = "claude-sonnet-4-6"
USER_X = [{"role": "user", "content": "x"}]
EXAMPLE = Path(__file__).parents[1] / "src/autonomous/testing/scenarios/example.yml"
needs_cli = pytest.mark.skipif(bundled_claude_path() is None, reason="bundled Claude Code CLI not installed")


def client(server: ScriptedModelServer, **kw) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.url, api_key="sk-test", **kw)


def ask(c: anthropic.Anthropic, text: str = "hello", **kw):
    return c.messages.create(model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": text}], **kw)


def sse_events(server: ScriptedModelServer, text: str = "hello") -> list[tuple[str, dict]]:
    """The raw event stream, to check the wire format rather than one client's tolerance of it."""
    body = {"model": MODEL, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": text}]}
    events: list[tuple[str, dict]] = []
    with httpx.Client() as http, http.stream("POST", server.url + "/v1/messages", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def raw_request(server: ScriptedModelServer, body: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    data = json.dumps(body).encode()
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- anthropic client


def test_non_streaming_text_with_plausible_usage():
    with ScriptedModelServer([Rule(response=Response(text="Hi there."))]) as server, client(server) as c:
        msg = ask(c, "x" * 400)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hi there."
    assert msg.stop_reason == "end_turn"
    assert msg.model == MODEL
    assert msg.id.startswith("msg_")
    assert 100 <= msg.usage.input_tokens <= 130  # ~chars/4 of the request
    assert msg.usage.output_tokens >= 1
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0


def test_default_answer_when_nothing_matches():
    with ScriptedModelServer([Rule(match=Match(contains="NOPE"), response=Response(text="no"))]) as server:
        with client(server) as c:
            msg = ask(c)
        assert msg.content[0].text == DEFAULT_TEXT and msg.stop_reason == "end_turn"
        assert server.message_requests()[0].rule is None
    custom = Scenario(default=Response(text="fallback"))
    with ScriptedModelServer(custom) as server, client(server) as c:
        assert ask(c).content[0].text == "fallback"


def test_stream_has_the_real_event_sequence():
    rules = [Rule(response=Response(text="word " * 30, tool_use=[ToolCall("Bash", {"command": "ls -la " + "x" * 80})]))]
    with ScriptedModelServer(rules) as server:
        events = sse_events(server)
    names = [n for n, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0)
    assert text == "word " * 30
    js = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 1)
    assert json.loads(js) == {"command": "ls -la " + "x" * 80}
    assert sum(1 for n, d in events if n == "content_block_delta" and d["index"] == 1) > 2  # really incremental
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] > 0


def test_streaming_text_and_tool_use_round_trip_with_anthropic_client():
    rules = [
        Rule(
            name="write",
            match=Match(contains="TASK-7", turn=1),
            response=Response(
                text="Writing.", tool_use=[ToolCall("Write", {"file_path": "a.py", "content": "x = 1\n"})]
            ),
        ),
        Rule(
            name="done",
            match=Match(has_tool_result=True, tool_result_contains="created a.py"),
            response=Response(text="All done."),
        ),
    ]
    with ScriptedModelServer(rules) as server, client(server) as c:
        messages = [{"role": "user", "content": "Please do TASK-7"}]
        with c.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
            first = stream.get_final_message()
        assert first.stop_reason == "tool_use"
        call = first.content[1]
        assert call.type == "tool_use" and call.name == "Write" and call.input["file_path"] == "a.py"
        assert call.id.startswith("toolu_")
        messages += [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "created a.py"}]},
        ]
        second = c.messages.create(model=MODEL, max_tokens=100, messages=messages)
        assert second.content[0].text == "All done." and second.stop_reason == "end_turn"
        assert [r.rule for r in server.message_requests()] == ["write", "done"]
        assert server.message_requests()[1].conversation.turn == 2


def test_thinking_block_streams_with_signature():
    with (
        ScriptedModelServer([Rule(response=Response(thinking="hmm", text="ok"))]) as server,
        client(server) as c,
        c.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]) as stream,
    ):
        msg = stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "hmm" and msg.content[0].signature


def test_times_lets_429_come_first_then_success():
    rules = [
        Rule(name="429", times=1, response=Response(error={"status": 429, "retry_after": 0.05})),
        Rule(name="ok", response=Response(text="fine")),
    ]
    with ScriptedModelServer(rules) as server, client(server, max_retries=2) as c:
        assert ask(c).content[0].text == "fine"
        assert [(r.rule, r.status) for r in server.message_requests()] == [("429", 429), ("ok", 200)]
        assert server.rule_hits == {"429": 1, "ok": 1}


def test_error_headers_and_body_on_the_wire():
    rules = [Rule(response=Response(error={"status": 429, "retry_after": 1, "message": "slow down"}))]
    with ScriptedModelServer(rules) as server, httpx.Client() as http:
        resp = http.post(server.url + "/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": []})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "1" and resp.headers["retry-after-ms"] == "1000"
    assert resp.headers["request-id"].startswith("req_")
    body = resp.json()
    assert body["type"] == "error" and body["error"] == {"type": "rate_limit_error", "message": "slow down"}


@pytest.mark.parametrize(
    ("error", "exc", "etype"),
    [
        ({"status": 529}, anthropic.OverloadedError, "overloaded_error"),
        ({"status": 500}, anthropic.InternalServerError, "api_error"),
        ({"status": 401}, anthropic.AuthenticationError, "authentication_error"),
        ({"type": "rate_limit_error"}, anthropic.RateLimitError, "rate_limit_error"),
    ],
)
def test_errors_reach_the_client_as_their_types(error, exc, etype):
    with ScriptedModelServer([Rule(response=Response(error=error))]) as server, client(server) as c:
        with pytest.raises(exc) as info:
            ask(c)
        with pytest.raises(exc), c.messages.stream(model=MODEL, max_tokens=5, messages=USER_X) as s:
            s.until_done()
    assert info.value.body["error"]["type"] == etype


def test_error_mid_stream_arrives_as_sse_error_event():
    rules = [Rule(response=Response(text="partial " * 20, error={"type": "overloaded_error", "after_events": 3}))]
    with ScriptedModelServer(rules) as server:
        events = sse_events(server)
        assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
        assert events[-1][1]["error"]["type"] == "overloaded_error"
        with (
            client(server) as c,
            pytest.raises(anthropic.APIStatusError),
            c.messages.stream(model=MODEL, max_tokens=5, messages=USER_X) as s,
        ):
            s.until_done()
        with client(server) as c, pytest.raises(anthropic.OverloadedError):
            ask(c)  # a non-streaming request cannot fail mid-way: it gets the plain error
        assert [r.status for r in server.message_requests()] == [200, 200, 529]


def test_truncated_stream_cuts_the_connection():
    with ScriptedModelServer([Rule(response=Response(text="x" * 200, truncate_after_events=4))]) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            sse_events(server)
        # The non-streaming variant sends half a body under a full Content-Length.
        with client(server) as c, pytest.raises(anthropic.APIConnectionError):
            ask(c)
        sock = raw_request(server, {"model": MODEL, "max_tokens": 5, "stream": True, "messages": []})
        with sock:
            data = recv_all(sock).decode()
    assert data.count("event: ") == 4 and "message_stop" not in data
    assert not data.endswith("0\r\n\r\n")  # no chunked terminator: a broken stream, not a short one


def test_malformed_event_is_not_json():
    with ScriptedModelServer([Rule(response=Response(text="hello", malformed_event=True))]) as server:
        with (
            client(server) as c,
            pytest.raises(json.JSONDecodeError),
            c.messages.stream(model=MODEL, max_tokens=5, messages=USER_X) as s,
        ):
            s.until_done()
        with client(server) as c, pytest.raises(json.JSONDecodeError):
            ask(c)


def test_delay_postpones_the_answer():
    with ScriptedModelServer([Rule(response=Response(text="late", delay=0.3))]) as server, client(server) as c:
        started = time.monotonic()
        assert ask(c).content[0].text == "late"
        assert time.monotonic() - started >= 0.3


def test_stall_sends_headers_then_nothing_and_does_not_block_stop():
    server = ScriptedModelServer([Rule(response=Response(text="never", stall=True))]).start()
    try:
        with client(server, timeout=0.5) as c, pytest.raises(anthropic.APITimeoutError):
            ask(c)
        sock = raw_request(server, {"model": MODEL, "max_tokens": 5, "stream": True, "messages": []})
        server.wait_for_requests(2)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    finally:
        started = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - started
    with sock:
        assert recv_all(sock) == b""  # released by stop(): closed, nothing more sent
    assert stopped_in < 3


def test_long_delay_does_not_block_stop():
    server = ScriptedModelServer([Rule(response=Response(text="late", delay=60))]).start()
    sock = raw_request(server, {"model": MODEL, "max_tokens": 5, "messages": []})
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    with sock:
        assert recv_all(sock) == b""


def test_count_tokens_and_unknown_paths():
    with ScriptedModelServer() as server, client(server) as c:
        counted = c.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "y" * 400}])
        assert 100 <= counted.input_tokens <= 130
        assert [m.id for m in c.models.list()]
        with httpx.Client() as http:
            resp = http.get(server.url + "/api/hello")
        assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
        assert [(r.method, r.path, r.status) for r in server.requests] == [
            ("POST", "/v1/messages/count_tokens", 200),
            ("GET", "/v1/models", 200),
            ("GET", "/api/hello", 404),
        ]
        assert len(server.count_tokens_requests()) == 1 and server.message_requests() == []


def test_requests_are_recorded_without_secrets():
    with ScriptedModelServer() as server:
        with anthropic.Anthropic(base_url=server.url, api_key="sk-very-secret", max_retries=0) as c:
            ask(c, "remember me", system="SYS-PROMPT", tools=[{"name": "t", "input_schema": {"type": "object"}}])
        (req,) = server.message_requests()
    auth = {k: v for k, v in req.headers.items() if k in ("x-api-key", "authorization")}
    assert auth and set(auth.values()) == {"<redacted>"}  # the client picks the header; both are secret
    assert "sk-very-secret" not in json.dumps(dict(req.headers))
    assert req.headers["anthropic-version"]
    assert req.body["messages"][0]["content"] == "remember me"
    assert req.conversation.system_text == "SYS-PROMPT" and req.conversation.has_tools
    assert abs(req.time - time.time()) < 60


def test_bad_request_body_is_a_400():
    with ScriptedModelServer() as server, httpx.Client() as http:
        resp = http.post(server.url + "/v1/messages", content=b"{not json")
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
        assert server.requests[0].status == 400


# --------------------------------------------------------------------------- matching


def conv(messages, **body) -> Conversation:
    return Conversation({"model": MODEL, "messages": messages, **body})


TOOL_ROUND = [
    {"role": "user", "content": [{"type": "text", "text": "Do AUTH-1.2 now"}]},
    {"role": "system", "content": "env: linux"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pytest"}}],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "3 passed"}]},
            {"type": "text", "text": "<reminder>"},
        ],
    },
]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (Match(), True),
        (Match(contains="AUTH-1.2"), True),
        (Match(contains="pytest"), True),  # tool inputs are part of the conversation
        (Match(contains="AUTH-9"), False),
        (Match(last_user_contains="3 passed"), True),
        (Match(last_user_contains="AUTH-1.2"), False),
        (Match(turn=2), True),
        (Match(turn=1), False),
        (Match(has_tool_result=True), True),
        (Match(has_tool_result=False), False),
        (Match(tool_result_contains="passed"), True),
        (Match(tool_result_contains="reminder"), False),
        (Match(system_contains="TOP"), True),
        (Match(system_contains="env: linux"), True),  # role=system messages count as system
        (Match(model="sonnet"), True),
        (Match(model="haiku"), False),
        (Match(has_tools=False), True),
        (Match(stream=False), True),
        (Match(contains="AUTH-1.2", turn=2, has_tool_result=True), True),
        (Match(contains="AUTH-1.2", turn=1), False),
    ],
)
def test_match_conditions(match, expected):
    assert match.matches(conv(TOOL_ROUND, system=[{"type": "text", "text": "TOP"}])) is expected


def test_first_turn_view():
    c = conv([{"role": "user", "content": "plain string prompt"}], tools=[{"name": "x"}], stream=True)
    assert c.turn == 1 and not c.has_tool_result and c.last_user_text == "plain string prompt"
    assert c.has_tools and c.stream and c.system_text == ""


def test_exhausted_rule_falls_through_to_the_next_match():
    rules = [
        Rule(name="a", times=2, match=Match(contains="K"), response=Response(text="A")),
        Rule(name="b", match=Match(contains="K"), response=Response(text="B")),
    ]
    with ScriptedModelServer(rules) as server, client(server) as c:
        assert [ask(c, "K").content[0].text for _ in range(4)] == ["A", "A", "B", "B"]


def test_helpers_build_the_write_then_report_pattern():
    write, done = complete_task_rules("AUTH-1.2", files={"src/a.py": "A", "src/b.py": "B"}, summary="two files")
    assert write.match == Match(contains="AUTH-1.2", turn=1, has_tools=True)
    assert [c.name for c in write.response.tool_use] == ["Write", "Write"]
    assert write.response.tool_use[0].input == {"file_path": "src/a.py", "content": "A"}
    assert done.match.has_tool_result is True
    report = json.loads(done.response.text.split("```json")[1].split("```")[0])
    assert report == {
        "status": "complete",
        "summary": "two files",
        "files_changed": ["src/a.py", "src/b.py"],
        "blocker": None,
    }
    (only,) = complete_task_rules("X-1")
    assert only.match == Match(contains="X-1", has_tools=True)
    (blocked,) = blocked_rules("X-2", "needs a password")
    assert '"status": "blocked"' in blocked.response.text and "needs a password" in blocked.response.text


def test_side_requests_without_tools_do_not_consume_helper_rules():
    rules = complete_task_rules("K-1", files={"f": "x"})
    with ScriptedModelServer(rules) as server, client(server) as c:
        title = ask(c, "Write a title for: K-1")  # no tools, like a title or quota request
        assert title.content[0].text == DEFAULT_TEXT
        tools = [{"name": "Write", "input_schema": {"type": "object"}}]
        main_loop = ask(c, "Do K-1", tools=tools)
        assert main_loop.stop_reason == "tool_use"


# --------------------------------------------------------------------------- scenario files


def test_example_scenario_file_loads_and_serves(tmp_path):
    scenario = load_scenario(EXAMPLE)
    assert [r.name for r in scenario.rules] == ["rate limited once", "write the file", "report completion"]
    assert scenario.rules[0].response.error.status == 429 and scenario.rules[0].times == 1
    with ScriptedModelServer(EXAMPLE) as server, client(server, max_retries=2) as c:
        tools = [{"name": "Write", "input_schema": {"type": "object"}}]
        msg = ask(c, "DEMO-1.1", tools=tools)
        assert msg.content[1].input["file_path"] == "src/hello.py"


def test_json_scenario_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"rules": [{"match": {"model": "haiku"}, "response": {"text": "small"}}]}))
    with ScriptedModelServer(path) as server, client(server) as c:
        msg = c.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert msg.content[0].text == "small"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - response: {text: hi}\n    matc: {}\n", "rules[0]: unknown key 'matc'"),
        ("rules:\n  - match: {turn: one}\n    response: {text: hi}\n", "rules[0].match.turn: expected int"),
        ("rules:\n  - match: {}\n", "rules[0]: missing key 'response'"),
        ("rules:\n  - response: {error: {message: x}}\n", "rules[0].response.error: needs 'status'"),
        ("rules:\n  - response: {tool_use: [{input: {}}]}\n", "rules[0].response.tool_use[0]: missing key 'name'"),
        ("rules: [\n", "not valid YAML"),
        ("default: {txt: x}\n", "default: unknown key 'txt'"),
    ],
)
def test_scenario_errors_name_the_file_and_key_path(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_main_checks_a_scenario(capsys, tmp_path):
    assert main(["--scenario", str(EXAMPLE), "--check"]) == 0
    assert "3 rules" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("rules: 5\n")
    assert main(["--scenario", str(bad)]) == 2
    assert "rules: expected list" in capsys.readouterr().err


def test_module_entry_point_serves_until_terminated():
    cmd = [sys.executable, "-m", "autonomous.testing.model_server", "--scenario", str(EXAMPLE), "--quiet"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with anthropic.Anthropic(base_url=url, api_key="sk-test", max_retries=0) as c:
                assert ask(c, "anything").content[0].text == "No scripted response matched."
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        assert "Warning" not in proc.stderr.read()


# --------------------------------------------------------------------------- the real CLI


@pytest.fixture
def cli_dirs(tmp_path) -> tuple[Path, Path]:
    """A project directory (the CLI's cwd) and a throwaway HOME."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    return project, home


def run_cli(server: ScriptedModelServer, dirs: tuple[Path, Path], prompt: str, *args: str) -> ClaudeRun:
    project, home = dirs
    extra = args or ("--allowedTools", "Write", "Bash", "--max-turns", "5")
    return run_bundled_claude(prompt, server_url=server.url, cwd=project, home=home, args=extra, timeout=120)


def test_cli_env_is_built_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-token")
    monkeypatch.setenv("CLAUDE_CODE_USE_BEDROCK", "1")
    env = claude_cli_env("http://127.0.0.1:1", tmp_path)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1" and env["HOME"] == str(tmp_path)
    assert env["ANTHROPIC_API_KEY"] == "sk-test" and env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert "ANTHROPIC_AUTH_TOKEN" not in env and "CLAUDE_CODE_USE_BEDROCK" not in env


@needs_cli
def test_cli_writes_a_real_file_and_finishes_with_success(cli_dirs):
    project, _ = cli_dirs
    rules = complete_task_rules("DEMO-1.1", files={"done/DEMO-1.1.txt": "hello\n"}, summary="wrote it")
    with ScriptedModelServer(rules) as server:
        run = run_cli(server, cli_dirs, "Implement DEMO-1.1.")
        requests = server.message_requests()

    assert run.returncode == 0, run.stderr
    assert (project / "done/DEMO-1.1.txt").read_text() == "hello\n"
    result = run.result
    assert result["subtype"] == "success" and result["is_error"] is False and result["num_turns"] == 2
    assert '"status": "complete"' in result["result"]
    # What the CLI sent: two main-loop requests, streamed, with tools; the tool result came back.
    assert [r.rule for r in requests] == ["DEMO-1.1: write files", "DEMO-1.1: complete"]
    assert all(r.body["stream"] and r.conversation.has_tools for r in requests)
    assert requests[0].query == "beta=true" and requests[0].headers["user-agent"].startswith("claude-cli/")
    tool_result = requests[1].conversation
    assert tool_result.turn == 2 and "File created successfully" in tool_result.tool_result_text
    assert (
        requests[1].body["messages"][-1]["content"][0]["tool_use_id"]
        == (requests[1].body["messages"][-2]["content"][-1]["id"])
    )


@needs_cli
def test_cli_bash_tool_result_reaches_the_server(cli_dirs):
    rules = [
        Rule(
            name="run",
            match=Match(turn=1, has_tools=True),
            response=Response(tool_use=[ToolCall("Bash", {"command": "echo scripted-$((40+2))"})]),
        ),
        Rule(name="seen", match=Match(tool_result_contains="scripted-42"), response=Response(text="saw it")),
    ]
    with ScriptedModelServer(rules) as server:
        run = run_cli(server, cli_dirs, "run it")
    assert run.result["subtype"] == "success" and run.result["result"] == "saw it"
    assert server.rule_hits == {"run": 1, "seen": 1}


@needs_cli
def test_cli_retries_a_429_then_succeeds(cli_dirs):
    rules = [
        Rule(
            name="429", times=1, match=Match(has_tools=True), response=Response(error={"status": 429, "retry_after": 0})
        ),
        *blocked_rules("DEMO-2", "needs credentials"),
    ]
    with ScriptedModelServer(rules) as server:
        run = run_cli(server, cli_dirs, "Do DEMO-2")
    retries = [line for line in run.lines if line.get("subtype") == "api_retry"]
    assert [(r["attempt"], r["error_status"], r["error"]) for r in retries] == [(1, 429, "rate_limit")]
    assert run.result["subtype"] == "success" and '"status": "blocked"' in run.result["result"]
    assert [r.status for r in server.message_requests()] == [429, 200]


@needs_cli
def test_cli_recovers_from_a_truncated_stream_by_retrying(cli_dirs):
    rules = [
        Rule(name="cut", times=1, response=Response(text="x" * 100, truncate_after_events=3)),
        *complete_task_rules("DEMO-3"),
    ]
    with ScriptedModelServer(rules) as server:
        run = run_cli(server, cli_dirs, "Do DEMO-3")
    retries = [line for line in run.lines if line.get("subtype") == "api_retry"]
    assert len(retries) == 1 and retries[0]["error_status"] is None
    assert run.result["subtype"] == "success"


@needs_cli
def test_cli_falls_back_to_non_streaming_after_a_malformed_event(cli_dirs):
    rules = [
        Rule(name="bad", times=1, response=Response(text="x", malformed_event=True)),
        *complete_task_rules("DEMO-4"),
    ]
    with ScriptedModelServer(rules) as server:
        run = run_cli(server, cli_dirs, "Do DEMO-4")
        requests = server.message_requests()
    assert run.result["subtype"] == "success"
    assert [r.body.get("stream") for r in requests] == [True, False]  # the same turn, asked again without SSE
    assert requests[1].conversation.turn == 1
