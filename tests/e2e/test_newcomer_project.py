"""A task commits only what it changed, in a project set up the way a new user's is.

The project: a git repository with one commit, and beside it untracked files of the
user's own: ``.env`` holding a token, ``notes.txt``, the spec, the tool's config (with a
literal Slack webhook URL) and no ``.gitignore``. ``autonomous init`` and ``autonomous
start`` run as the user would run them, through the REAL Claude Code CLI (bundled with
claude-agent-sdk) against the scripted model server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from e2e_project import (
    API_KEY,
    FILES,
    SPEC,
    TOKEN,
    WEBHOOK,
    autonomous,
    env_for,
    git,
    init,
    newcomer_project,
    task_states,
)

from autonomous.backends.base import RunOptions
from autonomous.config import parse_config
from autonomous.errors import RunnerBusy
from autonomous.events import Outcome
from autonomous.providers.file import FileProvider
from autonomous.runner import AutonomousRunner
from autonomous.tasks import NewTask
from autonomous.testing.cli_env import bundled_claude_path
from autonomous.testing.model_server import (
    ErrorSpec,
    Match,
    Response,
    Rule,
    ScriptedModelServer,
    ToolCall,
    complete_task_rules,
)
from autonomous.testing.scripted_backend import ScriptedBackend, complete

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]


def rules() -> list[Rule]:
    out: list[Rule] = []
    for key in ("CALC-2.1", "CALC-1.2", "CALC-1.1"):  # later keys first: their prompts quote earlier notes
        out += complete_task_rules(f"Task {key}:", files=FILES[key])
    return out


def commits_by_key(project: Path) -> dict[str, list[str]]:
    """Task key -> the files of its commit (merges and the first commit aside)."""
    found: dict[str, list[str]] = {}
    for line in git(project, "log", "--no-merges", "--format=%H %s").splitlines():
        sha, subject = line.split(" ", 1)
        key = subject.split(":", 1)[0]
        if key.startswith("CALC-"):
            assert key not in found, f"{key} committed twice"
            found[key] = sorted(git(project, "show", "--name-only", "--format=", sha).split())
    return found


def untracked(project: Path) -> set[str]:
    out = git(project, "status", "--porcelain", "--untracked-files=all")
    return {line[3:] for line in out.splitlines() if line.startswith("??")}


def assert_user_files_untouched(project: Path) -> None:
    assert (project / ".env").read_text() == f"MY_TOKEN={TOKEN}\n"
    assert (project / "notes.txt").read_text() == "remember the milk\n"
    assert {".env", "notes.txt", "spec.md", ".ai-agents/config.yml", ".project_state.json"} <= untracked(project)
    history = git(project, "log", "-p", "--all")
    assert TOKEN not in history and WEBHOOK not in history and API_KEY not in history
    status = git(project, "status", "--porcelain", "--untracked-files=all", "--ignored=no")
    assert ".ai-agents/state" not in status and ".ai-agents/logs" not in status and "worktrees" not in status


@pytest.mark.parametrize("workers", [1, 2])
def test_each_task_commit_holds_exactly_what_its_agent_wrote(tmp_path: Path, workers: int) -> None:
    project = newcomer_project(
        tmp_path / "proj",
        execution={"ordering": "phases"},
        verification={"commands": ["python -m compileall -q ."], "require_changes": True},
    )
    with ScriptedModelServer(rules()) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        proc = autonomous(project, env, "start", "--workers", str(workers))
    assert proc.returncode == 0, proc.stderr
    states = task_states(project)
    assert {k: states[k]["status"] for k in FILES} == dict.fromkeys(FILES, "done")
    assert commits_by_key(project) == {key: sorted(files) for key, files in FILES.items()}
    assert_user_files_untouched(project)
    assert not any("__pycache__" in p for p in git(project, "ls-files").split())  # verification's leftovers
    claimed = [
        json.loads(line)["key"]
        for line in (project / ".ai-agents" / "logs" / "events.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "task_claimed"
    ]
    assert sorted(claimed) == sorted(FILES)  # none run twice


def _no_work_done(project: Path, head: str) -> None:
    assert git(project, "rev-parse", "HEAD").strip() == head
    states = task_states(project)
    assert {states[k]["status"] for k in FILES} == {"todo"}
    assert all(n["author"] != "runner" for k in FILES for n in states[k]["notes"])
    assert_user_files_untouched(project)


def test_claude_cli_missing_stops_before_any_claim(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj", autonomous={"claude_path": str(tmp_path / "no" / "claude")})
    with ScriptedModelServer(rules()) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        head = git(project, "rev-parse", "HEAD").strip()
        proc = autonomous(project, env, "start")
        assert server.message_requests() == []
    assert proc.returncode == 2
    assert "claude_path" in proc.stderr and "Traceback" not in proc.stderr
    _no_work_done(project, head)


def test_claude_cli_not_logged_in_stops_before_any_claim(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj")
    with ScriptedModelServer(rules()) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        head = git(project, "rev-parse", "HEAD").strip()
        env.pop("ANTHROPIC_API_KEY")
        proc = autonomous(project, env, "start")
        assert server.message_requests() == []
    assert proc.returncode == 2
    assert "not logged in" in proc.stderr and "Traceback" not in proc.stderr
    _no_work_done(project, head)


def test_a_refused_key_ends_the_session_after_one_request(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj")
    refuse = Rule(name="401", response=Response(error=ErrorSpec(status=401, message="invalid x-api-key")))
    with ScriptedModelServer([refuse]) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        head = git(project, "rev-parse", "HEAD").strip()
        proc = autonomous(project, env, "start")
        tool_requests = [r for r in server.message_requests() if r.conversation.has_tools]
    assert proc.returncode == 2, proc.stderr
    assert len(tool_requests) <= 1
    assert git(project, "rev-parse", "HEAD").strip() == head
    states = task_states(project)
    assert {states[k]["status"] for k in FILES} == {"todo"}
    assert_user_files_untouched(project)


def test_an_agent_that_writes_the_api_key_into_a_file_commits_nothing(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj", execution={"on_failure": "stop"})
    leak = [
        Rule(
            name="leak",
            match=Match(contains="Task CALC-1.1:", turn=1, has_tools=True),
            response=Response(
                text="Writing the settings.",
                tool_use=(
                    ToolCall("Write", {"file_path": "add.py", "content": "def add(a, b):\n    return a + b\n"}),
                    ToolCall("Write", {"file_path": "settings.py", "content": f"DEBUG = 1\nKEY = '{API_KEY}'\n"}),
                ),
            ),
        ),
        *complete_task_rules("Task CALC-1.1:"),
    ]
    with ScriptedModelServer(leak) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        head = git(project, "rev-parse", "HEAD").strip()
        proc = autonomous(project, env, "start")
    assert proc.returncode == 1, proc.stderr
    assert git(project, "rev-parse", "HEAD").strip() == head
    task = task_states(project)["CALC-1.1"]
    assert task["status"] == "blocked"
    note = task["notes"][-1]["text"]
    assert "settings.py:2" in note and API_KEY not in note
    assert (project / "settings.py").exists() and (project / "add.py").exists()  # the work is kept
    assert_user_files_untouched(project)


def test_a_tracked_file_edited_before_start(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj")
    with ScriptedModelServer(rules()) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        (project / "calc.py").write_text("VERSION = 1  # my edit\n")
        head = git(project, "rev-parse", "HEAD").strip()
        refused = autonomous(project, env, "start")
        assert refused.returncode == 2 and "calc.py" in refused.stderr and "--allow-dirty" in refused.stderr
        assert server.message_requests() == []
        assert git(project, "rev-parse", "HEAD").strip() == head
        project_cfg = project / ".ai-agents" / "config.yml"
        settings = yaml.safe_load(project_cfg.read_text())
        settings["autonomous"]["max_tasks_per_session"] = 2  # phase 1 only: neither task writes calc.py
        project_cfg.write_text(yaml.safe_dump(settings))
        proc = autonomous(project, env, "start", "--allow-dirty")
    assert proc.returncode == 0, proc.stderr
    assert (project / "calc.py").read_text() == "VERSION = 1  # my edit\n"
    assert git(project, "diff", "--name-only").split() == ["calc.py"]  # still an uncommitted edit
    found = commits_by_key(project)
    assert found == {"CALC-1.1": sorted(FILES["CALC-1.1"]), "CALC-1.2": sorted(FILES["CALC-1.2"])}
    note = task_states(project)["CALC-1.1"]["notes"][-1]["text"]
    assert "--allow-dirty" in note and "calc.py" in note


def test_start_before_init_points_to_init(tmp_path: Path) -> None:
    project = newcomer_project(tmp_path / "proj")
    with ScriptedModelServer(rules()) as server:
        proc = autonomous(project, env_for(server, tmp_path), "start")
    assert proc.returncode == 2
    assert "autonomous init --spec FILE" in proc.stderr


def test_outside_git_start_warns_once_and_still_checks_changes(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    project.mkdir()
    (project / "spec.md").write_text(SPEC)
    (project / ".ai-agents").mkdir()
    (project / ".ai-agents" / "config.yml").write_text(
        yaml.safe_dump({"autonomous": {"max_tasks_per_session": 1}, "verification": {"require_changes": True}})
    )
    lying = [Rule(name="claims", match=Match(has_tools=True), response=complete_task_rules("x")[0].response)]
    with ScriptedModelServer(lying) as server:
        env = env_for(server, tmp_path)
        init(project, env)
        proc = autonomous(project, env, "start")
    assert proc.stderr.count("not a git repository: nothing will be committed") == 1
    assert proc.returncode == 1, proc.stderr  # the model claimed completion and changed nothing
    assert task_states(project)["CALC-1.1"]["status"] == "blocked"


# -- one runner per project ------------------------------------------------------------------------


def test_two_runners_started_at_once_through_the_python_api(tmp_path: Path) -> None:
    """20 trials: two threads start a runner on one project at the same instant. The one
    that gets in waits in its backend until the other has returned; if both got in, each
    would wait for the other and the trial fails on its timeout."""
    for trial in range(20):
        project = tmp_path / f"t{trial}"
        project.mkdir()
        with FileProvider(project / ".ai-agents" / "state") as provider:
            provider.create_tasks([NewTask("[T-1.1] one")])
        results = _race_two_runners(project)
        assert len(results) == 2, f"trial {trial}: a runner hung"
        assert isinstance(results[0], RunnerBusy) and results[1] == 0, f"trial {trial}: {results}"
        assert (project / "done.txt").exists()


def _race_two_runners(project: Path) -> list[object]:
    returned = threading.Event()
    gate = threading.Barrier(2)
    results: list[object] = []

    def one() -> None:
        config = parse_config({"autonomous": {"max_tasks_per_session": 1}}, root=project)

        def wait_then_complete(prompt: str, options: RunOptions) -> Outcome:
            returned.wait(30)  # blocks this runner's own loop, in its own thread, until the other returned
            return complete("done.txt")(prompt, options)

        runner = AutonomousRunner(config, backend=ScriptedBackend(default=wait_then_complete))
        gate.wait()
        try:
            results.append(runner.start().exit_code)
        except RunnerBusy as exc:
            results.append(exc)
        finally:
            returned.set()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_runners_started_at_once_through_the_cli(tmp_path: Path) -> None:
    """20 trials: two `autonomous start` processes at once. The model stalls, so the one
    that got in is still running when the other gives up; only one model request ever."""
    stall = [Rule(name="stall", match=Match(has_tools=True), response=Response(stall=True))]
    template = newcomer_project(tmp_path / "template", autonomous={"backend": "anthropic-sdk"})
    with ScriptedModelServer(stall) as server:
        init(template, env_for(server, tmp_path))
    for trial in range(20):
        project = tmp_path / f"t{trial}"
        shutil.copytree(template, project, symlinks=True)
        with ScriptedModelServer(stall) as server:
            env = env_for(server, tmp_path)
            command = [sys.executable, "-m", "autonomous", "start"]
            procs = [
                subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)
            ]
            try:
                finished = _first_to_exit(procs)
                err = finished.communicate()[1].decode()
                assert finished.returncode == 2 and "another runner is running" in err, f"trial {trial}: {err}"
                assert len(server.message_requests()) <= 1
                other = procs[1 - procs.index(finished)]
                assert other.poll() is None, f"trial {trial}: the runner that got in ended early"
            finally:
                for p in procs:
                    p.kill()
                    p.communicate()


def _first_to_exit(procs: list[subprocess.Popen]) -> subprocess.Popen:
    """Whichever process exits first (waits on both, no polling loop with sleeps)."""
    done: list[subprocess.Popen] = []
    cond = threading.Condition()

    def wait(p: subprocess.Popen) -> None:
        p.wait()
        with cond:
            done.append(p)
            cond.notify()

    for p in procs:
        threading.Thread(target=wait, args=(p,), daemon=True).start()
    with cond:
        assert cond.wait_for(lambda: done, timeout=120), "neither runner ended"
        return done[0]
