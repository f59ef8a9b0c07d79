"""The StateProvider contract (providers/base.py), run against every provider kind.

The ``provider`` fixture (tests/conftest.py) is a fresh, empty store on a fake clock:
leases expire because the test moves the clock, never because it sleeps.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from autonomous import scheduler
from autonomous.errors import ClaimConflict, DependencyCycle, StaleClaim, TaskNotFound
from autonomous.providers.base import SessionRecord
from autonomous.tasks import NewTask, Priority, TaskStatus


def keys(tasks):
    return [t.key for t in tasks]


def create(provider, *titles, **kw):
    return provider.create_tasks([NewTask(title, **kw) for title in titles]).created


# -- create, get, list, find -------------------------------------------------------------------


def test_create_get_list_round_trip(provider, clock):
    result = provider.create_tasks(
        [
            NewTask(
                "[AUTH-1.1] Create login endpoint",
                description="POST /login",
                acceptance_criteria=["returns 200", "sets a cookie"],
                test_steps=["curl -X POST /login"],
                priority=Priority.HIGH,
                labels=["backend", "auth"],
            ),
            NewTask("Write docs"),
        ]
    )
    assert result.existing == []
    first, second = result.created
    assert first.id != second.id
    assert (first.key, second.key) == ("AUTH-1.1", "write-docs")
    got = provider.get_task(first.id)
    assert got.title == "[AUTH-1.1] Create login endpoint"
    assert got.description == "POST /login"
    assert got.acceptance_criteria == ["returns 200", "sets a cookie"]
    assert got.test_steps == ["curl -X POST /login"]
    assert got.priority is Priority.HIGH
    assert got.labels == ["backend", "auth"]
    assert got.status is TaskStatus.TODO
    assert got.claim is None
    assert got.notes == []
    assert got.dependencies == []
    assert got.created_at == first.created_at
    assert abs(got.created_at - clock()) < timedelta(seconds=1)
    assert (got.cost_usd, got.turns) == (0.0, 0)
    assert sorted(t.id for t in provider.list_tasks()) == sorted([first.id, second.id])


def test_list_filters_by_status(provider):
    _, b, c = create(provider, "1.1: a", "1.2: b", "1.3: c")
    provider.update_task(b.id, status=TaskStatus.DONE)
    provider.update_task(c.id, status=TaskStatus.BLOCKED)
    assert keys(provider.list_tasks([TaskStatus.TODO])) == ["1.1"]
    assert sorted(keys(provider.list_tasks([TaskStatus.DONE, TaskStatus.BLOCKED]))) == ["1.2", "1.3"]
    assert provider.list_tasks([TaskStatus.CANCELED]) == []
    assert len(provider.list_tasks()) == 3


def test_get_unknown_task(provider):
    with pytest.raises(TaskNotFound):
        provider.get_task("no-such-id")


def test_find_by_id_key_and_key_in_any_case(provider):
    (task,) = create(provider, "[AUTH-1.2] Add session handling")
    assert provider.find_task(task.id).id == task.id
    assert provider.find_task("AUTH-1.2").id == task.id
    assert provider.find_task("auth-1.2").id == task.id
    with pytest.raises(TaskNotFound):
        provider.find_task("AUTH-9.9")


def test_create_is_idempotent_by_key(provider):
    (first,) = create(provider, "[AUTH-1.1] Create login endpoint")
    again = provider.create_tasks([NewTask("[AUTH-1.1] A different title, same key", description="changed")])
    assert again.created == []
    assert [t.id for t in again.existing] == [first.id]
    assert again.existing[0].title == "[AUTH-1.1] Create login endpoint"  # untouched
    assert len(provider.list_tasks()) == 1


def test_same_key_twice_in_one_batch_creates_one_task(provider):
    result = provider.create_tasks([NewTask("Write docs"), NewTask("Write docs", description="dup")])
    assert len(result.created) == 1
    assert [t.id for t in result.existing] == [result.created[0].id]
    assert len(provider.list_tasks()) == 1


def test_dependencies_resolve_keys_of_the_batch_and_of_existing_tasks(provider):
    (base,) = create(provider, "1.1: base")
    result = provider.create_tasks(
        [
            NewTask("1.3: top", dependencies=["1.2", "1.1"]),
            NewTask("1.2: middle", dependencies=["1.1"]),
        ]
    )
    top, middle = result.created
    assert provider.get_task(top.id).dependencies == [middle.id, base.id]
    assert provider.get_task(middle.id).dependencies == [base.id]
    assert top.dependencies == [middle.id, base.id]


def test_unknown_dependency_key_creates_nothing(provider):
    create(provider, "1.1: base")
    with pytest.raises(TaskNotFound, match=r"9\.9"):
        provider.create_tasks([NewTask("1.2: fine"), NewTask("1.3: broken", dependencies=["9.9"])])
    assert keys(provider.list_tasks()) == ["1.1"]


# -- updates and notes -------------------------------------------------------------------------------


def test_update_fields(provider, clock):
    a, b = create(provider, "1.1: a", "1.2: b")
    clock.advance(5)
    updated = provider.update_task(
        b.id,
        title="1.2: b, renamed",
        description="more",
        acceptance_criteria=["x"],
        test_steps=["y"],
        status=TaskStatus.BLOCKED,
        priority=Priority.URGENT,
        labels=["l"],
        dependencies=[a.id],
    )
    assert updated.title == "1.2: b, renamed"
    assert (updated.description, updated.acceptance_criteria, updated.test_steps) == ("more", ["x"], ["y"])
    assert (updated.status, updated.priority, updated.labels) == (TaskStatus.BLOCKED, Priority.URGENT, ["l"])
    assert updated.dependencies == [a.id]
    assert updated.updated_at > b.updated_at
    assert updated.key == "1.2"  # the key is stable: it is what makes create idempotent
    assert provider.get_task(b.id) == updated
    # only the given fields change
    again = provider.update_task(b.id, status=TaskStatus.TODO)
    assert (again.description, again.priority, again.dependencies) == ("more", Priority.URGENT, [a.id])


def test_update_refuses_unknown_task_and_unknown_dependency(provider):
    (a,) = create(provider, "1.1: a")
    with pytest.raises(TaskNotFound):
        provider.update_task("no-such-id", status=TaskStatus.DONE)
    with pytest.raises(TaskNotFound):
        provider.update_task(a.id, dependencies=["no-such-id"])
    assert provider.get_task(a.id).dependencies == []


def test_notes_keep_order_authors_and_times(provider, clock):
    (task,) = create(provider, "1.1: a")
    provider.add_note(task.id, "first", "alice")
    clock.advance(1)
    note = provider.add_note(task.id, "second", "runner")
    assert (note.text, note.author, note.at) == ("second", "runner", clock())
    notes = provider.get_task(task.id).notes
    assert [(n.text, n.author) for n in notes] == [("first", "alice"), ("second", "runner")]
    assert notes[0].at < notes[1].at
    with pytest.raises(TaskNotFound):
        provider.add_note("no-such-id", "x", "alice")


# -- claims, leases, fencing -------------------------------------------------------------------


def test_claim_renew_release(provider, clock):
    (task,) = create(provider, "1.1: a")
    claimed = provider.claim(task.id, "w1", 60)
    assert claimed.status is TaskStatus.IN_PROGRESS
    assert claimed.claim.worker_id == "w1"
    assert claimed.claim.expires_at == clock() + timedelta(seconds=60)
    token = claimed.claim.token
    clock.advance(30)
    renewed = provider.renew(task.id, token, 60)
    assert renewed.claim.expires_at == clock() + timedelta(seconds=60)
    assert renewed.claim.token == token
    done = provider.release(task.id, token, status=TaskStatus.DONE, note="all good", cost_usd=0.5, turns=7)
    assert done.status is TaskStatus.DONE
    assert done.claim is None
    assert [(n.text, n.author) for n in done.notes] == [("all good", "runner")]
    assert (done.cost_usd, done.turns) == (0.5, 7)
    assert provider.get_task(task.id) == done


def test_release_adds_cost_and_turns_across_claims(provider):
    (task,) = create(provider, "1.1: a")
    first = provider.claim(task.id, "w1", 60)
    provider.release(task.id, first.claim.token, cost_usd=0.25, turns=3)
    second = provider.claim(task.id, "w1", 60)
    done = provider.release(task.id, second.claim.token, status=TaskStatus.DONE, cost_usd=0.5, turns=4)
    assert (done.cost_usd, done.turns) == (0.75, 7)


def test_second_claimer_conflicts(provider):
    (task,) = create(provider, "1.1: a")
    provider.claim(task.id, "w1", 60)
    with pytest.raises(ClaimConflict):
        provider.claim(task.id, "w2", 60)
    assert provider.get_task(task.id).claim.worker_id == "w1"


@pytest.mark.parametrize(
    "status", [TaskStatus.BLOCKED, TaskStatus.DONE, TaskStatus.CANCELED, TaskStatus.IN_PROGRESS, TaskStatus.IN_REVIEW]
)
def test_claim_refuses_tasks_that_are_not_takeable(provider, status):
    (task,) = create(provider, "1.1: a")
    provider.update_task(task.id, status=status)  # in_progress without a claim: someone works by hand
    with pytest.raises(ClaimConflict):
        provider.claim(task.id, "w1", 60)


def test_claim_of_unknown_task(provider):
    with pytest.raises(TaskNotFound):
        provider.claim("no-such-id", "w1", 60)


def test_tokens_grow_and_never_repeat(provider):
    (task,) = create(provider, "1.1: a")
    tokens = []
    for _ in range(4):
        claimed = provider.claim(task.id, "w1", 60)
        tokens.append(claimed.claim.token)
        provider.release(task.id, claimed.claim.token)
    assert tokens == sorted(set(tokens))


def test_released_token_is_stale(provider):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 60).claim.token
    provider.release(task.id, token)
    with pytest.raises(StaleClaim):
        provider.renew(task.id, token, 60)
    with pytest.raises(StaleClaim):
        provider.release(task.id, token, status=TaskStatus.DONE)
    with pytest.raises(StaleClaim):
        provider.add_note(task.id, "late", "w1", token=token)
    with pytest.raises(StaleClaim):
        provider.update_task(task.id, token=token, status=TaskStatus.DONE)
    assert provider.get_task(task.id).status is TaskStatus.TODO


def test_expired_lease_is_taken_over_and_the_old_token_is_fenced(provider, clock):
    (task,) = create(provider, "1.1: a")
    old = provider.claim(task.id, "w1", 10).claim.token
    with pytest.raises(ClaimConflict):
        provider.claim(task.id, "w2", 10)
    clock.advance(10)  # expires_at == now: no longer live
    new = provider.claim(task.id, "w2", 60)
    assert new.claim.worker_id == "w2"
    assert new.claim.token > old
    for write in (
        lambda: provider.renew(task.id, old, 60),
        lambda: provider.release(task.id, old, status=TaskStatus.DONE),
        lambda: provider.add_note(task.id, "late", "w1", token=old),
        lambda: provider.update_task(task.id, token=old, status=TaskStatus.BLOCKED),
    ):
        with pytest.raises(StaleClaim):
            write()
    after = provider.get_task(task.id)
    assert (after.status, after.claim.worker_id, after.notes) == (TaskStatus.IN_PROGRESS, "w2", [])
    # the new owner's writes go through
    provider.add_note(task.id, "mine", "w2", token=new.claim.token)
    provider.update_task(task.id, token=new.claim.token, description="by w2")
    done = provider.release(task.id, new.claim.token, status=TaskStatus.DONE)
    assert (done.status, done.description, keys_of_notes(done)) == (TaskStatus.DONE, "by w2", ["mine"])


def keys_of_notes(task):
    return [n.text for n in task.notes]


def test_a_lapsed_claim_nobody_took_can_still_be_renewed(provider, clock):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 10).claim.token
    clock.advance(20)
    renewed = provider.renew(task.id, token, 10)
    assert renewed.claim.live(clock())


def test_write_without_token_on_live_claim_conflicts_unless_forced(provider, clock):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 60).claim.token
    with pytest.raises(ClaimConflict):
        provider.update_task(task.id, status=TaskStatus.DONE)
    with pytest.raises(ClaimConflict):
        provider.update_task(task.id, priority=Priority.URGENT)
    forced = provider.update_task(task.id, priority=Priority.URGENT, force=True)
    assert forced.claim is None
    assert forced.status is TaskStatus.TODO  # back in the pool: its worker was fenced out
    assert forced.priority is Priority.URGENT
    for write in (
        lambda: provider.renew(task.id, token, 60),
        lambda: provider.release(task.id, token, status=TaskStatus.DONE),
        lambda: provider.add_note(task.id, "late", "w1", token=token),
        lambda: provider.update_task(task.id, token=token, status=TaskStatus.DONE),
    ):
        with pytest.raises(StaleClaim):
            write()
    # a new claim gets a token above every earlier one
    assert provider.claim(task.id, "w2", 60).claim.token > token


def test_forced_status_is_kept(provider):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 60).claim.token
    forced = provider.update_task(task.id, status=TaskStatus.DONE, force=True)
    assert (forced.status, forced.claim) == (TaskStatus.DONE, None)
    with pytest.raises(StaleClaim):
        provider.release(task.id, token)
    assert provider.get_task(task.id).status is TaskStatus.DONE


def test_status_change_over_a_lapsed_claim_fences_its_holder(provider, clock):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 10).claim.token
    clock.advance(20)
    changed = provider.update_task(task.id, status=TaskStatus.BLOCKED)  # no live claim: no force needed
    assert (changed.status, changed.claim) == (TaskStatus.BLOCKED, None)
    with pytest.raises(StaleClaim):
        provider.release(task.id, token)


def test_untokened_notes_are_accepted_on_a_claimed_task(provider):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 60).claim.token
    provider.add_note(task.id, "a person's remark", "alice")
    assert provider.renew(task.id, token, 60).notes[0].text == "a person's remark"


def test_holder_updates_with_its_token(provider):
    (task,) = create(provider, "1.1: a")
    token = provider.claim(task.id, "w1", 60).claim.token
    updated = provider.update_task(task.id, token=token, description="progress")
    assert (updated.description, updated.claim.token) == ("progress", token)
    with pytest.raises(StaleClaim):
        provider.update_task(task.id, token=token + 1, description="guess")


# -- claim_next ---------------------------------------------------------------------------------


def documented_example(provider):
    """The scheduler docstring's example (tests/test_scheduler.py): created out of order."""
    return provider.create_tasks(
        [
            NewTask("[AUTH-2.1] Add password reset", priority=Priority.HIGH),
            NewTask("[AUTH-1.3] Validate login form"),
            NewTask("[AUTH-1.1] Create login endpoint", priority=Priority.HIGH),
            NewTask("META: Authentication Project", priority=Priority.LOW),
            NewTask("[AUTH-1.2] Add session handling", priority=Priority.HIGH),
        ]
    ).created


