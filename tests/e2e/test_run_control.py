"""Run control through the REAL Claude Code CLI (bundled with claude-agent-sdk) against the
scripted model server, on a real temporary git repository: ``python -m autonomous start``
as a subprocess, so signals, exit codes, the state file and the Slack webhook are real.

- SIGINT mid-task exits 130 and keeps the task for ``start --resume``, which finishes it;
- a supervised checkpoint without a terminal pauses (exit 3) and ``--resume`` goes on;
- the session cost limit stops (exit 4) before a task it cannot afford is started;
- Slack messages reach a real local webhook during a run, and no secret reaches Slack,
  the log files or the task notes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import (
    Match,
    Response,
    Rule,
    ScriptedModelServer,
    blocked_rules,
    complete_task_rules,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

KEYS = ("DEMO-1.1", "DEMO-1.2", "DEMO-2.1")
FILES = {"DEMO-1.1": "a.txt", "DEMO-1.2": "b.txt", "DEMO-2.1": "c.txt"}
# Every scripted answer's usage is fixed, so the CLI's own price table makes every task cost
# the same: 2 requests x (1000 in + 1000 out) on claude-opus-5-5 = $0.048 (observed).
USAGE = {"input_tokens": 1000, "output_tokens": 1000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
TASK_COST = 0.048


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    (root / ".gitignore").write_text(".ai-agents/\n")
    (root / "AGENTS.md").write_text("Keep files small.\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def make_tasks(project: Path, keys: tuple[str, ...] = KEYS) -> None:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        provider.create_tasks([NewTask("META: Demo"), *(NewTask(f"[{k}] Create {FILES[k]}") for k in keys)])


def tasks(project: Path) -> dict:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        return {t.key: t for t in provider.list_tasks()}


def configure(project: Path, **sections: dict) -> None:
    auto = {"max_tasks_per_session": 20, "lease_seconds": 60, **sections.pop("autonomous", {})}
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"autonomous": auto, **sections}))


def env_for(server: ScriptedModelServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = claude_cli_env(server.url, home)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(extra)
    return env


def autonomous(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m autonomous ARGS`` in the project, stdin not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "autonomous", *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def events(project: Path) -> list[dict]:
    path = project / ".ai-agents" / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runner_state(project: Path) -> dict:
    return json.loads((project / ".ai-agents" / "state" / "runner_state.json").read_text())


def with_usage(rules: list[Rule]) -> list[Rule]:
    return [dataclasses.replace(r, response=dataclasses.replace(r.response, usage=USAGE)) for r in rules]


def rules_for(keys: tuple[str, ...] = KEYS, summary: str | None = None) -> list[Rule]:
    """Later tasks' rules first: a later task's prompt quotes earlier tasks' notes."""
    out: list[Rule] = []
    for key in reversed(keys):
        out += complete_task_rules(f"Task {key}:", files={FILES[key]: f"{key}\n"}, summary=summary)
    return with_usage(out)


