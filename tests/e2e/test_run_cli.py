"""Whole runs of ``autonomous start`` through the REAL Claude Code CLI (the binary bundled
with claude-agent-sdk) against the scripted model server, on a real temporary git repository.

The runner runs as a subprocess (``python -m autonomous start`` in the project, so kill -9
and signals are real), configured by the project's own ``.ai-agents/config.yml``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, complete_task_rules

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]


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


def make_tasks(project: Path) -> None:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        provider.create_tasks(
            [
                NewTask("META: Demo"),
                NewTask("[DEMO-1.1] Create a", acceptance_criteria=["a.txt exists"]),
                NewTask("[DEMO-1.2] Create b"),
                NewTask("[DEMO-2.1] Create c"),
            ]
        )


def tasks(project: Path) -> dict:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        return {t.key: t for t in provider.list_tasks()}


def configure(project: Path, **sections: dict) -> None:
    """Write the project's config file: these sections over the defaults."""
    auto = {"max_tasks_per_session": 20, "lease_seconds": 60, **sections.pop("autonomous", {})}
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"autonomous": auto, **sections}))


def runner_cmd() -> list[str]:
    return [sys.executable, "-m", "autonomous", "start"]


def env_for(server: ScriptedModelServer, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = claude_cli_env(server.url, home)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def run(project: Path, server: ScriptedModelServer, tmp_path: Path, **sections: dict) -> subprocess.CompletedProcess:
    configure(project, **sections)
    return subprocess.run(
        runner_cmd(), cwd=project, env=env_for(server, tmp_path), capture_output=True, text=True, timeout=240
    )


def events(project: Path) -> list[dict]:
    path = project / ".ai-agents" / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rules_for_all() -> list[Rule]:
    return [
        # later tasks first: a later task's prompt quotes earlier tasks' notes (the handoff),
        # an earlier task's prompt never names a later task
        *complete_task_rules("Task DEMO-2.1:", files={"c.txt": "c\n"}),
        *complete_task_rules("Task DEMO-1.2:", files={"b.txt": "b\n"}),
        *complete_task_rules("Task DEMO-1.1:", files={"a.txt": "a\n"}),
    ]


def test_two_phase_project_runs_to_completion_in_order(project: Path, tmp_path: Path) -> None:
    make_tasks(project)
    with ScriptedModelServer(rules_for_all()) as server:
        proc = run(project, server, tmp_path, verification={"commands": ["test -f a.txt"], "require_changes": True})
    assert proc.returncode == 0, proc.stderr
    state = tasks(project)
    assert all(state[k].status is TaskStatus.DONE for k in ("DEMO-1.1", "DEMO-1.2", "DEMO-2.1"))
    subjects = git(project, "log", "--format=%s").splitlines()
    assert [s.split(":")[0] for s in subjects[:3]] == ["DEMO-2.1", "DEMO-1.2", "DEMO-1.1"]
    assert (project / "c.txt").read_text() == "c\n"
    note = state["DEMO-1.2"].notes[-1].text
    assert note.startswith("Done (commit ") and "b.txt" in note
    claimed = [e["key"] for e in events(project) if e["kind"] == "task_claimed"]
    assert claimed == ["DEMO-1.1", "DEMO-1.2", "DEMO-2.1"]
    assert any(n.text.startswith("Session summary") for n in state["META"].notes)


def test_claimed_completion_with_failing_verification_is_not_done(project: Path, tmp_path: Path) -> None:
    make_tasks(project)
    liar = [
        Rule(
            name="lie",
            match=Match(contains="DEMO-1.1", has_tools=True),
            response=Response(
                text="Done.\n```json\n"
                '{"status": "complete", "summary": "all good", "files_changed": [], "blocker": null}\n```'
            ),
        )
    ]
    with ScriptedModelServer(liar) as server:
        proc = run(project, server, tmp_path, verification={"commands": ["test -f a.txt"], "max_attempts": 2})
    assert proc.returncode == 1, proc.stderr
    task = tasks(project)["DEMO-1.1"]
    assert task.status is TaskStatus.BLOCKED
    assert any("Verification FAILED" in n.text and "test -f a.txt" in n.text for n in task.notes)
    assert tasks(project)["DEMO-1.2"].status is TaskStatus.TODO


def test_blocked_task_stops_the_run(project: Path, tmp_path: Path) -> None:
    from autonomous.testing.model_server import blocked_rules

    make_tasks(project)
    with ScriptedModelServer(blocked_rules("Task DEMO-1.1:", "the database password is missing")) as server:
        proc = run(project, server, tmp_path)
    assert proc.returncode == 1, proc.stderr
    state = tasks(project)
    assert state["DEMO-1.1"].status is TaskStatus.BLOCKED
    assert "database password" in state["DEMO-1.1"].notes[-1].text
    assert state["DEMO-1.2"].status is TaskStatus.TODO


def test_kill_9_mid_task_then_restart_completes_without_doing_a_task_twice(project: Path, tmp_path: Path) -> None:
    make_tasks(project)
    hang = Rule(
        name="hang once",
        times=1,
        match=Match(contains="Task DEMO-1.2:", has_tools=True),
        response=Response(text="x", stall=True),
    )
    with ScriptedModelServer([hang, *rules_for_all()]) as server:
        configure(project)
        proc = subprocess.Popen(
            runner_cmd(),
            cwd=project,
            env=env_for(server, tmp_path),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # wait until the agent is inside DEMO-1.2 (its request reached the server)
            while server.rule_hits.get("hang once", 0) == 0:
                server.wait_for_requests(len(server.message_requests()) + 1, timeout=60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert tasks(project)["DEMO-1.2"].status is TaskStatus.IN_PROGRESS
        again = run(project, server, tmp_path)
    assert again.returncode == 0, again.stderr
    state = tasks(project)
    assert all(state[k].status is TaskStatus.DONE for k in ("DEMO-1.1", "DEMO-1.2", "DEMO-2.1"))
    subjects = [s.split(":")[0] for s in git(project, "log", "--format=%s").splitlines()]
    assert subjects.count("DEMO-1.1") == 1 and subjects.count("DEMO-1.2") == 1 and subjects.count("DEMO-2.1") == 1
    assert any(n.text.startswith("Recovered") for n in state["DEMO-1.2"].notes)
