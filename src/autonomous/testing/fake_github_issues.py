"""The issues part of the fake GitHub: labels, issues, comments and issue dependencies
("blocked by"), a mixin that the pulls part (fake_github_pulls.py) extends and
:class:`~autonomous.testing.fake_github.FakeGitHub` hosts. The host owns the server, the protocol (tokens and
permissions, rate limits, ETags, pagination, faults) and the stored state; this part
owns what the issues endpoints answer, shaped after GitHub's OpenAPI description.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

Answer = tuple[int, Any, dict[str, str]]


class IssuesMixin:
    """Issues for the fake. The host class provides the state and the protocol helpers."""

    # the host's (FakeGitHub's) state and helpers
    issues: dict[int, dict[str, Any]]
    comments: list[dict[str, Any]]
    labels: dict[str, dict[str, Any]]
    blocked_by: dict[int, list[int]]
    gone: set[int]
    dependencies_api: bool
    owner: str
    repo: str
    now: Callable[[], datetime]
    _lock: threading.RLock
    _api: str
    _id: Callable[[], int]
    _user: Callable[[], dict[str, Any]]
    _error: Callable[[int, str], dict[str, Any]]
    _page: Callable[[Any, list[Any]], Answer]
    _new_issue: Callable[[str, str, list[str]], int]
    _label: Callable[..., dict[str, Any]]
    _stamp: Callable[[], str]

    def issue_routes(self) -> list[tuple[str, str, str, Any, tuple[str, str]]]:
        read, write = ("issues", "read"), ("issues", "write")
        return [
            ("GET", r"/labels", "/labels", self._list_labels, ("metadata", "read")),
            ("POST", r"/labels", "/labels", self._create_label, write),
            ("GET", r"/issues", "/issues", self._list_issues, read),
            ("POST", r"/issues", "/issues", self._create_issue, write),
            ("GET", r"/issues/comments", "/issues/comments", self._list_repo_comments, read),
            ("PATCH", r"/issues/comments/(\d+)", "/issues/comments/{comment_id}", self._edit_comment, write),
            ("GET", r"/issues/(\d+)", "/issues/{issue_number}", self._get_issue, read),
            ("PATCH", r"/issues/(\d+)", "/issues/{issue_number}", self._edit_issue, write),
            ("GET", r"/issues/(\d+)/comments", "/issues/{issue_number}/comments", self._list_comments, read),
            ("POST", r"/issues/(\d+)/comments", "/issues/{issue_number}/comments", self._create_comment, write),
            ("GET", r"/issues/(\d+)/dependencies/blocked_by", "/issues/{issue_number}/dependencies/blocked_by",
             self._list_blocked_by, read),
            ("POST", r"/issues/(\d+)/dependencies/blocked_by", "/issues/{issue_number}/dependencies/blocked_by",
             self._add_blocked_by, write),
            ("DELETE", r"/issues/(\d+)/dependencies/blocked_by/(\d+)",
             "/issues/{issue_number}/dependencies/blocked_by/{issue_id}", self._remove_blocked_by, write),
        ]  # fmt: skip

    def _issue_json(self, number: int) -> dict[str, Any]:
        st = self.issues[number]
        url = f"{self._api}/issues/{number}"
        html = f"https://github.com/{self.owner}/{self.repo}/issues/{number}"
        out = {
            "id": st["id"], "node_id": f"I_{st['id']}", "url": url, "repository_url": self._api,
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
            "html_url": html, "number": number, "state": st["state"], "state_reason": st["state_reason"],
            "title": st["title"], "body": st["body"], "user": self._user(),
            "labels": [self.labels[n] for n in st["labels"] if n in self.labels],
            "assignee": None, "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
            "comments": sum(1 for c in self.comments if c["_number"] == number),
            "closed_at": st["closed_at"], "created_at": st["created_at"], "updated_at": st["updated_at"],
            "author_association": "OWNER",
        }  # fmt: skip
        if st.get("_pull_request"):
            pr = f"https://github.com/{self.owner}/{self.repo}/pull/{number}"
            out["pull_request"] = {
                "url": f"{self._api}/pulls/{number}", "html_url": pr, "diff_url": f"{pr}.diff",
                "patch_url": f"{pr}.patch",
                "merged_at": st["closed_at"] if st.get("_pull", {}).get("merged") else None,
            }  # fmt: skip
        elif self.dependencies_api:
            blockers = self.blocked_by.get(number, [])
            blocking = [n for n, bs in self.blocked_by.items() if number in bs]
            out["issue_dependencies_summary"] = {
                "blocked_by": sum(1 for b in blockers if self.issues.get(b, {}).get("state") == "open"),
                "blocking": sum(1 for b in blocking if self.issues.get(b, {}).get("state") == "open"),
                "total_blocked_by": len(blockers),
                "total_blocking": len(blocking),
            }
        return out

    def _comment_json(self, c: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._api}/issues/comments/{c['id']}"
        return {
            "id": c["id"], "node_id": f"IC_{c['id']}", "url": url, "body": c["body"],
            "html_url": f"https://github.com/{self.owner}/{self.repo}/issues/{c['_number']}#issuecomment-{c['id']}",
            "user": self._user(), "created_at": c["created_at"], "updated_at": c["updated_at"],
            "issue_url": f"{self._api}/issues/{c['_number']}", "author_association": "OWNER",
        }  # fmt: skip

    def _issue_or_error(self, number: int) -> Answer | None:
        if number in self.gone:
            return 410, self._error(410, "This issue was deleted"), {}
        if number not in self.issues or self.issues[number].get("_pull_request"):
            return 404, self._error(404, "Not Found"), {}
        return None

    # labels
    def _list_labels(self, ex: Any) -> Answer:
        return self._page(ex, list(self.labels.values()))

    def _create_label(self, ex: Any) -> Answer:
        body = ex.body or {}
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "name"}]}, {}
        if name in self.labels:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"code": "already_exists"}]}, {}
        return 201, self._label(name, body.get("color", "ededed"), body.get("description")), {}

    # issues
    def _list_issues(self, ex: Any) -> Answer:
        state = ex.query.get("state", "open")
        wanted = [s for s in ex.query.get("labels", "").split(",") if s]
        numbers = sorted(self.issues)
        if ex.query.get("direction", "desc") == "desc":
            numbers.reverse()
        items = [
            self._issue_json(n)
            for n in numbers
            if (state == "all" or self.issues[n]["state"] == state)
            and all(w in self.issues[n]["labels"] for w in wanted)
        ]
        return self._page(ex, items)

    def _create_issue(self, ex: Any) -> Answer:
        body = ex.body or {}
        if not isinstance(body.get("title"), str) or not body["title"]:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "title"}]}, {}
        number = self._new_issue(body["title"], body.get("body") or "", [str(n) for n in body.get("labels") or []])
        return 201, self._issue_json(number), {"Location": f"{self._api}/issues/{number}"}

    def _get_issue(self, ex: Any, number: int) -> Answer:
        return self._issue_or_error(number) or (200, self._issue_json(number), {})

    def _edit_issue(self, ex: Any, number: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        st, body = self.issues[number], ex.body or {}
        if "title" in body:
            st["title"] = str(body["title"])
        if "body" in body:
            st["body"] = body["body"] or ""
        if "labels" in body:
            names = [str(n) for n in body["labels"]]
            for name in names:
                self._label(name)
            st["labels"] = list(dict.fromkeys(names))
        if "state" in body and body["state"] != st["state"]:
            st["state"] = body["state"]
            if st["state"] == "closed":
                st["closed_at"] = self._stamp()
                st["state_reason"] = body.get("state_reason") or "completed"
            else:
                st["closed_at"] = None
                st["state_reason"] = "reopened"
        elif "state_reason" in body and st["state"] == "closed" and body["state_reason"]:
            st["state_reason"] = body["state_reason"]
        st["updated_at"] = self._stamp()
        return 200, self._issue_json(number), {}

    # comments
    def _list_repo_comments(self, ex: Any) -> Answer:
        items = [self._comment_json(c) for c in self.comments]
        if ex.query.get("direction") == "desc":
            items.reverse()
        return self._page(ex, items)

    def _list_comments(self, ex: Any, number: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        return self._page(ex, [self._comment_json(c) for c in self.comments if c["_number"] == number])

    def _create_comment(self, ex: Any, number: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        text = (ex.body or {}).get("body")
        if not isinstance(text, str) or not text:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "body"}]}, {}
        now = self._stamp()
        c = {"id": self._id(), "_number": number, "body": text, "created_at": now, "updated_at": now}
        self.comments.append(c)
        self.issues[number]["updated_at"] = now
        return 201, self._comment_json(c), {"Location": f"{self._api}/issues/comments/{c['id']}"}

    def _edit_comment(self, ex: Any, comment_id: int) -> Answer:
        c = next((c for c in self.comments if c["id"] == comment_id), None)
        if c is None:
            return 404, self._error(404, "Not Found"), {}
        text = (ex.body or {}).get("body")
        if not isinstance(text, str) or not text:
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"field": "body"}]}, {}
        c["body"], c["updated_at"] = text, self._stamp()
        return 200, self._comment_json(c), {}

    # dependencies
    def _list_blocked_by(self, ex: Any, number: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        return self._page(ex, [self._issue_json(n) for n in self.blocked_by.get(number, []) if n in self.issues])

    def _add_blocked_by(self, ex: Any, number: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        issue_id = (ex.body or {}).get("issue_id")
        blocker = next((n for n, st in self.issues.items() if st["id"] == issue_id), None)
        if blocker is None:
            return 404, self._error(404, "Not Found"), {}
        if blocker == number or blocker in self.blocked_by.get(number, []):
            return 422, {**self._error(422, "Validation Failed"), "errors": [{"code": "invalid"}]}, {}
        self.blocked_by.setdefault(number, []).append(blocker)
        return 201, self._issue_json(blocker), {"Location": f"{self._api}/issues/{blocker}"}

    def _remove_blocked_by(self, ex: Any, number: int, issue_id: int) -> Answer:
        err = self._issue_or_error(number)
        if err:
            return err
        blocker = next((n for n, st in self.issues.items() if st["id"] == issue_id), None)
        if blocker is None or blocker not in self.blocked_by.get(number, []):
            return 404, self._error(404, "Not Found"), {}
        self.blocked_by[number].remove(blocker)
        return 200, self._issue_json(blocker), {}
