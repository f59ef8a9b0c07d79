"""The Linear provider against the fake Linear server: what the contract suite cannot show.

Auth, team detection, project set-up, the status mapping by state type, pagination, rate
limits, retries, timeouts, an issue deleted mid-run, the claim race, and how many requests
a task costs. Waits go through an injected ``sleep`` that only records, so nothing here
waits for real except the one timeout test (0.2 s).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from autonomous import scheduler
from autonomous.errors import ClaimConflict, ConfigError, ProviderAuthError, ProviderError, StaleClaim, TaskNotFound
from autonomous.providers import get_provider
from autonomous.providers.linear import (
    LinearGraphQLError,
    LinearProvider,
    entry_body,
    parse_description,
    render_description,
)
from autonomous.tasks import NewTask, Priority, TaskStatus
from autonomous.testing.fake_linear import FakeComment, FakeLinear


@pytest.fixture(scope="module")
def server():
    with FakeLinear() as running:
        yield running


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def make(server, clock, tmp_path, sleeps):
    """make(key=None, **options): a provider on a fresh one-team workspace (or on ``key``'s)."""
    opened = []

    def make(key=None, **options):
        key = key or server.add_workspace(now=clock)
        options = {"project_name": "Demo", "now": clock, "sleep": sleeps, "state_dir": tmp_path, **options}
        provider = LinearProvider(endpoint=server.url, env={"LINEAR_API_KEY": key}, **options)
        provider.key = key
        opened.append(provider)
        return provider

    yield make
    for provider in opened:
        provider.close()


def state_named(server, key, name):
    team = next(iter(server.workspace(key).teams.values()))
    return next(s for s in team.state_list if s.name == name)


# -- auth ----------------------------------------------------------------------------------------


def test_missing_key_variable_names_it(server):
    with pytest.raises(ProviderAuthError, match="MY_LINEAR_KEY is not set"):
        LinearProvider(endpoint=server.url, api_key_env="MY_LINEAR_KEY", env={})


def test_refused_key_names_the_variable(server, tmp_path):
    with LinearProvider(endpoint=server.url, env={"LINEAR_API_KEY": "lin_api_revoked"}, state_dir=tmp_path) as provider:
        with pytest.raises(ProviderAuthError, match=r"rejected the API key in LINEAR_API_KEY \(HTTP 401"):
            provider.list_tasks()
        assert provider.requests == 1  # never retried


def test_key_without_write_permission_names_the_missing_scope(make, server):
    writer = make()
    writer.list_tasks()  # the project exists
    reader = make(server.add_key(writer.key, scopes="read"))
    assert reader.list_tasks() == []  # reading works
    with pytest.raises(ProviderAuthError, match=r"LINEAR_API_KEY: it lacks a permission.*write"):
        reader.create_tasks([NewTask("Write docs")])


def test_the_key_is_sent_bare_not_as_bearer(make, server):
    provider = make()
    provider.list_tasks()
    assert {r.api_key for r in server.requests if r.api_key.startswith("lin_api")} >= {provider.key}
    assert not any(r.api_key.lower().startswith("bearer") for r in server.requests)


# -- team and project ----------------------------------------------------------------------------


def test_the_only_team_is_detected(make):
    provider = make()
    provider.list_tasks()
    assert provider._team.name == "Engineering"


def test_several_teams_are_listed_with_their_ids(make, server, clock):
    key = server.add_workspace(["Engineering", "Design"], now=clock)
    teams = list(server.workspace(key).teams.values())
    with pytest.raises(ConfigError, match="sees 2 Linear teams") as raised:
        make(key).list_tasks()
    for team in teams:
        assert f"{team.name} ({team.key}, id {team.id})" in str(raised.value)
    chosen = make(key, team_id=teams[1].id)
    chosen.create_tasks([NewTask("Draw the logo")])
    assert next(iter(server.workspace(key).issues.values())).team is teams[1]


def test_unknown_team_id_is_a_config_error(make):
    with pytest.raises(ConfigError, match="team_id: Linear has no team 'nope'"):
        make(team_id="nope").list_tasks()


def test_project_is_created_once_then_found(make, server):
    first = make()
    first.list_tasks()
    assert [p.name for p in server.workspace(first.key).projects.values()] == ["Demo"]
    again = make(first.key)
    again.list_tasks()
    assert again.requests_by_operation.get("ProjectCreate") is None
    assert again.project_id == first.project_id
    other = make(first.key, project_name="Other")  # tasks of another project are not ours
    (mine,) = first.create_tasks([NewTask("Mine")]).created
    assert other.list_tasks() == []
    with pytest.raises(TaskNotFound, match="another team or project"):
        other.get_task(mine.id)


def test_without_a_project_the_whole_team_is_the_scope(make):
    provider = make(project_name=None)
    provider.create_tasks([NewTask("Alpha")])
    assert [t.key for t in provider.list_tasks()] == ["alpha"]


# -- mapping ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("Triage", TaskStatus.TODO),
        ("Icebox", TaskStatus.TODO),  # backlog
        ("Ready", TaskStatus.TODO),  # unstarted
        ("Doing", TaskStatus.IN_PROGRESS),
        ("In Review", TaskStatus.IN_REVIEW),  # the started state named like a review
        ("Shipped", TaskStatus.DONE),
        ("Duplicate", TaskStatus.CANCELED),  # any canceled state, whatever it is called
    ],
)
def test_status_is_read_from_the_state_type_not_its_name(make, server, state, status):
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha")]).created
    server.workspace(provider.key).issues[task.id].state = state_named(server, provider.key, state)
    assert provider.get_task(task.id).status is status


