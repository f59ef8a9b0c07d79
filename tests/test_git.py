"""git.py: commits per task stay inside the project, respect .gitignore, never push."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autonomous import git


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    sh(tmp_path, "init", "-q")
    sh(tmp_path, "config", "user.email", "me@example.com")
    sh(tmp_path, "config", "user.name", "me")
    (tmp_path / ".gitignore").write_text("*.log\n.ai-agents/\n")
    sh(tmp_path, "add", ".gitignore")
    sh(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_not_a_repository(tmp_path: Path) -> None:
    assert not git.is_repo(tmp_path)
    assert git.head(tmp_path) is None


def test_commit_all_respects_gitignore_and_runtime_dirs(repo: Path) -> None:
    (repo / "app.py").write_text("print(1)\n")
    (repo / "debug.log").write_text("noise\n")
    (repo / ".ai-agents" / "state").mkdir(parents=True)
    (repo / ".ai-agents" / "state" / "tasks.json").write_text("{}")
    sha = git.commit_all(repo, "AUTH-1.1: login")
    assert sha == git.head(repo)
    assert sh(repo, "show", "--name-only", "--format=%s", "HEAD").split() == ["AUTH-1.1:", "login", "app.py"]
    assert git.commit_all(repo, "nothing") is None  # nothing left to commit


def test_runtime_dirs_excluded_even_when_not_ignored(repo: Path) -> None:
    (repo / ".gitignore").write_text("")
    sh(repo, "commit", "-q", "-am", "unignore")
    (repo / ".ai-agents" / "logs").mkdir(parents=True)
    (repo / ".ai-agents" / "logs" / "autonomous.log").write_text("x")
    (repo / "f.txt").write_text("x")
    git.commit_all(repo, "T-1")
    assert sh(repo, "show", "--name-only", "--format=", "HEAD").split() == ["f.txt"]


def test_only_the_project_subdirectory_is_committed(repo: Path) -> None:
    project = repo / "services" / "api"
    project.mkdir(parents=True)
    (project / "main.py").write_text("x")
    (repo / "outside.txt").write_text("not mine")
    sh(repo, "add", "outside.txt")  # the user staged something elsewhere
    git.commit_all(project, "API-1.1: main")
    assert sh(repo, "show", "--name-only", "--format=", "HEAD").split() == ["services/api/main.py"]
    assert "outside.txt" in sh(repo, "diff", "--cached", "--name-only")  # still staged, untouched


def test_snapshot_sees_new_commits_and_edits(repo: Path) -> None:
    before = git.snapshot(repo)
    assert not git.changed_since(repo, before)
    (repo / "a.txt").write_text("a")
    assert git.changed_since(repo, before)
    assert git.changed_files(repo) == ["a.txt"]
    sh(repo, "add", "a.txt")
    sh(repo, "commit", "-q", "-m", "a")
    assert git.changed_since(repo, before)


def test_fallback_identity_when_none_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    proj = tmp_path / "p"
    proj.mkdir()
    git.init(proj)
    (proj / "x").write_text("x")
    assert git.commit_all(proj, "T-1: x")
    assert sh(proj, "log", "-1", "--format=%ae").strip() == "autonomous@localhost"