def task_commits(project: Path) -> list[str]:
    """The key of every commit that records a task done (WIP commits excluded)."""
    subjects = git(project, "log", "--format=%s").splitlines()
    return [s.split(":")[0] for s in subjects if s.split(":")[0] in KEYS]


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """Whether every process of the group has exited (polled with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# -- 1. SIGINT, then --resume ------------------------------------------------------------------


def test_sigint_mid_task_exits_130_and_resume_finishes_every_task_once(project: Path, tmp_path: Path) -> None:
    make_tasks(project)
    slow = Rule(
        name="slow DEMO-1.2",
        times=1,
        match=Match(contains="Task DEMO-1.2:", has_tools=True),
        response=Response(text="thinking hard", delay=60),
    )
    # --resume continues the same conversation (the CLI's --resume): its next request carries
    # the first prompt and the interrupted turn, and asks to continue
    go_on = Rule(
        name="continue DEMO-1.2",
        times=1,
        match=Match(last_user_contains="You were interrupted while working on task DEMO-1.2", has_tools=True),
        response=Response(
            text="Continuing.", tool_use=[{"name": "Write", "input": {"file_path": "b.txt", "content": "DEMO-1.2\n"}}]
        ),
    )
    all_rules = rules_for()
    # DEMO-2.1's rules come first (its prompt quotes DEMO-1.2's notes), then DEMO-1.2's
    rules = [*all_rules[:2], slow, go_on, *all_rules[2:]]
    with ScriptedModelServer(rules) as server:
        configure(project)
        env = env_for(server, tmp_path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "autonomous", "start"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            # the agent is inside DEMO-1.2: its (slow) request reached the server
            while server.rule_hits.get("slow DEMO-1.2", 0) == 0:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                server.wait_for_requests(len(server.message_requests()) + 1, timeout=60)
            claimed = [e["key"] for e in events(project) if e["kind"] == "task_claimed"]
            assert claimed == ["DEMO-1.1", "DEMO-1.2"]
            os.kill(proc.pid, signal.SIGINT)  # the runner only: it must stop its agent itself
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 130, err
        assert group_gone(proc.pid), "the agent outlived the interrupted runner"
        state = tasks(project)
        assert state["DEMO-1.1"].status is TaskStatus.DONE
        assert state["DEMO-1.2"].status is TaskStatus.TODO
        assert state["DEMO-2.1"].status is TaskStatus.TODO
        assert state["DEMO-1.2"].notes[-1].text.startswith("Interrupted (interrupted by SIGINT)")
        saved = runner_state(project)
        assert saved["state"] == "stopped" and saved["exit_code"] == 130
        assert [c["key"] for c in saved["current"]] == ["DEMO-1.2"]
        assert saved["current"][0]["backend_session_id"]  # the conversation, for --resume
        status = json.loads(autonomous(project, env, "status", "--json").stdout)
        assert status["state"] == "stopped"
        assert not any(e["kind"] == "task_claimed" and e["key"] == "DEMO-2.1" for e in events(project))
        session = saved["session_id"]

        again = autonomous(project, env, "start", "--resume")
        hits = server.rule_hits
        resumed = [r for r in server.message_requests() if r.rule == "continue DEMO-1.2"]
    assert again.returncode == 0, again.stderr
    # the interrupted conversation itself went on: the continuation carries the first prompt
    assert hits["slow DEMO-1.2"] == 1 and hits["continue DEMO-1.2"] == 1
    assert "Task DEMO-1.2:" in json.dumps(resumed[0].body["messages"])
    state = tasks(project)
    assert all(state[k].status is TaskStatus.DONE for k in KEYS)
    assert sorted(task_commits(project)) == sorted(KEYS)  # each task done exactly once
    assert all((project / FILES[k]).read_text() == f"{k}\n" for k in KEYS)
    evs = events(project)
    starts = [i for i, e in enumerate(evs) if e["kind"] == "session_start"]
    assert len(starts) == 2 and evs[starts[1]]["resumed"] is True and evs[starts[1]]["session_id"] == session
    # the resumed session takes the interrupted task first, then the rest
    assert [e["key"] for e in evs[starts[1] :] if e["kind"] == "task_claimed"] == ["DEMO-1.2", "DEMO-2.1"]
    recorded = [(e["key"], e["status"]) for e in evs if e["kind"] == "task_recorded"]
    assert recorded == [("DEMO-1.1", "done"), ("DEMO-1.2", "todo"), ("DEMO-1.2", "done"), ("DEMO-2.1", "done")]
    assert runner_state(project)["state"] == "completed"


# -- 2. supervised pause without a terminal ------------------------------------------------------


def test_supervised_checkpoint_without_a_terminal_pauses_with_exit_3_and_resume_goes_on(
    project: Path, tmp_path: Path
) -> None:
    make_tasks(project)
    execution = {"mode": "supervised", "checkpoints": {"turn_interval": 2}}  # every task takes 2 turns
    exits = []
    with ScriptedModelServer(rules_for()) as server:
        configure(project, execution=execution)
        env = env_for(server, tmp_path)
        first = autonomous(project, env, "start")
        exits.append(first.returncode)
        assert first.returncode == 3, first.stderr
        assert "paused at checkpoint turn_interval on DEMO-1.1" in first.stderr
        state = tasks(project)
        assert state["DEMO-1.1"].status is TaskStatus.DONE
        assert state["DEMO-1.2"].status is TaskStatus.TODO
        status = json.loads(autonomous(project, env, "status", "--json").stdout)
        assert status["state"] == "paused"
        assert status["runner"]["pause_reason"] == "paused at checkpoint turn_interval on DEMO-1.1: 2 turns"
        assert status["runner"]["exit_code"] == 3
        assert status["tasks"]["completed"] == 1
        # the pause is between tasks: nothing of DEMO-1.2 reached the model
        assert not any("Task DEMO-1.2:" in json.dumps(r.body) for r in server.message_requests())
        for _ in range(5):
            proc = autonomous(project, env, "start", "--resume")
            exits.append(proc.returncode)
            if proc.returncode == 0:
                break
            assert proc.returncode == 3, proc.stderr
            assert json.loads(autonomous(project, env, "status", "--json").stdout)["state"] == "paused"
    # one pause after each task, then the run that finds nothing left
    assert exits == [3, 3, 3, 0]
    state = tasks(project)
    assert all(state[k].status is TaskStatus.DONE for k in KEYS)
    assert sorted(task_commits(project)) == sorted(KEYS)
    pauses = [e for e in events(project) if e["kind"] == "checkpoint" and e.get("decision") == "pause"]
    assert [e["task_key"] for e in pauses] == list(KEYS)
    assert runner_state(project)["state"] == "completed"


# -- 3. the session cost limit ------------------------------------------------------------------


def test_cost_limit_stops_with_exit_4_before_a_task_it_cannot_afford(project: Path, tmp_path: Path) -> None:
    make_tasks(project)
    limit = round(2 * TASK_COST + 0.02, 4)  # two tasks fit, a third would overspend
    with ScriptedModelServer(rules_for()) as server:
        configure(project, autonomous={"cost_limit_per_session": limit, "first_task_cost": TASK_COST})
        env = env_for(server, tmp_path)
        proc = autonomous(project, env, "start")
        requests = [json.dumps(r.body) for r in server.message_requests()]
    assert proc.returncode == 4, proc.stderr
    assert "cost limit" in proc.stderr
    state = tasks(project)
    assert [k for k in KEYS if state[k].status is TaskStatus.DONE] == ["DEMO-1.1", "DEMO-1.2"]
    assert state["DEMO-2.1"].status is TaskStatus.TODO and not state["DEMO-2.1"].notes
    saved = runner_state(project)
    assert saved["exit_code"] == 4
    assert saved["cost_usd"] == pytest.approx(2 * TASK_COST)
    assert saved["cost_usd"] <= limit
    recorded = [e["cost_usd"] for e in events(project) if e["kind"] == "task_recorded"]
    assert recorded == [pytest.approx(TASK_COST)] * 2
    # the third task was never claimed and never reached the model
    assert [e["key"] for e in events(project) if e["kind"] == "task_claimed"] == ["DEMO-1.1", "DEMO-1.2"]
    assert len(requests) == 4
    assert not any("Task DEMO-2.1:" in body for body in requests)


# -- 4. Slack during a real run -------------------------------------------------------------------


class Webhook:
    """A real local incoming-webhook endpoint: records every POST (path and JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def port(self) -> int:
        return self.server.server_address[1]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def test_slack_messages_reach_a_real_webhook_and_no_secret_leaks(
    project: Path, tmp_path: Path, webhook: Webhook
) -> None:
    make_tasks(project)
    hook_path = f"/services/T0E2E/B0E2E/hooksecret{secrets.token_hex(8)}"
    url = f"http://127.0.0.1:{webhook.port}{hook_path}"
    tracker_token = f"trk-{secrets.token_hex(12)}"  # declared only through state_provider.api_key_env
    api_key = f"sk-ant-e2e-{secrets.token_hex(12)}"  # the runner's (and the CLI's) ANTHROPIC_API_KEY
    github_shaped = "ghp_" + secrets.token_hex(18)  # declared nowhere: redacted by its shape
    planted = [url, hook_path, tracker_token, api_key, github_shaped]
    # The model "reports" every secret: in the summaries of the two tasks it finishes (events,
    # logs, notes, the next prompt) and in the blocker of the third (which Slack shows).
    summary = f"Done with {tracker_token}, {api_key}, {github_shaped} and {url}"
    blocker = f"needs {tracker_token}, {api_key}, {github_shaped} and {url}"
    rules = [
        *blocked_rules("Task DEMO-2.1:", blocker),
        *rules_for(("DEMO-1.1", "DEMO-1.2"), summary=summary),
    ]
    with ScriptedModelServer(rules) as server:
        configure(
            project,
            state_provider={"api_key_env": "TRACKER_TOKEN"},
            progress={"slack_webhook": "${SLACK_WEBHOOK_URL}", "notification_interval": 0},
        )
        env = env_for(server, tmp_path, SLACK_WEBHOOK_URL=url, TRACKER_TOKEN=tracker_token, ANTHROPIC_API_KEY=api_key)
        proc = autonomous(project, env, "start")
        prompts = [json.dumps(r.body) for r in server.message_requests()]
    assert proc.returncode == 1, proc.stderr  # the blocked task stops the run
    state = tasks(project)
    assert state["DEMO-1.1"].status is TaskStatus.DONE and state["DEMO-1.2"].status is TaskStatus.DONE
    assert state["DEMO-2.1"].status is TaskStatus.BLOCKED
    # DEMO-1.2's prompt quotes DEMO-1.1's note: masked, so no secret went back to the model
    assert any("Done with ***" in body for body in prompts)

    with webhook.lock:
        posts = list(webhook.posts)
    assert posts and all(path == hook_path for path, _ in posts)
    for _, body in posts:
        assert isinstance(body["text"], str) and body["text"]
        assert isinstance(body["blocks"], list) and body["blocks"]
        assert all(b["type"] in ("section", "context", "divider") for b in body["blocks"])
    text = "\n".join(body["text"] for _, body in posts)
    assert "Autonomous session started" in text
    assert "Done: *DEMO-1.1*" in text and "Done: *DEMO-1.2*" in text
    assert "Blocked: *DEMO-2.1*" in text
    assert "Blocked: needs ***, ***, *** and ***" in text  # the blocker, masked
    assert "ended: 2 done, 1 blocked, 0 failed" in text
    blocks = [b["text"]["text"] for _, body in posts for b in body["blocks"] if b["type"] == "section"]
    assert any("Blocked: needs ***" in b for b in blocks)

    logs = project / ".ai-agents" / "logs"
    places = {
        "slack": json.dumps([body for _, body in posts]),
        "autonomous.log": (logs / "autonomous.log").read_text(),
        "events.jsonl": (logs / "events.jsonl").read_text(),
        "notes": "\n".join(n.text for t in state.values() for n in t.notes),
        "stdout": proc.stdout,  # the terminal sink's plain lines
        "prompts": "\n".join(prompts),
    }
    for where, content in places.items():
        for secret in planted:
            assert secret not in content, f"{where} holds a secret"
    # what the model said was kept, with the secrets masked
    assert "Summary: Done with ***, ***, *** and ***" in state["DEMO-1.1"].notes[-1].text
    assert "Blocked: needs ***, ***, *** and ***" in state["DEMO-2.1"].notes[-1].text
    assert "Done with ***" in places["events.jsonl"] and "Done with ***" in places["autonomous.log"]


def test_the_stop_reason_of_a_blocked_task_masks_secrets(project: Path, tmp_path: Path) -> None:
    make_tasks(project, ("DEMO-1.1",))
    tracker_token = f"trk-{secrets.token_hex(12)}"  # declared through state_provider.api_key_env
    github_shaped = "ghp_" + secrets.token_hex(18)  # shaped like a credential
    with ScriptedModelServer(blocked_rules("Task DEMO-1.1:", f"needs {tracker_token} and {github_shaped}")) as server:
        configure(project, state_provider={"api_key_env": "TRACKER_TOKEN"})
        env = env_for(server, tmp_path, TRACKER_TOKEN=tracker_token)
        proc = autonomous(project, env, "start")
        status = autonomous(project, env, "status", "--json").stdout
    assert proc.returncode == 1, proc.stderr
    assert "Blocked: needs *** and ***" in tasks(project)["DEMO-1.1"].notes[-1].text  # the note is masked
    state_file = (project / ".ai-agents" / "state" / "runner_state.json").read_text()
    for where, content in {"stderr": proc.stderr, "runner_state.json": state_file, "status": status}.items():
        for secret in (tracker_token, github_shaped):
            assert secret not in content, f"{where} holds a secret"