@pytest.mark.parametrize(
    ("status", "state_type"),
    [
        (TaskStatus.TODO, "unstarted"),
        (TaskStatus.IN_PROGRESS, "started"),
        (TaskStatus.DONE, "completed"),
        (TaskStatus.CANCELED, "canceled"),
        (TaskStatus.BLOCKED, "unstarted"),
    ],
)
def test_status_is_written_as_the_first_state_of_its_type(make, server, status, state_type):
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha")]).created
    provider.update_task(task.id, status=status)
    issue = server.workspace(provider.key).issues[task.id]
    assert issue.state.type == state_type
    labels = {server.workspace(provider.key).labels[i].name for i in issue.label_ids}
    assert ("blocked" in labels) is (status is TaskStatus.BLOCKED)


def test_in_review_is_the_review_state_when_the_team_has_one_else_a_label(make, server):
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha", labels=["backend"])]).created
    review = provider.update_task(task.id, status=TaskStatus.IN_REVIEW)
    issue = server.workspace(provider.key).issues[task.id]
    assert (review.status, review.labels, issue.state.name) == (TaskStatus.IN_REVIEW, ["backend"], "In Review")
    working = provider.update_task(task.id, status=TaskStatus.IN_PROGRESS)
    assert (working.status, issue.state.name) == (TaskStatus.IN_PROGRESS, "Doing")  # never the review state

    key = server.add_workspace()
    state_named(server, key, "In Review").name = "Waiting"  # a team without a review state
    plain = make(key)
    (other,) = plain.create_tasks([NewTask("Beta")]).created
    review = plain.update_task(other.id, status=TaskStatus.IN_REVIEW)
    issue = server.workspace(key).issues[other.id]
    labels = {server.workspace(key).labels[i].name for i in issue.label_ids}
    assert (review.status, review.labels, issue.state.name, labels) == (
        TaskStatus.IN_REVIEW,
        [],
        "Doing",
        {"in-review"},
    )
    back = plain.update_task(other.id, status=TaskStatus.TODO)
    assert back.status is TaskStatus.TODO and not issue.label_ids


def test_blocked_is_a_label_and_done_wins_over_a_stale_one(make, server):
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha", labels=["backend"])]).created
    blocked = provider.update_task(task.id, status=TaskStatus.BLOCKED)
    assert (blocked.status, blocked.labels) == (TaskStatus.BLOCKED, ["backend"])
    issue = server.workspace(provider.key).issues[task.id]
    issue.state = state_named(server, provider.key, "Shipped")  # a person closes it in Linear
    assert provider.get_task(task.id).status is TaskStatus.DONE
    reopened = provider.update_task(task.id, status=TaskStatus.TODO)
    assert (reopened.status, reopened.labels) == (TaskStatus.TODO, ["backend"])


def test_release_as_blocked_leaves_the_blocker_as_a_comment(make, server):
    provider = make()
    provider.create_tasks([NewTask("Alpha")])
    task = provider.claim_next("w1", 60)
    provider.release(task.id, task.claim.token, status=TaskStatus.BLOCKED, note="needs a DB password")
    comments = [c.body for c in server.workspace(provider.key).comments.values() if c.issue.id == task.id]
    assert comments[-1].startswith("autonomous:released") and comments[-1].endswith("\n\nneeds a DB password")
    assert provider.get_task(task.id).status is TaskStatus.BLOCKED


