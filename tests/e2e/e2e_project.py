"""A project set up the way a new user's is, and the commands a user runs in it.

Shared by the end-to-end tests: a git repository with one commit, and beside it untracked
files of the user's own (``.env`` holding a token, ``notes.txt``, the spec, the tool's
config with a literal Slack webhook URL) and no ``.gitignore``; how ``start`` is run in
such a project, the scripted agent's rules for a task, and what the run left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from autonomous.testing.cli_env import claude_cli_env
from autonomous.testing.model_server import Rule, ScriptedModelServer, complete_task_rules

TOKEN = "sk-ant-user-token-" + "Qx7" * 8  # the user's own token in .env
API_KEY = "sk-ant-api03-e2e-" + "k3Y" * 8  # the key the runner's backend is given
WEBHOOK = "http://127.0.0.1:9/services/T0LOCAL/B0LOCAL/whsecretwhsecretwhsecret"
SPEC = """# Calc

## Phase 1: Basics
- [CALC-1.1] Add an add function
- [CALC-1.2] Add a sub function

## Phase 2: More
- [CALC-2.1] Add a mul function
"""
FILES = {
    "CALC-1.1": {"add.py": "def add(a, b):\n    return a + b\n", "test_add.py": "from add import add\n"},
    "CALC-1.2": {"sub.py": "def sub(a, b):\n    return a - b\n"},
    "CALC-2.1": {"mul.py": "def mul(a, b):\n    return a * b\n", "calc.py": "VERSION = 2\n"},
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def newcomer_project(root: Path, **config: dict) -> Path:
    """One commit (calc.py); untracked .env, notes.txt, spec.md and config; no .gitignore."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "new@example.com")
    git(root, "config", "user.name", "newcomer")
    (root / "calc.py").write_text("VERSION = 1\n")
    git(root, "add", "calc.py")
    git(root, "commit", "-q", "-m", "start")
    (root / ".env").write_text(f"MY_TOKEN={TOKEN}\n")
    (root / "notes.txt").write_text("remember the milk\n")
    (root / "spec.md").write_text(SPEC)
    settings = {
        "autonomous": {"max_tasks_per_session": 20, "lease_seconds": 60, **config.pop("autonomous", {})},
        "progress": {"slack_webhook": WEBHOOK},
        **config,
    }
    (root / ".ai-agents").mkdir()
    (root / ".ai-agents" / "config.yml").write_text(yaml.safe_dump(settings))
    return root


def env_for(server: ScriptedModelServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = claude_cli_env(server.url, home, api_key=API_KEY)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(extra)
    return env


def autonomous(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autonomous", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def init(project: Path, env: dict[str, str]) -> None:
    proc = autonomous(project, env, "init", "--spec", "spec.md", "--no-model")
    assert proc.returncode == 0, proc.stderr


def task_states(project: Path) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "autonomous", "tasks", "--json"], cwd=project, capture_output=True, text=True, check=True
    )
    return {t["key"]: t for t in json.loads(proc.stdout)["tasks"]}


def start_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "autonomous", "start", *extra]


def start(project: Path, server: ScriptedModelServer, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """``autonomous start`` in ``project`` against the scripted model, to its end."""
    return subprocess.run(
        start_cmd(*extra), cwd=project, env=env_for(server, tmp_path), capture_output=True, text=True, timeout=300
    )


def file_store(project: Path):
    from autonomous.providers.file import FileProvider

    return FileProvider(project / ".ai-agents" / "state")


def states(provider) -> dict:
    return {t.key: t for t in provider.list_tasks()}


def events(project: Path) -> list[dict]:
    path = project / ".ai-agents" / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def task_rules(keys: list[str], delay: float = 0.0) -> list[Rule]:
    """Write ``<key>.txt`` then report; later tasks' rules first (a prompt quotes earlier
    tasks' notes, never later ones). The summary names no key, so handoff notes never match.
    ``delay``: seconds of "model time" per answer."""
    rules: list[Rule] = []
    for key in reversed(keys):
        rules += complete_task_rules(f"Task {key}:", files={f"{key}.txt": f"{key}\n"}, summary="implemented")
    return [dataclasses.replace(r, response=dataclasses.replace(r.response, delay=delay)) for r in rules]


def conversations(server: ScriptedModelServer, key: str) -> int:
    """Agent conversations of one task: first requests (turn 1, tools offered) quoting it."""
    return sum(
        1
        for r in server.message_requests()
        if r.rule and r.rule.startswith(f"Task {key}:") and r.rule.endswith("write files")
    )