def drain(provider, ordering):
    """Claim and finish tasks one at a time; the keys in the order they were handed out."""
    order = []
    while (task := provider.claim_next("w1", 60, ordering)) is not None:
        order.append(task.key)
        provider.release(task.id, task.claim.token, status=TaskStatus.DONE)
    return order


@pytest.mark.parametrize("ordering", scheduler.ORDERINGS)
def test_claim_next_follows_the_documented_order(provider, ordering):
    documented_example(provider)
    assert drain(provider, ordering) == ["AUTH-1.1", "AUTH-1.2", "AUTH-1.3", "AUTH-2.1"]
    assert provider.get_task(provider.meta_task().id).status is TaskStatus.TODO  # META never handed out


def test_claim_next_returns_a_claimed_task(provider, clock):
    documented_example(provider)
    task = provider.claim_next("w1", 60)
    assert task.key == "AUTH-1.1"
    assert (task.status, task.claim.worker_id) == (TaskStatus.IN_PROGRESS, "w1")
    assert task.claim.expires_at == clock() + timedelta(seconds=60)
    assert provider.get_task(task.id) == task


def test_policies_differ_while_work_is_in_progress(make_provider):
    taken = {}
    for ordering in scheduler.ORDERINGS:
        provider = make_provider()
        documented_example(provider)
        taken[ordering] = [t.key for t in iter(lambda p=provider, o=ordering: p.claim_next("w", 60, o), None)]
    assert taken["strict"] == ["AUTH-1.1"]  # 1.2 waits for 1.1 to be done
    assert taken["phases"] == ["AUTH-1.1", "AUTH-1.2", "AUTH-1.3"]  # phase 2 waits for phase 1
    assert taken["dependencies"] == ["AUTH-1.1", "AUTH-1.2", "AUTH-1.3", "AUTH-2.1"]


