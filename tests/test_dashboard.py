"""The dashboard's API and its guard, in process (Starlette's TestClient speaks HTTP to the
real app over the real FileProvider). The browser tests, on a real run, are in
tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from autonomous import scheduler
from autonomous.config import load_config
from autonomous.dashboard import create_app
from autonomous.dashboard.server import LOOPBACK_NAMES, is_loopback
from autonomous.providers.file import FileProvider
from autonomous.tasks import NewTask, Priority, TaskStatus

BASE = "http://127.0.0.1:8787"
HOSTS = [f"{name}:8787" for name in LOOPBACK_NAMES]
LEAK = "sk-ant-api03-NOTEDsecretVALUE0123456789"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".ai-agents").mkdir(parents=True)
    monkeypatch.chdir(root)
    with FileProvider(root / ".ai-agents" / "state") as p:
        p.create_tasks(
            [
                NewTask("META: Shop", labels=["meta"]),
                NewTask("[SHOP-1.1] Cart", priority=Priority.HIGH),
                NewTask("[SHOP-1.2] Price", dependencies=["SHOP-1.1"]),
                NewTask("[SHOP-2.1] Pay"),
            ]
        )
        blocked = p.find_task("SHOP-2.1")
        p.update_task(blocked.id, status=TaskStatus.BLOCKED)
        p.add_note(blocked.id, f"Blocked: the agent printed {LEAK}", "runner")
    return root


def client(project: Path, **options) -> Iterator[TestClient]:
    app = create_app(load_config(None, project_dir=project), **options)
    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture
def web(project: Path) -> Iterator[TestClient]:
    yield from client(project, hosts=HOSTS)


def csrf(web: TestClient) -> str:
    page = web.get("/")
    assert page.status_code == 200
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def status_of(project: Path, key: str) -> str:
    with FileProvider(project / ".ai-agents" / "state") as p:
        return p.find_task(key).status.value


# -- reading ---------------------------------------------------------------------------------------


def test_board_columns_cards_and_meta(web: TestClient) -> None:
    board = web.get("/api/board").json()
    assert board["schema_version"] == 1
    assert list(board["columns"]) == ["todo", "in_progress", "blocked", "in_review", "done", "canceled"]
    assert board["columns"]["in_review"]["total"] == 0
    todo = board["columns"]["todo"]
    assert todo["total"] == 2 and [c["key"] for c in todo["cards"]] == ["SHOP-1.1", "SHOP-1.2"]
    price = todo["cards"][1]
    assert price["waits_on"] == ["SHOP-1.1"] and price["phase"] == 1 and price["priority"] == "normal"
    assert [c["key"] for c in board["columns"]["blocked"]["cards"]] == ["SHOP-2.1"]
    assert board["meta"]["key"] == "META" and board["meta"]["status"] == "todo"


def test_task_page_and_secrets_redacted(web: TestClient) -> None:
    page = web.get("/api/tasks/shop-2.1").json()
    assert page["task"]["key"] == "SHOP-2.1" and page["attempts"] == [] and page["commits"] == []
    assert LEAK not in web.get("/api/tasks/SHOP-2.1").text and "***" in page["task"]["notes"][0]["text"]
    missing = web.get("/api/tasks/NOPE-1")
    assert missing.status_code == 404 and "no task with id or key 'NOPE-1'" in missing.json()["error"]


def test_large_project_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "big"
    (root / ".ai-agents").mkdir(parents=True)
    monkeypatch.chdir(root)
    with FileProvider(root / ".ai-agents" / "state") as p:
        p.create_tasks([NewTask(f"[BIG-{i // 100 + 1}.{i % 100 + 1}] task {i}") for i in range(10_000)])
        expected = [t.key for t in scheduler.order(p.list_tasks())]
    for web in client(root, hosts=HOSTS):
        board = web.get("/api/board").json()
        todo = board["columns"]["todo"]
        assert todo["total"] == 10_000 and len(todo["cards"]) == 50  # one page, not ten thousand cards
        more = web.get("/api/board", params={"column": "todo", "offset": 50}).json()
        assert (
            list(more["columns"]) == ["todo"]
            and [c["key"] for c in more["columns"]["todo"]["cards"]] == expected[50:100]
        )
        keys, offset = [], 0
        while True:
            page = web.get("/api/tasks", params={"offset": offset, "limit": 1000}).json()
            assert page["total"] == 10_000 and len(page["tasks"]) <= 1000
            keys += [t["key"] for t in page["tasks"]]
            offset += 1000
            if offset >= page["total"]:
                break
        assert keys == expected  # the pages, end to end, are `tasks --json` in the same order
        assert web.get("/api/tasks").json()["limit"] == 200
        assert web.get("/api/board", params={"column": "nope"}).status_code == 400


# -- acting ----------------------------------------------------------------------------------------


def test_retry_cancel_priority_need_post_and_the_csrf_token(project: Path, web: TestClient) -> None:
    token = csrf(web)
    assert web.get("/api/tasks/SHOP-2.1/retry").status_code == 405
    refused = web.post("/api/tasks/SHOP-2.1/retry")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert web.post("/api/tasks/SHOP-2.1/retry", headers={"X-CSRF-Token": "guess"}).status_code == 403
    cross = web.post("/api/tasks/SHOP-2.1/retry", headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
    assert status_of(project, "SHOP-2.1") == "blocked"
    done = web.post("/api/tasks/SHOP-2.1/retry", headers={"X-CSRF-Token": token, "Origin": BASE})
    assert done.status_code == 200 and done.json()["task"]["status"] == "todo"
    assert status_of(project, "SHOP-2.1") == "todo"
    with FileProvider(project / ".ai-agents" / "state") as p:
        assert "via dashboard" in p.find_task("SHOP-2.1").notes[-1].author
    headers = {"X-CSRF-Token": token}
    assert web.post("/api/tasks/SHOP-1.2/priority", json={"priority": "urgent"}, headers=headers).status_code == 200
    bad = web.post("/api/tasks/SHOP-1.2/priority", json={"priority": "asap"}, headers=headers)
    assert bad.status_code == 409 and "'asap' is not" in bad.json()["error"]
    assert web.post("/api/tasks/SHOP-1.2/cancel", headers=headers).json()["task"]["status"] == "canceled"
    done_already = web.post("/api/tasks/SHOP-1.2/retry", headers=headers)
    assert done_already.status_code == 409 and "nothing to retry" in done_already.json()["error"]


def test_approve_and_reject_a_task_in_review(project: Path, web: TestClient) -> None:
    """execution.handoff: review from the dashboard: approve and reject answer as the CLI's
    commands do (a note saying who, via the dashboard); a pull request's task is refused."""
    headers = {"X-CSRF-Token": csrf(web)}
    with FileProvider(project / ".ai-agents" / "state") as p:
        for key, note in (
            ("SHOP-1.1", "In review: branch autonomous/SHOP-1.1 (commit abc, worktree w)"),
            ("SHOP-1.2", "In review: pull request #4 https://github.com/acme/shop/pull/4 (branch autonomous/SHOP-1.2)"),
        ):
            claimed = p.claim(p.find_task(key).id, "w1", 60)
            p.release(claimed.id, claimed.claim.token, status=TaskStatus.IN_REVIEW, note=note)
    empty = web.post("/api/tasks/SHOP-1.1/reject", json={"note": " "}, headers=headers)
    assert empty.status_code == 409 and "reject needs a note" in empty.json()["error"]
    rejected = web.post("/api/tasks/SHOP-1.1/reject", json={"note": "call it Basket"}, headers=headers)
    assert rejected.status_code == 200 and rejected.json()["task"]["status"] == "todo"
    with FileProvider(project / ".ai-agents" / "state") as p:
        note = p.find_task("SHOP-1.1").notes[-1]
    assert note.text.startswith("Rejected by ") and note.text.endswith(": call it Basket")
    assert "via dashboard" in note.author
    pull = web.post("/api/tasks/SHOP-1.2/approve", headers=headers)
    assert pull.status_code == 409 and "waits on pull request #4" in pull.json()["error"]
    assert status_of(project, "SHOP-1.2") == "in_review"
    with FileProvider(project / ".ai-agents" / "state") as p:
        p.update_task(p.find_task("SHOP-1.1").id, status=TaskStatus.IN_REVIEW)
    assert web.post("/api/tasks/SHOP-1.1/approve").status_code == 403  # the CSRF token, as for every action
    approved = web.post("/api/tasks/SHOP-1.1/approve", headers=headers)
    assert approved.status_code == 200 and approved.json()["task"]["notes"][-1]["text"].startswith("Approved by ")


