"""The runner's checks: test command detection, the baseline comparison (real pytest runs
writing real junit XML), the task diff (real git) and the review verdict."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from autonomous import verify
from autonomous.checks import baseline, detect, review
from autonomous.checks.commands import CommandResult
from autonomous.checks.diff import task_diff
from autonomous.config import parse_config
from autonomous.tasks import NewTask, Task
from autonomous.workspace import changes

# -- detection ---------------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "command", "source"),
    [
        ({"AGENTS.md": "# Agents\n\nRun the tests with `make check-all` before you finish.\n"}, "make check-all",
         "AGENTS.md line 3"),
        ({"CLAUDE.md": "## Testing\n\n```bash\nuv sync\nuv run pytest -x\n```\n", "Cargo.toml": ""},
         "uv run pytest -x", "CLAUDE.md line 5"),
        ({"AGENTS.md": "Before testing run `npm ci`, then `npm run test:unit`.\n"}, "npm run test:unit",
         "AGENTS.md line 1"),
        ({"package.json": '{"scripts": {"test": "vitest run"}}'}, "npm test", "package.json scripts.test"),
        ({"Cargo.toml": "[package]\n"}, "cargo test", "Cargo.toml"),
        ({"go.mod": "module x\n"}, "go test ./...", "go.mod"),
        ({"Makefile": "build:\n\tcc x.c\n\ntest: build\n\t./x\n"}, "make test", "Makefile target test"),
        ({"pytest.ini": "[pytest]\n"}, None, "pytest.ini"),
        ({"setup.cfg": "[tool:pytest]\naddopts = -q\n"}, None, "setup.cfg [tool:pytest]"),
        ({"tests/test_x.py": "def test(): pass\n"}, None, "tests/test_*.py"),
    ],
)  # fmt: skip
def test_detects_the_project_test_command(tmp_path: Path, files: dict, command: str | None, source: str) -> None:
    found = detect.detect(write(tmp_path, files))
    assert found is not None and found.source == source
    assert found.command == (command or detect.pytest_command(tmp_path))


def test_pytest_in_pyproject_uses_the_projects_own_virtualenv(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n", ".venv/bin/python": ""})
    found = detect.detect(tmp_path)
    assert found is not None and found.command == ".venv/bin/python -m pytest -q"


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"package.json": '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'},
        {"AGENTS.md": "Keep files small. Be kind to `tests`.\n"},  # a word in backticks is not a command
        {"pyproject.toml": "[project]\nname = 'x'\n"},
        {"Makefile": "build:\n\tcc x.c\n"},
    ],
)
def test_nothing_detected(tmp_path: Path, files: dict) -> None:
    assert detect.detect(write(tmp_path, files)) is None
    assert detect.plan("auto", tmp_path) == ([], detect.plan("auto", tmp_path)[1])
    assert detect.plan("auto", tmp_path)[1].startswith("auto: no test command found")


def test_stated_command_wins_over_build_files(tmp_path: Path) -> None:
    write(tmp_path, {"AGENTS.md": "Tests: `pytest -q tests/unit`\n", "go.mod": "module x\n"})
    assert detect.plan("auto", tmp_path) == (
        ["pytest -q tests/unit"],
        "auto: detected `pytest -q tests/unit` (from AGENTS.md line 1)",
    )
    assert detect.plan(["make lint"], tmp_path) == (["make lint"], "configured")


def test_config_defaults_are_auto_checks_and_required_changes(tmp_path: Path) -> None:
    config = parse_config({}, root=tmp_path)
    assert config.verification.commands == "auto"
    assert config.verification.require_changes is True and config.verification.review is False
    assert parse_config({"verification": {"commands": []}}, root=tmp_path).verification.commands == []


# -- baseline: real pytest, real junit XML ----------------------------------------------------------


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    write(
        tmp_path,
        {
            "pytest.ini": "[pytest]\n",
            "test_a.py": "def test_ok():\n    assert True\n\ndef test_old():\n    assert False\n",
        },
    )
    return tmp_path


def run_check(root: Path) -> CommandResult:
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    return asyncio.run(baseline.run_check(command, root, 120, root / ".checks"))


def test_a_project_without_tests_yet_passes_its_pytest_check(tmp_path: Path) -> None:
    """pytest exits 5 when it collects nothing: a fresh project's README task must not be blocked."""
    write(tmp_path, {"pytest.ini": "[pytest]\n", "app.py": "print(1)\n"})
    result = run_check(tmp_path)
    assert result.passed and "no tests collected" in result.tail[-1]
    chained = asyncio.run(baseline.run_check(f"{sys.executable} -m pytest -q; exit 5", tmp_path, 120, None))
    assert not chained.passed  # only a plain pytest run is read this way


def test_failing_ids_come_from_the_junit_report(suite: Path) -> None:
    result = run_check(suite)
    assert result.exit_code == 1 and result.failing_tests == ["test_a::test_old"]
    assert "--junitxml" not in result.command  # the evidence shows the command as configured


