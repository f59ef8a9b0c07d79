"""Task-scoped change sets and task commits, in repositories set up the way a new user's is:
untracked .env with a token, untracked notes and config, no .gitignore."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autonomous.workspace import changes, git
from autonomous.workspace.commit import commit_change_set
from autonomous.workspace.secret_scan import added_lines, is_protected

TOKEN = "sk-ant-api03-" + "x7Q" * 12


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A newcomer's repository: one commit, then untracked files of the user's own."""
    sh(tmp_path, "init", "-q")
    sh(tmp_path, "config", "user.email", "me@example.com")
    sh(tmp_path, "config", "user.name", "me")
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "README.md").write_text("# calc\n")
    sh(tmp_path, "add", "calc.py", "README.md")
    sh(tmp_path, "commit", "-q", "-m", "init")
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={TOKEN}\n")
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "spec.md").write_text("# spec\n")
    (tmp_path / ".ai-agents").mkdir()
    (tmp_path / ".ai-agents" / "config.yml").write_text("autonomous:\n  backend: claude-code\n")
    (tmp_path / ".project_state.json").write_text("{}")
    return tmp_path


def untracked(repo: Path) -> set[str]:
    return {line[3:] for line in sh(repo, "status", "--porcelain", "-uall").splitlines() if line.startswith("??")}


def test_change_set_holds_only_what_the_task_wrote(project: Path) -> None:
    before = changes.capture(project)
    (project / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    (project / "test_calc.py").write_text("from calc import sub\n")
    (project / "README.md").unlink()
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "calc.cpython-311.pyc").write_bytes(b"\0junk")
    (project / ".ai-agents" / "state").mkdir()
    (project / ".ai-agents" / "state" / "tasks.db").write_bytes(b"db")
    cs = changes.diff(before, changes.capture(project))
    assert cs.created == ["test_calc.py"]
    assert cs.modified == ["calc.py"]
    assert cs.deleted == ["README.md"]


def test_touching_or_restoring_a_file_is_not_a_change(project: Path) -> None:
    before = changes.capture(project)
    text = (project / "notes.txt").read_text()
    (project / "notes.txt").write_text(text)  # same content, new mtime
    (project / "calc.py").write_text("changed\n")
    (project / "calc.py").write_text("def add(a, b):\n    return a + b\n")  # restored
    assert not changes.diff(before, changes.capture(project))


def test_editing_a_file_that_was_already_dirty_counts(project: Path) -> None:
    (project / "calc.py").write_text("user edit\n")
    before = changes.capture(project)
    (project / "calc.py").write_text("user edit\nagent edit\n")
    assert changes.diff(before, changes.capture(project)).modified == ["calc.py"]


def test_commit_holds_exactly_the_change_set(project: Path) -> None:
    (project / "README.md").write_text("# calc\nuser's uncommitted edit\n")  # dirty before the task
    sh(project, "add", "README.md")  # ...and staged by the user
    before = changes.capture(project)
    (project / "calc.py").write_text("def add(a, b):\n    return a + b  # checked\n")
    (project / "test_calc.py").write_text("def test_add():\n    assert True\n")
    cs = changes.diff(before, changes.capture(project))
    env_before = (project / ".env").read_bytes()
    done = commit_change_set(cs, "T-1: add", secrets=[TOKEN])
    assert done.sha == git.head(project)
    assert sorted(sh(project, "show", "--name-only", "--format=", "HEAD").split()) == ["calc.py", "test_calc.py"]
    assert untracked(project) == {".env", "notes.txt", "spec.md", ".ai-agents/config.yml", ".project_state.json"}
    assert (project / ".env").read_bytes() == env_before
    # the user's staged edit is still staged, not committed
    assert sh(project, "diff", "--cached", "--name-only").split() == ["README.md"]


def test_a_deleted_file_is_committed_as_a_deletion(project: Path) -> None:
    before = changes.capture(project)
    (project / "README.md").unlink()
    (project / "notes.txt").unlink()  # the user's untracked file: gone, but nothing to commit for it
    cs = changes.diff(before, changes.capture(project))
    assert cs.deleted == ["README.md", "notes.txt"]
    done = commit_change_set(cs, "T-2: remove readme")
    assert done.sha is not None
    assert sh(project, "show", "--name-status", "--format=", "HEAD").split() == ["D", "README.md"]


