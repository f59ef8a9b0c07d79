"""The shared remote (workspace/remote.py) on real git: one bare repository and two clones set
up like new users' (untracked .env and config, no .gitignore), pushing to one branch."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from autonomous.verify import VerificationResult
from autonomous.workspace import git, remote


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def clone(bare: Path, where: Path, name: str) -> Path:
    sh(where.parent, "clone", "-q", str(bare), str(where))
    sh(where, "config", "user.email", f"{name}@example.com")
    sh(where, "config", "user.name", name)
    (where / ".env").write_text("TOKEN=not-for-git\n")
    (where / ".ai-agents").mkdir()
    (where / ".ai-agents" / "config.yml").write_text("execution:\n  git:\n    remote: origin\n")
    return where


def commit(repo: Path, name: str, text: str, task_id: str) -> str:
    (repo / name).write_text(text)
    sh(repo, "add", name)
    sh(repo, "commit", "-q", "-m", f"{name}\n\nautonomous: task {task_id} done")
    return sh(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    bare = tmp_path / "origin.git"
    sh(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    seed.mkdir()
    sh(seed, "init", "-q", "-b", "main")
    sh(seed, "config", "user.email", "s@example.com")
    sh(seed, "config", "user.name", "s")
    (seed / "README.md").write_text("# app\n")
    sh(seed, "add", "README.md")
    sh(seed, "commit", "-q", "-m", "init")
    sh(seed, "push", "-q", str(bare), "main")
    return bare, clone(bare, tmp_path / "a", "a"), clone(bare, tmp_path / "b", "b")


def remote_log(bare: Path) -> list[str]:
    return sh(bare, "log", "--format=%s", "main").splitlines()


async def passing() -> VerificationResult:
    return VerificationResult(passed=True)


def test_resolve_defaults_to_the_checked_out_branch_and_refuses_an_unknown_remote(clones) -> None:
    _bare, a, _b = clones
    assert remote.resolve(a, None, None) is None
    assert remote.resolve(a, "origin", None) == remote.Remote("origin", "main")
    with pytest.raises(git.GitError, match="no remote 'upstream'"):
        remote.resolve(a, "upstream", None)


def test_a_push_behind_the_remote_rebases_verifies_and_keeps_both_commits(clones) -> None:
    bare, a, b = clones
    shared = remote.Remote("origin", "main")
    commit(a, "one.txt", "1\n", "T-1")
    assert asyncio.run(remote.publish(a, shared, attempts=3, verify=passing)).pushed
    commit(b, "two.txt", "2\n", "T-2")
    checked: list[Path] = []

    async def check() -> VerificationResult:
        checked.append(b)
        assert (b / "one.txt").exists()  # verification runs on the rebased result
        return VerificationResult(passed=True)

    result = asyncio.run(remote.publish(b, shared, attempts=3, verify=check))
    assert result.pushed and result.rebased and checked
    assert remote_log(bare) == ["two.txt", "one.txt", "init"]
    assert remote.published(b, shared, "T-1") and remote.published(b, shared, "T-2")
    assert remote.published(b, shared, "T-3") is None
    untracked = sh(b, "status", "--porcelain", "--untracked-files=all").split()
    assert untracked == ["??", ".ai-agents/config.yml", "??", ".env"]  # the user's files stay untracked


def test_a_push_that_loses_the_race_is_rejected_then_rebased_and_pushed_again(clones) -> None:
    """A pushes between B's fetch and B's push (during B's verification): git rejects B's
    push as not a fast-forward; B fetches, rebases, verifies and pushes again."""
    bare, a, b = clones
    shared = remote.Remote("origin", "main")
    commit(b, "mine.txt", "b\n", "T-2")
    raced: list[bool] = []

    async def race_then_pass() -> VerificationResult:
        if not raced:
            raced.append(True)
            commit(a, "theirs.txt", "a\n", "T-1")
            sh(a, "push", "-q", "origin", "main")
        return VerificationResult(passed=True)

    # B is first made to rebase onto something (a commit C pushed before), so it verifies,
    # and during that verification A pushes: B's first push is rejected.
    commit(a, "first.txt", "c\n", "T-0")
    sh(a, "push", "-q", "origin", "main")
    result = asyncio.run(remote.publish(b, shared, attempts=3, verify=race_then_pass))
    assert result.pushed and result.attempts == 2 and raced
    assert remote_log(bare) == ["mine.txt", "theirs.txt", "first.txt", "init"]


def test_a_conflict_or_failing_check_is_reported_and_nothing_is_pushed_or_forced(clones) -> None:
    bare, a, b = clones
    shared = remote.Remote("origin", "main")
    commit(a, "same.txt", "a\n", "T-1")
    asyncio.run(remote.publish(a, shared, attempts=3, verify=passing))
    commit(b, "same.txt", "b\n", "T-2")
    conflict = asyncio.run(remote.publish(b, shared, attempts=3, verify=passing))
    assert not conflict.pushed and conflict.conflict and "conflict" in conflict.output
    assert remote_log(bare) == ["same.txt", "init"] and (bare / "refs").exists()
    assert sh(bare, "show", "main:same.txt") == "a\n"
    kept = remote.set_aside(b, shared, "T-2")
    assert kept == "autonomous/T-2-unpushed"
    assert sh(b, "show", f"{kept}:same.txt") == "b\n"  # the work is kept on a branch
    assert sh(b, "rev-parse", "HEAD") == sh(b, "rev-parse", "origin/main")  # the checkout is on the remote's

    commit(b, "other.txt", "x\n", "T-3")

    async def failing() -> VerificationResult:
        return VerificationResult(passed=False, reason="tests fail")

    commit(a, "more.txt", "m\n", "T-4")
    asyncio.run(remote.publish(a, shared, attempts=3, verify=passing))
    refused = asyncio.run(remote.publish(b, shared, attempts=3, verify=failing))
    assert not refused.pushed and "verification failed after rebasing onto origin/main" in refused.output
    assert remote_log(bare) == ["more.txt", "same.txt", "init"]


def test_catch_up_fast_forwards_and_leaves_unpushed_work_alone(clones) -> None:
    _bare, a, b = clones
    shared = remote.Remote("origin", "main")
    commit(a, "one.txt", "1\n", "T-1")
    asyncio.run(remote.publish(a, shared, attempts=1, verify=passing))
    assert remote.catch_up(b, shared) == sh(a, "rev-parse", "HEAD").strip()
    assert (b / "one.txt").read_text() == "1\n"
    mine = commit(b, "two.txt", "2\n", "T-2")
    remote.catch_up(b, shared)
    assert sh(b, "rev-parse", "HEAD").strip() == mine