def test_priorities_and_no_priority_sorts_last(make, server):
    provider = make()
    created = provider.create_tasks(
        [
            NewTask(f"Task {p.value}", priority=p)
            for p in (Priority.LOW, Priority.URGENT, Priority.HIGH, Priority.NORMAL)
        ]
    ).created
    issues = server.workspace(provider.key).issues
    assert [issues[t.id].priority for t in created] == [4, 1, 2, 3]
    (unset,) = provider.create_tasks([NewTask("Nobody set a priority")]).created
    issues[unset.id].priority = 0.0
    assert provider.get_task(unset.id).priority is Priority.LOW
    order = [t.key for t in scheduler.order(provider.list_tasks())]
    assert order[0] == "task-urgent" and order[-2:] == ["task-low", "nobody-set-a-priority"]


def test_description_sections_and_hidden_marker_round_trip():
    text = render_description("Line one\n\nLine two", ["a", "b\nmore"], ["run it"], {"key": "AUTH-1.2", "x": "-->"})
    assert "<!-- autonomous " in text and text.count("-->") == 1  # the marker cannot close early
    assert "## Acceptance criteria\n- a\n- b" in text and "## Test steps\n1. run it" in text
    assert parse_description(text) == (
        "Line one\n\nLine two",
        ["a", "b\nmore"],
        ["run it"],
        {"key": "AUTH-1.2", "x": "-->"},
    )
    # what Linear's editor may turn a list into
    edited = "Intro\n\n## Acceptance criteria\n* [ ] one\n* [x] two\n\n## Test steps\n1) go"
    assert parse_description(edited) == ("Intro", ["one", "two"], ["go"], {})


def test_an_issue_whose_marker_was_edited_away_keeps_its_key(make, server):
    provider = make()
    (task,) = provider.create_tasks([NewTask("[AUTH-1.2] Sessions", description="keep me")]).created
    server.workspace(provider.key).issues[task.id].description = "keep me, edited in Linear"
    assert provider.get_task(task.id).key == "AUTH-1.2"
    again = provider.create_tasks([NewTask("[AUTH-1.2] Sessions")])
    assert (again.created, [t.id for t in again.existing]) == ([], [task.id])


def test_people_comments_are_notes(make, server):
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha")]).created
    server.workspace(provider.key).add_comment({"issueId": task.id, "body": "Please use **Postgres**"})
    (note,) = provider.get_task(task.id).notes
    assert (note.text, note.author) == ("Please use **Postgres**", "Autonomous Bot")


# -- pagination ------------------------------------------------------------------------------------


def test_more_than_one_page_of_issues_and_of_comments(make, server):
    provider = make()
    created = provider.create_tasks([NewTask(f"1.{i}: task {i}") for i in range(1, 121)]).created
    assert provider.requests_by_operation["IssueBatchCreate"] == 5  # 25 issues per batch
    reader = make(provider.key)
    assert sorted(t.id for t in reader.list_tasks()) == sorted(t.id for t in created)
    pages = [r for r in server.requests if r.operation == "Issues" and r.api_key == provider.key]
    assert [r.variables["after"] for r in pages[-3:]] == [None, "49", "99"]
    for i in range(30):
        provider.add_note(created[0].id, f"note {i}", "w1")
    notes = reader.get_task(created[0].id).notes
    assert [n.text for n in notes] == [f"note {i}" for i in range(30)]
    assert reader.requests_by_operation["IssueCommentsPage"] == 1


def test_polling_fetches_only_changed_issues(make, server):
    provider = make()
    provider.create_tasks([NewTask(f"Task {i}") for i in range(10)])
    other = make(provider.key)
    other.list_tasks()
    target = provider.find_task("task-3")
    provider.update_task(target.id, status=TaskStatus.DONE)
    tasks = {t.key: t for t in other.list_tasks()}
    last = [r for r in server.requests if r.operation == "Issues"][-1]
    assert "updatedAt" in last.variables["filter"] and last.variables["includeArchived"] is True
    assert tasks["task-3"].status is TaskStatus.DONE and len(tasks) == 10


# -- rate limits, retries, timeouts -----------------------------------------------------------


