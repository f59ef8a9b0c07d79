"""Tasks as GitHub issues (``state_provider.type: github``, ``repo: owner/name``).

The mapping (docs/providers.md has the table):

* a task is an issue; its id is the issue number (``"12"``). Pull requests, which
  GitHub lists among issues, are ignored, and so is every issue without our key marker
  except those a person labels ``meta`` or files by hand (read with a key derived from
  the title).
* the body holds the description, a visible rendering of acceptance criteria, test
  steps and "Blocked by" task list (``- [ ] #12``), and two hidden markers:
  ``<!-- autonomous:key=AUTH-1.2 -->`` (what makes ``init`` idempotent) and
  ``<!-- autonomous:state {...} -->`` (exact criteria, steps, label order, timestamps,
  cost, turns, and the claim: worker, lease expiry, fencing token).
* status: open + ``status:todo`` / ``status:in-progress`` / ``status:blocked`` /
  ``status:in-review``;
  closed as ``completed`` is done, closed as ``not_planned`` (or ``duplicate``) is
  canceled. Priority: ``priority:urgent`` / ``high`` / ``low`` (no label: normal).
  META tasks carry the ``meta`` label. Labels are created on first use, then cached.
* dependencies: the body's "Blocked by" task list is what the provider reads; it is
  mirrored to GitHub's issue dependencies (``/issues/{n}/dependencies/blocked_by``)
  when the repository has them, and a blocker added in GitHub's UI is picked up when
  the issue's ``issue_dependencies_summary`` counts more blockers than the body lists.
* notes are comments (a hidden marker keeps the author and the exact time); a person's
  comment is a note by its GitHub login. Sessions are marker comments on one issue
  labelled ``autonomous:sessions``.

**What this provider guarantees, and what it can only approximate.** GitHub has no
transactions and no conditional writes (no ``If-Match`` on issues), so ``atomic_claims``
is False. A claim is:

1. read the issue; refuse (ClaimConflict) unless the scheduler calls it takeable;
2. post a *claim comment* carrying token = fence + 1, the worker id and the lease;
3. re-read the issue's comments: comment ids are assigned by GitHub in one order that
   every reader sees, so among claim comments with that token the lowest id wins. A
   worker that is not first (or sees a higher token) backs off with ClaimConflict and
   ``claim_next`` moves to the next task; a first comment whose lease lapsed without
   ever reaching the body (its worker died mid-claim) is skipped with a higher token;
4. write the body marker (fence, worker, expiry) and ``status:in-progress`` in one PATCH,
   and build the result from GitHub's answer.

So two workers racing for one task agree on a single winner, as long as both finish
step 3. What stays approximate: every later write under a token (renew, release, a
tokened note or update) is *read, check, write*; a write whose check passed can still
land after a takeover that started between its read and its write (a window of one
round trip, typically under a second). Renewing well before the lease ends (the runner
renews at a third of the lease) keeps a live holder from ever being taken over, which
closes that window in practice; a holder that stalls past its lease can overwrite the
body once before its next check fails. Fencing tokens never repeat: they only grow in
the body marker and every claim takes max + 1.

HTTP goes through :class:`~autonomous.providers.github.client.GitHubClient` (pagination,
ETags, rate limits, retries); the issue <-> task mapping is :mod:`.codec`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from autonomous import scheduler
from autonomous.errors import ClaimConflict, GitHubAPIError, TaskNotFound
from autonomous.providers.base import (
    CreateResult,
    Release,
    SessionRecord,
    StateProvider,
    TaskChanges,
    check_dependency_keys,
    check_takeable,
    check_token,
    status_after_update,
    update_ends_claim,
)
from autonomous.providers.base import iso_time as _iso
from autonomous.providers.base import parse_time as _dt
from autonomous.providers.github import codec
from autonomous.providers.github.client import GitHubClient
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, utcnow


class GitHubProvider(StateProvider):
    """Tasks as issues of one repository (see the module docstring for the guarantees).

    ``now`` is the clock of leases and timestamps; ``sleep``/``monotonic``/``wall`` are
    the waits (rate limits, backoff, write spacing), injectable so tests never sleep.
    """

    kind = "github"
    atomic_claims = False  # claims are decided by comment order; writes after them are read-check-write

    def __init__(
        self,
        repo: str,
        *,
        api_key_env: str | None = None,
        api_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        env: dict[str, str] | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        write_interval: float = 1.0,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 900.0,
    ) -> None:
        self._http = GitHubClient(
            repo,
            token_env=api_key_env,
            api_url=api_url,
            transport=transport,
            env=env,
            sleep=sleep,
            monotonic=monotonic,
            wall=wall,
            write_interval=write_interval,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_wait=max_wait,
        )
        self.repo, self.token_env, self.api_url = repo, self._http.token_env, self._http.api_url
        self._now = now
        self._lock = self._http.lock
        self._call, self._all = self._http.call, self._http.all
        self._labels: set[str] | None = None
        self._db_ids: dict[int, int] = {}  # issue number -> GitHub's issue id (dependencies need it)
        self._comments: dict[int, list[dict[str, Any]]] = {}  # latest comments read per issue
        self._deps_api: bool | None = None  # None: not seen an issue yet
        self._sessions_issue: int | None = None

    @property
    def client(self) -> GitHubClient:
        """The REST client, shared with pull requests (workspace/pull_requests.py)."""
        return self._http

    @property
    def request_count(self) -> int:
        return self._http.request_count

    @property
    def not_modified_count(self) -> int:
        return self._http.not_modified_count

    @property
    def waited(self) -> float:
        return self._http.waited

    @property
    def write_interval(self) -> float:
        return self._http.write_interval

    def close(self) -> None:
        self._http.close()

    # -- labels --------------------------------------------------------------------------
    def _ensure_labels(self, names: Iterable[str]) -> None:
        with self._lock:
            if self._labels is None:
                self._labels = {label["name"] for label in self._all("/labels")}
            for name in names:
                if name in self._labels:
                    continue
                try:
                    self._call("POST", "/labels", {"name": name, "color": codec.LABEL_COLORS.get(name, "ededed")})
                except GitHubAPIError as exc:
                    if exc.status != 422:  # 422: it exists already (made by someone else meanwhile)
                        raise
                self._labels.add(name)

    # -- issues <-> tasks ------------------------------------------------------------------
    def _seen(self, issue: dict[str, Any]) -> None:
        self._db_ids[issue["number"]] = issue["id"]
        if "pull_request" not in issue:
            self._deps_api = "issue_dependencies_summary" in issue

    def _get_issue(self, task_id: str) -> dict[str, Any]:
        number = codec.number(task_id)
        try:
            issue = self._call("GET", f"/issues/{number}")
        except GitHubAPIError as exc:
            if exc.status in (404, 410):
                raise TaskNotFound(f"no task with id {task_id!r} ({exc})") from exc
            raise
        if not codec.is_task(issue):
            raise TaskNotFound(f"no task with id {task_id!r} (#{number} is not a task issue)")
        self._seen(issue)
        return issue

    def _issue_comments(self, number: int) -> list[dict[str, Any]]:
        try:
            comments = self._all(f"/issues/{number}/comments")
        except GitHubAPIError as exc:
            if exc.status in (404, 410):
                raise TaskNotFound(f"no task with id {str(number)!r} ({exc})") from exc
            raise
        self._comments[number] = comments
        return comments

    def _to_task(self, issue: dict[str, Any], comments: list[dict[str, Any]] | None) -> Task:
        return codec.to_task(issue, comments, self._dependencies(issue))

    def _dependencies(self, issue: dict[str, Any]) -> list[str]:
        """The body's "Blocked by" list, plus blockers added in GitHub's UI (only fetched when
        GitHub counts more blockers than the body lists)."""
        listed = codec.listed_dependencies(issue.get("body") or "")
        summary = issue.get("issue_dependencies_summary")
        if summary and summary.get("total_blocked_by", 0) > len(listed):
            try:
                extra = self._all(f"/issues/{issue['number']}/dependencies/blocked_by")
            except GitHubAPIError:
                extra = []
            listed += [str(b["number"]) for b in extra if str(b["number"]) not in listed]
        return listed

    def _payload(self, task: Task, fence: int) -> dict[str, Any]:
        payload = codec.payload(task, fence)
        self._ensure_labels(payload["labels"])
        return payload

    def _write_issue(self, task: Task, fence: int, comments: list[dict[str, Any]] | None) -> Task:
        """PATCH the whole issue (body, labels, state) and read the task back from the answer."""
        number = int(task.id)
        try:
            issue = self._call("PATCH", f"/issues/{number}", self._payload(task, fence))
        except GitHubAPIError as exc:
            if exc.status in (404, 410):
                raise TaskNotFound(f"task {task.key} ({task.id}) was deleted on GitHub ({exc})") from exc
            raise
        self._seen(issue)
        if comments is None:
            comments = self._comments.get(number)
            if comments is None:
                comments = self._issue_comments(number)
        return self._to_task(issue, comments)

    def _mirror_dependencies(self, number: int, before: list[str], after: list[str]) -> None:
        """Best effort: GitHub's own "blocked by" links follow the body's list."""
        if self._deps_api is False:
            return
        for dep in after:
            if dep not in before and int(dep) in self._db_ids:
                try:
                    self._call(
                        "POST", f"/issues/{number}/dependencies/blocked_by", {"issue_id": self._db_ids[int(dep)]}
                    )
                except GitHubAPIError as exc:
                    if exc.status == 404:  # no issue dependencies here (GHES, feature off)
                        self._deps_api = False
                        return
                    if exc.status != 422:  # 422: already linked, or GitHub refuses (a cycle)
                        raise
        for dep in before:
            if dep not in after and int(dep) in self._db_ids:
                try:
                    self._call("DELETE", f"/issues/{number}/dependencies/blocked_by/{self._db_ids[int(dep)]}")
                except GitHubAPIError as exc:
                    if exc.status not in (404, 422):
                        raise

    # -- reading -------------------------------------------------------------------------
    def _list_issues(self) -> list[dict[str, Any]]:
        issues = self._all("/issues", {"state": "all", "sort": "created", "direction": "asc"})
        out = []
        for issue in issues:
            if codec.is_task(issue):
                self._seen(issue)
                out.append(issue)
        return out

    def _light_tasks(self) -> list[Task]:
        """Every task without notes: one listing, what scheduling needs."""
        return [self._to_task(issue, None) for issue in self._list_issues()]

    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        issues = self._list_issues()
        by_issue: dict[int, list[dict[str, Any]]] = {}
        if any(issue.get("comments") for issue in issues):
            for comment in self._all("/issues/comments", {"sort": "created", "direction": "asc"}):
                number = int(comment["issue_url"].rsplit("/", 1)[1])
                by_issue.setdefault(number, []).append(comment)
        wanted = None if statuses is None else {TaskStatus(s) for s in statuses}
        tasks = [self._to_task(issue, by_issue.get(issue["number"], [])) for issue in issues]
        return [t for t in tasks if wanted is None or t.status in wanted]

    def get_task(self, task_id: str) -> Task:
        issue = self._get_issue(task_id)
        comments = self._issue_comments(issue["number"]) if issue.get("comments") else []
        self._comments[issue["number"]] = comments
        return self._to_task(issue, comments)

    def find_task(self, ref: str) -> Task:
        if codec.is_number(ref):
            try:
                return self.get_task(ref)
            except TaskNotFound:
                pass
        tasks = self._light_tasks()
        for match in (lambda t: t.key == ref, lambda t: t.key.lower() == ref.lower()):
            found = next((t for t in tasks if match(t)), None)
            if found:
                return self.get_task(found.id)
        raise TaskNotFound(f"no task with id or key {ref!r}")

    def meta_task(self) -> Task | None:
        for task in scheduler.order(self._light_tasks()):
            if scheduler.is_meta(task):
                return self.get_task(task.id)
        return None

    # -- writing -------------------------------------------------------------------------
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        result = CreateResult()
        if not new_tasks:
            return result
        known = {t.key: t for t in self._light_tasks()}
        keys = known.keys() | {nt.key for nt in new_tasks}
        for nt in new_tasks:
            if nt.key not in known:
                check_dependency_keys(nt.key, nt.dependencies, keys)
        now = self._now()
        ids = {k: t.id for k, t in known.items()}
        created: dict[str, Task] = {}
        forward: list[tuple[Task, list[str]]] = []
        for nt in new_tasks:
            if nt.key in known:
                result.existing.append(known[nt.key])
                continue
            if nt.key in created:
                result.existing.append(created[nt.key].copy())
                continue
            at = now + timedelta(microseconds=len(created))
            deps = list(dict.fromkeys(nt.dependencies))
            draft = Task(
                id="0", key=nt.key, title=nt.title, description=nt.description,
                acceptance_criteria=list(nt.acceptance_criteria), test_steps=list(nt.test_steps),
                priority=Priority(nt.priority), labels=list(nt.labels),
                dependencies=[ids[k] for k in deps if k in ids], created_at=at, updated_at=at,
            )  # fmt: skip
            payload = self._payload(draft, 0)
            payload.pop("state")
            issue = self._call("POST", "/issues", payload)
            self._seen(issue)
            self._comments[issue["number"]] = []
            task = self._to_task(issue, [])
            ids[nt.key] = task.id
            created[nt.key] = task
            self._mirror_dependencies(issue["number"], [], task.dependencies)
            if len(task.dependencies) < len(deps):
                forward.append((task, deps))
        for task, deps in forward:  # dependencies on tasks later in the batch
            full = task.copy(dependencies=[ids[k] for k in deps])
            self._mirror_dependencies(int(task.id), task.dependencies, full.dependencies)
            created[task.key] = self._write_issue(full, 0, [])
        result.created = list(created.values())
        by_key = {t.key: t for t in result.created}
        result.existing = [by_key[t.key].copy() if t.key in by_key and t.id == by_key[t.key].id else t
                           for t in result.existing]  # fmt: skip
        return result

    def _fresh(self, task_id: str, token: int | None) -> tuple[Task, int]:
        """The task as GitHub has it now (no notes) and its fence; StaleClaim on a wrong token."""
        issue = self._get_issue(task_id)
        task = self._to_task(issue, None)
        fence = codec.fence(issue)
        check_token(task.key, task.id, token, task.claim, fence)
        return task, fence

    def _update_task(self, task_id: str, changes: TaskChanges, *, token: int | None, force: bool) -> Task:
        """As the file provider: with a token, StaleClaim unless current; without, ClaimConflict
        on a live claim unless ``force``, which ends the claim (the fence grows)."""
        task, fence = self._fresh(task_id, token)
        now = self._now()
        live = task.claim is not None and task.claim.live(now)
        end_claim = update_ends_claim(task.key, task.id, task.claim, live, changes, token=token, force=force)
        new = task.copy(updated_at=now)
        new.status = status_after_update(task.status, changes.status, end_claim)
        if end_claim:
            new.claim = None
            fence += 1
        for name, value in changes.given().items():
            if name not in ("status", "dependencies"):
                setattr(new, name, value)
        if changes.dependencies is not None:
            deps = list(dict.fromkeys(str(codec.number(d)) if codec.is_number(d) else d for d in changes.dependencies))
            known = {str(n) for n in self._db_ids}
            for dep in deps:
                if dep not in known:
                    try:
                        self._get_issue(dep)
                    except TaskNotFound as exc:
                        raise TaskNotFound(f"dependencies of {task_id!r} name unknown task id(s): {dep}") from exc
            self._mirror_dependencies(int(task.id), task.dependencies, deps)
            new.dependencies = deps
        return self._write_issue(new, fence, None)

    def add_note(self, task_id: str, text: str, author: str, *, token: int | None = None) -> Note:
        number = codec.number(task_id)
        if token is not None:
            self._fresh(task_id, token)
        note = Note(text=text, author=author, at=self._now())
        self._post_comment(number, codec.note_body(note), task_id)
        return note

    def _post_comment(self, number: int, body: str, task_id: str) -> dict[str, Any]:
        try:
            comment = self._call("POST", f"/issues/{number}/comments", {"body": body})
        except GitHubAPIError as exc:
            if exc.status in (404, 410):
                raise TaskNotFound(f"no task with id {task_id!r} ({exc})") from exc
            raise
        if number in self._comments:
            self._comments[number] = [*self._comments[number], comment]
        return comment

    # -- claims --------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        return self._claim(self._get_issue(task_id), worker_id, lease_seconds)

    def _claim(self, issue: dict[str, Any], worker_id: str, lease_seconds: float) -> Task:
        task = self._to_task(issue, None)
        number = issue["number"]
        now = self._now()
        check_takeable(task, now)
        token = codec.fence(issue) + 1
        expires = now + timedelta(seconds=lease_seconds)
        attempts: set[int] = set()  # our own claim comments
        for _ in range(3):
            mine = self._post_comment(
                number,
                f"Claimed by `{worker_id}` until {expires:%Y-%m-%d %H:%M:%S} UTC (fencing token {token}).\n\n"
                + codec.marker("claim", {"token": token, "worker": worker_id, "expires": _iso(expires)}),
                task.id,
            )
            attempts.add(mine["id"])
            comments = self._issue_comments(number)
            first: dict[int, tuple[int, dict[str, Any]]] = {}  # token -> its first claim comment
            for c in comments:
                m = codec.CLAIM.search(c.get("body") or "")
                if m is not None:
                    data = json.loads(m.group(1))
                    if data["token"] >= token and (data["token"] not in first or c["id"] < first[data["token"]][0]):
                        first[data["token"]] = (c["id"], data)
            # later comments of a token lost to its first one; only firsts other than ours compete
            rivals = [data for cid, data in first.values() if cid not in attempts]
            if not rivals:
                break
            live = [r for r in rivals if _dt(r["expires"]) > now]
            if live:
                raise ClaimConflict(
                    f"{task.key} ({task.id}): lost the claim race to {live[0]['worker']} (token {live[0]['token']})"
                )
            token = max(r["token"] for r in rivals) + 1  # a claim that never landed: step over it
        else:
            raise ClaimConflict(f"{task.key} ({task.id}): could not settle a claim; try again")
        new = task.copy(status=TaskStatus.IN_PROGRESS, claim=Claim(worker_id, expires, token), updated_at=now)
        return self._write_issue(new, token, comments)

    def _claim_view(
        self, worker_id: str, lease_seconds: float
    ) -> tuple[Callable[[], list[Task]], Callable[[Task], Task]]:
        """One listing (no comments: scheduling needs none) for each look, and the claim
        from what it read."""
        issues: dict[str, dict[str, Any]] = {}

        def read() -> list[Task]:
            issues.clear()
            issues.update((str(i["number"]), i) for i in self._list_issues())
            return [self._to_task(i, None) for i in issues.values()]

        return read, lambda task: self._claim(issues[task.id], worker_id, lease_seconds)

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        task, fence = self._fresh(task_id, token)
        now = self._now()
        assert task.claim is not None
        lease = Claim(task.claim.worker_id, now + timedelta(seconds=lease_seconds), fence)
        new = task.copy(claim=lease, updated_at=now)
        return self._write_issue(new, fence, None)

    def _release(self, task_id: str, token: int, release: Release) -> Task:
        task, fence = self._fresh(task_id, token)
        now = self._now()
        if release.note is not None:
            self._post_comment(int(task.id), codec.note_body(Note(release.note, release.author, now)), task_id)
        new = task.copy(
            status=release.status, claim=None, updated_at=now,
            cost_usd=task.cost_usd + release.cost_usd, turns=task.turns + release.turns,
        )  # fmt: skip
        return self._write_issue(new, fence, None)

    # -- sessions ------------------------------------------------------------------------
    def _sessions_number(self, create: bool) -> int | None:
        if self._sessions_issue is None:
            found = self._all("/issues", {"state": "all", "labels": codec.SESSIONS_LABEL})
            found = [i for i in found if "pull_request" not in i]
            if found:
                self._sessions_issue = found[0]["number"]
            elif create:
                self._ensure_labels([codec.SESSIONS_LABEL])
                issue = self._call(
                    "POST",
                    "/issues",
                    {
                        "title": "autonomous: session log",
                        "body": "Runs of `autonomous start`, one comment each (written by autonomous).",
                        "labels": [codec.SESSIONS_LABEL],
                    },
                )
                self._sessions_issue = issue["number"]
        return self._sessions_issue

    def record_session(self, session: SessionRecord) -> None:
        number = self._sessions_number(create=True)
        assert number is not None
        text = f"Session `{session.id}` ({session.worker_id}): {session.state}\n\n" + codec.marker(
            "session", session.to_dict()
        )
        for comment in self._all(f"/issues/{number}/comments"):
            m = codec.SESSION.search(comment.get("body") or "")
            if m and json.loads(m.group(1)).get("id") == session.id:
                self._call("PATCH", f"/issues/comments/{comment['id']}", {"body": text})
                return
        self._call("POST", f"/issues/{number}/comments", {"body": text})

    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        number = self._sessions_number(create=False)
        if number is None:
            return []
        records = []
        for pos, comment in enumerate(self._all(f"/issues/{number}/comments")):
            m = codec.SESSION.search(comment.get("body") or "")
            if m:
                record = SessionRecord.from_dict(json.loads(m.group(1)))
                records.append((record.started_at, pos, record))
        records.sort(key=lambda r: (r[0], r[1]), reverse=True)
        return [r[2] for r in records[:limit]]
