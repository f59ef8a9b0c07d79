"""Done means done: whole runs of ``autonomous start`` through the REAL Claude Code CLI
against the scripted model server, on real git repositories, with a config that has no
``verification`` section (a new user's) unless a test says otherwise.

* a model that only claims completion is not done (the change set is empty): exit 1;
* a change that breaks the project's passing pytest suite (detected, not configured) is
  not done, and the note names the failing test;
* a suite that already failed before the run is reported at start, and a task that does
  not make it worse is done;
* a Bash call with ``run_in_background`` is refused, and a task whose work is not there
  is not done;
* with the review on, a reviewer asking for changes sends its reasons back to the agent,
  and an approval makes the task done with the verdict in the note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall, complete_task_rules

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

REPORT = '```json\n{{"status": "complete", "summary": "{summary}", "files_changed": {files}, "blocker": null}}\n```'
CALC = "def add(a, b):\n    return a + b\n"
CALC_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def report(summary: str, files: list[str]) -> str:
    return REPORT.format(summary=summary, files=json.dumps(files))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A Python project with a pytest setup and its own virtualenv (a link to this
    interpreter, which has pytest), as a user's would be."""
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (root / ".gitignore").write_text(".ai-agents/\n.venv/\n__pycache__/\n.pytest_cache/\n")
    (root / "pyproject.toml").write_text('[project]\nname = "calc"\n\n[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(CALC_TEST)
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def make_tasks(project: Path, *tasks: NewTask) -> None:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        provider.create_tasks([NewTask("META: Calc"), *tasks])


def state(project: Path) -> dict:
    from autonomous.providers.file import FileProvider

    with FileProvider(project / ".ai-agents" / "state") as provider:
        return {t.key: t for t in provider.list_tasks()}


def start(
    project: Path, server: ScriptedModelServer, tmp_path: Path, env_extra: dict | None = None, **sections: dict
) -> subprocess.CompletedProcess:
    """``autonomous start`` with a config that has only these sections (no verification
    section unless given: the defaults decide)."""
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(exist_ok=True)
    auto = {"max_tasks_per_session": 5, "lease_seconds": 60, **sections.pop("autonomous", {})}
    path.write_text(yaml.safe_dump({"autonomous": auto, **sections}))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = claude_cli_env(server.url, home)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(env_extra or {})
    env = {k: v for k, v in env.items() if v}
    return subprocess.run(
        [sys.executable, "-m", "autonomous", "start"], cwd=project, env=env, capture_output=True, text=True, timeout=400
    )


def events(project: Path) -> list[dict]:
    path = project / ".ai-agents" / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def writes(key: str, files: dict[str, str]) -> list[Rule]:
    """The agent writes ``files`` on its first turn and reports completion; told that the
    checks failed, it claims completion again without changing anything."""
    again = Rule(
        name=f"{key}: claims again",
        match=Match(contains=f"Task {key}:", last_user_contains="verification FAILED", has_tools=True),
        response=Response(text=report("it is fine", list(files))),
    )
    return [again, *complete_task_rules(f"Task {key}:", files=files)]


def test_a_claim_without_changes_is_not_done_and_the_run_exits_1(project: Path, tmp_path: Path) -> None:
    make_tasks(project, NewTask("[CALC-1.1] Add subtract()", acceptance_criteria=["calc.subtract exists"]))
    liar = Rule(
        name="claims done",
        match=Match(contains="CALC-1.1", has_tools=True),
        response=Response(text="## Task Complete\n" + report("subtract() added", ["calc.py"])),
    )
    with ScriptedModelServer([liar]) as server:
        proc = start(project, server, tmp_path)
    assert proc.returncode == 1, proc.stderr
    task = state(project)["CALC-1.1"]
    assert task.status is TaskStatus.BLOCKED
    assert "the task changed nothing" in task.notes[-1].text
    assert git(project, "log", "--format=%s").splitlines() == ["init"]


def test_a_change_that_breaks_the_detected_suite_is_not_done_and_names_the_test(project: Path, tmp_path: Path) -> None:
    make_tasks(project, NewTask("[CALC-1.1] Make add() faster"))
    broken = "def add(a, b):\n    return a - b\n"
    with ScriptedModelServer(writes("CALC-1.1", {"calc.py": broken})) as server:
        proc = start(project, server, tmp_path)
    assert proc.returncode == 1, proc.stderr
    task = state(project)["CALC-1.1"]
    assert task.status is TaskStatus.BLOCKED
    verification = [n.text for n in task.notes if n.text.startswith("Verification FAILED")]
    assert verification, [n.text for n in task.notes]
    assert "tests.test_calc::test_add" in verification[-1]  # the failing test, by name
    assert "-m pytest -q" in verification[-1] and "change set: 1 file, +1 -1: calc.py (+1, -1)" in verification[-1]
    assert "passed before the run, fails now" in verification[-1]
    baseline = [e for e in events(project) if e["kind"] == "warning" and "baseline" in e.get("message", "")]
    assert not baseline  # the suite passed before the run: nothing to report at start


def test_a_suite_failing_before_the_run_is_reported_and_not_blamed(project: Path, tmp_path: Path) -> None:
    (project / "tests" / "test_legacy.py").write_text("def test_legacy_parser():\n    assert 1 == 2\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a failing test")
    make_tasks(
        project,
        NewTask("[CALC-1.1] Add a README"),
        NewTask("[CALC-1.2] Break add"),
    )
    rules = [
        *writes("CALC-1.2", {"calc.py": "def add(a, b):\n    return 0\n"}),
        *writes("CALC-1.1", {"README.md": "# calc\n"}),
    ]
    with ScriptedModelServer(rules) as server:
        proc = start(project, server, tmp_path)
    assert "already fails before the first task" in proc.stderr and "test_legacy_parser" in proc.stderr
    tasks = state(project)
    readme = tasks["CALC-1.1"]
    assert readme.status is TaskStatus.DONE, [n.text for n in readme.notes]
    evidence = next(n.text for n in readme.notes if n.text.startswith("Verification passed"))
    assert "no new failures" in evidence
    # the second task makes it worse: a new failing test, named
    assert tasks["CALC-1.2"].status is TaskStatus.BLOCKED and proc.returncode == 1
    worse = next(n.text for n in tasks["CALC-1.2"].notes if n.text.startswith("Verification FAILED"))
    assert "tests.test_calc::test_add" in worse and "more tests fail" in worse
    meta = tasks["META"]
    assert any(n.text.startswith("Baseline before the first task") for n in meta.notes)


def test_run_in_background_is_refused_and_a_task_without_its_work_is_not_done(project: Path, tmp_path: Path) -> None:
    make_tasks(project, NewTask("[CALC-1.1] Generate the docs"))
    rules = [
        Rule(
            name="background",
            match=Match(contains="CALC-1.1", turn=1, has_tools=True),
            response=Response(
                text="Generating in the background.",
                tool_use=[ToolCall("Bash", {"command": "echo docs > docs.txt", "run_in_background": True})],
            ),
        ),
        Rule(
            name="claims done",
            match=Match(contains="CALC-1.1", has_tool_result=True, has_tools=True),
            response=Response(text=report("docs generated", ["docs.txt"])),
        ),
    ]
    with ScriptedModelServer(rules) as server:
        proc = start(project, server, tmp_path, verification={"max_attempts": 1})
    assert proc.returncode == 1, proc.stderr
    assert not (project / "docs.txt").exists()
    results = [e for e in events(project) if e["kind"] == "tool_result" and e.get("name") == "Bash"]
    assert results and all(r["is_error"] for r in results) and "run_in_background" in results[0]["excerpt"]
    task = state(project)["CALC-1.1"]
    assert task.status is TaskStatus.BLOCKED and "the task changed nothing" in task.notes[-1].text


def test_review_requests_changes_then_approves(project: Path, tmp_path: Path) -> None:
    make_tasks(
        project,
        NewTask("[CALC-1.1] Add a greeting file", acceptance_criteria=["hello.txt says hello"]),
    )
    verdict = '```json\n{{"status": "complete", "verdict": "{v}", "summary": "{s}", "criteria": [{{"criterion": "hello.txt says hello", "met": {m}, "reason": "{r}"}}]}}\n```'  # noqa: E501
    rules = [
        Rule(
            name="review: tries to write",
            times=1,
            match=Match(contains="# Review of task CALC-1.1", turn=1, has_tools=True),
            response=Response(tool_use=[ToolCall("Write", {"file_path": "hello.txt", "content": "REVIEWER\n"})]),
        ),
        Rule(
            name="review: changes",
            times=1,
            match=Match(contains="# Review of task CALC-1.1", has_tool_result=True, has_tools=True),
            response=Response(text=verdict.format(v="changes", s="wrong text", m="false", r="it says hi, not hello")),
        ),
        Rule(
            name="review: approve",
            match=Match(contains="# Review of task CALC-1.1", has_tools=True),
            response=Response(text=verdict.format(v="approve", s="says hello", m="true", r="hello.txt is hello")),
        ),
        Rule(
            name="fix",
            match=Match(last_user_contains="it says hi, not hello", has_tools=True),
            response=Response(
                text="Fixing.", tool_use=[ToolCall("Write", {"file_path": "hello.txt", "content": "hello\n"})]
            ),
        ),
        Rule(
            name="fixed",
            match=Match(contains="it says hi, not hello", has_tool_result=True, has_tools=True),
            response=Response(text=report("hello.txt says hello", ["hello.txt"])),
        ),
        *writes("CALC-1.1", {"hello.txt": "hi\n"}),
    ]
    with ScriptedModelServer(rules) as server:
        proc = start(project, server, tmp_path, verification={"review": True})
        reviews = [r for r in server.message_requests() if "# Review of task" in r.conversation.text]
    assert proc.returncode == 0, proc.stderr
    assert (project / "hello.txt").read_text() == "hello\n"
    task = state(project)["CALC-1.1"]
    assert task.status is TaskStatus.DONE
    texts = [n.text for n in task.notes]
    first = next(t for t in texts if t.startswith("Verification FAILED"))
    assert "review requested changes" in first
    assert "review NOT MET: hello.txt says hello (it says hi, not hello)" in first
    last = [t for t in texts if t.startswith("Verification passed")][-1]
    assert "Review: approved" in last and "review met: hello.txt says hello" in last
    # the reviewer saw the diff, and its tools are read-only: its Write was refused
    assert reviews and "+hello" in reviews[-1].conversation.text and "REVIEWER" not in reviews[-1].conversation.text
    writes_ = [e for e in events(project) if e["kind"] == "tool_result" and e.get("name") == "Write"]
    assert [w["is_error"] for w in writes_] == [False, True, False]  # agent, reviewer (refused), agent
    # its turns count against the task: the task's total includes the two review runs
    outcomes = [e for e in events(project) if e["kind"] == "outcome"]
    assert len(outcomes) == 4 and task.turns == sum(int(o["turns"]) for o in outcomes)
    assert git(project, "log", "--format=%s").splitlines()[0].startswith("CALC-1.1")


def usage_limit(resets_at: int) -> Rule:
    """The usage limiter refusing a subscription login, as the API answers (429 and its headers)."""
    return Rule(
        name="usage limit",
        times=1,
        match=Match(has_tools=True),
        response=Response(
            error={"status": 429, "type": "rate_limit_error", "message": "usage limit"},
            headers={
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(resets_at),
                "anthropic-ratelimit-unified-representative-claim": "seven_day_opus",
                "anthropic-ratelimit-unified-overage-status": "rejected",
            },
        ),
    )


SUBSCRIPTION = {"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-test"}


def test_a_rejected_usage_limit_waits_until_resets_at_then_goes_on(project: Path, tmp_path: Path) -> None:
    import time

    make_tasks(project, NewTask("[CALC-1.1] Add a README"))
    # the reset must still lie ahead when the CLI's first request arrives (after start-up and the baseline)
    rules = [usage_limit(int(time.time()) + 25), *writes("CALC-1.1", {"README.md": "# calc\n"})]
    with ScriptedModelServer(rules) as server:
        proc = start(project, server, tmp_path, SUBSCRIPTION, autonomous={"max_rate_limit_wait": 120})
    assert proc.returncode == 0, proc.stderr
    limits = [e for e in events(project) if e["kind"] == "rate_limit" and e.get("status") == "rejected"]
    assert limits and limits[0]["limit_type"] == "seven_day_opus"
    waits = [e for e in events(project) if e["kind"] == "rate_limit" and e.get("retry_at")]
    assert waits[0]["retry_at"] == limits[0]["retry_at"]  # resetsAt, not a time read from the message
    assert state(project)["CALC-1.1"].status is TaskStatus.DONE


def test_a_rejected_usage_limit_past_the_allowed_wait_exits_4(project: Path, tmp_path: Path) -> None:
    make_tasks(project, NewTask("[CALC-1.1] Add a README"))
    with ScriptedModelServer([usage_limit(1_900_000_000)]) as server:
        proc = start(project, server, tmp_path, SUBSCRIPTION, autonomous={"max_rate_limit_wait": 60})
    assert proc.returncode == 4, proc.stderr
    task = state(project)["CALC-1.1"]
    assert task.status is TaskStatus.TODO and "Rate limited until 2030-03-17T17:46:40+00:00" in task.notes[-1].text