def test_claim_next_respects_dependencies_and_counts_canceled_as_done(provider):
    provider.create_tasks(
        [
            NewTask("Build the base"),
            NewTask("Use the base", dependencies=["build-the-base"], priority=Priority.URGENT),
        ]
    )
    base = provider.find_task("build-the-base")
    assert provider.claim_next("w1", 60, "dependencies").key == "build-the-base"
    assert provider.claim_next("w2", 60, "dependencies") is None
    provider.update_task(base.id, status=TaskStatus.CANCELED, force=True)
    assert provider.claim_next("w2", 60, "dependencies").key == "use-the-base"


def test_in_review_is_kept_listed_and_holds_back_what_follows(provider):
    """A verified task waiting for a person: released to in_review with its note, listed by
    that status, never handed out, and (not satisfied) gating its dependants and, under the
    phase policies, the next phase; approval (done) lets them go."""
    first, _, later = create(provider, "1.1: first", "1.2: second", "2.1: later")
    provider.update_task(later.id, dependencies=[first.id])
    claimed = provider.claim_next("w1", 60, "phases")
    assert claimed.key == "1.1"
    waiting = provider.release(claimed.id, claimed.claim.token, status=TaskStatus.IN_REVIEW, note="ready for review")
    assert (waiting.status, waiting.claim, waiting.notes[-1].text) == (TaskStatus.IN_REVIEW, None, "ready for review")
    assert provider.get_task(first.id).status is TaskStatus.IN_REVIEW
    assert keys(provider.list_tasks([TaskStatus.IN_REVIEW])) == ["1.1"]
    for ordering in scheduler.ORDERINGS:
        decisions = {d.task.key: d for d in scheduler.plan(provider.list_tasks(), ordering=ordering)}
        assert not decisions["1.1"].ready and "in_review" in decisions["1.1"].explain()
        assert not decisions["2.1"].ready
    assert provider.claim_next("w1", 60, "phases").key == "1.2"
    assert provider.claim_next("w1", 60, "dependencies") is None  # 2.1 waits for 1.1 in review
    provider.update_task(first.id, status=TaskStatus.DONE)
    assert provider.claim_next("w1", 60, "dependencies").key == "2.1"


