"""`autonomous start` and the sandbox: no silent fallback, and the session says which sandbox is in force.

Through the real CLI entry point and the real Claude Code CLI against the scripted model server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autonomous.providers.base import NewTask
from autonomous.providers.file import FileProvider
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import ScriptedModelServer, complete_task_rules

pytestmark = pytest.mark.skipif(bundled_claude_path() is None, reason="needs the bundled Claude Code CLI")


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
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    with FileProvider(root / ".ai-agents" / "state") as provider:
        provider.create_tasks([NewTask("[DEMO-1.1] Create a", acceptance_criteria=["a.txt exists"])])
    return root


def start(project: Path, server: ScriptedModelServer, tmp_path: Path, *, path: str | None = None,
          **auto: object) -> subprocess.CompletedProcess:  # fmt: skip
    config = project / ".ai-agents" / "config.yml"
    config.write_text(yaml.safe_dump({"autonomous": {"max_tasks_per_session": 5, **auto}}))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**claude_cli_env(server.url, home), "PYTHONPATH": os.pathsep.join(sys.path)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "autonomous", "start"], cwd=project, env=env, capture_output=True, text=True, timeout=240
    )


def session_start(project: Path) -> dict:
    lines = (project / ".ai-agents" / "logs" / "events.jsonl").read_text().splitlines()
    return next(e for e in map(json.loads, lines) if e["kind"] == "session_start")


def without_bwrap(tmp_path: Path) -> str:
    """A PATH with git and nothing else: no bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    return str(bin_dir)


def test_without_bubblewrap_start_exits_2_naming_the_package(project: Path, tmp_path: Path) -> None:
    with ScriptedModelServer(complete_task_rules("Task DEMO-1.1:", files={"a.txt": "a\n"})) as server:
        proc = start(project, server, tmp_path, path=without_bwrap(tmp_path))
        assert server.message_requests() == []  # nothing was spent
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "bubblewrap" in line and "autonomous.sandbox: off" in line, proc.stderr
    assert not (project / "a.txt").exists()


def test_sandbox_off_is_said_and_runs_without_bubblewrap(project: Path, tmp_path: Path) -> None:
    with ScriptedModelServer(complete_task_rules("Task DEMO-1.1:", files={"a.txt": "a\n"})) as server:
        proc = start(project, server, tmp_path, path=without_bwrap(tmp_path) + os.pathsep + "/usr/bin:/bin",
                     sandbox=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert session_start(project)["sandbox"].startswith("off")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_the_first_event_and_status_say_which_sandbox_is_in_force(project: Path, tmp_path: Path) -> None:
    with ScriptedModelServer(complete_task_rules("Task DEMO-1.1:", files={"a.txt": "a\n"})) as server:
        proc = start(project, server, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (project / "a.txt").read_text() == "a\n"  # the task still succeeds, sandboxed
    said = session_start(project)["sandbox"]
    assert said.startswith("Claude Code's sandbox") and "network off" in said
    status = subprocess.run(
        [sys.executable, "-m", "autonomous", "status"], cwd=project, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert f"Sandbox:  {said}" in status.stdout, status.stdout
