"""The GitHub provider against the fake GitHub server, over real HTTP (the contract suite
runs it too, through the fake's in-process transport). Waits are injected: no test sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autonomous.errors import ClaimConflict, ProviderAuthError, ProviderError, TaskNotFound
from autonomous.providers import get_provider
from autonomous.providers.github import GitHubProvider
from autonomous.tasks import NewTask, Priority, TaskStatus
from autonomous.testing.fake_github import FakeGitHub, open_test_provider


@pytest.fixture
def gh():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make(gh, clock, sleeps):
    opened = []

    def make(**options):
        provider = open_test_provider(clock, fake=gh, sleep=sleeps.append, **options)
        opened.append(provider)
        return provider

    yield make
    for provider in opened:
        GitHubProvider.close(provider)  # the fake is the fixture's to stop


@pytest.fixture
def provider(make):
    return make()


def labels_of(gh, number):
    return sorted(gh.issues[number]["labels"])


# -- configuration and auth -------------------------------------------------------------------


def test_missing_token_variable_is_named():
    with pytest.raises(ProviderAuthError, match="MY_GH_TOKEN is not set"):
        GitHubProvider("acme/widgets", api_key_env="MY_GH_TOKEN", env={})


def test_refused_token_names_the_variable(gh):
    provider = GitHubProvider("acme/widgets", api_url=gh.url, env={"GITHUB_TOKEN": "wrong"}, write_interval=0)
    with pytest.raises(ProviderAuthError, match=r"refused the token in GITHUB_TOKEN \(401"):
        provider.list_tasks()
    provider.close()


def test_read_only_token_names_the_missing_permission(gh, clock):
    gh.add_token("read-only", {"issues": "read"})
    provider = GitHubProvider(
        "acme/widgets", api_url=gh.url, env={"GH_RO": "read-only"}, api_key_env="GH_RO", write_interval=0
    )
    assert provider.list_tasks() == []  # reading is allowed
    with pytest.raises(ProviderAuthError, match=r"token in GH_RO lacks the permission issues: write"):
        provider.create_tasks([NewTask("1.1: a")])
    provider.close()


def test_unknown_repository_is_an_auth_error_naming_the_variable(gh):
    provider = GitHubProvider("acme/nope", api_url=gh.url, env={"GITHUB_TOKEN": "test-token"}, write_interval=0)
    with pytest.raises(ProviderAuthError, match=r"acme/nope was not found with the token in GITHUB_TOKEN"):
        provider.list_tasks()
    provider.close()


def test_get_provider_builds_it_from_the_configuration(gh, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    config = {"state_provider": {"type": "github", "repo": "acme/widgets"}, "root": "/tmp"}
    with get_provider(config) as provider:
        assert isinstance(provider, GitHubProvider)
        assert provider.api_url == gh.url and provider.token_env == "GITHUB_TOKEN"
        assert provider.list_tasks() == []


def test_requests_carry_githubs_headers(gh, provider):
    provider.list_tasks()
    headers = gh.requests[0].headers
    assert headers["authorization"] == "Bearer test-token"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["accept"] == "application/vnd.github+json"


# -- mapping -----------------------------------------------------------------------------------


def test_status_priority_and_meta_labels(gh, provider):
    made = provider.create_tasks(
        [NewTask("META: Project", priority=Priority.LOW), NewTask("1.1: a", priority=Priority.URGENT, labels=["ui"])]
    ).created
    meta, a = (int(t.id) for t in made)
    assert labels_of(gh, meta) == ["meta", "priority:low", "status:todo"]
    assert labels_of(gh, a) == ["priority:urgent", "status:todo", "ui"]
    assert "<!-- autonomous:key=1.1 -->" in gh.issues[a]["body"]
    assert {"status:todo", "priority:urgent", "priority:low", "meta"} <= set(gh.labels)
    assert gh.labels["status:todo"]["color"] == "ededed"

    provider.update_task(str(a), status=TaskStatus.BLOCKED, priority=Priority.NORMAL)
    assert labels_of(gh, a) == ["status:blocked", "ui"]
    done = provider.update_task(str(a), status=TaskStatus.DONE)
    assert (gh.issues[a]["state"], gh.issues[a]["state_reason"], done.status) == (
        "closed",
        "completed",
        TaskStatus.DONE,
    )
    assert labels_of(gh, a) == ["ui"]
    canceled = provider.update_task(str(a), status=TaskStatus.CANCELED)
    assert (gh.issues[a]["state"], gh.issues[a]["state_reason"]) == ("closed", "not_planned")
    assert canceled.status is TaskStatus.CANCELED
    again = provider.update_task(str(a), status=TaskStatus.TODO)
    assert (gh.issues[a]["state"], again.status, again.labels) == ("open", TaskStatus.TODO, ["ui"])


def test_labels_are_created_once(gh, provider):
    provider.create_tasks([NewTask("1.1: a"), NewTask("1.2: b")])
    provider.create_tasks([NewTask("1.3: c")])
    creates = [r for r in gh.requests if r.method == "POST" and r.path.endswith("/labels")]
    assert [r.body["name"] for r in creates] == ["status:todo"]
    assert sum(1 for r in gh.requests if r.method == "GET" and r.path.endswith("/labels")) == 1


def test_issues_made_by_people_closed_on_github_and_pull_requests(gh, provider):
    gh.add_pull_request("Fix the build")
    person = gh.add_issue("ARK-7 Investigate flaky test", "Seen twice on main.", labels=["bug"])
    (a,) = provider.create_tasks([NewTask("1.1: a")]).created
    gh.issues[int(a.id)].update(state="closed", state_reason="completed")  # closed in GitHub's UI
    tasks = {t.key: t for t in provider.list_tasks()}
    assert set(tasks) == {"ARK-7", "1.1"}  # the pull request is ignored
    assert tasks["ARK-7"].description == "Seen twice on main." and tasks["ARK-7"].labels == ["bug"]
    assert tasks["ARK-7"].id == str(person) and tasks["ARK-7"].status is TaskStatus.TODO
    assert tasks["1.1"].status is TaskStatus.DONE
    with pytest.raises(TaskNotFound):
        provider.get_task("1")  # the pull request's number


def test_comments_by_people_are_notes(gh, provider):
    (a,) = provider.create_tasks([NewTask("1.1: a")]).created
    provider.add_note(a.id, "from the runner", "runner")
    gh._create_comment(_ex({"body": "LGTM, but check the edge case"}), int(a.id))
    notes = provider.get_task(a.id).notes
    assert [(n.text, n.author) for n in notes] == [
        ("from the runner", "runner"),
        ("LGTM, but check the edge case", "autonomous-bot"),
    ]


def _ex(body):
    from autonomous.testing.fake_github import Exchange

    return Exchange("POST", "", {}, {}, body)


def test_dependencies_mirror_to_github_and_ui_blockers_are_read(gh, provider):
    provider.create_tasks([NewTask("1.1: a"), NewTask("1.2: b", dependencies=["1.1"])])
    a, b = provider.find_task("1.1"), provider.find_task("1.2")
    assert gh.blocked_by[int(b.id)] == [int(a.id)]
    assert "- [ ] #" + a.id in gh.issues[int(b.id)]["body"]
    (c,) = provider.create_tasks([NewTask("1.3: c")]).created
    gh.blocked_by[int(b.id)].append(int(c.id))  # added in GitHub's UI
    assert provider.get_task(b.id).dependencies == [a.id, c.id]
    provider.update_task(b.id, dependencies=[c.id])
    assert gh.blocked_by[int(b.id)] == [int(c.id)]
    assert provider.get_task(b.id).dependencies == [c.id]


def test_without_the_dependencies_api_the_body_task_list_is_used(clock, sleeps):
    with FakeGitHub(dependencies_api=False) as gh:
        provider = open_test_provider(clock, fake=gh, sleep=sleeps.append)
        provider.create_tasks([NewTask("1.2: b", dependencies=["1.1"]), NewTask("1.1: a")])
        a, b = provider.find_task("1.1"), provider.find_task("1.2")
        assert b.dependencies == [a.id]
        assert f"### Blocked by\n- [ ] #{a.id}" in gh.issues[int(b.id)]["body"]
        assert provider.claim_next("w1", 60, "dependencies").key == "1.1"
        GitHubProvider.close(provider)


# -- HTTP behaviour ---------------------------------------------------------------------------


def test_pagination_follows_link_headers(gh, provider):
    for i in range(230):
        gh.add_issue(f"Task 9.{i} bulk")
    gh.add_pull_request()
    assert len(provider.list_tasks()) == 230
    pages = [r.query.get("page", "1") for r in gh.requests if r.path.endswith("/issues") and r.method == "GET"]
    assert pages == ["1", "2", "3"]
    assert all(r.query.get("per_page") == "100" for r in gh.requests if r.method == "GET")


def test_etags_make_an_unchanged_listing_cost_a_304(gh, provider):
    provider.create_tasks([NewTask("1.1: a"), NewTask("1.2: b")])
    provider.list_tasks()
    before = len(gh.requests)
    remaining = gh.rate_remaining
    assert len(provider.list_tasks()) == 2
    again = gh.requests[before:]
    assert [(r.path.rsplit("/", 1)[1], r.status) for r in again] == [("issues", 304)]
    last = [r for r in gh.requests[:before] if r.path.endswith("/issues") and r.status == 200][-1]
    assert again[0].headers["if-none-match"] == last.response_headers["ETag"]
    assert gh.rate_remaining == remaining  # a 304 costs no rate limit
    assert provider.not_modified_count >= 1


def test_secondary_rate_limit_is_waited_out(gh, provider, sleeps):
    gh.secondary_rate_limit(retry_after=7)
    assert provider.list_tasks() == []
    assert sleeps == [7.0]
    assert [r.status for r in gh.requests] == [403, 200]


def test_429_with_retry_after(gh, provider, sleeps):
    gh.secondary_rate_limit(retry_after=3, status=429)
    provider.create_tasks([NewTask("1.1: a")])
    assert sleeps[0] == 3.0


def test_primary_rate_limit_waits_until_reset(gh, make, sleeps):
    now = [1_000_000.0]
    provider = make(wall=lambda: now[0])
    gh.rate_remaining, gh.rate_reset = 0, int(now[0]) + 30
    gh.fail(status=403, headers={"x-ratelimit-remaining": "0"}, message="API rate limit exceeded")
    provider.list_tasks()  # the 403 says remaining 0: wait for the reset, then retry
    assert sleeps and 30 <= sleeps[0] <= 32
    sleeps.clear()
    provider.list_tasks()  # remaining 0 from the headers: wait before sending
    assert sleeps and 30 <= sleeps[0] <= 32


def test_a_wait_longer_than_allowed_fails_clearly(gh, make, sleeps):
    provider = make(max_wait=60)
    gh.secondary_rate_limit(retry_after=3600)
    with pytest.raises(ProviderError, match="longer than the allowed 60s"):
        provider.list_tasks()
    assert sleeps == []


def test_server_errors_are_retried_with_backoff(gh, make, sleeps):
    provider = make(backoff=0.5)
    gh.fail(status=502, times=2)
    provider.create_tasks([NewTask("1.1: a")])
    assert sleeps[:2] == [0.5, 1.0]
    assert [r.status for r in gh.requests[:3]] == [502, 502, 200]


def test_server_errors_give_up_after_max_retries(gh, make):
    provider = make(max_retries=2)
    gh.fail(status=500, times=5)
    with pytest.raises(ProviderError, match="500"):
        provider.list_tasks()
    assert len(gh.requests) == 3


def test_a_request_that_hangs_times_out_and_is_retried(gh, make):
    provider = make(timeout=0.3)
    gh.hang("GET", r"/issues$")
    assert provider.list_tasks() == []
    assert [r.status for r in gh.requests] == [0, 200]  # 0: never answered


def test_client_errors_are_not_retried(gh, provider):
    gh.fail("POST", r"/issues$", status=422, message="Validation Failed")
    with pytest.raises(ProviderError, match="422"):
        provider.create_tasks([NewTask("1.1: a")])
    assert sum(1 for r in gh.requests if r.method == "POST" and r.path.endswith("/issues")) == 1


def test_writes_are_spaced(gh, clock, sleeps):
    ticks = [0.0]
    provider = open_test_provider(clock, fake=gh, sleep=sleeps.append, monotonic=lambda: ticks[0], write_interval=1.0)
    provider.create_tasks([NewTask("1.1: a"), NewTask("1.2: b")])
    writes = [r for r in gh.requests if r.method != "GET"]
    assert len(writes) == 3  # a label, two issues
    assert sleeps == [1.0, 1.0]  # the clock never moved: each later write waited the full second
    GitHubProvider.close(provider)


# -- claims ------------------------------------------------------------------------------------


def test_claim_marker_in_the_body_and_a_claim_comment(gh, provider, clock):
    (a,) = provider.create_tasks([NewTask("1.1: a")]).created
    claimed = provider.claim(a.id, "worker-1", 60)
    body = gh.issues[int(a.id)]["body"]
    assert '"worker":"worker-1"' in body and '"fence":1' in body
    assert labels_of(gh, int(a.id)) == ["status:in-progress"]
    assert "Claimed by `worker-1`" in gh.comments[-1]["body"]
    assert claimed.notes == []  # claim comments are not notes
    assert claimed.claim.expires_at == clock() + timedelta(seconds=60)


def test_of_two_racing_claimers_the_first_comment_wins(gh, make):
    first, second = make(), make()
    (a,) = first.create_tasks([NewTask("1.1: a")]).created
    stale = second._get_issue(a.id)  # the second worker read the issue before the first claimed it
    won = first.claim(a.id, "w1", 60)
    with pytest.raises(ClaimConflict, match="lost the claim race to w1"):
        second._claim(stale, "w2", 60)
    after = first.get_task(a.id)
    assert (after.claim.worker_id, after.claim.token) == ("w1", won.claim.token)


def test_a_claim_that_never_landed_is_stepped_over_once_its_lease_lapsed(gh, make, clock):
    provider = make()
    (a,) = provider.create_tasks([NewTask("1.1: a")]).created
    dead = make()
    dead._post_comment(
        int(a.id),
        '<!-- autonomous:claim {"token":1,"worker":"dead","expires":"'
        + (clock() + timedelta(seconds=10)).isoformat()
        + '"} -->',
        a.id,
    )  # a worker that died between posting its claim and writing the body
    with pytest.raises(ClaimConflict, match="lost the claim race to dead"):
        provider.claim(a.id, "w1", 60)
    clock.advance(11)
    taken = provider.claim(a.id, "w1", 60)
    assert taken.claim.worker_id == "w1" and taken.claim.token > 1


def test_an_issue_deleted_mid_run(gh, provider):
    provider.create_tasks([NewTask("1.1: a"), NewTask("1.2: b")])
    task = provider.claim_next("w1", 60, "dependencies")
    gh.delete_issue(int(task.id))
    with pytest.raises(TaskNotFound):
        provider.release(task.id, task.claim.token, status=TaskStatus.DONE)
    with pytest.raises(TaskNotFound):
        provider.add_note(task.id, "late", "w1")
    nxt = provider.claim_next("w1", 60, "dependencies")
    assert nxt.key == "1.2"
    assert [t.key for t in provider.list_tasks()] == ["1.2"]


def test_requests_per_task_cycle(gh, provider):
    provider.create_tasks([NewTask(f"1.{i}: task {i}") for i in range(1, 6)])
    provider.list_tasks()
    counts = []
    while True:
        before = provider.request_count
        task = provider.claim_next("w1", 600)
        if task is None:
            break
        provider.add_note(task.id, "working", "w1", token=task.claim.token)
        provider.release(task.id, task.claim.token, status=TaskStatus.DONE, note="done")
        counts.append(provider.request_count - before)
    # listing (1) + claim (comment, comments, patch: 3) + note (check, post: 2) + release (check, note, patch: 3);
    # the first cycle also creates the status:in-progress label
    assert counts == [10, 9, 9, 9, 9]


def test_sessions_live_on_one_issue_and_are_not_tasks(gh, provider, clock):
    from autonomous.providers.base import SessionRecord

    provider.record_session(SessionRecord("s1", "w1", clock()))
    provider.record_session(SessionRecord("s1", "w1", clock(), clock(), "stopped", {"done": 2}))
    assert [(s.id, s.state, s.summary) for s in provider.list_sessions()] == [("s1", "stopped", {"done": 2})]
    assert provider.list_tasks() == []
    assert sum(1 for c in gh.comments if "autonomous:session" in c["body"]) == 1