@pytest.mark.parametrize("ordering", scheduler.ORDERINGS)
def test_review_unblocks_dependents_lets_a_task_in_review_satisfy_what_follows(provider, ordering):
    """execution.review_unblocks_dependents: the store's own candidate query (next_ready and
    claim_next) counts in_review as finished, as the scheduler does; without it they wait."""
    first, second, later = create(provider, "1.1: first", "1.2: second", "2.1: later")
    provider.update_task(later.id, dependencies=[first.id])
    provider.update_task(second.id, dependencies=[first.id])
    claimed = provider.claim_next("w1", 60, ordering)
    assert claimed.key == "1.1"
    provider.release(claimed.id, claimed.claim.token, status=TaskStatus.IN_REVIEW)
    assert provider.next_ready(ordering) is None
    assert provider.count_ready(ordering) == 0
    assert provider.claim_next("w1", 60, ordering) is None
    expected = scheduler.next_ready(provider.list_tasks(), ordering=ordering, review_satisfies=True)
    assert expected is not None and expected.key == "1.2"
    assert provider.next_ready(ordering, review_satisfies=True).key == "1.2"
    plan = scheduler.plan(provider.list_tasks(), None, ordering, review_satisfies=True)
    assert provider.count_ready(ordering, review_satisfies=True) == sum(d.ready for d in plan) > 0
    assert provider.claim_next("w1", 60, ordering, review_satisfies=True).key == "1.2"
    assert provider.get_task(first.id).status is TaskStatus.IN_REVIEW  # never handed out itself


