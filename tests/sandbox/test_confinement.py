"""The confinement's decisions, and their translation into Claude Code's settings and bubblewrap's argv."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from autonomous.sandbox import Confinement, bwrap, claude
from autonomous.sandbox.env import scrubbed


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / ".ai-agents" / "state").mkdir(parents=True)
    return path.resolve()


def test_the_tool_folders_are_hidden_and_git_is_read_only(project: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    conf = Confinement.for_project(project, tool_dirs=[project / ".ai-agents" / "state", logs])
    assert conf.hidden == (project / ".ai-agents", logs.resolve())  # the state folder is inside .ai-agents
    assert conf.read_only == (project / ".git",)
    assert conf.refusal(project / ".ai-agents" / "state" / "tasks.db", write=False)
    assert conf.refusal(project / ".git" / "config", write=True)
    assert conf.refusal(project / ".git" / "config", write=False) is None
    assert conf.refusal(project / "src" / "app.py", write=True) is None
    interpreter = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    assert all(not p.is_relative_to(Path.home()) or p in interpreter for p in conf.read_paths)  # home is hidden


def test_a_worktree_sees_its_main_repository_read_only(project: Path, tmp_path: Path) -> None:
    subprocess.run(["git", "-C", str(project), "commit", "-q", "--allow-empty", "-m", "init"], check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                        "GIT_COMMITTER_EMAIL": "a@b"})  # fmt: skip
    tree = tmp_path / "tree"
    subprocess.run(["git", "-C", str(project), "worktree", "add", "-q", str(tree)], check=True)
    conf = Confinement.for_project(tree)
    assert project / ".git" in conf.read_only and tree / ".git" in conf.read_only


@pytest.mark.parametrize(
    ("network", "hosts", "allowed"), [("off", (), []), ("on", (), ["*"]), ("allow", ("pypi.org",), ["pypi.org"])]
)
def test_claude_settings(project: Path, network: str, hosts: tuple[str, ...], allowed: list[str]) -> None:
    conf = Confinement.for_project(project, network=network, allow_hosts=hosts)  # type: ignore[arg-type]
    settings = claude.settings(conf)
    box = settings["sandbox"]
    assert box["enabled"] and box["failIfUnavailable"] and box["allowUnsandboxedCommands"] is False
    assert box["network"]["allowedDomains"] == allowed
    assert box["filesystem"]["denyRead"][0] == "/" and str(project) in box["filesystem"]["allowRead"]
    assert str(project / ".git") in box["filesystem"]["denyWrite"]
    assert f"Read(/{project / '.ai-agents'}/**)" in settings["permissions"]["deny"]
    assert claude.cli_args(["Read", "Bash(git *)", "Bash", "mcp__files__read", "TodoWrite"]) == [
        "--restricted", "--tools", "Read,Bash,TodoWrite",
    ]  # fmt: skip


def test_the_key_reaches_the_cli_through_a_private_file_only(monkeypatch: pytest.MonkeyPatch) -> None:
    creds = claude.Credentials({"ANTHROPIC_API_KEY": "sk-secret-123", "PATH": "/usr/bin"})
    helper = creds.settings()["apiKeyHelper"]
    path = Path(helper.split(" ", 1)[1])
    assert path.read_text() == "sk-secret-123" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    creds.close()
    assert not path.parent.exists()
    env = {"ANTHROPIC_API_KEY": "k", "GITHUB_TOKEN": "t", "CLAUDE_CODE_OAUTH_TOKEN": "o", "GIT_AUTHOR_NAME": "me"}
    assert claude.cli_environment(env) == {"ANTHROPIC_API_KEY": "", "GITHUB_TOKEN": ""}
    assert scrubbed(env) == {"GIT_AUTHOR_NAME": "me", "HOME": "/tmp", "TMPDIR": "/tmp"}


def test_bwrap_argv_shape(project: Path) -> None:
    conf = Confinement.for_project(project)
    args = bwrap.argv(conf, "echo hi")
    assert args[:6] == ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    assert "--share-net" not in args
    assert args[-4:] == ["--", bwrap.SHELL, "-c", "echo hi"]
    assert "--share-net" in bwrap.argv(Confinement.for_project(project, network="on"), "true")