def test_read_only_changes_nothing(project: Path) -> None:
    for web in client(project, hosts=HOSTS, read_only=True):
        token = csrf(web)
        assert 'name="read-only" content="true"' in web.get("/").text
        refused = web.post("/api/tasks/SHOP-2.1/retry", headers={"X-CSRF-Token": token})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        assert web.get("/api/status").status_code == 200
    assert status_of(project, "SHOP-2.1") == "blocked"


# -- who may ask -----------------------------------------------------------------------------------


def test_loopback_refuses_other_host_names(web: TestClient) -> None:
    refused = web.get("/api/status", headers={"Host": "attacker.example:8787"})
    assert refused.status_code == 403 and "unexpected Host" in refused.json()["error"]
    assert web.get("/api/status", headers={"Host": "localhost:8787"}).status_code == 200


def test_a_token_is_checked_on_every_request(project: Path) -> None:
    for web in client(project, token="s3cret-token-value"):
        for path in ("/", "/api/status", "/api/tasks", "/api/board", "/static/app.js", "/api/events"):
            assert web.get(path).status_code == 401, path
        assert web.get("/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert web.get("/api/status", headers={"Authorization": "Bearer s3cret-token-value"}).status_code == 200
        first = web.get("/", params={"token": "s3cret-token-value"})
        assert first.status_code == 200 and "HttpOnly; SameSite=Strict" in first.headers["set-cookie"]
        assert web.get("/api/board").status_code == 200  # the page's own requests carry the cookie
        web.cookies.clear()
        assert web.get("/api/board").status_code == 401


def test_what_counts_as_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))


