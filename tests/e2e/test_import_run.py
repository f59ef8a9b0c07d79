"""A Spec Kit ``tasks.md`` run end to end: ``autonomous init`` imports it (no model), and
``autonomous start`` runs its tasks through the REAL Claude Code CLI against the scripted
model server, in order; each task's commit carries its own ticked box, so the file in git
ends with every box ticked. The project is set up as a new user's: a git repository whose
spec is tracked, the tool's own folder ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autonomous.providers.file import FileProvider
from autonomous.tasks import TaskStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import ScriptedModelServer, complete_task_rules

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

SPEC = "specs/001-greetings/tasks.md"
TASKS_MD = """\
---
feature: greetings
---

# Tasks: Greetings

## Phase 1: Setup

- [ ] T001 Create hello.txt with a greeting
- [ ] T002 [P] Create names.txt with two names

## Phase 2: User Story 1 - Greet by name (Priority: P1)

- [ ] T003 [US1] Create greet.txt from the names (depends on T002)

## Notes

- [P] tasks touch different files
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def configure(project: Path, **sections: dict) -> None:
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"autonomous": {"max_tasks_per_session": 20, "lease_seconds": 60}, **sections}))


def env_for(server: ScriptedModelServer, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = claude_cli_env(server.url, home)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def tasks(project: Path) -> dict:
    with FileProvider(project / ".ai-agents" / "state") as provider:
        return {t.key: t for t in provider.list_tasks()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "specs" / "001-greetings").mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    (root / ".gitignore").write_text(".ai-agents/\n")
    (root / SPEC).write_text(TASKS_MD)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "spec")
    return root


def test_speckit_tasks_run_in_order_and_their_boxes_are_ticked_in_their_commits(project: Path, tmp_path: Path):
    configure(project, verification={"require_changes": True})
    init = subprocess.run(
        [sys.executable, "-m", "autonomous", "init", "--spec", SPEC],
        cwd=project, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert "imported from the speckit task list" in init.stdout
    rules = [
        *complete_task_rules("Task T003:", files={"greet.txt": "Hello, Ada and Linus!\n"}),
        *complete_task_rules("Task T002:", files={"names.txt": "Ada\nLinus\n"}),
        *complete_task_rules("Task T001:", files={"hello.txt": "Hello!\n"}),
    ]
    with ScriptedModelServer(rules) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "autonomous", "start"],
            cwd=project, env=env_for(server, tmp_path), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = tasks(project)
    assert [state[k].status for k in ("T001", "T002", "T003")] == [TaskStatus.DONE] * 3
    log = git(project, "log", "--format=%H %s").splitlines()
    commits = [line.split(" ", 1) for line in log[:3]][::-1]
    assert [subject.split(":")[0] for _sha, subject in commits] == ["T001", "T002", "T003"]
    for n, (sha, _subject) in enumerate(commits, 1):
        changed = git(project, "show", "--name-only", "--format=", sha).split()
        assert SPEC in changed  # the tick is in the task's own commit
        text = git(project, "show", f"{sha}:{SPEC}")
        ticked = [k for k in ("T001", "T002", "T003") if f"- [x] {k}" in text]
        assert ticked == ["T001", "T002", "T003"][:n]
    final = (project / SPEC).read_text()
    assert final == TASKS_MD.replace("- [ ] T00", "- [x] T00")  # only the three boxes changed
    assert git(project, "status", "--porcelain") == "?? .project_state.json\n"  # the tool's marker: never committed
    note = state["T002"].notes[-1].text
    assert f"Ticked T002 in {SPEC} (line 10), committed with the task" in note


def test_an_untracked_checklist_is_ticked_on_disk_and_never_committed(tmp_path: Path):
    root = tmp_path / "proj2"
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    (root / ".gitignore").write_text(".ai-agents/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    spec = root / "specs" / "tasks.md"  # the user never added it to git
    spec.write_text("# Tasks: One\n\n## Phase 1: Setup\n\n- [ ] T001 Create hello.txt\n")
    configure(root, verification={"require_changes": True})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    init = subprocess.run([sys.executable, "-m", "autonomous", "init", "--spec", "specs/tasks.md"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert init.returncode == 0, init.stderr
    with ScriptedModelServer(complete_task_rules("Task T001:", files={"hello.txt": "Hello!\n"})) as server:
        proc = subprocess.run([sys.executable, "-m", "autonomous", "start"], cwd=root, env=env_for(server, tmp_path),
                              capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert spec.read_text().endswith("- [x] T001 Create hello.txt\n")
    committed = git(root, "show", "--name-only", "--format=", "HEAD").split()
    assert "hello.txt" in committed and "specs/tasks.md" not in committed
    assert git(root, "log", "--all", "--format=%H", "--", "specs/tasks.md") == ""  # in no commit at all
    assert git(root, "status", "--porcelain") == "?? .project_state.json\n?? specs/\n"
    note = tasks(root)["T001"].notes[-1].text
    assert "Ticked T001 in specs/tasks.md (line 5) on disk only: git does not track it here" in note