def test_rate_limit_waits_until_the_reset_then_recovers(make, server, sleeps):
    provider = make()
    provider.list_tasks()
    server.fail_next("ratelimit", reset_in=30)
    provider.create_tasks([NewTask("Alpha")])
    assert len(sleeps) == 1 and 28 < sleeps[0] <= 30
    assert provider.rate_limit.requests_remaining is not None and provider.rate_limit.requests_remaining > 0
    assert [t.key for t in provider.list_tasks()] == ["alpha"]


def test_rate_limit_wait_is_bounded(make, server, sleeps):
    provider = make(max_rate_limit_wait=10)
    provider.list_tasks()
    server.fail_next("ratelimit", reset_in=3600)
    with pytest.raises(ProviderError, match=r"rate limited.*more than the 10s"):
        provider.list_tasks()
    assert sleeps == []


def test_an_exhausted_budget_is_waited_for_before_sending(make, server, sleeps):
    provider = make(wall=lambda: 1_000.0)
    provider.list_tasks()
    provider.rate_limit.requests_remaining, provider.rate_limit.requests_reset = 0, 1_007.5
    provider.list_tasks()
    assert sleeps == [7.5]


@pytest.mark.parametrize("fault", ["5xx", "internal"])
def test_server_errors_are_retried_with_backoff(make, server, sleeps, fault):
    provider = make()
    provider.list_tasks()
    server.fail_next(fault, times=2, status=502)
    before = provider.requests
    provider.create_tasks([NewTask("Alpha")])
    assert sleeps[:2] == [0.5, 1.0]
    assert provider.requests - before >= 3  # two failures, then the same request again


def test_server_errors_give_up_after_the_retries(make, server, sleeps):
    provider = make(max_retries=2)
    provider.list_tasks()
    server.fail_next("5xx", times=3)
    with pytest.raises(ProviderError, match="failed after 3 attempts: HTTP 500"):
        provider.list_tasks()


def test_validation_errors_are_not_retried(make):
    provider = make()
    before = provider.requests
    with pytest.raises(LinearGraphQLError, match="Cannot query field"):
        provider.client.request("query Broken { nope }")
    assert provider.requests - before == 1


def test_a_hanging_response_times_out_and_is_retried(clock, sleeps, tmp_path):
    with FakeLinear() as own:
        key = own.add_workspace(now=clock)
        provider = LinearProvider(
            endpoint=own.url, env={"LINEAR_API_KEY": key}, timeout=0.2, sleep=sleeps, now=clock, state_dir=tmp_path
        )
        own.fail_next("hang", hang_seconds=5)
        assert provider.list_tasks() == []
        assert sleeps == [0.5]
        assert own.requests[0].fault == "hang"
        provider.close()


def test_created_issues_carry_client_ids_so_a_retry_cannot_duplicate(make, server):
    provider = make()
    provider.create_tasks([NewTask("Alpha"), NewTask("Beta")])
    batch = next(r for r in server.requests if r.operation == "IssueBatchCreate" and r.api_key == provider.key)
    ids = [item["id"] for item in batch.variables["input"]["issues"]]
    assert sorted(ids) == sorted(server.workspace(provider.key).issues)


# -- an issue deleted mid-run ------------------------------------------------------------------------


def test_issue_deleted_mid_run(make, server):
    provider = make()
    provider.create_tasks([NewTask("Base"), NewTask("On top", dependencies=["base"])])
    base = provider.claim_next("w1", 60, "dependencies")
    server.workspace(provider.key).delete_issue(base.id)  # a person deletes it while w1 works
    with pytest.raises(TaskNotFound, match="deleted"):
        provider.add_note(base.id, "progress", "w1", token=base.claim.token)
    with pytest.raises(TaskNotFound):
        provider.release(base.id, base.claim.token, status=TaskStatus.DONE)
    tasks = provider.list_tasks()
    assert [t.key for t in tasks] == ["on-top"]
    # the dependant waits: its dependency is missing, which the scheduler never treats as done
    (decision,) = scheduler.plan(tasks, ordering="dependencies")
    assert decision.missing == [base.id] and not decision.ready
    assert provider.claim_next("w2", 60, "dependencies") is None


# -- claims --------------------------------------------------------------------------------------------


