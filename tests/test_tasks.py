from datetime import timedelta

from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, utcnow


def test_task_json_round_trip_uses_design_field_names():
    now = utcnow()
    task = Task(
        id="T-1",
        key="AUTH-1.1",
        title="[AUTH-1.1] Create login endpoint",
        description="desc",
        acceptance_criteria=["returns 200"],
        test_steps=["curl it"],
        status=TaskStatus.IN_PROGRESS,
        priority=Priority.HIGH,
        labels=["backend"],
        dependencies=["T-0"],
        notes=[Note("started", "runner", now)],
        claim=Claim("host:1:ab", now + timedelta(minutes=5), 7),
        cost_usd=0.25,
        turns=3,
    )
    data = task.to_dict()
    assert list(data)[:14] == [
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
    ]
    assert data["status"] == "in_progress" and data["priority"] == "high"
    assert Task.from_dict(data) == task


def test_statuses_that_satisfy_dependencies():
    assert {s for s in TaskStatus if s.satisfied} == {TaskStatus.DONE, TaskStatus.CANCELED}


def test_priority_rank_order():
    assert sorted(Priority, key=lambda p: p.rank) == [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]


def test_new_task_derives_key_from_title():
    assert NewTask(title="[DB-2.3b] Index things").key == "DB-2.3b"
    assert NewTask(title="Polish the docs").key == "polish-the-docs"
    assert NewTask(title="Polish", key="custom").key == "custom"


def test_meta_detected_by_title_or_label():
    assert Task(id="1", key="META", title="META: Project").is_meta
    assert Task(id="2", key="x", title="Tracking", labels=["meta"]).is_meta
    assert not Task(id="3", key="y", title="[A-1.1] Work").is_meta


def test_claim_liveness():
    now = utcnow()
    assert Claim("w", now + timedelta(seconds=1), 1).live(now)
    assert not Claim("w", now - timedelta(seconds=1), 1).live(now)