def test_claim_next_skips_blocked_and_handles_tracker_ids(provider):
    _, b, _ = create(provider, "ARK-12 second", "ARK-3 first", "Something else")
    provider.update_task(b.id, status=TaskStatus.BLOCKED)
    assert drain(provider, "strict") == ["ARK-12", "something-else"]


def test_expired_lease_returns_the_task_to_claim_next(provider, clock):
    (task,) = create(provider, "1.1: a")
    first = provider.claim_next("w1", 30)
    assert provider.claim_next("w2", 30) is None
    clock.advance(31)
    second = provider.claim_next("w2", 30)
    assert (second.id, second.claim.worker_id) == (task.id, "w2")
    assert second.claim.token > first.claim.token


def test_claim_next_exclude(provider):
    create(provider, "Alpha", "Beta")
    alpha = provider.find_task("alpha")
    assert provider.claim_next("w1", 60, "dependencies", exclude=[alpha.id]).key == "beta"
    assert provider.claim_next("w1", 60, "dependencies", exclude=[alpha.id]) is None


def test_claim_next_with_only_meta_or_nothing(provider):
    assert provider.claim_next("w1", 60) is None
    create(provider, "META: Project")
    assert provider.claim_next("w1", 60) is None


def test_claim_next_raises_on_a_dependency_cycle(provider):
    provider.create_tasks(
        [
            NewTask("Alpha", dependencies=["beta"]),
            NewTask("Beta", dependencies=["alpha"]),
            NewTask("Gamma"),  # ready, yet the plan as a whole is refused, as the scheduler does
        ]
    )
    with pytest.raises(DependencyCycle) as raised:
        provider.claim_next("w1", 60, "dependencies")
    assert set(raised.value.cycle) == {"alpha", "beta"}
    beta = provider.find_task("beta")
    provider.update_task(beta.id, dependencies=[])
    assert drain(provider, "dependencies") == ["beta", "alpha", "gamma"]


def test_a_reopened_task_can_close_a_cycle(provider):
    provider.create_tasks([NewTask("1.1: a", dependencies=["1.2"]), NewTask("1.2: b")])
    a, b = provider.find_task("1.1"), provider.find_task("1.2")
    provider.update_task(a.id, status=TaskStatus.DONE)
    assert provider.claim_next("w1", 60).key == "1.2"  # strict: 1.1 is done, so 1.2 is first
    provider.update_task(a.id, status=TaskStatus.TODO)  # 1.1 waits for 1.2, and 1.2 for 1.1
    with pytest.raises(DependencyCycle):
        provider.claim_next("w1", 60)
    provider.update_task(b.id, status=TaskStatus.DONE, force=True)
    assert provider.claim_next("w1", 60).key == "1.1"


# -- META and sessions -----------------------------------------------------------------------------


def test_meta_task(provider):
    assert provider.meta_task() is None
    create(provider, "1.1: a")
    assert provider.meta_task() is None
    documented_example(provider)
    assert provider.meta_task().title == "META: Authentication Project"


def test_meta_by_label(provider):
    (task,) = create(provider, "Project tracking", labels=["meta"])
    assert provider.meta_task().id == task.id
    assert provider.claim_next("w1", 60) is None


# -- a person's actions (autonomous.actions: the CLI's and the dashboard's) ------------------------