def test_a_failure_already_there_is_not_blamed_but_a_new_one_is(suite: Path) -> None:
    before = run_check(suite)
    (suite / "test_b.py").write_text("def test_new():\n    pass\n")
    same = run_check(suite)
    ok, note = baseline.compare(same, before)
    assert ok and "no new failures" in note and same.accepted
    (suite / "test_b.py").write_text("def test_new():\n    assert 0\n")
    worse = run_check(suite)
    ok, note = baseline.compare(worse, before)
    assert not ok and "test_b::test_new" in note and "test_a::test_old" not in note.split("failing tests:")[1]
    (suite / "test_a.py").write_text("def test_ok():\n    pass\n")
    (suite / "test_b.py").unlink()
    assert baseline.compare(run_check(suite), before) == (
        True,
        f"`{before.command}`: failed before the run, passes now",
    )


def test_a_failure_without_test_ids_must_pass() -> None:
    before = CommandResult("test -f a.txt", 1)
    ok, note = baseline.compare(CommandResult("test -f a.txt", 1), before)
    assert not ok and "cannot be read" in note
    assert baseline.compare(CommandResult("test -f a.txt", 0), before)[0]
    assert "a task is done only when it passes" in baseline.describe_failures({"test -f a.txt": before})[0]


def test_only_a_plain_pytest_command_gets_a_junit_report() -> None:
    assert baseline.takes_junit("pytest -q") and baseline.takes_junit(".venv/bin/python -m pytest -x tests")
    assert not baseline.takes_junit("pytest -q && ruff check .")
    assert not baseline.takes_junit("pytest --junitxml=out.xml")
    assert not baseline.takes_junit("npm test")


def test_verify_names_the_new_failure_in_the_reason(suite: Path) -> None:
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    before = asyncio.run(baseline.run_baseline([command], suite, 120, suite / ".b"))
    (suite / "test_b.py").write_text("def test_new():\n    assert 0\n")
    result = asyncio.run(verify.verify(suite, [command], baseline=before, report_dir=suite / ".c"))
    assert not result.passed and "test_b::test_new" in result.reason
    note = result.evidence()
    assert note.index("failing tests: test_b::test_new") < note.index(f"$ {command}")  # summary lines first


# -- the task's diff -----------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_diff_covers_exactly_the_change_set(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, {"a.py": "one\ntwo\n", "gone.py": "x\n", "user.txt": "mine\n"})
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init")
    (tmp_path / "user.txt").write_text("the user's edit\n")  # before the task: not its change
    before = changes.capture(tmp_path)
    write(tmp_path, {"a.py": "one\n2\n3\n", "new.py": "print(1)\n"})
    (tmp_path / "gone.py").unlink()
    change_set = changes.diff(before, changes.capture(tmp_path))
    diff = task_diff(change_set, before.head)
    assert "user.txt" not in diff.text and "+print(1)" in diff.text and "-two" in diff.text
    assert diff.diffstat(change_set) == "3 files, +3 -2: a.py (+2, -1), gone.py (deleted, -1), new.py (new, +1)"
    assert git(tmp_path, "status", "--porcelain").count("new.py") == 1  # untracked still: the index was not touched


# -- the review ------------------------------------------------------------------------------


def task(**kw) -> Task:
    new = NewTask("[X-1] Greet", acceptance_criteria=["says hello", "has a test"], **kw)
    return Task(id="T-1", key="X-1", title=new.title, description=new.description,
                acceptance_criteria=new.acceptance_criteria, labels=list(new.labels))  # fmt: skip


def test_verdict_approve_changes_and_garbage() -> None:
    approve = review.parse_verdict('ok\n```json\n{"status": "complete", "verdict": "approve", "summary": "fine"}\n```')
    assert approve is not None and approve.approved and approve.summary == "fine"
    changes_ = review.parse_verdict(
        '{"verdict": "changes", "criteria": [{"criterion": "says hello", "met": false, "reason": "says hi"},'
        ' {"criterion": "has a test", "met": true}]}'
    )
    assert changes_ is not None and not changes_.approved and [c.criterion for c in changes_.unmet] == ["says hello"]
    feedback = review.feedback(changes_, 1, 2)
    assert "says hello: NOT met (says hi)" in feedback and "has a test" not in feedback
    # an approval that lists an unmet criterion is not an approval
    mixed = review.parse_verdict('{"verdict": "approve", "criteria": [{"criterion": "c", "met": false}]}')
    assert mixed is not None and not mixed.approved
    assert review.parse_verdict("Looks good to me!") is None
    assert review.parse_verdict('{"verdict": "maybe"}') is None


def test_review_prompt_carries_task_criteria_and_diff() -> None:
    t = task(test_steps=["run it"])
    prompt = review.build_prompt(t, "+hello\n", "1 file, +1 -0: a.txt (new, +1)", ["$ pytest -q  ->  exit 0 (1.0s)"])
    for part in (
        "# Review of task X-1",
        "- says hello",
        "- has a test",
        "```diff\n+hello",
        "$ pytest -q",
        "a.txt (new",
    ):
        assert part in prompt
    options = review.review_options(verify_options())
    assert options.allowed_tools == review.REVIEW_TOOLS and options.session_id is None
    assert options.permission_mode == "dontAsk"


def verify_options():
    from autonomous.backends.base import RunOptions

    return RunOptions(cwd=Path("."), session_id="agent-session", allowed_tools=["Write", "Bash"])


def test_no_changes_label_or_marker_opts_out() -> None:
    assert verify.opts_out_of_changes(task(labels=["No-Changes"]))
    assert verify.opts_out_of_changes(task(description="Investigate the slow query. [no-changes]"))
    assert not verify.opts_out_of_changes(task(description="Change nothing else."))
