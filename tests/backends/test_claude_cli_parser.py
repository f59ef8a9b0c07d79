"""The CLI's stream-json, replayed from real transcripts and from edited copies of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autonomous.backends.claude_cli import StreamParser, parse_stream
from autonomous.backends.text import summarize_input
from autonomous.events import EventKind, OutcomeStatus, UsageUpdate

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "claude-code-stream-json"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def transcript(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text().splitlines()


def messages(name: str) -> list[dict]:
    return [json.loads(line) for line in transcript(name)]


def lines(msgs: list[dict]) -> list[str]:
    return [json.dumps(m) for m in msgs]


def with_result(name: str, **changes) -> list[str]:
    msgs = messages(name)
    assert msgs[-1]["type"] == "result"
    msgs[-1].update(changes)
    return lines(msgs)


def kinds(events) -> list[EventKind]:
    return [e.kind for e in events]


def replay(raw: list[str], **kwargs):
    kwargs.setdefault("clock", lambda: NOW)
    return parse_stream(raw, **kwargs)


# -- the four real transcripts -------------------------------------------------------------------


def test_success_transcript():
    events, outcome = replay(transcript("success.jsonl"), task_id="T1")
    assert outcome.status is OutcomeStatus.COMPLETED
    assert outcome.session_id == "e469d8ed-9b76-4aa7-8541-5572961a0a74"
    assert outcome.turns == 2 and outcome.cost_usd == pytest.approx(0.01)
    assert outcome.usage.input_tokens == 2000 and outcome.usage.output_tokens == 100
    assert outcome.files_changed == ["done/DEMO-1.1.txt"]  # from the "## Task Complete" fallback
    assert "DEMO-1.1 implemented" in outcome.summary
    assert outcome.context_tokens == 1000
    assert kinds(events) == [
        EventKind.BACKEND_START,
        EventKind.USAGE,
        EventKind.TOOL_USE,
        EventKind.TOOL_RESULT,
        EventKind.USAGE,
        EventKind.TEXT,
        EventKind.USAGE,
    ]
    start, _, tool_use, tool_result, *_ = events
    assert start.data["session_id"] == outcome.session_id and start.data["model"] == "claude-opus-5-5"
    assert "Bash" in start.data["tools"] and start.data["version"] == "2.1.330"
    assert tool_use.data == {
        "id": "toolu_000001",
        "name": "Bash",
        "input": "mkdir -p done && echo DEMO-1.1 >> done/DEMO-1.1.txt",
        "subagent": False,
    }
    assert tool_result.data["is_error"] is False and tool_result.data["name"] == "Bash"
    assert tool_result.data["excerpt"] == "(Bash completed with no output)"
    assert all(e.task_id == "T1" and e.backend == "claude-code" for e in events)
    assert events[-1].data["cost_usd"] == pytest.approx(0.01) and events[-1].data["turns"] == 2


def test_cost_is_estimated_from_each_message_while_the_run_goes_on():
    raw = [
        line.replace("claude-opus-5-5", "claude-sonnet-4-5") if '"model"' in line else line
        for line in transcript("success.jsonl")
    ]
    events, outcome = replay(raw, task_id="T1")
    usage = [e for e in events if isinstance(e, UsageUpdate)]
    estimates = [u.cost_usd_estimate for u in usage if u.cost_usd_estimate is not None]
    assert len(estimates) == 2 and 0 < estimates[0] < estimates[1]  # grows with each message
    assert usage[-1].cost_usd == pytest.approx(outcome.cost_usd)  # the CLI's own figure at the end
    # a model without a price gets no made-up estimate
    unpriced, _ = replay(transcript("success.jsonl"), task_id="T1")
    assert not any(isinstance(e, UsageUpdate) and e.cost_usd_estimate is not None for e in unpriced)


def test_maxturns_transcript():
    _, outcome = replay(transcript("maxturns.jsonl"))
    assert outcome.status is OutcomeStatus.MAX_TURNS
    assert outcome.error == "Reached maximum number of turns (1)"
    assert outcome.turns == 2 and outcome.cost_usd == pytest.approx(0.005)


def test_429_twice_then_success():
    events, outcome = replay(transcript("r429x2.jsonl"), max_api_retries=3)
    retries = [e for e in events if e.kind is EventKind.API_RETRY]
    assert [r.data["attempt"] for r in retries] == [1, 2]
    assert retries[0].data["error_status"] == 429 and retries[0].data["error"] == "rate_limit"
    assert outcome.status is OutcomeStatus.COMPLETED


def test_429_past_the_retry_limit_stops_early_as_rate_limited():
    events, outcome = replay(transcript("r429x2.jsonl"), max_api_retries=1)
    assert outcome.status is OutcomeStatus.RATE_LIMITED
    assert outcome.retry_at == NOW + timedelta(milliseconds=1081)
    assert EventKind.TOOL_USE not in kinds(events)  # stopped at the second retry line
    assert kinds(events)[-1] is EventKind.RATE_LIMIT


def test_401_stops_at_the_first_retry():
    events, outcome = replay(transcript("auth401-after-retries.jsonl"))
    assert outcome.status is OutcomeStatus.AUTH_ERROR
    assert "401" in outcome.error
    assert kinds(events) == [EventKind.BACKEND_START, EventKind.API_RETRY]


def test_401_result_with_success_subtype_is_an_auth_error():
    # Without the early stop: the CLI's own last word is subtype success, is_error true.
    events, outcome = replay(transcript("auth401-after-retries.jsonl"), early_stop=False)
    assert outcome.status is OutcomeStatus.AUTH_ERROR
    assert "HTTP 401" in outcome.error and "Failed to authenticate" in outcome.error
    assert sum(1 for e in events if e.kind is EventKind.API_RETRY) == 10
    assert EventKind.ERROR in kinds(events)  # the synthetic assistant message is an API error
    assert outcome.context_tokens == 0  # synthetic messages do not count as a request


# -- edited transcripts: every outcome rule -----------------------------------------------------------


def test_is_error_is_never_success_whatever_the_subtype():
    raw = with_result("success.jsonl", is_error=True, api_error_status=None, result="something broke")
    _, outcome = replay(raw)
    assert outcome.status is OutcomeStatus.ERROR and outcome.error == "something broke"


@pytest.mark.parametrize("status", [429, 529])
def test_result_with_throttle_status_is_rate_limited(status):
    raw = with_result("success.jsonl", is_error=True, api_error_status=status, terminal_reason="api_error")
    _, outcome = replay(raw)
    assert outcome.status is OutcomeStatus.RATE_LIMITED and outcome.retry_at is not None


def test_403_is_an_auth_error():
    raw = with_result("success.jsonl", is_error=True, api_error_status=403, result="Forbidden")
    assert replay(raw)[1].status is OutcomeStatus.AUTH_ERROR


def test_budget_exceeded():
    raw = with_result("success.jsonl", subtype="error_max_budget_usd", is_error=True, errors=["Reached budget"])
    _, outcome = replay(raw)
    assert outcome.status is OutcomeStatus.BUDGET_EXCEEDED and outcome.error == "Reached budget"


def test_error_during_execution():
    raw = with_result("success.jsonl", subtype="error_during_execution", is_error=True, errors=["boom"])
    _, outcome = replay(raw)
    assert outcome.status is OutcomeStatus.ERROR and outcome.error == "boom"


def test_aborted_turn_is_interrupted():
    raw = with_result("success.jsonl", terminal_reason="aborted_streaming")
    assert replay(raw)[1].status is OutcomeStatus.INTERRUPTED


def test_exit_zero_without_a_result_line_is_an_error():
    raw = transcript("success.jsonl")[:-1]
    _, outcome = replay(raw, returncode=0)
    assert outcome.status is OutcomeStatus.ERROR
    assert outcome.error == "claude exited with code 0 without a result"


def test_no_result_but_an_api_error_message():
    raw = transcript("auth401-after-retries.jsonl")[:-1]
    _, outcome = replay(raw, early_stop=False, returncode=1)
    assert outcome.status is OutcomeStatus.AUTH_ERROR


def test_no_report_needs_a_nudge():
    msgs = messages("success.jsonl")
    msgs[3]["message"]["content"][0]["text"] = "I did some things."
    msgs[-1]["result"] = "I did some things."
    parser = StreamParser(clock=lambda: NOW)
    for line in lines(msgs):
        parser.feed(line)
    outcome = parser.outcome(0)
    assert outcome.status is OutcomeStatus.FAILED and outcome.error == "no completion report"
    assert parser.needs_nudge


def test_blocked_report():
    report = '```json\n{"status": "blocked", "summary": "half", "blocker": "no API key for the payment sandbox"}\n```'
    raw = with_result("success.jsonl", result=report)
    _, outcome = replay(raw)
    assert outcome.status is OutcomeStatus.BLOCKED
    assert outcome.blocker == "no API key for the payment sandbox" and outcome.summary == "half"


def test_report_from_the_last_assistant_text_when_the_result_has_none():
    raw = with_result("success.jsonl", result="")
    assert replay(raw)[1].status is OutcomeStatus.COMPLETED


def test_permission_denials_are_events_and_in_the_error():
    denial = {"tool_name": "Bash", "tool_use_id": "toolu_9", "tool_input": {"command": "sudo rm -rf /"}}
    events, outcome = replay(with_result("success.jsonl", permission_denials=[denial]))
    denied = [e for e in events if e.kind is EventKind.PERMISSION_DENIED]
    assert len(denied) == 1 and denied[0].data["input"] == "sudo rm -rf /"
    assert outcome.status is OutcomeStatus.COMPLETED
    assert "permission denied: Bash: sudo rm -rf /" in outcome.error


def test_denied_tool_result_in_the_stream():
    msgs = messages("success.jsonl")
    block = msgs[2]["message"]["content"][0]
    block["is_error"] = True
    block["content"] = "PreToolUse:Bash hook error: denied by command policy (sudo: privilege escalation): sudo ls"
    msgs[-1]["permission_denials"] = [{"tool_name": "Bash", "tool_use_id": block["tool_use_id"], "tool_input": {}}]
    events, outcome = replay(lines(msgs))
    assert sum(1 for e in events if e.kind is EventKind.PERMISSION_DENIED) == 1  # not twice
    assert "denied by command policy" in outcome.error


def test_rate_limit_event_rejected_stops_with_the_reset_time():
    msgs = messages("success.jsonl")
    event = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": 1_800_000_000, "rateLimitType": "five_hour"},
        "uuid": "u",
        "session_id": msgs[0]["session_id"],
    }
    events, outcome = replay(lines([msgs[0], event, *msgs[1:]]))
    assert outcome.status is OutcomeStatus.RATE_LIMITED
    assert outcome.retry_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert "five_hour" in outcome.error
    assert kinds(events) == [EventKind.BACKEND_START, EventKind.RATE_LIMIT]


def test_rate_limit_warning_is_only_an_event():
    msgs = messages("success.jsonl")
    event = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning", "utilization": 0.9}}
    events, outcome = replay(lines([msgs[0], event, *msgs[1:]]))
    assert outcome.status is OutcomeStatus.COMPLETED
    assert [e.data["utilization"] for e in events if e.kind is EventKind.RATE_LIMIT] == [0.9]


@pytest.mark.parametrize(
    "text",
    [
        "Claude AI usage limit reached|1700000000",
        "You've hit your limit · resets 3pm (UTC)",
        "5-hour limit reached ∙ resets 9:30am (UTC)",
        "Claude usage limit reached. Your limit will reset at 12am (UTC).",
    ],
)
def test_a_usage_limit_is_never_read_from_message_text(text):
    # the wording and its "resets 3pm" change between versions and time zones (a reset a
    # minute ago reads as tomorrow): only the rate_limit_event and the HTTP status decide
    _, outcome = replay(with_result("success.jsonl", result=text, is_error=True))
    assert outcome.status is OutcomeStatus.ERROR and outcome.retry_at is None
    _, outcome = replay(with_result("success.jsonl", result=text, is_error=True, api_error_status=429))
    assert outcome.status is OutcomeStatus.RATE_LIMITED and outcome.retry_at == NOW + timedelta(seconds=60)
    _, outcome = replay(with_result("success.jsonl", result=text))
    assert outcome.status is OutcomeStatus.COMPLETED  # the "## Task Complete" report of the transcript


@pytest.mark.parametrize(
    "text",
    [
        "## Task Complete\nAdded rate limit middleware that says 'usage limit reached, resets 3pm'.",
        '{"status": "complete", "summary": "You\'ve hit your limit page added"}',
    ],
)
def test_a_task_about_limits_is_not_rate_limited(text):
    _, outcome = replay(with_result("success.jsonl", result=text))
    assert outcome.status is OutcomeStatus.COMPLETED


def test_malformed_lines_and_unknown_types_are_warnings():
    raw = transcript("success.jsonl")
    noisy = [raw[0], "not json at all", "[1, 2]", '{"type": "brand_new_thing"}', '{"type": "brand_new_thing"}']
    noisy += ['{"type": "stream_event", "event": {}}', '{"type": "assistant", "message": "weird"}', "", *raw[1:]]
    events, outcome = replay(noisy)
    warnings = [e.data["message"] for e in events if e.kind is EventKind.WARNING]
    assert len(warnings) == 3  # non-JSON, non-object, one per unknown type; stream_event is quiet
    assert "brand_new_thing" in warnings[2]
    assert outcome.status is OutcomeStatus.COMPLETED


def test_subagent_text_is_not_the_final_text():
    msgs = messages("success.jsonl")
    sub = json.loads(json.dumps(msgs[3]))
    sub["parent_tool_use_id"] = "toolu_x"
    sub["message"]["id"] = "msg_sub"
    sub["message"]["content"][0]["text"] = '{"status": "blocked", "blocker": "subagent opinion"}'
    events, outcome = replay(lines([*msgs[:-1], sub, msgs[-1]]), early_stop=True)
    assert outcome.status is OutcomeStatus.COMPLETED
    assert any(e.kind is EventKind.TEXT and e.data["subagent"] for e in events)


def test_context_tokens_count_the_cache():
    msgs = messages("success.jsonl")
    msgs[3]["message"]["usage"] = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 3000,
    }
    assert replay(lines(msgs))[1].context_tokens == 3210


def test_summarize_input():
    assert summarize_input({"command": "ls   -la\n"}) == "ls -la"
    assert summarize_input({"file_path": "a.py", "content": "x" * 1000}) == "a.py"
    assert summarize_input({"x": 1}) == '{"x": 1}'
    assert len(summarize_input({"x": "y" * 1000})) == 300


# -- Claude Code 2.1.332 transcripts (tests/fixtures/claude-code-cli, recorded by record_cli.py) -----

CLI_2026 = TRANSCRIPTS.parent / "claude-code-cli"


def transcript_2026(name: str) -> list[str]:
    return (CLI_2026 / name).read_text().splitlines()


def test_a_second_result_frame_from_a_background_task_is_not_the_runs_answer():
    raw = transcript_2026("background-two-results.jsonl")
    results = [json.loads(line) for line in raw if '"type":"result"' in line]
    assert len(results) == 2 and "origin" not in results[0]
    assert results[1]["origin"]["kind"] == "task-notification"
    events, outcome = replay(raw)
    # the model claimed completion, but its background job outlived the turn: not a success
    assert outcome.status is OutcomeStatus.FAILED
    assert "background work outlived the turn" in outcome.error and "sleep 1" in outcome.error
    assert outcome.turns == results[0]["num_turns"]  # the injected turn's count is not the run's
    assert outcome.cost_usd == pytest.approx(results[1]["total_cost_usd"])  # the process's total
    assert any("task-notification" in e.data.get("message", "") for e in events if e.kind is EventKind.WARNING)


def test_background_disabled_refuses_the_call_and_the_claim_alone_completes():
    events, outcome = replay(transcript_2026("background-disabled.jsonl"))
    refused = [e for e in events if e.kind is EventKind.TOOL_RESULT]
    assert refused and refused[0].data["is_error"] and "run_in_background" in refused[0].data["excerpt"]
    # nothing ran in the background, so the run's own report stands (the runner's change check judges it)
    assert outcome.status is OutcomeStatus.COMPLETED


def test_a_rejected_rate_limit_event_stops_until_resets_at():
    parser = StreamParser(clock=lambda: NOW)
    events = []
    for line in transcript_2026("rate-limit-rejected.jsonl"):
        events += parser.feed(line)
        if parser.stop is not None:
            break
    outcome = parser.outcome(None)
    assert outcome.status is OutcomeStatus.RATE_LIMITED
    assert outcome.retry_at == datetime.fromtimestamp(1_900_000_000, UTC)
    limit = next(e for e in events if e.kind is EventKind.RATE_LIMIT)
    assert limit.data["status"] == "rejected" and limit.data["limit_type"] == "five_hour"


@pytest.mark.parametrize("limit_type", ["five_hour", "seven_day", "seven_day_opus", "seven_day_sonnet", "overage"])
def test_rejected_is_keyed_on_status_and_resets_at_never_on_text(limit_type: str):
    msgs = [json.loads(line) for line in transcript_2026("rate-limit-rejected.jsonl")]
    event = next(m for m in msgs if m["type"] == "rate_limit_event")
    event["rate_limit_info"]["rateLimitType"] = limit_type
    event["rate_limit_info"]["resetsAt"] = 1_800_000_000
    _, outcome = replay(lines(msgs))
    assert outcome.status is OutcomeStatus.RATE_LIMITED
    assert outcome.retry_at == datetime.fromtimestamp(1_800_000_000, UTC) and limit_type in outcome.error
    # the same frame saying "allowed_warning" is information, not a stop
    event["rate_limit_info"]["status"] = "allowed_warning"
    msgs = [m for m in msgs if m["type"] != "assistant" and m["type"] != "result"] + messages("success.jsonl")[-2:]
    _, outcome = replay(lines(msgs))
    assert outcome.status is not OutcomeStatus.RATE_LIMITED


def test_mcp_server_errors_on_init_are_warned_by_name():
    events, outcome = replay(transcript_2026("mcp-server-errors.jsonl"))
    start = next(e for e in events if e.kind is EventKind.BACKEND_START)
    assert start.data["mcp_server_errors"][0]["name"] == "broken"
    warning = next(e for e in events if e.kind is EventKind.WARNING)
    assert "'broken'" in warning.data["message"] and "url_missing_type" in warning.data["message"]
    assert outcome.status is OutcomeStatus.COMPLETED


@pytest.mark.parametrize(
    ("terminal", "status"),
    [
        ("completed", OutcomeStatus.COMPLETED),
        ("max_turns", OutcomeStatus.MAX_TURNS),
        ("budget_exhausted", OutcomeStatus.BUDGET_EXCEEDED),
        ("aborted_tools", OutcomeStatus.INTERRUPTED),
        ("aborted_streaming", OutcomeStatus.INTERRUPTED),
        ("background_requested", OutcomeStatus.FAILED),
        ("prompt_too_long", OutcomeStatus.FAILED),
        ("blocking_limit", OutcomeStatus.FAILED),
        ("hook_stopped", OutcomeStatus.FAILED),
        ("stop_hook_prevented", OutcomeStatus.FAILED),
        ("tool_deferred", OutcomeStatus.FAILED),
        ("model_error", OutcomeStatus.FAILED),
        ("turn_setup_failed", OutcomeStatus.FAILED),
    ],
)
def test_terminal_reason_decides_even_when_the_subtype_says_success(terminal: str, status: OutcomeStatus):
    raw = (CLI_2026 / "mcp-server-errors.jsonl").read_text().splitlines()
    msgs = [json.loads(line) for line in raw]
    msgs[-1].update(terminal_reason=terminal)  # subtype success, is_error false, a completion report
    _, outcome = replay(lines(msgs))
    assert outcome.status is status
    if status is OutcomeStatus.FAILED:
        assert terminal in outcome.error


def test_conversation_reset_moves_the_session_and_warns():
    msgs = messages("success.jsonl")
    reset = {"type": "conversation_reset", "new_conversation_id": "new-conv", "uuid": "u", "session_id": "old"}
    msgs.insert(2, reset | {"trigger": "clear"})
    msgs = [m | {"session_id": "new-conv"} if i > 2 and "session_id" in m else m for i, m in enumerate(msgs)]
    events, outcome = replay(lines(msgs))
    assert any("reset the conversation (trigger clear)" in e.data.get("message", "") for e in events)
    assert outcome.session_id == "new-conv"