def test_edit_changes_what_a_task_says_and_its_dependencies(provider):
    from autonomous import actions

    a, b, c = create(provider, "1.1: a", "1.2: b", "2.1: c")
    edited = actions.edit(
        provider, "2.1", "alice", title="2.1: c, clearer", description="why", criteria=["x", "y"], test_steps=["t"],
        add_dependencies=["1.2", a.id],
    )  # fmt: skip
    assert (edited.title, edited.description) == ("2.1: c, clearer", "why")
    assert (edited.acceptance_criteria, edited.test_steps) == (["x", "y"], ["t"])
    assert edited.dependencies == [b.id, a.id] and edited.key == "2.1"
    assert edited.notes[-1].author == "alice" and edited.notes[-1].text.startswith("Edited by alice")
    assert actions.edit(provider, c.id, "alice", remove_dependencies=["1.2"]).dependencies == [a.id]
    assert provider.get_task(c.id).dependencies == [a.id]


def test_edit_refuses_a_cycle_before_writing(provider):
    from autonomous import actions

    a, b = create(provider, "1.1: a", "1.2: b")
    actions.edit(provider, b.id, "alice", add_dependencies=[a.id])
    with pytest.raises(DependencyCycle):
        actions.edit(provider, a.id, "alice", add_dependencies=[b.id], title="1.1: renamed")
    assert provider.get_task(a.id).title == "1.1: a" and provider.get_task(a.id).dependencies == []


def test_retry_cancel_and_priority(provider):
    from autonomous import actions

    a, _ = create(provider, "1.1: a", "1.2: b")
    claimed = provider.claim(a.id, "w1", 60)
    provider.release(a.id, claimed.claim.token, status=TaskStatus.BLOCKED, note="Blocked: stuck")
    retried = actions.retry(provider, "1.1", "bob")
    assert retried.status is TaskStatus.TODO and retried.notes[-1].text.startswith("Retry requested by bob")
    assert actions.set_priority(provider, "1.2", "urgent", "bob").priority is Priority.URGENT
    assert actions.cancel(provider, "1.2", "bob").status is TaskStatus.CANCELED
    assert provider.claim_next("w1", 60).id == a.id  # canceled 1.2 does not hold anything up
    with pytest.raises(ClaimConflict):
        actions.retry(provider, a.id, "bob")  # a live claim: the worker is on it
    with pytest.raises(ClaimConflict):
        actions.cancel(provider, a.id, "bob")
    assert provider.get_task(a.id).status is TaskStatus.IN_PROGRESS


def test_meta_follows_the_session_and_the_work(provider):
    from autonomous import actions

    assert actions.sync_meta(provider, running=True) is None  # no META: nothing to do
    documented_example(provider)
    meta = provider.meta_task()
    work = [t for t in provider.list_tasks() if t.id != meta.id]
    assert actions.sync_meta(provider, running=True) == (0, len(work))
    assert provider.get_task(meta.id).status is TaskStatus.IN_PROGRESS
    assert actions.sync_meta(provider, running=False) == (0, len(work))
    assert provider.get_task(meta.id).status is TaskStatus.TODO
    for t in work:
        provider.update_task(t.id, status=TaskStatus.DONE)
    assert actions.sync_meta(provider, running=False) == (len(work), len(work))
    assert provider.get_task(meta.id).status is TaskStatus.DONE
    assert provider.claim_next("w1", 60) is None  # a META in any status is never handed out


def test_sessions_upsert_and_list_newest_first(provider, clock):
    start = clock()
    for i in range(3):
        provider.record_session(SessionRecord(id=f"s{i}", worker_id="w1", started_at=start + timedelta(minutes=i)))
    provider.record_session(
        SessionRecord(
            id="s0",
            worker_id="w1",
            started_at=start,
            ended_at=start + timedelta(minutes=5),
            state="stopped",
            summary={"tasks_completed": ["AUTH-1.1"], "cost_usd": 1.25},
        )
    )
    sessions = provider.list_sessions()
    assert [s.id for s in sessions] == ["s2", "s1", "s0"]
    assert sessions[2].state == "stopped"
    assert sessions[2].ended_at == start + timedelta(minutes=5)
    assert sessions[2].summary == {"tasks_completed": ["AUTH-1.1"], "cost_usd": 1.25}
    assert sessions[0].ended_at is None and sessions[0].state == "running"
    assert [s.id for s in provider.list_sessions(limit=2)] == ["s2", "s1"]


# -- claim_next is the scheduler's decision ------------------------------------------------------


PREFIXES = ("AUTH", "DB")


def random_title(rng: random.Random, i: int) -> str:
    phase, number, letter = rng.randint(1, 3), rng.randint(1, 3), rng.choice(["", "", "a", "b"])
    return rng.choice(
        [
            f"META: tracking {i}",
            f"[{rng.choice(PREFIXES)}-{phase}.{number}{letter}] bracketed {i}",
            f"{phase}.{number}{letter}: leading {i}",
            f"Phase {phase}.{number} worded {i}",
            f"Task {phase}.{number}{letter} worded {i}",
            f"ARK-{rng.randint(1, 30)} tracker {i}",
            f"Plain task {i}",
        ]
    )


