"""The Linear provider: the StateProvider contract over the client (requests), the codec
(the mapping) and the queries (the documents). The package docstring says what it
guarantees where Linear, having no transactions, cannot.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from autonomous.errors import (
    ClaimConflict,
    LinearGraphQLError,
    ProviderAuthError,
    ProviderError,
    StaleClaim,
    TaskNotFound,
)
from autonomous.fsutil import write_json_atomic
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
from autonomous.providers.base import iso_time as _ts
from autonomous.providers.base import parse_time as _dt
from autonomous.providers.linear.client import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_ENDPOINT,
    ENDPOINT_ENV,
    LinearClient,
    RateLimit,
    not_found,
)
from autonomous.providers.linear.codec import (
    BLOCKED_LABEL,
    PRIORITY_TO_LINEAR,
    REVIEW_LABEL,
    TYPE_TO_STATUS,
    Entry,
    Issue,
    description_of,
    entry_body,
    is_issue_id,
    marker_of,
    parse_issue,
    render_description,
)
from autonomous.providers.linear.queries import (
    BATCH_SIZE,
    COMMENT_AND_UPDATE_MUTATION,
    COMMENT_CREATE_MUTATION,
    ISSUE_BATCH_CREATE_MUTATION,
    ISSUE_COMMENTS_PAGE_QUERY,
    ISSUE_LABELS_PAGE_QUERY,
    ISSUE_QUERY,
    ISSUE_RELATIONS_PAGE_QUERY,
    ISSUE_UPDATE_MUTATION,
    ISSUES_QUERY,
    PAGE_SIZE,
    RELATION_CREATE_MUTATION,
    RELATION_DELETE_MUTATION,
    RENEW_MUTATION,
)
from autonomous.providers.linear.team import Team, load_team
from autonomous.tasks import NewTask, Note, Priority, Task, TaskStatus, utcnow


class LinearProvider(StateProvider):
    """Tasks as issues of one Linear team (and project). See the module docstring.

    ``now`` is the clock leases and note times are read from; ``sleep`` and ``wall``
    (epoch seconds, for rate-limit reset headers) are injectable so tests never wait;
    ``transport`` is httpx's seam for tests; ``env`` replaces ``os.environ``. A renewal
    from a heartbeat thread may run beside the main thread's calls: the cache is only
    ever iterated over a snapshot.
    """

    kind = "linear"
    atomic_claims = False  # claims are confirmed by re-reading, not by a transaction

    def __init__(
        self,
        *,
        api_key_env: str | None = None,
        team_id: str | None = None,
        project_name: str | None = None,
        endpoint: str | None = None,
        state_dir: Path | str = ".ai-agents/state",
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_rate_limit_wait: float = 120.0,
        full_refresh_every: int = 20,
        env: Mapping[str, str] | None = None,
        **_ignored: Any,
    ) -> None:
        env = os.environ if env is None else env
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        key = env.get(self.api_key_env, "").strip()
        if not key:
            raise ProviderAuthError(
                f"Linear: the environment variable {self.api_key_env} is not set; create a personal API key "
                "(Linear: Settings > Account > Security & access > Personal API keys) with Read and Write access "
                f"and export {self.api_key_env}=lin_api_..."
            )
        self.team_id = team_id
        self.project_name = project_name
        self.sessions_path = Path(state_dir) / "linear_sessions.json"
        self._now = now
        self._full_refresh_every = max(1, full_refresh_every)
        self.client = LinearClient(
            key,
            api_key_env=self.api_key_env,
            endpoint=endpoint or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT,
            transport=transport,
            timeout=timeout,
            sleep=sleep,
            wall=wall,
            max_retries=max_retries,
            backoff=backoff,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._team: Team | None = None
        self._cache: dict[str, Issue] = {}
        self._mark: str | None = None  # the newest updatedAt seen by a poll
        self._polls = 0
        self._last_created: datetime | None = None
        self._held: dict[str, tuple[int, str]] = {}  # task id -> (token, nonce) of claims made here

    def close(self) -> None:
        self.client.close()

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.client.requests

    @property
    def requests_by_operation(self) -> dict[str, int]:
        return self.client.requests_by_operation

    @property
    def rate_limit(self) -> RateLimit:
        return self.client.rate_limit

    # -- setup: team, states, labels, project (read once) -----------------------------------------
    def _setup(self) -> Team:
        if self._team is None:
            self._team = load_team(self.client, self.team_id, self.project_name)
        return self._team

    @property
    def project_id(self) -> str | None:
        return self._setup().project_id

    # -- issues -> tasks ------------------------------------------------------------------------------
    def _complete(self, node: dict[str, Any]) -> dict[str, Any]:
        """Fetch the rest of any nested connection that did not fit on the first page."""
        for conn_name, document in (
            ("labels", ISSUE_LABELS_PAGE_QUERY),
            ("inverseRelations", ISSUE_RELATIONS_PAGE_QUERY),
            ("comments", ISSUE_COMMENTS_PAGE_QUERY),
        ):
            conn = node[conn_name]
            if more := self.client.rest(document, {"id": node["id"]}, conn, ["issue", conn_name]):
                node[conn_name] = {"nodes": conn["nodes"] + more, "pageInfo": {"hasNextPage": False, "endCursor": None}}
        return node

    def _parse(self, node: dict[str, Any]) -> Issue:
        issue = parse_issue(self._complete(node), self._setup().review_state_id)
        if not node.get("trashed") and not node.get("archivedAt"):
            self._cache[issue.task.id] = issue
        return issue

    def _fetch(self, task_id: str) -> Issue:
        """A fresh read of one issue; TaskNotFound for unknown, trashed or foreign issues."""
        self._setup()
        if not is_issue_id(task_id):
            raise TaskNotFound(f"no task with id {task_id!r}")
        try:
            node = self.client.request(ISSUE_QUERY, {"id": task_id})["issue"]
        except LinearGraphQLError as exc:
            if not_found(exc):
                self._cache.pop(task_id, None)
                raise TaskNotFound(f"no task with id {task_id!r} (Linear: {exc})") from exc
            raise
        if node is None or node.get("trashed") or node.get("archivedAt"):
            self._cache.pop(task_id, None)
            raise TaskNotFound(f"no task with id {task_id!r} (the issue was deleted or archived)")
        if not self._setup().in_scope(node):
            raise TaskNotFound(f"no task with id {task_id!r} (the issue belongs to another team or project)")
        return self._parse(node)

    def _mutate_issue(self, document: str, variables: dict[str, Any], field_name: str = "issueUpdate") -> Issue:
        try:
            data = self.client.request(document, variables)
        except LinearGraphQLError as exc:
            if not_found(exc):
                raise TaskNotFound(f"no task with id {variables.get('id')!r} (Linear: {exc})") from exc
            raise
        return self._parse(data[field_name]["issue"])

    # -- reading ----------------------------------------------------------------------------------------
    def _poll(self) -> None:
        """Bring the cache up to date: everything the first time (and every
        ``full_refresh_every`` polls), else only issues updated since the last poll."""
        scope = self._setup().scope_filter()
        self._polls += 1
        full = self._mark is None or self._polls % self._full_refresh_every == 0
        if full:
            nodes = self.client.pages(
                ISSUES_QUERY, {"filter": scope, "first": PAGE_SIZE, "includeArchived": False}, ["issues"]
            )
            self._cache = {}
        else:
            since = _ts(_dt(self._mark) - timedelta(seconds=1))  # type: ignore[arg-type]
            nodes = self.client.pages(
                ISSUES_QUERY,
                {"filter": {**scope, "updatedAt": {"gt": since}}, "first": PAGE_SIZE, "includeArchived": True},
                ["issues"],
            )
        for node in nodes:
            if node.get("trashed") or node.get("archivedAt"):
                self._cache.pop(node["id"], None)
            else:
                self._parse(node)
            if self._mark is None or node["updatedAt"] > self._mark:
                self._mark = node["updatedAt"]
        if full and self._mark is None:
            self._mark = _ts(self._now() - timedelta(days=1))

    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        self._poll()
        tasks = [issue.task.copy() for issue in list(self._cache.values())]
        tasks.sort(key=lambda t: (t.created_at, t.id))
        if statuses is None:
            return tasks
        wanted = {TaskStatus(s) for s in statuses}
        return [t for t in tasks if t.status in wanted]

    def get_task(self, task_id: str) -> Task:
        return self._fetch(task_id).task

    # -- writing -----------------------------------------------------------------------------------------
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        result = CreateResult()
        if not new_tasks:
            return result
        team = self._setup()
        self._poll()
        by_key = {issue.task.key: issue.task for issue in list(self._cache.values())}
        batch: dict[str, NewTask] = {}
        existing_ids: list[str] = []
        ids: dict[str, str] = {k: t.id for k, t in by_key.items()}
        for nt in new_tasks:
            if nt.key in by_key:
                existing_ids.append(by_key[nt.key].id)
            elif nt.key in batch:
                existing_ids.append(ids[nt.key])
            else:
                batch[nt.key] = nt
                ids[nt.key] = str(uuid.uuid4())  # client-chosen: a retried create cannot duplicate
        for nt in batch.values():
            check_dependency_keys(nt.key, nt.dependencies, ids)
        now = self._now()
        if self._last_created is not None and now <= self._last_created:  # batches keep their order
            now = self._last_created + timedelta(microseconds=1)
        self._last_created = now + timedelta(microseconds=len(batch) - 1)
        todo_state = self._setup().state_for(TaskStatus.TODO)
        inputs = []
        deps_of: dict[str, list[str]] = {}
        for i, nt in enumerate(batch.values()):
            deps = list(dict.fromkeys(ids[k] for k in nt.dependencies))
            deps_of[ids[nt.key]] = deps
            marker = {"key": nt.key, "created": _ts(now + timedelta(microseconds=i))}
            if deps:
                marker["deps"] = deps
            item: dict[str, Any] = {
                "id": ids[nt.key],
                "teamId": team.id,
                "title": nt.title,
                "description": render_description(nt.description, nt.acceptance_criteria, nt.test_steps, marker),
                "priority": PRIORITY_TO_LINEAR[Priority(nt.priority)],
                "stateId": todo_state["id"],
                "labelIds": self._setup().label_ids(self.client, nt.labels),
            }
            if team.project_id:
                item["projectId"] = team.project_id
            inputs.append(item)
        created: dict[str, Issue] = {}
        for start in range(0, len(inputs), BATCH_SIZE):
            data = self.client.request(
                ISSUE_BATCH_CREATE_MUTATION, {"input": {"issues": inputs[start : start + BATCH_SIZE]}}
            )
            for node in data["issueBatchCreate"]["issues"]:
                created[node["id"]] = self._parse(node)
        for task_id, deps in deps_of.items():
            for dep in deps:
                self.client.request(
                    RELATION_CREATE_MUTATION,
                    {"input": {"id": str(uuid.uuid4()), "issueId": dep, "relatedIssueId": task_id, "type": "blocks"}},
                )
            if deps:  # the relations are not in the create's answer; the cache learns them here
                created[task_id].task.dependencies = list(deps)
        result.created = [created[ids[k]].task.copy() for k in batch]
        by_id = {t.id: t for t in result.created}
        for tid in existing_ids:
            result.existing.append(by_id[tid].copy() if tid in by_id else self._cache[tid].task.copy())
        return result

    def _check_token(self, issue: Issue, token: int | None) -> None:
        if token is None:
            return
        state = issue.claim_state
        task = issue.task
        check_token(task.key, task.id, token, state.claim, state.fence)
        held = self._held.get(task.id)
        if held and held[0] == token and state.entry and state.entry.fields.get("nonce") != held[1]:
            raise StaleClaim(
                f"{task.key} ({task.id}): token {token} was also taken by {state.claim.worker_id}, whose claim "
                "came first (a lost race)"
            )

    def _status_input(self, issue: Issue, status: TaskStatus, labels: list[str] | None = None) -> dict[str, Any]:
        """The state and label part of one issueUpdate: blocked is a label, not a state."""
        team = self._setup()
        names = list(issue.task.labels if labels is None else labels)
        if status is TaskStatus.BLOCKED:
            names.append(BLOCKED_LABEL)
            state_id = issue.state_id if TYPE_TO_STATUS.get(issue.state_type) is TaskStatus.TODO else None
        elif status is TaskStatus.IN_REVIEW:
            if team.review_state_id is None:
                names.append(REVIEW_LABEL)
            state_id = None
        else:
            same = TYPE_TO_STATUS.get(issue.state_type) is status and issue.state_id != team.review_state_id
            state_id = issue.state_id if same else None
        return {"stateId": state_id or team.state_for(status)["id"], "labelIds": team.label_ids(self.client, names)}

    def _update_task(self, task_id: str, changes: TaskChanges, *, token: int | None, force: bool) -> Task:
        """The file provider's rules (see its docstring): a token must be current; without
        one a live claim refuses unless ``force``, which ends it with a ``fence`` entry."""
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        task, state = issue.task, issue.claim_state
        now = self._now()
        live = state.claim is not None and state.claim.live(now)
        end_claim = update_ends_claim(task.key, task_id, state.claim, live, changes, token=token, force=force)
        new_status = status_after_update(task.status, changes.status, end_claim)
        deps = changes.dependencies
        if deps is not None:
            self._set_relations(issue, deps)
        fields = {
            name: value
            for name in ("description", "acceptance_criteria", "test_steps")
            if (value := getattr(changes, name)) is not None
        }
        marker = marker_of(issue, deps=deps)
        if deps is None and "deps" in issue.marker:
            marker["deps"] = issue.marker["deps"]
        update: dict[str, Any] = {"description": description_of(issue, marker, **fields)}
        if changes.title is not None:
            update["title"] = changes.title
        if changes.priority is not None:
            update["priority"] = PRIORITY_TO_LINEAR[changes.priority]
        update.update(self._status_input(issue, new_status, changes.labels))
        if end_claim:
            body = entry_body("fence", None, token=state.fence + 1, by="update" if not force else "force", at=_ts(now))
            fresh = self._mutate_issue(
                COMMENT_AND_UPDATE_MUTATION,
                {"id": task_id, "comment": self._comment_input(task_id, body), "input": update},
            )
        else:
            fresh = self._mutate_issue(ISSUE_UPDATE_MUTATION, {"id": task_id, "input": update})
        return fresh.task.copy()

    def _set_relations(self, issue: Issue, deps: list[str]) -> None:
        known = set(self._cache)
        for dep in deps:
            if dep not in known and dep not in issue.relation_ids:
                self._fetch(dep)  # TaskNotFound for an unknown id, before anything is written
        for dep, relation_id in issue.relation_ids.items():
            if dep not in deps:
                self.client.request(RELATION_DELETE_MUTATION, {"id": relation_id})
        for dep in deps:
            if dep not in issue.relation_ids:
                self.client.request(
                    RELATION_CREATE_MUTATION,
                    {
                        "input": {
                            "id": str(uuid.uuid4()),
                            "issueId": dep,
                            "relatedIssueId": issue.task.id,
                            "type": "blocks",
                        }
                    },
                )

    @staticmethod
    def _comment_input(task_id: str, body: str) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "issueId": task_id, "body": body}

    def add_note(self, task_id: str, text: str, author: str, *, token: int | None = None) -> Note:
        """Without a token a note is always accepted (it overwrites nothing); with one, the
        issue is read first and a stale token refused."""
        if token is not None:
            self._check_token(self._fetch(task_id), token)
        elif not is_issue_id(task_id):
            raise TaskNotFound(f"no task with id {task_id!r}")
        now = self._now()
        body = entry_body("note", text, author=author, at=_ts(now))
        try:
            data = self.client.request(COMMENT_CREATE_MUTATION, {"input": self._comment_input(task_id, body)})
        except LinearGraphQLError as exc:
            if not_found(exc):
                raise TaskNotFound(f"no task with id {task_id!r} (Linear: {exc})") from exc
            raise
        note = Note(text=text, author=author, at=now)
        cached = self._cache.get(task_id)
        if cached is not None:  # comments do not move updatedAt: keep our own view current
            comment = data["commentCreate"]["comment"]
            cached.entries.append(Entry(comment["id"], "note", {"author": author, "at": _ts(now)}, text, now, author))
            cached.task.notes.append(note)
        return note

    # -- claims ---------------------------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        return self._claim(self._fetch(task_id), worker_id, lease_seconds)

    def _claim(self, issue: Issue, worker_id: str, lease_seconds: float) -> Task:
        now = self._now()
        task = issue.task
        check_takeable(task, now)
        token = issue.claim_state.fence + 1
        nonce = uuid.uuid4().hex[:12]
        expires = now + timedelta(seconds=lease_seconds)
        body = entry_body("claim", None, token=token, worker=worker_id, until=_ts(expires), nonce=nonce)
        update = self._status_input(issue, TaskStatus.IN_PROGRESS)
        update["description"] = description_of(issue, marker_of(issue, lease=_ts(expires)))
        variables = {"id": task.id, "comment": self._comment_input(task.id, body), "input": update}
        try:
            fresh = self._mutate_issue(COMMENT_AND_UPDATE_MUTATION, variables)
        except TaskNotFound:
            raise
        except ProviderError as exc:
            if isinstance(exc, ProviderAuthError):
                raise
            fresh = self._fetch(task.id)  # the write may have landed before the error: look
        entry = fresh.claim_state.entry
        if fresh.claim_state.fence != token or entry is None or entry.fields.get("nonce") != nonce:
            holder = fresh.claim_state.claim.worker_id if fresh.claim_state.claim else "another writer"
            raise ClaimConflict(f"{task.key} ({task.id}): lost the claim race to {holder} (token {token})")
        self._held[task.id] = (token, nonce)
        return fresh.task.copy()

    def _claim_view(
        self, worker_id: str, lease_seconds: float
    ) -> tuple[Callable[[], list[Task]], Callable[[Task], Task]]:
        """Poll once; the scheduler picks from the poll's view and the claim uses it (no second read)."""
        self._poll()
        return (
            lambda: [issue.task for issue in list(self._cache.values())],
            lambda task: self._claim(self._cache[task.id], worker_id, lease_seconds),
        )

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        entry = issue.claim_state.entry
        assert entry is not None  # a current token has a claim entry
        expires = self._now() + timedelta(seconds=lease_seconds)
        fields = {**entry.fields, "until": _ts(expires)}
        body = entry_body("claim", None, **fields)
        update = {"description": description_of(issue, marker_of(issue, lease=_ts(expires)))}
        fresh = self._mutate_issue(
            RENEW_MUTATION, {"id": task_id, "commentId": entry.comment_id, "comment": {"body": body}, "input": update}
        )
        return fresh.task.copy()

    def _release(self, task_id: str, token: int, release: Release) -> Task:
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        now = self._now()
        worker = issue.claim_state.claim.worker_id if issue.claim_state.claim else "?"
        cost, turns = round(issue.task.cost_usd + release.cost_usd, 6), issue.task.turns + release.turns
        marker = marker_of(issue, cost=cost or None, turns=turns or None)
        marker.pop("lease", None)
        update = {"description": description_of(issue, marker), **self._status_input(issue, release.status)}
        body = entry_body(
            "released", release.note, token=token, worker=worker, status=release.status.value, author=release.author,
            at=_ts(now),
        )  # fmt: skip
        fresh = self._mutate_issue(
            COMMENT_AND_UPDATE_MUTATION, {"id": task_id, "comment": self._comment_input(task_id, body), "input": update}
        )
        self._held.pop(task_id, None)
        return fresh.task.copy()

    # -- sessions: a local file (see the module docstring) -------------------------------------------------
    def _read_sessions(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.sessions_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def record_session(self, session: SessionRecord) -> None:
        sessions = self._read_sessions()
        sessions[session.id] = session.to_dict()
        write_json_atomic(self.sessions_path, sessions)

    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        sessions = self._read_sessions()
        records = [SessionRecord.from_dict(d) for d in sessions.values()]
        order = {sid: i for i, sid in enumerate(sessions)}
        records.sort(key=lambda s: (s.started_at, order[s.id]), reverse=True)
        return records[:limit]
