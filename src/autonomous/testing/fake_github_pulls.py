"""The pull requests part of the fake GitHub (``execution.handoff: pr``): a mixin of
:class:`~autonomous.testing.fake_github.FakeGitHub` that extends the issues part.

Pull requests share the issues' numbers (as on GitHub). With ``git_dir`` (a bare
repository: the runners' shared remote) the fake is honest about git: opening a pull
request needs its head branch to exist, a pull request's head follows what was pushed,
and :meth:`merge_pull` really merges the head into the base branch there (a merge commit,
as GitHub's merge button makes). Test controls: :meth:`review` (a reviewer's decision
with line comments), :meth:`merge_pull`, :meth:`close_pull`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autonomous.testing.fake_github_issues import Answer, IssuesMixin

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "GitHub", "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com",
}  # fmt: skip
_REPO_URLS = [
    "archive", "assignees", "blobs", "branches", "collaborators", "comments", "commits", "compare", "contents",
    "contributors", "deployments", "downloads", "events", "forks", "git_commits", "git_refs", "git_tags", "hooks",
    "issue_comment", "issue_events", "issues", "keys", "labels", "languages", "merges", "milestones",
    "notifications", "pulls", "releases", "stargazers", "statuses", "subscribers", "subscription", "tags", "teams",
    "trees",
]  # fmt: skip


class PullsMixin(IssuesMixin):
    """Pull requests for the fake: issues with a head and a base (as on GitHub, where every
    pull request is an issue), so the host's state and helpers are the issues part's."""

    git_dir: Path | None  # the host's

    # -- test controls ---------------------------------------------------------------
    def pulls(self) -> list[int]:
        """The pull requests' numbers, oldest first."""
        with self._lock:
            return [n for n, st in sorted(self.issues.items()) if st.get("_pull")]

    def review(
        self,
        number: int,
        state: str = "CHANGES_REQUESTED",
        body: str = "",
        comments: Sequence[tuple[str, int, str]] = (),
        login: str = "reviewer",
    ) -> int:
        """A reviewer submits a review (APPROVED, CHANGES_REQUESTED, COMMENTED) with line
        comments (path, line, text); returns the review's id."""
        with self._lock:
            pull = self.issues[number]["_pull"]
            now = self._stamp()
            review = {"id": self._id(), "state": state, "body": body, "login": login, "at": now,
                      "commit": self._head_sha(pull)}  # fmt: skip
            pull["reviews"].append(review)
            for path, line, text in comments:
                pull["comments"].append({
                    "id": self._id(), "review": review["id"], "path": path, "line": line, "body": text,
                    "login": login, "at": now, "commit": review["commit"],
                })  # fmt: skip
            return review["id"]

    def merge_pull(self, number: int) -> str:
        """Merge the pull request as GitHub's button does (a merge commit on the base
        branch, in ``git_dir`` when there is one); returns the merge commit's sha."""
        with self._lock:
            st = self.issues[number]
            pull = st["_pull"]
            sha = self._git_merge(number, pull) if self.git_dir is not None else f"{number:040x}"
            pull.update(head_sha=self._head_sha(pull), frozen=True, merged=True, merge_sha=sha)
            st.update(state="closed", closed_at=self._stamp(), updated_at=self._stamp())
            return sha

    def close_pull(self, number: int) -> None:
        with self._lock:
            st = self.issues[number]
            st["_pull"].update(head_sha=self._head_sha(st["_pull"]), frozen=True)
            st.update(state="closed", closed_at=self._stamp(), updated_at=self._stamp())

    # -- routes ----------------------------------------------------------------------
    def pull_routes(self) -> list[tuple[str, str, str, Any, tuple[str, str]]]:
        read, write = ("pull_requests", "read"), ("pull_requests", "write")
        return [
            ("GET", r"/pulls", "/pulls", self._list_pulls, read),
            ("POST", r"/pulls", "/pulls", self._create_pull, write),
            ("GET", r"/pulls/(\d+)", "/pulls/{pull_number}", self._get_pull, read),
            ("GET", r"/pulls/(\d+)/reviews", "/pulls/{pull_number}/reviews", self._list_reviews, read),
            ("GET", r"/pulls/(\d+)/comments", "/pulls/{pull_number}/comments", self._list_review_comments, read),
        ]

    def _list_pulls(self, ex: Any) -> Answer:
        state = ex.query.get("state", "open")
        head, base = ex.query.get("head"), ex.query.get("base")
        items = []
        for number in self.pulls():
            st, pull = self.issues[number], self.issues[number]["_pull"]
            if state != "all" and st["state"] != state:
                continue
            if head is not None and head != f"{self.owner}:{pull['head']}":
                continue
            if base is not None and base != pull["base"]:
                continue
            items.append(self._pull_json(number, full=False))
        return self._page(ex, items)

    def _create_pull(self, ex: Any) -> Answer:
        body = ex.body or {}
        head, base = body.get("head"), body.get("base")
        invalid = {**self._error(422, "Validation Failed")}
        if not all(isinstance(v, str) and v for v in (head, base, body.get("title"))):
            return 422, {**invalid, "errors": [{"resource": "PullRequest", "code": "missing_field"}]}, {}
        head = head.split(":", 1)[-1]
        if self.git_dir is not None and not self._rev(head):
            return 422, {**invalid, "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}, {}
        for number in self.pulls():
            st, pull = self.issues[number], self.issues[number]["_pull"]
            if st["state"] == "open" and pull["head"] == head and pull["base"] == base:
                message = f"A pull request already exists for {self.owner}:{head}."
                return (
                    422,
                    {**invalid, "errors": [{"resource": "PullRequest", "code": "custom", "message": message}]},
                    {},
                )
        number = self._new_issue(body["title"], body.get("body") or "", [])
        self.issues[number]["_pull_request"] = True
        self.issues[number]["_pull"] = {"head": head, "base": base, "head_sha": None, "merged": False,
                                        "merge_sha": None, "reviews": [], "comments": []}  # fmt: skip
        return 201, self._pull_json(number, full=True), {"Location": f"{self._api}/pulls/{number}"}

    def _pull_or_error(self, number: int) -> Answer | None:
        if number not in self.issues or not self.issues[number].get("_pull"):
            return 404, self._error(404, "Not Found"), {}
        return None

    def _get_pull(self, ex: Any, number: int) -> Answer:
        return self._pull_or_error(number) or (200, self._pull_json(number, full=True), {})

    def _list_reviews(self, ex: Any, number: int) -> Answer:
        err = self._pull_or_error(number)
        if err:
            return err
        return self._page(ex, [self._review_json(number, r) for r in self.issues[number]["_pull"]["reviews"]])

    def _list_review_comments(self, ex: Any, number: int) -> Answer:
        err = self._pull_or_error(number)
        if err:
            return err
        return self._page(ex, [self._review_comment_json(number, c) for c in self.issues[number]["_pull"]["comments"]])

    # -- git -------------------------------------------------------------------------
    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.git_dir is not None
        return subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args],
            capture_output=True, text=True, env={**os.environ, **_GIT_ENV}, check=False,
        )  # fmt: skip

    def _rev(self, branch: str) -> str | None:
        proc = self._git("rev-parse", "--verify", "-q", f"refs/heads/{branch}")
        return proc.stdout.strip() or None

    def _head_sha(self, pull: dict[str, Any]) -> str:
        """The head branch's commit: what was pushed last (frozen once the pull request closes)."""
        if pull.get("frozen"):
            return pull["head_sha"]
        return (self._rev(pull["head"]) if self.git_dir is not None else None) or pull.get("head_sha") or "0" * 40

    def _git_merge(self, number: int, pull: dict[str, Any]) -> str:
        base, head = self._rev(pull["base"]), self._rev(pull["head"])
        assert base and head, f"pull request #{number}: {pull['base']} or {pull['head']} is not in {self.git_dir}"
        tree = self._git("merge-tree", "--write-tree", base, head)
        if tree.returncode != 0:
            raise AssertionError(f"pull request #{number} does not merge cleanly:\n{tree.stdout}{tree.stderr}")
        message = f"Merge pull request #{number} from {self.owner}/{pull['head']}"
        commit = self._git("commit-tree", tree.stdout.split()[0], "-p", base, "-p", head, "-m", message)
        sha = commit.stdout.strip()
        self._git("update-ref", f"refs/heads/{pull['base']}", sha, base)
        return sha

    # -- JSON ------------------------------------------------------------------------

    def _repo_json(self) -> dict[str, Any]:
        api, html = self._api, f"https://github.com/{self.owner}/{self.repo}"
        out: dict[str, Any] = {f"{name}_url": f"{api}/{name}" for name in _REPO_URLS}
        out.update(
            id=1, node_id="R_1", name=self.repo, full_name=f"{self.owner}/{self.repo}", owner=self._user(),
            private=True, html_url=html, description=None, fork=False, url=api, clone_url=f"{html}.git",
            git_url=f"git://github.com/{self.owner}/{self.repo}.git",
            ssh_url=f"git@github.com:{self.owner}/{self.repo}.git",
            svn_url=html, mirror_url=None, homepage=None, language=None, forks=0, forks_count=0, stargazers_count=0,
            watchers=0, watchers_count=0, size=0, default_branch="main", open_issues=0, open_issues_count=0,
            has_issues=True, has_projects=False, has_wiki=False, has_pages=False, has_downloads=False, archived=False,
            disabled=False, license=None, pushed_at=None, created_at="2026-01-01T00:00:00Z",
            updated_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
        return out

    def _pull_json(self, number: int, *, full: bool) -> dict[str, Any]:
        st, pull = self.issues[number], self.issues[number]["_pull"]
        api = f"{self._api}/pulls/{number}"
        html = f"https://github.com/{self.owner}/{self.repo}/pull/{number}"
        issue = f"{self._api}/issues/{number}"
        head_sha = self._head_sha(pull)
        base_sha = (self._rev(pull["base"]) if self.git_dir is not None else None) or "0" * 40
        merged = bool(pull["merged"])

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {"label": f"{self.owner}:{ref}", "ref": ref, "sha": sha, "user": self._user(),
                    "repo": self._repo_json()}  # fmt: skip

        out: dict[str, Any] = {
            "url": api, "id": st["id"], "node_id": f"PR_{st['id']}", "html_url": html, "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{api}/commits",
            "review_comments_url": f"{api}/comments", "review_comment_url": f"{self._api}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments", "statuses_url": f"{self._api}/statuses/{head_sha}",
            "number": number, "state": st["state"], "locked": False, "title": st["title"], "user": self._user(),
            "body": st["body"] or None, "labels": [], "milestone": None, "created_at": st["created_at"],
            "updated_at": st["updated_at"], "closed_at": st["closed_at"],
            "merged_at": st["closed_at"] if merged else None, "merge_commit_sha": pull["merge_sha"],
            "assignee": None, "head": side(pull["head"], head_sha), "base": side(pull["base"], base_sha),
            "_links": {name: {"href": href} for name, href in (
                ("self", api), ("html", html), ("issue", issue), ("comments", f"{issue}/comments"),
                ("review_comments", f"{api}/comments"), ("review_comment", f"{self._api}/pulls/comments{{/number}}"),
                ("commits", f"{api}/commits"), ("statuses", f"{self._api}/statuses/{head_sha}"))},
            "author_association": "OWNER", "auto_merge": None, "draft": False,
        }  # fmt: skip
        if full:
            out.update(
                merged=merged, mergeable=None if merged else True, mergeable_state="clean", merged_by=None,
                comments=0, review_comments=len(pull["comments"]), maintainer_can_modify=False, commits=1,
                additions=0, deletions=0, changed_files=0,
            )  # fmt: skip
        return out

    def _review_json(self, number: int, r: dict[str, Any]) -> dict[str, Any]:
        html = f"https://github.com/{self.owner}/{self.repo}/pull/{number}#pullrequestreview-{r['id']}"
        user = {**self._user(), "login": r["login"], "type": "User"}
        return {
            "id": r["id"], "node_id": f"PRR_{r['id']}", "user": user, "body": r["body"], "state": r["state"],
            "html_url": html, "pull_request_url": f"{self._api}/pulls/{number}",
            "_links": {"html": {"href": html}, "pull_request": {"href": f"{self._api}/pulls/{number}"}},
            "submitted_at": r["at"], "commit_id": r["commit"], "author_association": "COLLABORATOR",
        }  # fmt: skip

    def _review_comment_json(self, number: int, c: dict[str, Any]) -> dict[str, Any]:
        api = f"{self._api}/pulls/comments/{c['id']}"
        html = f"https://github.com/{self.owner}/{self.repo}/pull/{number}#discussion_r{c['id']}"
        user = {**self._user(), "login": c["login"], "type": "User"}
        return {
            "url": api, "id": c["id"], "node_id": f"PRRC_{c['id']}", "pull_request_review_id": c["review"],
            "diff_hunk": "@@ -1 +1 @@", "path": c["path"], "line": c["line"], "side": "RIGHT",
            "commit_id": c["commit"], "original_commit_id": c["commit"], "user": user, "body": c["body"],
            "created_at": c["at"], "updated_at": c["at"], "html_url": html,
            "pull_request_url": f"{self._api}/pulls/{number}", "author_association": "COLLABORATOR",
            "_links": {"self": {"href": api}, "html": {"href": html},
                       "pull_request": {"href": f"{self._api}/pulls/{number}"}},
        }  # fmt: skip