def random_store(provider, clock, kit, rng: random.Random) -> None:
    """A random task set built through the provider's own API, as real use builds one."""
    count = rng.randint(1, 14)
    all_keys = [f"k{i}" for i in range(count)]
    batch_of = {}  # key -> batch number; a new batch sometimes starts at the same clock time
    batch = 0
    for key in all_keys:
        batch_of[key] = batch
        batch += rng.random() < 0.2
    new_tasks = []
    for i, key in enumerate(all_keys):
        # mostly earlier tasks; sometimes any task, which can close a cycle
        deps = [
            rng.choice(all_keys[:i] if i and rng.random() < 0.95 else all_keys)
            for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))
        ]
        new_tasks.append(
            NewTask(
                random_title(rng, i),
                key=key,
                priority=rng.choice(list(Priority)),
                labels=["meta"] if rng.random() < 0.05 else [],
                dependencies=[d for d in deps if batch_of[d] <= batch_of[key]],  # later batches: unknown yet
            )
        )
    for number in range(batch + 1):
        provider.create_tasks([t for t in new_tasks if batch_of[t.key] == number])
        if rng.random() < 0.5:
            clock.advance(rng.choice([0.000001, 1]))
    tasks = provider.list_tasks()
    by_key = {t.key: t for t in tasks}
    # later dependencies (keys not yet created when their dependant was)
    for task in tasks:
        if rng.random() < 0.03:
            extra = rng.choice(tasks)
            provider.update_task(task.id, dependencies=[*task.dependencies, extra.id])
    for task in tasks:
        roll = rng.random()
        if roll < 0.01:
            provider.update_task(task.id, status=TaskStatus.IN_REVIEW)
        elif roll < 0.15:
            provider.update_task(task.id, status=TaskStatus.DONE)
        elif roll < 0.2:
            provider.update_task(task.id, status=TaskStatus.CANCELED)
        elif roll < 0.27:
            provider.update_task(task.id, status=TaskStatus.BLOCKED)
        elif roll < 0.32:
            provider.update_task(task.id, status=TaskStatus.IN_PROGRESS)  # by hand, no claim
        elif roll < 0.5:
            claimed = provider.claim(task.id, f"w{task.id}", rng.choice([5, 10, 20, 60]))
            if rng.random() < 0.3:  # the holder sets it back to todo, still holding the claim
                provider.update_task(task.id, token=claimed.claim.token, status=TaskStatus.TODO)
    if kit.add_dangling_dependency and rng.random() < 0.15:
        kit.add_dangling_dependency(provider, rng.choice(list(by_key.values())).id, "T-ghost")
    clock.advance(rng.choice([0, 10, 30]))  # some leases lapse, some end exactly now


def assert_same_pick(provider, clock, ordering, exclude=()):
    tasks = provider.list_tasks()
    try:
        expected = scheduler.next_ready(tasks, clock(), ordering, exclude)
    except DependencyCycle as cycle:
        with pytest.raises(DependencyCycle) as raised:
            provider.claim_next("w-check", 60, ordering, exclude)
        assert raised.value.cycle == cycle.cycle
        return None
    got = provider.claim_next("w-check", 60, ordering, exclude)
    assert (got.id if got else None) == (expected.id if expected else None), [t.to_dict() for t in tasks]
    return got


@pytest.mark.parametrize("ordering", scheduler.ORDERINGS)
def test_claim_next_picks_what_the_scheduler_picks(make_provider, clock, provider_kit, ordering):
    """For random task sets of every title pattern, status, priority, dependency and lease
    state, and as the set evolves, claim_next takes exactly ``scheduler.next_ready``'s task."""
    rng = random.Random(f"equivalence-{ordering}")
    picks = 0
    for _case in range(120):
        provider = make_provider()
        random_store(provider, clock, provider_kit, rng)
        for _step in range(8):
            exclude = [t.id for t in provider.list_tasks() if rng.random() < 0.1]
            got = assert_same_pick(provider, clock, ordering, exclude)
            if got is None:
                break
            picks += 1
            action = rng.random()
            if action < 0.5:
                provider.release(got.id, got.claim.token, status=TaskStatus.DONE)
            elif action < 0.6:
                provider.release(got.id, got.claim.token, status=TaskStatus.BLOCKED)
            elif action < 0.75:
                provider.release(got.id, got.claim.token)
            elif action < 0.85:
                clock.advance(rng.choice([60, 61]))  # every lease lapses (ours exactly now, or before)
        provider.close()
    assert picks > 120  # the generator really exercises claiming (about 140 to 340 by policy)


# -- the reading paths: iter_tasks, count_by_status, next_ready, count_ready ------------------------


