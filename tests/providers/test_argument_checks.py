"""The checks ``StateProvider`` makes once, in base.py, for every store: a malformed
``update_task`` or ``release`` field is one clear ProviderError and nothing is written;
values a person or a script passes as text become the task's enums; repeats in
dependencies collapse; an unknown ordering policy is refused by every reading of the queue.

The ``provider`` fixture (tests/conftest.py) runs each test over every provider kind.
"""

from __future__ import annotations

import pytest

from autonomous.errors import ProviderError
from autonomous.providers.base import TaskChanges
from autonomous.tasks import NewTask, Priority, TaskStatus


def create(provider, *titles):
    return provider.create_tasks([NewTask(title) for title in titles]).created


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "finished"}, r"update_task: status 'finished' is not one of todo, in_progress, .*canceled"),
        ({"priority": "highest"}, r"update_task: priority 'highest' is not one of .*urgent"),
        ({"title": 7}, r"update_task: title must be text, not int"),
        ({"labels": "backend"}, r"update_task: labels must be a list of text, not str"),
        ({"test_steps": ["ok", 3]}, r"update_task: test_steps must be a list of text"),
    ],
)
def test_a_malformed_field_is_refused_before_anything_is_written(provider, changes, message):
    (task,) = create(provider, "1.1: a")
    with pytest.raises(ProviderError, match=message) as refused:
        provider.update_task(task.id, description="never written", **changes)
    assert "\n" not in str(refused.value)
    assert provider.get_task(task.id) == task


def test_text_values_become_the_enums_and_dependency_repeats_collapse(provider):
    a, b, c = create(provider, "1.1: a", "1.2: b", "1.3: c")
    updated = provider.update_task(c.id, status="blocked", priority="high", dependencies=[a.id, b.id, a.id])
    assert (updated.status, updated.priority) == (TaskStatus.BLOCKED, Priority.HIGH)
    assert updated.dependencies == [a.id, b.id]
    assert provider.get_task(c.id) == updated


def test_release_refuses_an_unknown_status_and_keeps_the_claim(provider):
    (task,) = create(provider, "1.1: a")
    claimed = provider.claim(task.id, "w1", 60)
    with pytest.raises(ProviderError, match=r"release: status 'finished' is not one of todo"):
        provider.release(task.id, claimed.claim.token, status="finished", note="never written")
    assert provider.get_task(task.id) == claimed
    released = provider.release(task.id, claimed.claim.token, status="done")
    assert (released.status, released.claim) == (TaskStatus.DONE, None)


def test_changes_copy_the_callers_lists_and_name_only_the_given_fields():
    labels = ["x"]
    changes = TaskChanges(labels=labels, status=TaskStatus.TODO)
    labels.append("y")
    assert changes.given() == {"status": TaskStatus.TODO, "labels": ["x"]}


def test_an_unknown_ordering_is_refused_by_every_reading_of_the_queue(provider):
    (task,) = create(provider, "1.1: a")
    for ask in (
        lambda: provider.next_ready("sideways"),
        lambda: provider.count_ready("sideways"),
        lambda: provider.claim_next("w1", 60, "sideways"),
    ):
        with pytest.raises(ValueError, match=r"unknown ordering 'sideways'; expected one of strict, phases"):
            ask()
    assert provider.get_task(task.id).claim is None
    assert provider.claim_next("w1", 60, "phases", exclude=[task.id, task.id]) is None
    assert provider.claim_next("w1", 60, "phases").id == task.id
