"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) on
a real run: ``autonomous demo`` (the real Claude Code CLI against the scripted model,
real git, real verification), then ``autonomous dashboard`` as a subprocess.

Waits are on what the page shows (Playwright's selectors), never on the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autonomous.demo import DEMO_TASKS
from autonomous.events import Redactor, WarningEvent
from autonomous.events.bus import EventBus
from autonomous.events.sinks.files import JsonlSink
from autonomous.testing.cli_env import bundled_claude_path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 20_000
BLOCKED, WAITING, REVIEWED = "TODO-4.1", "TODO-4.2", "TODO-4.3"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def autonomous(project: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "autonomous", *args], cwd=project, env=env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the demo, plus a task a person blocked and one that waits on it."""
    target = tmp_path_factory.mktemp("dash") / "demo"
    demo = [sys.executable, "-m", "autonomous", "demo", str(target)]
    proc = subprocess.run(demo, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    autonomous(target, "tasks", "add", "--title", f"[{BLOCKED}] Add tags to todos")
    autonomous(target, "tasks", "update", BLOCKED, "--status", "blocked", "--note", "Blocked: which tag format?")
    autonomous(target, "tasks", "add", "--title", f"[{WAITING}] Filter by tag", "--depends-on", BLOCKED)
    autonomous(target, "tasks", "add", "--title", f"[{REVIEWED}] Sort by date")
    review_note = f"In review: branch autonomous/{REVIEWED} (commit 0123456789ab, worktree w)"
    autonomous(target, "tasks", "update", REVIEWED, "--status", "in_review", "--note", review_note)
    return target


class Dashboard:
    def __init__(self, project: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autonomous", "dashboard", "--port", "0", *args],
            cwd=project,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline()  # "Dashboard: http://127.0.0.1:PORT/[?token=...]"
        assert first.startswith("Dashboard"), first + self.proc.stderr.read()
        self.url = first.split(": ", 1)[1].strip()
        self.base = self.url.split("?", 1)[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def dashboard(project: Path) -> Iterator[Dashboard]:
    server = Dashboard(project)
    yield server
    server.stop()
    assert server.proc.returncode == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # a fresh profile each test
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def tasks_of(project: Path) -> dict[str, dict]:
    return {t["key"]: t for t in json.loads(autonomous(project, "tasks", "--json").stdout)["tasks"]}


def test_the_board_shows_every_task_in_its_column(project: Path, dashboard: Dashboard, page) -> None:
    page.goto(dashboard.url)
    page.wait_for_selector("#board[data-loaded=true]")
    tasks = tasks_of(project)
    for key, task in tasks.items():
        if key == "META":
            meta = page.locator("#meta .card")
            # the tasks added after the run reopened it: done only while every task is
            assert meta.get_attribute("data-key") == "META" and meta.get_attribute("data-status") == "todo"
            continue
        card = page.locator(f'.column[data-column="{task["status"]}"] .card[data-key="{key}"]')
        assert card.count() == 1, f"{key} is not in the {task['status']} column"
    assert page.locator('.column[data-column="done"] .card').count() == len(DEMO_TASKS)
    waiting = page.locator(f'.card[data-key="{WAITING}"] .waits').inner_text()
    assert waiting == f"waits on {BLOCKED}"
    assert page.locator("#progress-text").inner_text() == f"done {len(DEMO_TASKS)} of {len(DEMO_TASKS) + 3}"
    assert "stopped: no work left" in page.locator("#meta").inner_text()


def test_an_event_appears_without_a_reload(project: Path, dashboard: Dashboard, page) -> None:
    page.goto(dashboard.url)
    page.wait_for_selector("#live.on")  # the event stream is connected
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    with EventBus([JsonlSink(project / ".ai-agents" / "logs")], Redactor()) as bus:
        bus.emit(WarningEvent(message="disk almost full on the build box"))
    line = page.wait_for_selector('#events li[data-kind="warning"]:has-text("disk almost full on the build box")')
    assert line is not None and navigations == []


def test_retry_from_the_page_changes_the_status_in_the_store(project: Path, dashboard: Dashboard, page) -> None:
    assert tasks_of(project)[BLOCKED]["status"] == "blocked"
    page.goto(dashboard.url)
    page.click(f'.column[data-column="blocked"] .card[data-key="{BLOCKED}"] button[data-action="retry"]')
    page.wait_for_selector(f'.column[data-column="todo"] .card[data-key="{BLOCKED}"]')
    task = tasks_of(project)[BLOCKED]
    assert task["status"] == "todo"
    assert task["notes"][-1]["text"].startswith("Retry requested by ") and "via dashboard" in task["notes"][-1]["text"]


def test_a_person_rejects_then_approves_a_task_in_review_from_its_page(
    project: Path, dashboard: Dashboard, page
) -> None:
    page.goto(f"{dashboard.url}#/task/{REVIEWED}")
    page.wait_for_selector(f'.task[data-key="{REVIEWED}"][data-status="in_review"] button[data-action="approve"]')
    page.fill("#review-note", "newest first")
    page.click('button[data-action="reject"]')
    page.wait_for_selector(f'.task[data-key="{REVIEWED}"][data-status="todo"]')
    notes = tasks_of(project)[REVIEWED]["notes"]
    assert notes[-1]["text"].startswith("Rejected by ") and notes[-1]["text"].endswith(": newest first")
    autonomous(project, "tasks", "update", REVIEWED, "--status", "in_review")
    page.reload()
    page.click(f'.task[data-key="{REVIEWED}"][data-status="in_review"] button[data-action="approve"]')
    page.wait_for_selector(f'.task[data-key="{REVIEWED}"][data-status="todo"]')
    assert tasks_of(project)[REVIEWED]["notes"][-1]["text"].startswith("Approved by ")


def test_the_task_page_shows_its_diff_and_history(project: Path, dashboard: Dashboard, page) -> None:
    task = DEMO_TASKS[1]
    page.goto(f"{dashboard.url}#/task/{task.key}")
    page.wait_for_selector(f'.task[data-key="{task.key}"]')
    added = page.locator(".diff .add").all_inner_texts()
    for path, content in task.writes.items():
        assert f"+++ b/{path}" in page.locator(".diff .file").all_inner_texts()
        for line in content.splitlines():
            assert f"+{line}" in added, line
    text = page.locator(".task").inner_text()
    assert "Attempts" in text and "Verification evidence" in text and "python -m pytest -q" in text
    assert "exit 0" in text and task.summary.split(".")[0] in text


def test_api_status_is_status_json(project: Path, dashboard: Dashboard) -> None:
    served = httpx.get(f"{dashboard.base}api/status", timeout=30).json()
    printed = json.loads(autonomous(project, "status", "--json").stdout)
    assert served == printed
    assert served["state"] == "completed" and served["schema_version"] == 1


def test_diff_and_show_on_the_real_run(project: Path) -> None:
    task = DEMO_TASKS[1]
    patch = autonomous(project, "diff", task.key).stdout
    for path, content in task.writes.items():
        assert f"+++ b/{path}" in patch and f"+{content.splitlines()[0]}" in patch
    stat = autonomous(project, "diff", task.key, "--stat").stdout
    assert all(path in stat for path in task.writes) and "+++ b/" not in stat
    shown = json.loads(autonomous(project, "tasks", "show", task.key, "--json").stdout)
    (attempt,) = shown["attempts"]
    assert attempt["result"] == "done" and attempt["commit"] and attempt["turns"] > 0
    assert shown["evidence"][0]["passed"] and shown["evidence"][0]["commands"][0]["exit_code"] == 0


def test_off_loopback_every_request_needs_the_token(project: Path, page) -> None:
    server = Dashboard(project, "--host", "0.0.0.0")
    try:
        assert "?token=" in server.url
        token = server.url.split("?token=", 1)[1]
        for path in ("", "api/status", "api/tasks", "api/events", "static/app.js"):
            assert httpx.get(f"{server.base}{path}", timeout=30).status_code == 401, path
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.base}api/status", headers=headers, timeout=30).status_code == 200
        refused = page.goto(server.base)
        assert refused is not None and refused.status == 401
        page.goto(server.url)
        page.wait_for_selector("#board[data-loaded=true]")  # the page's own requests carry the token
        page.wait_for_selector("#live.on")
    finally:
        server.stop()
    assert server.proc.returncode == 0