def test_a_known_secret_stops_the_commit_and_names_file_and_line(project: Path) -> None:
    before = changes.capture(project)
    (project / "settings.py").write_text(f"DEBUG = True\nKEY = '{TOKEN}'\n")
    (project / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    head = git.head(project)
    done = commit_change_set(changes.diff(before, changes.capture(project)), "T-3", secrets=[TOKEN])
    assert done.refused and done.sha is None
    assert [(f.path, f.line) for f in done.findings] == [("settings.py", 2)]
    assert TOKEN not in done.describe_refusal()
    assert git.head(project) == head
    assert sh(project, "diff", "--cached", "--name-only") == ""  # nothing left staged
    assert (project / "settings.py").exists()  # the work is kept on disk


@pytest.mark.parametrize(
    "line",
    [
        "aws = 'AKIAIOSFODNN7EXAMPLE'",
        "hook = 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX'",
        "-----BEGIN RSA PRIVATE KEY-----",
        "token = 'ghp_" + "a1B2" * 9 + "'",
        "key = 'sk-ant-api03-" + "Zz9" * 10 + "'",
    ],
)
def test_credential_shapes_are_found(project: Path, line: str) -> None:
    before = changes.capture(project)
    (project / "leak.py").write_text(f"# config\n{line}\n")
    done = commit_change_set(changes.diff(before, changes.capture(project)), "T-4")
    assert done.refused, line
    assert done.findings[0].line == 2


def test_credential_files_are_left_out_unless_allowed(project: Path) -> None:
    before = changes.capture(project)
    (project / "app.py").write_text("print('hi')\n")
    (project / ".env.local").write_text("X=1\n")
    (project / "server.pem").write_text("not really\n")
    (project / ".env.example").write_text("X=\n")
    cs = changes.diff(before, changes.capture(project))
    done = commit_change_set(cs, "T-5")
    assert sorted(done.committed) == [".env.example", "app.py"]
    assert sorted(done.left_out) == [".env.local", "server.pem"]
    assert is_protected("deploy/id_rsa") and not is_protected("deploy/id_rsa", allow=["deploy/id_rsa"])


def test_paths_with_odd_names_are_taken_literally(project: Path) -> None:
    before = changes.capture(project)
    for name in ("*.py", "-rf", "sp ace.txt", "tab\there.txt", "ünï.txt", ":(exclude)x"):
        (project / name).write_text("x\n")
    cs = changes.diff(before, changes.capture(project))
    assert len(cs.created) == 6
    done = commit_change_set(cs, "T-6")
    assert done.sha is not None
    shown = sh(project, "-c", "core.quotePath=false", "show", "--name-only", "-z", "--format=", "HEAD").split("\0")
    assert sorted(p for p in shown if p.strip()) == sorted(cs.created)


def test_agent_commits_are_part_of_the_change_set(project: Path) -> None:
    before = changes.capture(project)
    (project / "calc.py").write_text("agent\n")
    sh(project, "commit", "-q", "-am", "agent's own commit")
    assert changes.diff(before, changes.capture(project)).modified == ["calc.py"]


def test_without_git_the_change_set_comes_from_content_hashes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    before = changes.capture(tmp_path)
    assert not before.in_git
    (tmp_path / "a.txt").write_text("a\n")  # same content
    assert not changes.diff(before, changes.capture(tmp_path))
    (tmp_path / "b.txt").write_text("b\n")
    assert changes.diff(before, changes.capture(tmp_path)).created == ["b.txt"]


def test_a_project_in_a_subdirectory_sees_only_its_own_paths(tmp_path: Path) -> None:
    sh(tmp_path, "init", "-q")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "x.py").write_text("x\n")
    (tmp_path / "other.txt").write_text("o\n")
    before = changes.capture(tmp_path / "app")
    (tmp_path / "app" / "y.py").write_text("y\n")
    (tmp_path / "other2.txt").write_text("o\n")
    assert changes.diff(before, changes.capture(tmp_path / "app")).created == ["app/y.py"]


def test_added_lines_parses_quoted_paths_and_hunks() -> None:
    patch = (
        'diff --git "a/t\\tb" "b/t\\tb"\n+++ "b/t\\tb"\n@@ -0,0 +1,2 @@\n+one\n+two\n'
        "diff --git a/x b/x\n+++ b/x\n@@ -3 +7 @@\n-old\n+new\n"
        "diff --git a/img.png b/img.png\nBinary files /dev/null and b/img.png differ\n"
    )
    lines, binary = added_lines(patch)
    assert lines == [("t\tb", 1, "one"), ("t\tb", 2, "two"), ("x", 7, "new")]
    assert binary == ["img.png"]
