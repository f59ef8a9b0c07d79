import asyncio
import sys
import time
from pathlib import Path

import pytest

from autonomous.backends.policy import CommandPolicy
from autonomous.backends.tools import TOOL_DEFINITIONS, TOOL_NAMES, LocalTools


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def main():\n    return 1\n\n\ndef other():\n    return 1\n")
    (root / "README.md").write_text("hello\n")
    (tmp_path / "secret.txt").write_text("outside the project\n")
    return root


@pytest.fixture
def tools(project: Path) -> LocalTools:
    return LocalTools(project, CommandPolicy(), bash_timeout=20)


def call(tools: LocalTools, name: str, **args):
    return run(tools.execute(name, args))


def test_definitions_are_anthropic_tool_schemas():
    assert TOOL_NAMES == ["read_file", "write_file", "edit_file", "list_dir", "search", "bash"]
    for tool in TOOL_DEFINITIONS:
        assert set(tool) == {"name", "description", "input_schema"}
        schema = tool["input_schema"]
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])


# -- confinement -----------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["read_file", "write_file", "edit_file", "list_dir", "search"])
def test_dotdot_escape_is_refused(tools, project, tool):
    args = {"path": "../secret.txt", "content": "x", "old_string": "outside", "new_string": "x", "pattern": "."}
    result = call(tools, tool, **args)
    assert result.is_error
    assert "outside the project" in result.content
    assert (project.parent / "secret.txt").read_text() == "outside the project\n"


def test_absolute_path_outside_is_refused(tools, project):
    target = project.parent / "secret.txt"
    assert call(tools, "read_file", path=str(target)).is_error
    result = call(tools, "write_file", path=str(project.parent / "new.txt"), content="x")
    assert result.is_error
    assert not (project.parent / "new.txt").exists()
    assert call(tools, "write_file", path="/tmp/../etc/passwd-autonomous-test", content="x").is_error


def test_absolute_path_inside_is_allowed(tools, project):
    result = call(tools, "read_file", path=str(project / "README.md"))
    assert not result.is_error
    assert "hello" in result.content


def test_symlink_escape_is_refused(tools, project):
    (project / "link.txt").symlink_to(project.parent / "secret.txt")
    (project / "linkdir").symlink_to(project.parent)
    (project / "dangling").symlink_to(project.parent / "not-yet.txt")
    assert call(tools, "read_file", path="link.txt").is_error
    assert call(tools, "write_file", path="link.txt", content="pwned").is_error
    assert call(tools, "write_file", path="linkdir/secret.txt", content="pwned").is_error
    assert call(tools, "write_file", path="dangling", content="pwned").is_error
    assert call(tools, "list_dir", path="linkdir").is_error
    assert (project.parent / "secret.txt").read_text() == "outside the project\n"
    assert not (project.parent / "not-yet.txt").exists()
    # search over the tree does not follow the link out either
    result = call(tools, "search", pattern="outside the project")
    assert result.content == "no matches"


def test_symlink_inside_the_project_is_fine(tools, project):
    (project / "readme-link").symlink_to(project / "README.md")
    assert "hello" in call(tools, "read_file", path="readme-link").content


# -- file tools -------------------------------------------------------------------------


def test_read_file_numbers_lines_and_pages(tools):
    result = call(tools, "read_file", path="src/app.py", offset=2, limit=1)
    assert result.content == "     2\t    return 1"
    assert call(tools, "read_file", path="nope.py").is_error


def test_write_file_creates_parents(tools, project):
    result = call(tools, "write_file", path="pkg/sub/mod.py", content="x = 1\n")
    assert not result.is_error
    assert "created" in result.content
    assert (project / "pkg/sub/mod.py").read_text() == "x = 1\n"
    assert "overwrote" in call(tools, "write_file", path="pkg/sub/mod.py", content="x = 2\n").content


def test_edit_file_replaces_a_unique_match(tools, project):
    result = call(tools, "edit_file", path="src/app.py", old_string="def main():", new_string="def start():")
    assert not result.is_error
    assert (project / "src/app.py").read_text().startswith("def start():\n")


def test_edit_file_refuses_ambiguous_and_missing(tools, project):
    before = (project / "src/app.py").read_text()
    ambiguous = call(tools, "edit_file", path="src/app.py", old_string="return 1", new_string="return 2")
    assert ambiguous.is_error
    assert "2 times" in ambiguous.content
    missing = call(tools, "edit_file", path="src/app.py", old_string="return 3", new_string="return 2")
    assert missing.is_error
    assert "not found" in missing.content
    assert (project / "src/app.py").read_text() == before
    everywhere = call(
        tools, "edit_file", path="src/app.py", old_string="return 1", new_string="return 2", replace_all=True
    )
    assert not everywhere.is_error
    assert (project / "src/app.py").read_text().count("return 2") == 2


