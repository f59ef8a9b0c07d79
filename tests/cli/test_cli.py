"""The command line through click's CliRunner, and a few real ``python -m autonomous`` runs.

Every error path is checked for the same three things: the exit code, one line on
stderr, and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from autonomous import __version__
from autonomous.cli import main
from autonomous.events import Text
from autonomous.events.sinks.files import JsonlSink
from autonomous.providers.file import FileProvider

SPEC = """\
# Shop

## Phase 1: Basics

- [SHOP-1.1] Create the cart
  - Priority: high
  - Acceptance criteria:
    - a cart holds items
- [SHOP-1.2] Price the cart
  - Depends on: SHOP-1.1

## Phase 2: Checkout

- [SHOP-2.1] Take payment
"""

# DESIGN.md's field names of a task object in every --json output.
TASK_FIELDS = {
    "id",
    "key",
    "title",
    "description",
    "acceptance_criteria",
    "test_steps",
    "status",
    "priority",
    "labels",
    "dependencies",
    "notes",
    "claim",
    "created_at",
    "updated_at",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (``.ai-agents/`` and no config file) as the working directory."""
    root = tmp_path / "proj"
    (root / ".ai-agents").mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    return root


@pytest.fixture
def shop(project: Path) -> Path:
    """The project with the SHOP spec initialised (META + 3 tasks)."""
    (project / "spec.md").write_text(SPEC)
    result = cli("init", "--spec", "spec.md")
    assert result.exit_code == 0, result.output
    return project


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def error_line(result: Result, code: int = 2) -> str:
    """The one stderr line of a failed command."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def provider(project: Path) -> FileProvider:
    return FileProvider(project / ".ai-agents" / "state")


def python_m(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "autonomous", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- version and configuration ------------------------------------------------------------------


def test_version_through_python_m(tmp_path: Path) -> None:
    proc = python_m("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"autonomous, version {__version__}"


def test_config_defaults_without_a_file(project: Path) -> None:
    result = cli("config")
    assert result.exit_code == 0
    assert result.output.startswith("# no config file: all defaults")
    assert "backend: claude-code" in result.output
    data = json.loads(cli("config", "--json").output)
    assert data["schema_version"] == 1 and data["source"] is None
    assert data["config"]["autonomous"]["max_tasks_per_session"] == 10
    assert data["config"]["verification"]["commands"] == "auto"  # detected: nothing in this project
    assert data["verification_commands"]["commands"] == []
    assert data["verification_commands"]["how"].startswith("auto: no test command found")


def test_config_unknown_key_is_one_line_with_file_path_and_suggestion(project: Path) -> None:
    (project / ".ai-agents" / "config.yml").write_text("autonomous:\n  modle: opus\n")
    line = error_line(cli("config"))
    assert "config.yml" in line and "autonomous.modle" in line and "did you mean 'model'" in line


def test_config_hides_secrets_from_the_environment(project: Path) -> None:
    secret = "https://hooks.slack.com/services/T000/B000/sEcReTvAlUe123"
    (project / ".ai-agents" / "config.yml").write_text("progress:\n  slack_webhook: ${SLACK_WEBHOOK_URL}\n")
    for args in (("config",), ("config", "--json")):
        result = cli(*args, env={"SLACK_WEBHOOK_URL": secret})
        assert result.exit_code == 0, result.output
        assert secret not in result.output and "sEcReT" not in result.output
    assert "slack_webhook: '***'" in cli("config", env={"SLACK_WEBHOOK_URL": secret}).output
    data = json.loads(cli("config", "--json", env={"SLACK_WEBHOOK_URL": secret}).output)
    assert data["config"]["progress"]["slack_webhook"] == "***"


def test_config_with_an_unset_variable_is_an_error(project: Path) -> None:
    (project / ".ai-agents" / "config.yml").write_text("progress:\n  slack_webhook: ${SLACK_WEBHOOK_URL}\n")
    line = error_line(cli("config"))
    assert "progress.slack_webhook" in line and "SLACK_WEBHOOK_URL" in line


# -- tasks ----------------------------------------------------------------------------------------


def test_tasks_table_and_status_filter(shop: Path) -> None:
    out = cli("tasks").output
    assert out.index("META") < out.index("SHOP-1.1") < out.index("SHOP-1.2") < out.index("SHOP-2.1")
    provider(shop).update_task(provider(shop).find_task("SHOP-1.1").id, status=_status("done"))
    done = cli("tasks", "--status", "done").output
    assert "SHOP-1.1" in done and "SHOP-1.2" not in done
    line = error_line(cli("tasks", "--status", "finished"))
    assert "--status" in line and "todo" in line


def _status(name: str):
    from autonomous.tasks import TaskStatus

    return TaskStatus(name)


def test_tasks_json_shape(shop: Path) -> None:
    data = json.loads(cli("tasks", "--json").output)
    assert set(data) == {"schema_version", "tasks"} and data["schema_version"] == 1
    assert [t["key"] for t in data["tasks"]] == ["META", "SHOP-1.1", "SHOP-1.2", "SHOP-2.1"]
    for task in data["tasks"]:
        assert set(task) >= TASK_FIELDS, TASK_FIELDS - set(task)
    one = data["tasks"][1]
    assert (one["status"], one["priority"]) == ("todo", "high")
    assert one["acceptance_criteria"] == ["a cart holds items"]
    by_key = {t["key"]: t for t in data["tasks"]}
    assert by_key["SHOP-1.2"]["dependencies"] == [by_key["SHOP-1.1"]["id"]]


def test_tasks_json_streams_compact_pages_and_filters(shop: Path) -> None:
    output = cli("tasks", "--json").output
    assert output.startswith('{"schema_version":1,"tasks":[{') and output.count("\n") == 1
    assert json.loads(cli("tasks", "--json", "--pretty").output) == json.loads(output)
    page = json.loads(cli("tasks", "--json", "--limit", "2", "--offset", "1").output)
    assert [t["key"] for t in page["tasks"]] == ["SHOP-1.1", "SHOP-1.2"]
    todo = json.loads(cli("tasks", "--json", "--status", "todo", "--offset", "3").output)
    assert [t["key"] for t in todo["tasks"]] == ["SHOP-2.1"]


def test_tasks_table_pages(shop: Path) -> None:
    out = cli("tasks", "--limit", "2").output
    assert "SHOP-1.1" in out and "SHOP-1.2" not in out
    assert out.endswith("Showing tasks 1-2; more with --offset 2 (--limit 0 shows all).\n")
    rest = cli("tasks", "--offset", "2").output
    assert "SHOP-1.2" in rest and "SHOP-2.1" in rest and "Showing" not in rest
    assert "No tasks here" in cli("tasks", "--offset", "9").output


def test_tasks_add_refuses_a_title_number_beyond_the_range(shop: Path) -> None:
    before = len(provider(shop).list_tasks())
    line = error_line(cli("tasks", "add", "--title", "[B-99999999999999999999.1] x"))
    assert "--title" in line and "out of range" in line and "999,999,999" in line
    line = error_line(cli("tasks", "add", "--title", f"[A-{'9' * 5000}.1] x"))
    assert "5000 digits" in line
    assert len(provider(shop).list_tasks()) == before


def test_empty_project_has_no_tasks(project: Path) -> None:
    assert "No tasks" in cli("tasks").output
    assert json.loads(cli("tasks", "--json").output) == {"schema_version": 1, "tasks": []}


def test_tasks_add_with_dependencies_by_key_and_by_id(shop: Path) -> None:
    cart_id = provider(shop).find_task("SHOP-1.1").id
    result = cli("tasks", "add", "--title", "Send receipts", "--depends-on", "SHOP-2.1", "--depends-on", cart_id)
    assert result.exit_code == 0 and result.output.startswith("Created ")
    data = json.loads(cli("tasks", "add", "--title", "Refunds", "--priority", "low", "--json").output)
    assert data["task"]["priority"] == "low"
    receipts = next(t for t in provider(shop).list_tasks() if t.title == "Send receipts")
    assert set(receipts.dependencies) == {provider(shop).find_task("SHOP-2.1").id, cart_id}


def test_tasks_add_with_an_unknown_dependency_is_refused(shop: Path) -> None:
    before = len(provider(shop).list_tasks())
    line = error_line(cli("tasks", "add", "--title", "Orphan", "--depends-on", "NOPE-9"))
    assert "NOPE-9" in line
    assert len(provider(shop).list_tasks()) == before


def test_tasks_show_by_key_and_by_id_with_notes_and_why_it_waits(shop: Path) -> None:
    task = provider(shop).find_task("SHOP-1.2")
    provider(shop).add_note(task.id, "prices come from the catalogue", author="alice")
    by_key = cli("tasks", "show", "SHOP-1.2").output
    assert by_key == cli("tasks", "show", task.id).output
    assert "prices come from the catalogue" in by_key and "alice" in by_key
    assert "Skipping SHOP-1.2 - blocked by: SHOP-1.1 (todo)" in by_key
    data = json.loads(cli("tasks", "show", "shop-1.2", "--json").output)
    assert data["schema_version"] == 1 and data["ready"] is False
    assert data["task"]["key"] == "SHOP-1.2" and data["waiting"].startswith("Skipping SHOP-1.2")
    assert data["task"]["notes"][0]["text"] == "prices come from the catalogue"
    assert "next:      ready" in cli("tasks", "show", "SHOP-1.1").output


def test_tasks_show_unknown_task(shop: Path) -> None:
    assert "NOPE" in error_line(cli("tasks", "show", "NOPE"))


def test_tasks_update_status_priority_and_note(shop: Path) -> None:
    result = cli(
        "tasks", "update", "SHOP-2.1", "--status", "blocked", "--priority", "urgent", "--note", "waiting on PSP"
    )
    assert result.exit_code == 0, result.output
    task = provider(shop).find_task("SHOP-2.1")
    assert (task.status.value, task.priority.value) == ("blocked", "urgent")
    assert task.notes[-1].text == "waiting on PSP"
    assert "nothing to update" in error_line(cli("tasks", "update", "SHOP-2.1"))
    assert "--status" in error_line(cli("tasks", "update", "SHOP-2.1", "--status", "finished"))


def test_tasks_update_of_a_claimed_task_needs_force(shop: Path) -> None:
    task = provider(shop).find_task("SHOP-1.1")
    provider(shop).claim(task.id, "elsewhere:123:abcdef", 600)
    line = error_line(cli("tasks", "update", "SHOP-1.1", "--status", "todo"), code=1)
    assert "elsewhere:123:abcdef" in line and "force" in line
    assert provider(shop).get_task(task.id).status.value == "in_progress"
    result = cli("tasks", "update", "SHOP-1.1", "--status", "todo", "--force")
    assert result.exit_code == 0, result.output
    after = provider(shop).get_task(task.id)
    assert after.status.value == "todo" and after.claim is None


# -- next -------------------------------------------------------------------------------------------


def test_next_and_explain(shop: Path) -> None:
    result = cli("next", "--explain")
    lines = result.output.splitlines()
    assert lines[0].startswith("Next: SHOP-1.1")
    assert "Skipping SHOP-1.2 - blocked by: SHOP-1.1 (todo)" in lines
    assert any(line.startswith("Skipping SHOP-2.1 - blocked by: SHOP-1.1 (todo), SHOP-1.2 (todo)") for line in lines)


def test_next_json_shape(shop: Path) -> None:
    output = cli("next", "--json").output
    data = json.loads(output)
    assert data["schema_version"] == 1 and data["task"]["key"] == "SHOP-1.1"
    assert set(data["task"]) >= TASK_FIELDS
    assert (data["ordering"], data["waiting_count"]) == ("strict", 2)
    assert "waiting" not in data  # the reasons only with --explain
    assert "\n" not in output.strip() and output.startswith('{"schema_version":1,')  # compact by default
    explained = json.loads(cli("next", "--json", "--explain").output)
    waiting = {w["key"]: w for w in explained["waiting"]}
    assert list(waiting) == ["SHOP-1.2", "SHOP-2.1"]  # scheduling order
    assert [b["key"] for b in waiting["SHOP-1.2"]["blocked_by"]] == ["SHOP-1.1"]
    assert waiting["SHOP-2.1"]["blocked_by_count"] == 2
    capped = json.loads(cli("next", "--json", "--explain", "--limit", "1").output)
    assert [w["key"] for w in capped["waiting"]] == ["SHOP-1.2"] and capped["waiting_count"] == 2
    pretty = cli("next", "--json", "--pretty").output
    assert pretty.startswith('{\n  "schema_version": 1,') and json.loads(pretty) == data


def test_next_explain_is_capped_and_says_how_many_more_wait(shop: Path) -> None:
    lines = cli("next", "--explain", "--limit", "1").output.splitlines()
    assert lines == [
        "Next: SHOP-1.1 (T-2) [SHOP-1.1] Create the cart  [high]",
        "Skipping SHOP-1.2 - blocked by: SHOP-1.1 (todo)",
        "... and 1 more waiting (--limit shows more).",
    ]
    cart = provider(shop).find_task("SHOP-1.1")
    provider(shop).claim(cart.id, "elsewhere:1:abc", 600)
    assert cli("next").output == "Nothing is ready: 3 open task(s) wait (see --explain).\n"
    assert json.loads(cli("next", "--json").output)["waiting_count"] == 3


def test_next_json_with_nothing_to_do(project: Path) -> None:
    data = json.loads(cli("next", "--json").output)
    assert data["schema_version"] == 1 and data["task"] is None
    assert "Nothing to do" in cli("next").output


# -- init ---------------------------------------------------------------------------------------------


def test_init_exit_codes(project: Path) -> None:
    (project / "spec.md").write_text(SPEC)
    assert cli("init", "--spec", "spec.md", "--dry-run").exit_code == 0
    assert not (project / ".project_state.json").exists()
    assert cli("init", "--spec", "spec.md").exit_code == 0
    assert (project / ".project_state.json").exists()
    assert "already initialized" in error_line(cli("init", "--spec", "spec.md"))
    assert cli("init", "--spec", "spec.md", "--force").exit_code == 0
    assert len(provider(project).list_tasks()) == 4  # --force never duplicates
    assert "missing.md" in error_line(cli("init", "--spec", "missing.md", "--force"))


# -- start, status, logs, stop, resume --------------------------------------------------------------


def test_start_dry_run_prints_the_plan_and_spends_nothing(shop: Path, tmp_path: Path) -> None:
    from autonomous.testing import ScriptedModelServer, claude_cli_env

    home = tmp_path / "home"
    home.mkdir()
    with ScriptedModelServer() as server:
        env = {**claude_cli_env(server.url, home), "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(
            [sys.executable, "-m", "autonomous", "start", "--dry-run"],
            cwd=shop,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert server.requests == []
    assert proc.returncode == 0, proc.stderr
    assert "Execution plan" in proc.stdout and "Prompt of the first task (SHOP-1.1)" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert all(t.status.value == "todo" and t.claim is None for t in provider(shop).list_tasks())


def test_status_text_and_json(shop: Path) -> None:
    text = cli("status").output
    assert "never run" in text and "3 remaining" in text
    data = json.loads(cli("status", "--json").output)
    assert data["schema_version"] == 1 and data["state"] == "never_run"
    assert data["tasks"]["remaining"] == 3 and data["tasks"]["completed"] == 0


def test_status_of_an_empty_project_through_python_m(project: Path) -> None:
    proc = python_m("status", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "0 done" in proc.stdout


def test_logs_tail(shop: Path) -> None:
    sink = JsonlSink(shop / ".ai-agents" / "logs")
    for n in range(5):
        sink.handle(Text(text=f"message {n}", task_id="T-2"))
    sink.close()
    lines = cli("logs", "--tail", "2").output.splitlines()
    assert len(lines) == 2 and "message 3" in lines[0] and "message 4" in lines[1]
    events = [json.loads(line) for line in cli("logs", "--tail", "3", "--json").output.splitlines()]
    assert [e["text"] for e in events] == ["message 2", "message 3", "message 4"]
    assert cli("logs", "--tail", "0").output == ""


def test_logs_without_events(project: Path) -> None:
    result = cli("logs")
    assert result.exit_code == 0 and result.output == ""


def test_stop_without_a_runner(project: Path) -> None:
    result = cli("stop")
    assert result.exit_code == 1
    assert "no runner" in result.output.lower()


def test_resume_without_a_previous_session(shop: Path) -> None:
    result = cli("resume")
    assert result.exit_code == 0
    assert "never_run" in result.output and "start a new session" in result.output
    data = json.loads(cli("resume", "--json").output)
    assert data["schema_version"] == 1 and data["state"] == "never_run"


# -- a damaged store ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("tasks",), ("tasks", "--json"), ("next",), ("status",), ("tasks", "show", "X"), ("start", "--dry-run")]
)
def test_corrupt_tasks_db_is_one_line_naming_the_path_and_left_untouched(project: Path, args: tuple[str, ...]) -> None:
    db = project / ".ai-agents" / "state" / "tasks.db"
    db.parent.mkdir(parents=True)
    garbage = b"this is not a database\x00\x01" * 50
    db.write_bytes(garbage)
    line = error_line(cli(*args))
    assert str(db) in line or "tasks.db" in line
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in db.parent.iterdir()) == ["tasks.db"]


def test_corrupt_tasks_db_through_python_m(project: Path) -> None:
    db = project / ".ai-agents" / "state" / "tasks.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"garbage" * 100)
    proc = python_m("tasks", cwd=project)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "tasks.db" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- demo and model-server argument handling (the runs themselves: tests/e2e/test_demo.py) ------------


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    line = error_line(cli("demo", str(target)))
    assert "not empty" in line and str(target) in line
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_model_server_check_and_bad_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yml"
    scenario.write_text("rules:\n  - match: {contains: X}\n    response: {text: hi}\n")
    result = cli("model-server", "--scenario", str(scenario), "--check")
    assert result.exit_code == 0 and "ok: 1 rules" in result.output
    scenario.write_text("rules:\n  - match: {turn: one}\n    response: {text: hi}\n")
    assert "rules[0].match.turn" in error_line(cli("model-server", "--scenario", str(scenario), "--check"))


def test_model_server_serves_until_terminated(tmp_path: Path) -> None:
    import signal
    import urllib.request

    scenario = tmp_path / "s.yml"
    scenario.write_text("default: {text: scripted hello}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autonomous", "model-server", "--scenario", str(scenario), "--quiet"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(url + "/v1/messages", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["content"][0]["text"] == "scripted hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [("bogus",), ("tasks", "show"), ("logs", "--tail", "-1"), ("start", "--backend", "gpt"), ("tasks", "--frobnicate")],
)
def test_usage_errors_are_one_line(project: Path, args: tuple[str, ...]) -> None:
    line = error_line(cli(*args))
    assert line.startswith("error: ") and "--help" in line


def test_demo_without_the_sdk_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "claude_agent_sdk" else real(name, *a)
    )
    line = error_line(cli("demo", str(tmp_path / "d")))
    assert "pip install 'autonomous-runner[sdk]'" in line
    assert not (tmp_path / "d").exists()


def test_init_include_optional_is_the_config_key_set_once_at_load(project: Path) -> None:
    """``--include-optional`` is ``initializer.include_optional`` given on the command line:
    it wins over the file, and the file's value holds without it."""
    kiro = Path(__file__).resolve().parents[1] / "fixtures" / "import" / "kiro-tasks.md"
    (project / "tasks.md").write_text(kiro.read_text(encoding="utf-8"), encoding="utf-8")
    (project / ".ai-agents" / "config.yml").write_text("initializer:\n  include_optional: false\n")
    dry = cli("init", "--spec", "tasks.md", "--format", "kiro", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    result = cli("init", "--spec", "tasks.md", "--format", "kiro", "--include-optional", "--json")
    assert result.exit_code == 0, result.output
    statuses = {t["key"]: t["status"] for t in json.loads(result.output)["created"]}
    assert statuses["2.3"] == "todo" and statuses["3.2"] == "todo"  # optional, and included
    shutil.rmtree(project / ".ai-agents" / "state")
    (project / ".project_state.json").unlink()
    (project / ".ai-agents" / "config.yml").write_text("initializer:\n  include_optional: true\n")
    again = cli("init", "--spec", "tasks.md", "--format", "kiro", "--skip-optional", "--json")
    assert again.exit_code == 0, again.output
    statuses = {t["key"]: t["status"] for t in json.loads(again.output)["created"]}
    assert statuses["2.3"] == "canceled" and statuses["3.2"] == "canceled"  # the flag wins over the file
