"""Limits that hold across attempts, workers, resumes and rate-limit storms, through the
REAL Claude Code CLI and the real ``anthropic`` client against the scripted model server,
in a project set up the way a new user's is.

Money here is real arithmetic: every scripted response reports 100,000 input tokens,
which the price table (and the CLI's own) prices at $0.30 for claude-sonnet-4-5.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_project import autonomous, env_for, init, newcomer_project, task_states

from autonomous.testing.cli_env import bundled_claude_path
from autonomous.testing.model_server import ErrorSpec, Match, Response, Rule, ScriptedModelServer, ToolCall

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

MODEL = "claude-sonnet-4-5"
USAGE = {"input_tokens": 100_000, "output_tokens": 10}
REQUEST_COST = 0.30015  # 100,000 input tokens at $3 per million, 10 output tokens at $15 per million
REPORT = '```json\n{"status": "complete", "summary": "done", "files_changed": ["work.txt"], "blocker": null}\n```'


def write_call(backend: str, path: str, content: str) -> ToolCall:
    """The file-writing tool of ``backend``: Claude Code's Write, or the runner's own write_file."""
    if backend == "anthropic-sdk":
        return ToolCall("write_file", {"path": path, "content": content})
    return ToolCall("Write", {"file_path": path, "content": content})


def work_rules(backend: str, tasks: int = 8) -> list[Rule]:
    """Every task: turn 1 writes a file of its own, the next reports completion; $0.30 a request."""
    rules = [
        Rule(
            name="report",
            match=Match(has_tools=True, has_tool_result=True),
            response=Response(text="## Task Complete\n" + REPORT, usage=USAGE),
        )
    ]
    for i in range(tasks, 0, -1):  # later tasks first: a later prompt may quote an earlier task's note
        write = write_call(backend, f"work{i}.txt", f"task {i}\n")
        rules.append(
            Rule(
                name=f"write {i}",
                match=Match(has_tools=True, contains=f"Task W-1.{i}:"),
                response=Response(text="Writing.", tool_use=(write,), usage=USAGE),
            )
        )
    return rules


def many_tasks(n: int) -> str:
    lines = ["# Work", "", "## Phase 1: All"] + [f"- [W-1.{i}] Task {i}" for i in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def project_for(tmp_path: Path, backend: str, tasks: int, **config: dict) -> Path:
    auto = {"backend": backend, "model": MODEL, "max_tasks_per_session": 50, **config.pop("autonomous", {})}
    project = newcomer_project(tmp_path / "proj", autonomous=auto, **config)
    (project / "spec.md").write_text(many_tasks(tasks))
    return project


def main_requests(server: ScriptedModelServer) -> int:
    """Requests of the agent itself (the CLI's side requests offer no tools)."""
    return sum(1 for r in server.message_requests() if r.conversation.has_tools and r.status == 200)


def state(project: Path) -> dict:
    return json.loads((project / ".ai-agents" / "state" / "runner_state.json").read_text())


@pytest.mark.parametrize("backend", ["claude-code", "anthropic-sdk"])
def test_a_task_whose_verification_always_fails_keeps_to_its_turns(tmp_path: Path, backend: str) -> None:
    """max_turns_per_task is the task's, not each attempt's: five attempts were allowed,
    every attempt takes two turns, four turns in all is what the task gets."""
    project = project_for(
        tmp_path, backend, 1,
        autonomous={"max_turns_per_task": 4},
        verification={"commands": ["exit 1"], "max_attempts": 5},
    )  # fmt: skip
    with ScriptedModelServer(work_rules(backend)) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        proc = autonomous(project, env, "start")
        requests = main_requests(server)
        sent = [
            json.dumps(r.conversation.body["messages"]) for r in server.message_requests() if r.conversation.has_tools
        ]
    assert proc.returncode == 1, proc.stderr
    # the second attempt continues the conversation: the model sees the task and the checks' verdict together
    assert any("verification FAILED" in m for m in sent)
    assert all("Task W-1.1:" in m for m in sent)
    task = task_states(project)["W-1.1"]
    assert task["status"] != "done"  # blocked after its checks, or back to todo when a run hit the turn limit
    assert requests <= 4, f"{requests} model requests for a task allowed 4 turns"
    recorded = [json.loads(line) for line in (project / ".ai-agents/logs/events.jsonl").read_text().splitlines()]
    (done,) = [e for e in recorded if e["kind"] == "task_recorded"]
    assert done["turns"] <= 4
    assert "allowance is spent" in task["notes"][-1]["text"] or "turns are spent" in task["notes"][-1]["text"]


@pytest.mark.parametrize(
    ("backend", "workers"),
    [("anthropic-sdk", 1), ("anthropic-sdk", 2), ("anthropic-sdk", 4), ("anthropic-sdk", 8), ("claude-code", 2)],
)
def test_workers_never_spend_past_the_limit_by_more_than_a_request_each(
    tmp_path: Path, backend: str, workers: int
) -> None:
    """Eight tasks of $0.60 against a $1.00 limit, with the default first_task_cost of 0
    (nothing reserved before a cost is known): whatever the number of workers, the
    session stops with exit 4 and has spent at most the limit plus one request per worker."""
    limit = 1.0
    project = project_for(
        tmp_path, backend, 8,
        autonomous={"cost_limit_per_session": limit, "workers": workers},
        execution={"ordering": "phases"},  # the eight tasks may all run at once
    )  # fmt: skip
    with ScriptedModelServer(work_rules(backend)) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        proc = autonomous(project, env, "start")
        billed = main_requests(server) * REQUEST_COST
    assert proc.returncode == 4, proc.stderr
    assert billed <= limit + workers * REQUEST_COST + 1e-9, f"billed ${billed:.2f} with {workers} workers"
    print(f"\n{backend} x{workers}: billed ${billed:.2f} against ${limit:.2f}")
    assert state(project)["cost_usd"] == pytest.approx(billed, abs=0.01)


def test_resume_remembers_what_was_spent_and_what_a_task_costs(tmp_path: Path) -> None:
    """Session one does one task ($0.60 of $1.00); `start --resume` continues the session:
    $0.40 is left and a task is expected to cost $0.60, so it claims nothing."""
    project = project_for(
        tmp_path, "anthropic-sdk", 3, autonomous={"cost_limit_per_session": 1.0, "max_tasks_per_session": 1}
    )
    with ScriptedModelServer(work_rules("anthropic-sdk")) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        first = autonomous(project, env, "start")
        assert first.returncode == 0, first.stderr
        before = main_requests(server)
        second = autonomous(project, env, "start", "--resume", "--max-tasks", "5")
        after = main_requests(server)
    assert second.returncode == 4 and "cost limit" in second.stderr, second.stderr
    assert after == before  # no request in the resumed session
    assert state(project)["cost_usd"] == pytest.approx(2 * REQUEST_COST)
    assert [t["status"] for k, t in sorted(task_states(project).items()) if k.startswith("W-")] == [
        "done", "todo", "todo"
    ]  # fmt: skip


@pytest.mark.parametrize("status", [529, 429])
def test_a_throttling_storm_ends_with_exit_4_within_the_wait_allowed(tmp_path: Path, status: int) -> None:
    """Every request answers 529 (or 429): the runner waits out what it is told, within
    max_rate_limit_wait in all (re-claims included), then stops with exit 4; the task
    is not done and the re-claims do not count as tasks."""
    wait = 8.0
    project = project_for(
        tmp_path, "anthropic-sdk", 2, autonomous={"max_rate_limit_wait": wait, "max_tasks_per_session": 1}
    )
    storm = [Rule(name="storm", response=Response(error=ErrorSpec(status=status, retry_after=1)))]
    with ScriptedModelServer(storm) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        started = time.monotonic()
        proc = autonomous(project, env, "start")
        took = time.monotonic() - started
    assert proc.returncode == 4, proc.stderr
    assert "rate limit" in proc.stderr
    assert took < wait + 30  # bounded by the wait allowed, plus start-up and one backend run
    states = task_states(project)
    assert {states[k]["status"] for k in ("W-1.1", "W-1.2")} == {"todo"}
    claims = [
        line for line in (project / ".ai-agents/logs/events.jsonl").read_text().splitlines() if '"task_claimed"' in line
    ]
    assert len(claims) >= 2  # the same task re-claimed after each pause: not new tasks for max_tasks_per_session
    assert "max_tasks_per_session" not in proc.stderr


def test_status_mid_run_shows_what_the_event_log_shows(tmp_path: Path) -> None:
    """While the agent waits on the model after a Bash call, `status --json` names the
    tool, the turns and the cost so far that events.jsonl already has."""
    rules = [
        Rule(name="stall", match=Match(has_tools=True, has_tool_result=True), response=Response(stall=True)),
        Rule(
            name="bash",
            match=Match(has_tools=True),
            response=Response(text="Looking.", tool_use=(ToolCall("Bash", {"command": "echo hi"}),), usage=USAGE),
        ),
    ]
    project = project_for(tmp_path, "claude-code", 1)
    with ScriptedModelServer(rules) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        runner = subprocess.Popen(
            [sys.executable, "-m", "autonomous", "start"], cwd=project, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            server.wait_for_requests(2, timeout=120)  # the second request stalls: turn one is over
            current = _status_until(project, env, lambda c: c.get("tool") == "Bash" and c.get("turns", 0) >= 1)
        finally:
            runner.kill()
            runner.communicate()
    events = [json.loads(line) for line in (project / ".ai-agents/logs/events.jsonl").read_text().splitlines()]
    tools = [e["name"] for e in events if e["kind"] == "tool_use"]
    usage = [e for e in events if e["kind"] == "usage"]
    assert tools == ["Bash"] and current["tool"] == "Bash"
    assert current["turns"] == usage[-1]["turns"]
    assert current["cost_usd"] == pytest.approx(usage[-1]["cost_usd"]) and current["cost_usd"] > 0


def _status_until(project: Path, env: dict[str, str], ok, tries: int = 40) -> dict:
    """`status --json` until its current task satisfies ``ok`` (the state file is written
    at most once a second, so a few reads may come first); each try is a whole process."""
    current: dict = {}
    for _ in range(tries):
        out = autonomous(project, env, "status", "--json")
        doc = json.loads(out.stdout)
        current = (doc.get("current") or [{}])[0]
        if ok(current):
            return current
    raise AssertionError(f"status never showed the run: {current}")