def test_list_dir(tools):
    assert call(tools, "list_dir").content.splitlines() == ["README.md", "src/"]
    assert call(tools, "list_dir", path="src").content == "app.py"


def test_search_is_bounded(project):
    tools = LocalTools(project, max_search_results=3)
    (project / "many.txt").write_text("needle\n" * 10)
    result = call(tools, "search", pattern="needle")
    lines = result.content.splitlines()
    assert lines[:3] == ["many.txt:1: needle", "many.txt:2: needle", "many.txt:3: needle"]
    assert "stopped after 3 matches" in lines[3]
    assert call(tools, "search", pattern="def \\w+", glob="*.py").content.count("src/app.py") == 2
    assert call(tools, "search", pattern="(").is_error


def test_unknown_tool_and_bad_input(tools):
    assert call(tools, "rm_rf").is_error
    assert run(tools.execute("read_file", None)).is_error  # type: ignore[arg-type]
    assert call(tools, "read_file").is_error


# -- bash -----------------------------------------------------------------------------


def test_bash_runs_in_the_project_root(tools, project):
    result = call(tools, "bash", command="pwd && echo err >&2")
    assert not result.is_error
    assert str(project) in result.content
    assert "err" in result.content
    assert "[exit code 0]" in result.content
    failing = call(tools, "bash", command="exit 3")
    assert failing.is_error
    assert "[exit code 3]" in failing.content


def test_bash_does_not_see_the_api_key(project, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-for-bash")
    tools = LocalTools(project, env={"EXTRA": "yes"})
    result = call(tools, "bash", command='echo "key=${ANTHROPIC_API_KEY:-none} extra=$EXTRA"')
    assert "key=none extra=yes" in result.content


def test_bash_output_is_capped_head_and_tail(project):
    tools = LocalTools(project, output_cap=1000)
    result = call(tools, "bash", command="echo FIRST; seq 1 100000; echo LAST")
    assert result.content.startswith("FIRST")
    assert "bytes of output omitted" in result.content
    assert "LAST" in result.content
    assert len(result.content) < 1200


def test_bash_timeout_kills_the_process_group(project):
    tools = LocalTools(project, bash_timeout=0.5)
    pidfile = project / "child.pid"
    started = time.monotonic()
    # The child of the shell writes its pid and would touch a file after 30s.
    result = call(tools, "bash", command=f"(sleep 30; touch late) & echo $! > {pidfile}; wait")
    assert time.monotonic() - started < 15
    assert result.is_error
    assert "timed out" in result.content
    child = int(pidfile.read_text())
    # The tool returned only after the output pipe closed, which the child held open: it is
    # dead by now (gone, or a zombie waiting for init to reap it), not left sleeping.
    assert _dead(child)
    assert not (project / "late").exists()


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_background_child_does_not_hold_the_tool_open(project):
    tools = LocalTools(project, bash_timeout=20)
    started = time.monotonic()
    # a child that outlives the shell and holds its output pipe (a program that forks by
    # itself: the shell syntax for a job, `&`, is refused before it runs, see below)
    spawn = f'{sys.executable} -c \'import subprocess; subprocess.Popen(["sleep", "30"])\''
    result = call(tools, "bash", command=f"{spawn}; echo started")
    assert time.monotonic() - started < 10
    assert "started" in result.content
    assert not result.is_error


def test_detached_jobs_are_refused_before_they_run(project):
    tools = LocalTools(project, bash_timeout=20)
    for command in ("touch late & echo started", "nohup touch late", "setsid touch late"):
        result = call(tools, "bash", command=command)
        assert result.is_error and result.denied and "background" in result.content
    assert not (project / "late").exists()
    assert not call(tools, "bash", command="(touch joined) & wait").is_error
    assert (project / "joined").exists()


def test_denied_command_never_runs(tools, project):
    sentinel = project / "sentinel.txt"
    sentinel.write_text("untouched")
    result = call(tools, "bash", command=f"rm -rf / ; echo pwned > {sentinel}")
    assert result.is_error
    assert "refused" in result.content
    assert sentinel.read_text() == "untouched"