def test_iter_tasks_streams_every_task_in_scheduling_order(provider, clock):
    _meta, later, first, tracker, plain = create(provider, "META: project", "2.1: later", "1.1: first", "ARK-7 x", "y")
    dep = provider.create_tasks([NewTask("1.2: second", dependencies=["1.1", "ARK-7"])]).created[0]
    provider.add_note(first.id, "a note", "me")
    provider.update_task(later.id, status=TaskStatus.DONE)
    provider.release(first.id, provider.claim(first.id, "w", 60).claim.token, note="worked", cost_usd=0.5, turns=3)
    listed = provider.list_tasks()
    streamed = list(provider.iter_tasks())
    assert [t.id for t in streamed] == [t.id for t in scheduler.order(listed)]
    assert keys(streamed) == ["META", "1.1", "1.2", "2.1", "ARK-7", "y"]
    by_id = {t.id: t.to_dict() for t in listed}
    assert [t.to_dict() for t in streamed] == [by_id[t.id] for t in streamed]  # notes, deps, claim, cost alike
    assert [n.text for n in streamed[1].notes] == ["a note", "worked"]
    assert streamed[2].dependencies == [first.id, tracker.id]
    assert keys(provider.iter_tasks([TaskStatus.DONE])) == ["2.1"]
    assert keys(provider.iter_tasks([TaskStatus.TODO], limit=2)) == ["META", "1.1"]
    assert keys(provider.iter_tasks(limit=2, offset=3)) == ["2.1", "ARK-7"]
    assert keys(provider.iter_tasks(offset=10)) == []
    assert dep.id in {t.id for t in streamed} and plain.id in {t.id for t in streamed}


def test_the_store_can_be_used_while_tasks_stream(provider):
    create(provider, *[f"1.{i}: task {i}" for i in range(1, 1201)])
    seen = 0
    for task in provider.iter_tasks():
        if seen % 400 == 0:
            provider.add_note(task.id, "seen", "me")
            assert provider.get_task(task.id).notes[-1].text == "seen"
        seen += 1
    assert seen == 1200
    stream = provider.iter_tasks()
    next(stream)
    stream.close()  # abandoned half way: the snapshot is released, writes go on
    provider.update_task(provider.find_task("1.1").id, status=TaskStatus.DONE)


def test_count_by_status_leaves_meta_out_and_sums_cost(provider):
    create(provider, "META: project", "1.1: a", "1.2: b", "1.3: c", "1.4: d")
    tasks = {t.key: t for t in provider.list_tasks()}
    provider.update_task(tasks["1.2"].id, status=TaskStatus.BLOCKED)
    provider.update_task(tasks["1.4"].id, status=TaskStatus.CANCELED)
    provider.release(tasks["1.1"].id, provider.claim(tasks["1.1"].id, "w", 60).claim.token,
                     status=TaskStatus.DONE, cost_usd=1.25, turns=2)  # fmt: skip
    provider.claim(tasks["1.3"].id, "w", 60)
    counts = provider.count_by_status()
    assert counts.by_status == {
        TaskStatus.TODO: 0, TaskStatus.IN_PROGRESS: 1, TaskStatus.BLOCKED: 1, TaskStatus.IN_REVIEW: 0,
        TaskStatus.DONE: 1, TaskStatus.CANCELED: 1,
    }  # fmt: skip
    assert (counts.total, counts.open) == (4, 2)
    assert counts.cost_usd == pytest.approx(1.25)


@pytest.mark.parametrize("ordering", scheduler.ORDERINGS)
def test_next_ready_and_count_ready_are_the_schedulers_answers(make_provider, clock, provider_kit, ordering):
    """On random task sets: next_ready is the task claim_next would take (and claims
    nothing), count_ready the number of ready decisions of ``scheduler.plan``."""
    rng = random.Random(f"reading-{ordering}")
    for _case in range(40):
        provider = make_provider()
        random_store(provider, clock, provider_kit, rng)
        tasks = provider.list_tasks()
        exclude = [t.id for t in tasks if rng.random() < 0.1]
        try:
            decisions = scheduler.plan(tasks, clock(), ordering)
        except DependencyCycle as cycle:
            with pytest.raises(DependencyCycle) as raised:
                provider.next_ready(ordering, exclude)
            assert raised.value.cycle == cycle.cycle
            with pytest.raises(DependencyCycle):
                provider.count_ready(ordering)
            provider.close()
            continue
        expected = scheduler.next_ready(tasks, clock(), ordering, exclude)
        got = provider.next_ready(ordering, exclude)
        assert (got.id if got else None) == (expected.id if expected else None)
        assert provider.count_ready(ordering) == sum(d.ready for d in decisions)
        assert [t.to_dict() for t in provider.list_tasks()] == [t.to_dict() for t in tasks]  # nothing claimed
        claimed = provider.claim_next("w-check", 60, ordering, exclude)
        assert (claimed.id if claimed else None) == (expected.id if expected else None)
        provider.close()
