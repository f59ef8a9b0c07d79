"""``autonomous demo`` as a newcomer runs it: a real subprocess, the real Claude Code CLI
(bundled with claude-agent-sdk), real git, real verification commands.

The demo runs once for the module; each test checks one promise of it. The parent
environment carries planted "real" credentials: none may show up anywhere the demo wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autonomous.demo import DEMO_API_KEY, DEMO_TASKS, runner_env
from autonomous.testing.cli_env import bundled_claude_path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

PLANTED = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-PLANTEDrealKEYdoNotLeak0123456789",
    "ANTHROPIC_AUTH_TOKEN": "PLANTED-auth-token-5f2b9c",
    "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-PLANTEDoauthTOKEN987654321",
    "CLAUDE_CODE_USE_BEDROCK": "1",
}
SECRET_LOOKING = re.compile(r"sk-ant-[A-Za-z0-9_-]{6,}|PLANTED")
KEYS = [task.key for task in DEMO_TASKS]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    target = tmp_path_factory.mktemp("demo") / "autonomous-demo"
    env = {**os.environ, **PLANTED, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "autonomous", "demo", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return target, proc


def autonomous_json(project: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "autonomous", *args, "--json"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.mark.timeout(700)
def test_demo_exits_0_with_a_summary(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, proc = demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert f"Summary: {len(KEYS)} of {len(KEYS)} tasks done" in out
    assert "git log --oneline" in out and str(project) in out
    assert "To use a real model" in out and "claude login" in out and "autonomous init --spec" in out


@pytest.mark.timeout(120)
def test_every_task_is_done(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = demo
    tasks = autonomous_json(project, "tasks")["tasks"]
    work = {t["key"]: t for t in tasks if t["key"] != "META"}
    assert sorted(work) == sorted(KEYS)
    assert {t["status"] for t in work.values()} == {"done"}
    assert all(any(n["text"].startswith("Done (commit ") for n in t["notes"]) for t in work.values())
    status = autonomous_json(project, "status")
    assert status["tasks"]["completed"] == len(KEYS) and status["tasks"]["remaining"] == 0


@pytest.mark.timeout(120)
def test_one_commit_per_task_naming_its_key(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = demo
    subjects = git(project, "log", "--format=%s").splitlines()
    task_commits = [s.split(":")[0] for s in subjects if s.split(":")[0] in KEYS]
    assert task_commits == list(reversed(KEYS))  # one each, in the order they ran
    assert len(subjects) == len(KEYS) + 2  # plus the project's first commit and the init commit
    assert git(project, "status", "--porcelain") == ""


@pytest.mark.timeout(120)
def test_the_files_exist_and_the_verification_command_passes(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, _ = demo
    for task in DEMO_TASKS:
        for path in task.writes:
            assert (project / path).is_file(), path
    assert (project / "todo_api" / "server.py").read_text() == DEMO_TASKS[KEYS.index("TODO-2.4")].writes[
        "todo_api/server.py"
    ]
    config = (project / ".ai-agents" / "config.yml").read_text()
    assert "python -m pytest -q" in config
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\d+ passed", proc.stdout)


@pytest.mark.timeout(120)
def test_no_secret_in_the_logs_or_the_project(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    project, proc = demo
    logs = project / ".ai-agents" / "logs"
    assert (logs / "events.jsonl").stat().st_size > 0
    texts = {"stdout": proc.stdout, "stderr": proc.stderr}
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(project).parts[:1]:
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for where, text in texts.items():
        found = SECRET_LOOKING.search(text)
        assert found is None, f"{where}: {found.group(0) if found else ''}"
        assert DEMO_API_KEY not in text, where
        for value in PLANTED.values():
            if len(value) > 1:
                assert value not in text, where


def test_runner_env_is_built_from_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "PLANTED-aws")
    monkeypatch.setenv("TERM", "xterm-256color")
    env = runner_env("http://127.0.0.1:9", tmp_path / "home", Path(sys.executable).parent)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert env["ANTHROPIC_API_KEY"] == DEMO_API_KEY
    assert env["HOME"] == str(tmp_path / "home")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["TERM"] == "xterm-256color"
    assert not any("PLANTED" in value or value.startswith("sk-ant-") for value in env.values())
    assert not {"ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK"} & env.keys()