def test_two_workers_race_for_one_task_and_exactly_one_wins(make, server):
    """Worker B claims while worker A's claim write is on its way: B's entry lands first,
    so A reads B's earlier entry back and backs off; nothing of B's is undone."""
    a = make()
    b = make(a.key)
    (task,) = a.create_tasks([NewTask("Alpha")]).created
    b.list_tasks()
    outcome = {}

    def interleave(record):
        if record.operation == "CommentAndUpdate" and "worker-a" in record.variables["comment"]["body"]:
            outcome["b"] = b.claim(task.id, "worker-b", 60)  # runs in A's request, before A's write

    server.on_request = interleave
    try:
        with pytest.raises(ClaimConflict, match="lost the claim race to worker-b"):
            a.claim(task.id, "worker-a", 60)
    finally:
        server.on_request = None
    winner = outcome["b"]
    assert (winner.claim.worker_id, winner.claim.token) == ("worker-b", 1)
    now = a.get_task(task.id)
    assert (now.claim.worker_id, now.status) == ("worker-b", TaskStatus.IN_PROGRESS)
    bodies = [c.body for c in server.workspace(a.key).comments.values()]
    assert sum("worker=`worker-a`" in body for body in bodies) == 1  # the loser's entry stays, ignored
    b.add_note(task.id, "mine", "worker-b", token=winner.claim.token)
    done = b.release(task.id, winner.claim.token, status=TaskStatus.DONE)
    assert done.status is TaskStatus.DONE and [n.text for n in done.notes] == ["mine"]
    assert a.claim_next("worker-a", 60) is None


def test_a_worker_that_thought_it_won_is_fenced_at_its_next_write(make, server, clock):
    """The residual window: two entries with the same token, the earlier one not seen by
    its claimer in time. The later claimer's next write re-reads and is refused."""
    provider = make()
    (task,) = provider.create_tasks([NewTask("Alpha")]).created
    mine = provider.claim(task.id, "worker-a", 60)
    ws = server.workspace(provider.key)
    issue = ws.issues[task.id]
    early = (clock() - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    body = entry_body(
        "claim", None, token=1, worker="worker-b", until=(clock() + timedelta(seconds=60)).isoformat(), nonce="b0"
    )
    ws.comments["c-early"] = FakeComment("c-early", body, early, early, ws.viewer, issue)
    with pytest.raises(StaleClaim, match="also taken by worker-b"):
        provider.release(mine.id, mine.claim.token, status=TaskStatus.DONE)
    assert provider.get_task(task.id).status is TaskStatus.IN_PROGRESS


def test_claim_costs_one_write_and_reads_its_answer(make, server):
    provider = make()
    provider.create_tasks([NewTask("Alpha")])
    provider.list_tasks()
    before = provider.requests
    task = provider.claim_next("w1", 60)
    assert provider.requests - before == 2  # the poll, then one comment + issueUpdate request
    assert task.claim.token == 1
    comment = [c for c in server.workspace(provider.key).comments.values() if c.issue.id == task.id][-1]
    assert comment.body.startswith("autonomous:claim token=`1` worker=`w1` until=`")


# -- request economy ----------------------------------------------------------------------------------


def test_requests_per_task_cycle(make):
    """claim_next -> add_note (with the token) -> release(done): six requests, whatever the
    plan's size, once team, states, labels and project are cached."""
    provider = make()
    provider.create_tasks([NewTask(f"1.{i}: task {i}") for i in range(1, 41)])
    counts = []
    for _ in range(3):
        before = provider.requests
        task = provider.claim_next("w1", 600)
        provider.add_note(task.id, "progress", "w1", token=task.claim.token)
        provider.release(task.id, task.claim.token, status=TaskStatus.DONE, note="done", cost_usd=0.1, turns=3)
        counts.append(provider.requests - before)
    assert counts == [6, 6, 6]
    assert "TeamSetup" in provider.requests_by_operation and provider.requests_by_operation["TeamSetup"] == 1


def test_get_provider_builds_a_linear_provider(server, clock, tmp_path):
    key = server.add_workspace(now=clock)
    config = {
        "state_provider": {"type": "linear", "api_key_env": "TEAM_KEY", "project_name": "Via config"},
        "project_root": str(tmp_path),
    }
    provider = get_provider(config, endpoint=server.url, env={"TEAM_KEY": key})
    try:
        assert isinstance(provider, LinearProvider)
        assert (provider.api_key_env, provider.project_name) == ("TEAM_KEY", "Via config")
        provider.create_tasks([NewTask("Alpha")])
        assert [p.name for p in server.workspace(key).projects.values()] == ["Via config"]
    finally:
        provider.close()