def test_cost_over_time_counts_the_session_and_the_task_in_flight(project: Path, web: TestClient) -> None:
    from autonomous.events import SessionStart, TaskRecorded, UsageUpdate
    from autonomous.events.sinks.files import JsonlSink

    sink = JsonlSink(project / ".ai-agents" / "logs")
    for event in (
        TaskRecorded(key="OLD-1", status="done", cost_usd=5.0, task_id="T-9"),
        SessionStart(session_id="s-2"),
        UsageUpdate(turns=1, cost_usd_estimate=0.1, task_id="T-2"),
        TaskRecorded(key="SHOP-1.1", status="done", cost_usd=0.12, task_id="T-2"),
        UsageUpdate(turns=1, cost_usd_estimate=0.05, task_id="T-3"),
    ):
        sink.handle(event)
    sink.close()
    points = web.get("/api/cost").json()["points"]
    assert [(p["key"], p["cost_usd"]) for p in points] == [("SHOP-1.1", 0.12), (None, 0.17)]  # not the old session


def test_every_provider_feeds_the_board_and_the_task_page(provider, tmp_path: Path) -> None:
    provider.create_tasks(
        [NewTask("META: Shop", labels=["meta"]), NewTask("[SHOP-1.1] Cart"), NewTask("[SHOP-1.2] Price")]
    )
    provider.update_task(provider.find_task("SHOP-1.1").id, status=TaskStatus.BLOCKED)
    app = create_app(load_config(None, project_dir=tmp_path), provider=provider, hosts=HOSTS)
    with TestClient(app, base_url=BASE) as web:
        columns = web.get("/api/board").json()["columns"]
        assert [c["key"] for c in columns["blocked"]["cards"]] == ["SHOP-1.1"]
        assert [c["key"] for c in columns["todo"]["cards"]] == ["SHOP-1.2"]
        retried = web.post("/api/tasks/SHOP-1.1/retry", headers={"X-CSRF-Token": csrf(web)})
        assert retried.status_code == 200, retried.text
        assert provider.find_task("SHOP-1.1").status is TaskStatus.TODO
        page = web.get("/api/tasks/SHOP-1.1").json()
        assert page["task"]["notes"][-1]["text"].startswith("Retry requested by")
        assert web.get("/api/status").json()["tasks"]["total"] == 2
