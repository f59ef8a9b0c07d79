"""Pull requests of ``execution.handoff: pr`` (workspace/pull_requests.py) against the fake
GitHub server: which client they use, what a missing token says, and how reviews decide."""

from __future__ import annotations

import pytest

from autonomous.config import PullRequestsSection
from autonomous.errors import ProviderAuthError, ProviderError
from autonomous.providers.github import GitHubClient
from autonomous.testing.fake_github import FakeGitHub
from autonomous.workspace.pull_requests import PullRequests


@pytest.fixture
def gh():
    with FakeGitHub(token="t0k-secret-value") as fake:
        yield fake


def pulls_for(gh: FakeGitHub) -> PullRequests:
    section = PullRequestsSection(repo="acme/widgets", token_env="WIDGETS_TOKEN", api_url=gh.url)
    return PullRequests.open(section, "main", shared=None, env={"WIDGETS_TOKEN": "t0k-secret-value"})


def test_a_missing_token_names_its_variable_and_the_permission(gh) -> None:
    section = PullRequestsSection(repo="acme/widgets", token_env="WIDGETS_TOKEN", api_url=gh.url)
    with pytest.raises(ProviderAuthError, match=r"WIDGETS_TOKEN is not set.*pull requests: write"):
        PullRequests.open(section, "main", shared=None, env={})
    with pytest.raises(ProviderError, match=r"execution\.pull_requests\.repo"):
        PullRequests.open(PullRequestsSection(), "main", shared=None, env={})


def test_the_github_providers_client_is_shared_for_its_own_repository(gh) -> None:
    client = GitHubClient("acme/widgets", env={"GITHUB_TOKEN": "t0k-secret-value"}, api_url=gh.url)
    try:
        assert PullRequests.open(PullRequestsSection(), "main", shared=client, env={}).client is client
        other = PullRequests.open(
            PullRequestsSection(repo="acme/other", api_url=gh.url), "main", shared=client, env={"GITHUB_TOKEN": "x"}
        )
        assert other.client is not client and other.client.repo == "acme/other"
    finally:
        client.close()


def test_each_reviewers_latest_decision_stands_and_a_handled_review_counts_once(gh) -> None:
    pulls = pulls_for(gh)
    pull, opened = pulls.open_or_reuse("autonomous/X-1", "X-1: x", "")
    assert opened and pulls.verdict(pull.number, set()).kind == "waiting"
    first = gh.review(pull.number, body="rename it", login="ann")
    gh.review(pull.number, state="COMMENTED", body="just a thought", login="bob")
    verdict = pulls.verdict(pull.number, set())
    assert (verdict.kind, verdict.review_id, verdict.reviewer, verdict.feedback) == (
        "changes", first, "ann", ["rename it"]
    )  # fmt: skip
    assert pulls.verdict(pull.number, {first}).kind == "waiting"
    gh.review(pull.number, state="APPROVED", login="ann")  # ann is satisfied now
    second = gh.review(pull.number, body="one more thing", login="bob", comments=[("a.py", 3, "typo")])
    verdict = pulls.verdict(pull.number, set())
    assert (verdict.review_id, verdict.feedback) == (second, ["one more thing", "a.py:3: typo"])
    gh.close_pull(pull.number)
    assert pulls.verdict(pull.number, set()).kind == "closed"
    pulls.close()
    assert all("t0k-secret-value" not in str(ex.response) for ex in gh.requests)
