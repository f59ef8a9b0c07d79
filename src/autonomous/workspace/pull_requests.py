"""A pull request per task (``execution.handoff: pr``), over the GitHub provider's REST client.

The runner pushes the task's branch ``autonomous/<KEY>`` (fast-forward only, through
:func:`autonomous.workspace.remote.publish`) and opens a pull request into the integration
branch; a pull request already open for that head (a runner restarted after a crash, a
second round after changes were requested) is reused, so nothing is opened twice. The
runner then reads each open pull request of a task in ``in_review`` (conditional GETs: an
unchanged answer is a 304, which costs no rate limit) and turns what it finds into a
:class:`Verdict`: merged, closed unmerged, changes requested (with the review's text and
its line comments, the agent's feedback), or still waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autonomous.config import PullRequestsSection
from autonomous.errors import GitHubAPIError, ProviderError
from autonomous.providers.github.client import GitHubClient
from autonomous.workspace import git, remote

NEED = "pull requests: write, contents: read"


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    url: str  # the page a person opens (html_url)
    state: str  # open | closed
    merged: bool
    merge_sha: str | None
    head_sha: str


@dataclass(slots=True)
class Verdict:
    """What became of a task's pull request: ``merged``, ``closed``, ``changes`` or ``waiting``."""

    kind: str
    pull: PullRequest
    review_id: int = 0
    reviewer: str = ""
    feedback: list[str] = field(default_factory=list)  # the review's body, then its line comments


class PullRequests:
    """The pull requests of one repository, into ``base`` (the integration branch)."""

    def __init__(self, client: GitHubClient, base: str) -> None:
        self.client, self.base = client, base
        self.owner = client.repo.split("/", 1)[0]

    @classmethod
    def open(
        cls, section: PullRequestsSection, base: str, *, shared: GitHubClient | None, env: Mapping[str, str]
    ) -> PullRequests:
        """``shared``: the github state provider's client, used when ``section.repo`` is unset
        or names the same repository. ProviderAuthError names the token's variable when unset."""
        if shared is not None and section.repo in (None, shared.repo):
            return cls(shared, base)
        if section.repo is None:
            raise ProviderError("execution.pull_requests.repo: set owner/name (the state provider is not github)")
        client = GitHubClient(
            section.repo,
            token_env=section.token_env,
            api_url=section.api_url,
            env=env,
            repo_key="execution.pull_requests.repo",
            need=NEED,
        )
        return cls(client, base)

    def close(self) -> None:
        self.client.close()

    def find_open(self, branch: str) -> PullRequest | None:
        """The open pull request whose head is ``branch``, if any."""
        found = self.client.all("/pulls", {"state": "open", "head": f"{self.owner}:{branch}", "base": self.base})
        return _pull(found[0]) if found else None

    def open_or_reuse(self, branch: str, title: str, body: str) -> tuple[PullRequest, bool]:
        """The branch's open pull request, opened now unless one exists; (it, opened now)."""
        existing = self.find_open(branch)
        if existing is not None:
            return existing, False
        try:
            data = self.client.call("POST", "/pulls", {"title": title, "head": branch, "base": self.base, "body": body})
        except GitHubAPIError as exc:
            if exc.status == 422:  # opened meanwhile (another runner): that one is ours too
                existing = self.find_open(branch)
                if existing is not None:
                    return existing, False
            raise
        return _pull(data), True

    def get(self, number: int) -> PullRequest:
        return _pull(self.client.call("GET", f"/pulls/{number}"))

    def verdict(self, number: int, handled: set[int]) -> Verdict:
        """What became of pull request ``number``; reviews in ``handled`` were acted on already."""
        pull = self.get(number)
        if pull.merged:
            return Verdict("merged", pull)
        if pull.state == "closed":
            return Verdict("closed", pull)
        reviews = self.client.all(f"/pulls/{number}/reviews")
        latest: dict[str, dict[str, Any]] = {}  # a reviewer's latest decision is the one that stands
        for review in reviews:
            if review.get("state") in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                latest[(review.get("user") or {}).get("login", "")] = review
        asked = [r for r in latest.values() if r["state"] == "CHANGES_REQUESTED" and r["id"] not in handled]
        if not asked:
            return Verdict("waiting", pull)
        review = min(asked, key=lambda r: r["id"])
        feedback = [review["body"]] if review.get("body") else []
        for comment in self.client.all(f"/pulls/{number}/comments"):
            if comment.get("pull_request_review_id") == review["id"]:
                line = comment.get("line") or comment.get("original_line")
                where = f"{comment['path']}:{line}" if line else comment["path"]
                feedback.append(f"{where}: {comment['body']}")
        reviewer = (review.get("user") or {}).get("login", "a reviewer")
        return Verdict("changes", pull, review["id"], reviewer, feedback)


@dataclass(slots=True)
class HandOff:
    """A task handed to review: its pull request (None when that failed), whether it was
    opened now (else reused), the pushed commit, and what went wrong, if anything."""

    pull: PullRequest | None
    opened: bool = False
    sha: str | None = None
    problem: str = ""


async def hand_off(
    pulls: PullRequests,
    worktree: Path,
    shared: remote.Remote,
    key: str,
    *,
    title: str,
    body: str,
    attempts: int,
    verify: remote.Verify,
) -> HandOff:
    """Push the task's branch ``autonomous/<KEY>`` from its worktree (fast-forward only; a
    push the remote refuses is fetched, rebased, verified and pushed again, ``attempts``
    times at most) and open its pull request, or reuse the one open for that branch."""
    branch = git.branch_name(key)
    pushed = await remote.publish(worktree, remote.Remote(shared.name, branch), attempts=attempts, verify=verify)
    if not pushed.pushed:
        return HandOff(None, problem=f"branch {branch} was not pushed to {shared.name}: {pushed.output}")
    try:
        pull, opened = await asyncio.to_thread(pulls.open_or_reuse, branch, title, body)
    except ProviderError as exc:
        problem = f"branch {branch} was pushed, but no pull request was opened: {exc}"
        return HandOff(None, sha=pushed.sha, problem=problem)
    return HandOff(pull, opened, pushed.sha)


def _pull(data: dict[str, Any]) -> PullRequest:
    return PullRequest(
        number=int(data["number"]),
        url=str(data["html_url"]),
        state=str(data["state"]),
        merged=bool(data.get("merged") or data.get("merged_at")),
        merge_sha=data.get("merge_commit_sha"),
        head_sha=str((data.get("head") or {}).get("sha", "")),
    )
