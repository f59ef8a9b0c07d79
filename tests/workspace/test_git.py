"""workspace/git.py: commits per task stay inside the project, respect .gitignore, never push."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autonomous.workspace import changes, git
from autonomous.workspace.commit import commit_change_set


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


def commit_work(path: Path, message: str, before: changes.TreeState | None = None) -> str | None:
    """What the runner does at the end of a task: commit its change set."""
    cs = changes.diff(before or changes.TreeState(git.toplevel(path), git.head(path), {}), changes.capture(path))
    return commit_change_set(cs, message).sha


def test_task_commit_respects_gitignore_and_tool_dirs(repo: Path) -> None:
    (repo / "app.py").write_text("print(1)\n")
    (repo / "debug.log").write_text("noise\n")
    (repo / ".ai-agents" / "state").mkdir(parents=True)
    (repo / ".ai-agents" / "state" / "tasks.json").write_text("{}")
    sha = commit_work(repo, "AUTH-1.1: login")
    assert sha == git.head(repo)
    assert sh(repo, "show", "--name-only", "--format=%s", "HEAD").split() == ["AUTH-1.1:", "login", "app.py"]
    assert commit_work(repo, "nothing") is None  # nothing left to commit


def test_tool_dirs_excluded_even_when_not_ignored(repo: Path) -> None:
    (repo / ".gitignore").write_text("")
    sh(repo, "commit", "-q", "-am", "unignore")
    (repo / ".ai-agents" / "logs").mkdir(parents=True)
    (repo / ".ai-agents" / "logs" / "autonomous.log").write_text("x")
    (repo / ".ai-agents" / "config.yml").write_text("x: 1\n")
    (repo / "f.txt").write_text("x")
    commit_work(repo, "T-1")
    assert sh(repo, "show", "--name-only", "--format=", "HEAD").split() == ["f.txt"]


def test_only_the_project_subdirectory_is_committed(repo: Path) -> None:
    project = repo / "services" / "api"
    project.mkdir(parents=True)
    (project / "main.py").write_text("x")
    (repo / "outside.txt").write_text("not mine")
    sh(repo, "add", "outside.txt")  # the user staged something elsewhere
    commit_work(project, "API-1.1: main")
    assert sh(repo, "show", "--name-only", "--format=", "HEAD").split() == ["services/api/main.py"]
    assert "outside.txt" in sh(repo, "diff", "--cached", "--name-only")  # still staged, untouched


def test_clean_check_can_leave_untracked_files_aside(repo: Path) -> None:
    (repo / ".env").write_text("TOKEN=x\n")
    assert git.is_clean(repo, untracked=False) and not git.is_clean(repo)
    (repo / ".gitignore").write_text("changed\n")
    assert not git.is_clean(repo, untracked=False)
    assert git.tracked_changes(repo, [":(top)"]) == [".gitignore"]


def test_fallback_identity_when_none_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    proj = tmp_path / "p"
    proj.mkdir()
    git.init(proj)
    (proj / "x").write_text("x")
    assert commit_work(proj, "T-1: x")
    assert sh(proj, "log", "-1", "--format=%ae").strip() == "autonomous@localhost"


# -- worktrees and merges (parallel workers) ---------------------------------------------------
def branch_with(repo: Path, key: str, files: dict[str, str]) -> Path:
    """A task worktree on ``autonomous/<key>`` from the current branch, with one commit."""
    base = git.current_branch(repo)
    path = repo / git.WORKTREES_DIR / key
    git.add_worktree(repo, path, git.branch_name(key), base)
    for name, text in files.items():
        (path / name).write_text(text)
    assert commit_work(path, f"{key}: work")
    return path


def test_worktree_branch_merges_no_ff_and_is_removed(repo: Path) -> None:
    main = git.current_branch(repo)
    git.ignore_locally(repo, "/.ai-agents/worktrees/")
    path = branch_with(repo, "T-1.1", {"a.txt": "a\n"})
    assert [w.branch for w in git.list_worktrees(repo)] == [main, "autonomous/T-1.1"]
    assert git.is_clean(repo) and not git.is_merged(repo, "autonomous/T-1.1", main)
    result = git.merge_branch(repo, "autonomous/T-1.1", main, strategy="merge", message="Merge T-1.1", worktree=path)
    assert result.merged and result.before != result.after
    assert sh(repo, "log", "-1", "--format=%s %p").split()[:2] == ["Merge", "T-1.1"]
    assert len(sh(repo, "log", "-1", "--format=%p").split()) == 2  # a merge commit
    git.remove_worktree(repo, path)
    assert git.delete_branch(repo, "autonomous/T-1.1", merged_into=main)
    assert not path.exists() and not git.branch_exists(repo, "autonomous/T-1.1")


def test_conflict_is_aborted_and_nothing_is_lost(repo: Path) -> None:
    main = git.current_branch(repo)
    (repo / "f.txt").write_text("base\n")
    commit_work(repo, "base")
    one = branch_with(repo, "T-1.1", {"f.txt": "base\nA\n"})
    two = branch_with(repo, "T-1.2", {"f.txt": "base\nB\n"})
    assert git.merge_branch(repo, "autonomous/T-1.1", main, strategy="merge", message="m1", worktree=one).merged
    before = git.head(repo)
    result = git.merge_branch(repo, "autonomous/T-1.2", main, strategy="merge", message="m2", worktree=two)
    assert not result.merged and result.conflict and "f.txt" in result.output
    assert git.head(repo) == before and git.is_clean(repo)  # the integration branch is back
    assert (repo / "f.txt").read_text() == "base\nA\n"
    assert not git.delete_branch(repo, "autonomous/T-1.2", merged_into=main)  # unmerged: kept
    git.remove_worktree(repo, two)
    kept = git.rename_branch(repo, "autonomous/T-1.2", "autonomous/T-1.2-attempt")
    assert kept == "autonomous/T-1.2-attempt"
    assert sh(repo, "show", f"{kept}:f.txt") == "base\nB\n"


def test_rebase_strategy_fast_forwards(repo: Path) -> None:
    main = git.current_branch(repo)
    one = branch_with(repo, "T-1.1", {"a.txt": "a\n"})
    two = branch_with(repo, "T-1.2", {"b.txt": "b\n"})
    assert git.merge_branch(repo, "autonomous/T-1.1", main, strategy="rebase", message="", worktree=one).merged
    result = git.merge_branch(repo, "autonomous/T-1.2", main, strategy="rebase", message="", worktree=two)
    assert result.merged
    assert sh(repo, "log", "--merges", "--oneline") == ""  # linear history
    assert sh(repo, "log", "--format=%s", "-2").splitlines() == ["T-1.2: work", "T-1.1: work"]
    git.undo_merge(repo, result.before)
    assert not (repo / "b.txt").exists() and git.branch_exists(repo, "autonomous/T-1.2")


# -- a controlled configuration: nothing the repository names is run -------------------------------


def plant_programs(repo: Path, marks: Path) -> list[str]:
    """Hooks, fsmonitor, a clean filter, a textconv and an alias that each leave a mark when run."""
    names = ["pre-commit", "post-commit", "commit-msg", "fsmonitor", "filter", "textconv"]
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "post-commit", "commit-msg"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marks}/{hook}\n")
        (hooks / hook).chmod(0o755)
    sh(repo, "config", "core.fsmonitor", f"touch {marks}/fsmonitor; echo")
    sh(repo, "config", "filter.evil.clean", f"touch {marks}/filter; cat")
    sh(repo, "config", "filter.evil.required", "true")
    sh(repo, "config", "diff.evil.textconv", f"touch {marks}/textconv; cat")
    sh(repo, "config", "alias.status", f"!touch {marks}/alias")
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=evil\n")
    return names


def test_the_runners_git_runs_no_program_the_repository_names(repo: Path, tmp_path_factory) -> None:
    marks = tmp_path_factory.mktemp("marks")
    plant_programs(repo, marks)
    (repo / "work.txt").write_text("the agent's work\n")
    before = changes.TreeState(git.toplevel(repo), git.head(repo), {})
    sha = commit_work(repo, "task T-1", before)
    assert sha is not None
    assert git.show(repo, sha, stat=True)
    assert sorted(p.name for p in marks.iterdir()) == []
    assert sh(repo, "show", f"{sha}:work.txt") == "the agent's work\n"  # committed as is, no filter


def test_run_hooks_restores_the_repositorys_programs(repo: Path, tmp_path_factory) -> None:
    marks = tmp_path_factory.mktemp("marks")
    plant_programs(repo, marks)
    (repo / "work.txt").write_text("the agent's work\n")
    git.set_run_hooks(True)
    try:
        commit_work(repo, "task T-1")
    finally:
        git.set_run_hooks(False)
    assert {"pre-commit", "post-commit", "filter"} <= {p.name for p in marks.iterdir()}
