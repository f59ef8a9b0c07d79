"""Tasks as Linear issues (``state_provider.type: linear``), over Linear's GraphQL API.

Setup: a personal API key in ``$LINEAR_API_KEY`` (or the variable ``api_key_env`` names),
sent as ``Authorization: <key>`` (personal keys take no ``Bearer``). ``team_id`` is
optional when the key sees exactly one team; ``project_name`` scopes the tasks to a
project, created on first use. Without a project every issue of the team is a task.

Mapping (one place each; see docs/providers.md for the table):

* **Status by workflow-state type, never by name**: ``triage``/``backlog``/``unstarted``
  read as todo, ``started`` as in_progress, ``completed`` as done, ``canceled`` as
  canceled. Writing picks the team's first state (by position) of the type (todo prefers
  ``unstarted``). ``blocked`` has no state type in Linear: it is the ``blocked`` label (on
  an unstarted state) plus a comment; done and canceled win over a stale label.
  ``in_review`` is the team's first ``started`` state whose name says "review" ("In
  Review"), when it has one; otherwise the ``in-review`` label on a started state.
* **Priority**: 1 urgent, 2 high, 3 normal (Linear's "medium"), 4 low; 0 ("no priority")
  reads as low, so unprioritised issues sort last.
* **Description**: the task's description, then ``## Acceptance criteria`` and
  ``## Test steps`` Markdown sections, then one hidden HTML comment
  ``<!-- autonomous {...} -->`` with the stable key, creation time, dependency order and the
  cost and turns spent. An issue whose marker a person's edit removed keeps working: its
  key is derived from the title again (what it was made from in the first place).
* **Dependencies** are ``blocks`` relations (the dependency blocks the dependant);
  **notes** are comments; **META** is an issue with the ``meta`` label.
* **Sessions** are kept in a local JSON file next to the runner's state: they are the
  runner's bookkeeping, not the team's, and cost no requests.

Claims and fencing (Linear has no transactions, so this is an approximation):

* The claim log is the issue's comments. A claim posts an entry
  ``autonomous:claim token=`N` worker=`w` until=`t` nonce=`x``` and moves the issue to
  a started state, *in one request*; the same request's answer re-reads the comments
  (mutations run in order), and the claimer wins when its entry is the **earliest entry
  with the highest token** (comments ordered by ``createdAt``, then id). A later claimer
  sees the earlier entry and backs off with :class:`ClaimConflict`, reverting nothing (its
  losing entry stays as a harmless record; the state was moved to started by the winner
  too). Release and forced takeover post an entry (``released`` / ``fence``) that ends the
  claim; tokens are the highest token in the log plus one, so they only grow.
* **Race window**: the rule gives exactly one winner when Linear's ``createdAt`` order is
  its commit order. Two claims whose writes are in flight at the same instant (their
  comments committed out of ``createdAt`` order, or in the same millisecond with ids in
  the other order) can both read themselves as winners. The window is the duration of one
  write (milliseconds); it closes at the losing worker's next write, which re-reads the log,
  finds the other entry earlier and raises :class:`StaleClaim` (this process remembers
  the nonce of each claim it made, so a token shared by two entries is told apart).
* **Fencing**: every write under a claim re-reads the issue and checks the token (one
  read, one write). The remaining window is between that read and the write: a lease
  that expires exactly then and is taken over can still receive one write from the old
  holder. Leases are minutes long and renewed well before they lapse, so this needs a
  worker stalled past its lease in the middle of a write.
* ``claim_next`` claims from the poll it just made (milliseconds old) instead of reading
  the issue again; everything else reads fresh before it writes.

Request economy: team, workflow states, labels and project are read once per provider;
listing after the first time fetches only issues updated since the last poll (an
``updatedAt`` filter; a full listing every ``full_refresh_every`` polls catches changes
that do not touch the issue, like a person's comment); every state change is one
``issueUpdate`` carrying state, description marker and labels; every connection is
paged (``first``/``after``/``pageInfo``). ``requests`` counts HTTP requests made.

Errors: a missing key variable, a refused key (HTTP 401/403, ``AUTHENTICATION_ERROR``,
``FORBIDDEN``) raise :class:`ProviderAuthError` naming the variable. A rate limit (Linear
answers HTTP 400 with ``extensions.code == "RATELIMITED"``, not 429) waits until the
``X-RateLimit-*-Reset`` time, at most ``max_rate_limit_wait`` seconds in all; network
errors, timeouts, 5xx and ``INTERNAL_SERVER_ERROR`` are retried with backoff; validation
errors never are. Creates carry client-chosen ids, so a retried create cannot duplicate.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from autonomous import scheduler
from autonomous.errors import (
    ClaimConflict,
    ConfigError,
    LinearGraphQLError,
    ProviderAuthError,
    ProviderError,
    StaleClaim,
    TaskNotFound,
)
from autonomous.fsutil import write_json_atomic
from autonomous.providers.base import (
    _UNSET,
    CreateResult,
    SessionRecord,
    StateProvider,
    check_dependency_keys,
    check_takeable,
    check_token,
    claim_first_ready,
    status_after_update,
    update_ends_claim,
)
from autonomous.providers.base import iso_time as _ts
from autonomous.providers.base import parse_time as _dt
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, derive_key, utcnow

DEFAULT_ENDPOINT = "https://api.linear.app/graphql"
DEFAULT_API_KEY_ENV = "LINEAR_API_KEY"
ENDPOINT_ENV = "LINEAR_API_URL"
BLOCKED_LABEL = "blocked"
REVIEW_LABEL = "in-review"  # in_review on a team without an "In Review" state
PAGE_SIZE = 50  # issues per page; Linear's default page size
NESTED_PAGE_SIZE = 25  # labels, relations and comments fetched inline per issue
BATCH_SIZE = 25  # issues per issueBatchCreate

# -- the GraphQL documents: every one the provider can send (tests validate each against
# Linear's official schema) ----------------------------------------------------------------

_PAGE_INFO = "pageInfo { hasNextPage endCursor }"

ISSUE_FRAGMENT = f"""
fragment TaskIssue on Issue {{
  id
  identifier
  title
  description
  priority
  createdAt
  updatedAt
  archivedAt
  trashed
  team {{ id }}
  project {{ id }}
  state {{ id type }}
  labels(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id name }} {_PAGE_INFO} }}
  inverseRelations(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id type issue {{ id }} }} {_PAGE_INFO} }}
  comments(first: {NESTED_PAGE_SIZE}) {{ nodes {{ id body createdAt user {{ name }} }} {_PAGE_INFO} }}
}}
"""

TEAMS_QUERY = f"""
query Teams($first: Int!, $after: String) {{
  teams(first: $first, after: $after) {{ nodes {{ id name key }} {_PAGE_INFO} }}
}}
"""

TEAM_SETUP_QUERY = f"""
query TeamSetup($teamId: String!, $first: Int!) {{
  team(id: $teamId) {{
    id
    name
    key
    states(first: $first) {{ nodes {{ id name type position }} {_PAGE_INFO} }}
    labels(first: $first) {{ nodes {{ id name }} {_PAGE_INFO} }}
  }}
}}
"""

TEAM_STATES_QUERY = f"""
query TeamStates($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ states(first: $first, after: $after) {{ nodes {{ id name type position }} {_PAGE_INFO} }} }}
}}
"""

TEAM_LABELS_QUERY = f"""
query TeamLabels($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ labels(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

TEAM_PROJECTS_QUERY = f"""
query TeamProjects($teamId: String!, $first: Int!, $after: String) {{
  team(id: $teamId) {{ projects(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

ISSUES_QUERY = f"""
query Issues($filter: IssueFilter!, $first: Int!, $after: String, $includeArchived: Boolean!) {{
  issues(filter: $filter, first: $first, after: $after, includeArchived: $includeArchived) {{
    nodes {{ ...TaskIssue }}
    {_PAGE_INFO}
  }}
}}
{ISSUE_FRAGMENT}
"""

ISSUE_QUERY = f"""
query Issue($id: String!) {{
  issue(id: $id) {{ ...TaskIssue }}
}}
{ISSUE_FRAGMENT}
"""

ISSUE_LABELS_PAGE_QUERY = f"""
query IssueLabelsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{ labels(first: $first, after: $after) {{ nodes {{ id name }} {_PAGE_INFO} }} }}
}}
"""

ISSUE_RELATIONS_PAGE_QUERY = f"""
query IssueRelationsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{
    inverseRelations(first: $first, after: $after) {{ nodes {{ id type issue {{ id }} }} {_PAGE_INFO} }}
  }}
}}
"""

ISSUE_COMMENTS_PAGE_QUERY = f"""
query IssueCommentsPage($id: String!, $first: Int!, $after: String) {{
  issue(id: $id) {{
    comments(first: $first, after: $after) {{ nodes {{ id body createdAt user {{ name }} }} {_PAGE_INFO} }}
  }}
}}
"""

PROJECT_CREATE_MUTATION = """
mutation ProjectCreate($input: ProjectCreateInput!) {
  projectCreate(input: $input) { success project { id name } }
}
"""

LABEL_CREATE_MUTATION = """
mutation LabelCreate($input: IssueLabelCreateInput!) {
  issueLabelCreate(input: $input) { success issueLabel { id name } }
}
"""

ISSUE_BATCH_CREATE_MUTATION = f"""
mutation IssueBatchCreate($input: IssueBatchCreateInput!) {{
  issueBatchCreate(input: $input) {{ success issues {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

RELATION_CREATE_MUTATION = """
mutation RelationCreate($input: IssueRelationCreateInput!) {
  issueRelationCreate(input: $input) { success issueRelation { id } }
}
"""

RELATION_DELETE_MUTATION = """
mutation RelationDelete($id: String!) {
  issueRelationDelete(id: $id) { success }
}
"""

ISSUE_UPDATE_MUTATION = f"""
mutation IssueUpdate($id: String!, $input: IssueUpdateInput!) {{
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

# A comment and an issue update in one request: claims, releases, forced takeovers,
# blocking. Mutations run in order, so the issue read back includes the new comment.
COMMENT_AND_UPDATE_MUTATION = f"""
mutation CommentAndUpdate($id: String!, $comment: CommentCreateInput!, $input: IssueUpdateInput!) {{
  commentCreate(input: $comment) {{ success comment {{ id }} }}
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

# Renewal: the claim entry gets the new lease; the description marker mirrors it, which
# also bumps the issue's updatedAt so other workers' incremental polls see the renewal.
RENEW_MUTATION = f"""
mutation Renew($id: String!, $commentId: String!, $comment: CommentUpdateInput!, $input: IssueUpdateInput!) {{
  commentUpdate(id: $commentId, input: $comment) {{ success comment {{ id }} }}
  issueUpdate(id: $id, input: $input) {{ success issue {{ ...TaskIssue }} }}
}}
{ISSUE_FRAGMENT}
"""

COMMENT_CREATE_MUTATION = """
mutation CommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) { success comment { id createdAt } }
}
"""

DOCUMENTS: dict[str, str] = {
    name: value
    for name, value in sorted(globals().items())
    if name.endswith(("_QUERY", "_MUTATION")) and isinstance(value, str)
}

# -- the mapping ---------------------------------------------------------------------------------

_TYPE_TO_STATUS = {
    "triage": TaskStatus.TODO,
    "backlog": TaskStatus.TODO,
    "unstarted": TaskStatus.TODO,
    "started": TaskStatus.IN_PROGRESS,
    "completed": TaskStatus.DONE,
    "canceled": TaskStatus.CANCELED,
}
# state types to write for a status, in order of preference
_STATUS_TO_TYPES = {
    TaskStatus.TODO: ("unstarted", "backlog", "triage"),
    TaskStatus.BLOCKED: ("unstarted", "backlog", "triage"),
    TaskStatus.IN_PROGRESS: ("started",),
    TaskStatus.IN_REVIEW: ("started",),
    TaskStatus.DONE: ("completed",),
    TaskStatus.CANCELED: ("canceled",),
}
_PRIORITY_TO_LINEAR = {Priority.URGENT: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 4}
_LINEAR_TO_PRIORITY = {1: Priority.URGENT, 2: Priority.HIGH, 3: Priority.NORMAL, 4: Priority.LOW}


def priority_from_linear(value: float | int | None) -> Priority:
    """Linear's 0 ("no priority") and anything unknown read as low: they sort last."""
    return _LINEAR_TO_PRIORITY.get(int(value or 0), Priority.LOW)


def status_from_state_type(state_type: str, labels: Iterable[str] = (), *, in_review_state: bool = False) -> TaskStatus:
    """``in_review_state``: the issue is in the team's "In Review" state (see the module docstring)."""
    status = _TYPE_TO_STATUS.get(state_type, TaskStatus.TODO)
    labels = set(labels)
    if status is TaskStatus.TODO and BLOCKED_LABEL in labels:
        return TaskStatus.BLOCKED
    if status is TaskStatus.IN_PROGRESS and (in_review_state or REVIEW_LABEL in labels):
        return TaskStatus.IN_REVIEW
    return status


def review_state(states: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The team's state for in_review: its first started state named like "In Review"."""
    return next((s for s in states if s["type"] == "started" and "review" in s.get("name", "").lower()), None)


# -- the description: text, sections, hidden marker -------------------------------------------

_MARKER = re.compile(r"\n*<!-- autonomous (\{.*?\}) -->\s*$", re.S)
_CRITERIA = "## Acceptance criteria"
_STEPS = "## Test steps"
_ITEM = re.compile(r"^(?:[-*+]\s+(?:\[[ xX]\]\s+)?|\d+[.)]\s+)")


def render_description(description: str, criteria: Sequence[str], steps: Sequence[str], marker: dict[str, Any]) -> str:
    parts = [description] if description else []
    if criteria:
        parts.append(_CRITERIA + "\n" + "\n".join("- " + _indent(c) for c in criteria))
    if steps:
        parts.append(_STEPS + "\n" + "\n".join(f"{i}. " + _indent(s) for i, s in enumerate(steps, 1)))
    blob = json.dumps(marker, sort_keys=True, separators=(",", ":")).replace(">", "\\u003e").replace("<", "\\u003c")
    parts.append(f"<!-- autonomous {blob} -->")
    return "\n\n".join(parts)


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")


def parse_description(text: str | None) -> tuple[str, list[str], list[str], dict[str, Any]]:
    """(description, acceptance criteria, test steps, marker) from an issue description."""
    text = text or ""
    marker: dict[str, Any] = {}
    m = _MARKER.search(text)
    if m:
        try:
            marker = json.loads(m.group(1))
        except ValueError:
            marker = {}
        text = text[: m.start()]
    sections: dict[str, list[str]] = {}
    for heading in (_STEPS, _CRITERIA):  # the sections are last, steps after criteria
        at = text.rfind("\n\n" + heading + "\n")
        start = at + 2 if at >= 0 else (0 if text.startswith(heading + "\n") else -1)
        if start >= 0:
            body = text[start + len(heading) + 1 :]
            sections[heading] = _items(body)
            text = text[: max(at, 0)]
    return text, sections.get(_CRITERIA, []), sections.get(_STEPS, []), marker


def _items(body: str) -> list[str]:
    items: list[str] = []
    for line in body.split("\n"):
        m = _ITEM.match(line)
        if m:
            items.append(line[m.end() :])
        elif items and line.startswith("   "):
            items[-1] += "\n" + line[3:]
        elif items and line.strip():
            items[-1] += "\n" + line.strip()
    return items


# -- the claim log in comments ------------------------------------------------------------------

_ENTRY = re.compile(r"\Aautonomous:(claim|released|fence|note)((?: \w+=`[^`\n]*`)*)[ \t]*(?:\n\n(.*))?\Z", re.S)
_FIELD = re.compile(r"(\w+)=`([^`\n]*)`")


def _tick(value: object) -> str:
    return "`" + str(value).replace("`", "'").replace("\n", " ") + "`"


def entry_body(kind: str, text: str | None = None, **fields: object) -> str:
    head = "autonomous:" + kind + "".join(f" {k}={_tick(v)}" for k, v in fields.items())
    return head + ("\n\n" + text if text is not None else "")


@dataclass(slots=True)
class _Entry:
    comment_id: str
    kind: str  # claim, released, fence, note, or "" for a person's comment
    fields: dict[str, str]
    text: str | None
    created_at: datetime
    author: str

    @property
    def token(self) -> int:
        try:
            return int(self.fields.get("token", "0"))
        except ValueError:
            return 0


def _parse_entry(node: dict[str, Any]) -> _Entry:
    body = node.get("body") or ""
    created = _dt(node["createdAt"])
    user = (node.get("user") or {}).get("name") or "linear"
    m = _ENTRY.match(body)
    if not m:
        return _Entry(node["id"], "", {}, body, created, user)
    fields = dict(_FIELD.findall(m.group(2)))
    return _Entry(node["id"], m.group(1), fields, m.group(3), created, fields.get("author") or fields.get("by") or user)


@dataclass(slots=True)
class _ClaimState:
    fence: int  # the highest token in the log
    claim: Claim | None  # the live-or-lapsed claim holding the highest token, if not ended
    entry: _Entry | None  # its claim entry


def _claim_state(entries: Sequence[_Entry]) -> _ClaimState:
    tokened = [e for e in entries if e.kind in ("claim", "released", "fence")]
    if not tokened:
        return _ClaimState(0, None, None)
    top = max(e.token for e in tokened)
    at_top = [e for e in tokened if e.token == top]
    claims = [e for e in at_top if e.kind == "claim"]
    ended = any(e.kind in ("released", "fence") for e in at_top)
    if not claims or ended:
        return _ClaimState(top, None, None)
    winner = claims[0]  # entries are in (createdAt, id) order: the earliest wins
    try:
        expires = _dt(winner.fields["until"])
    except (KeyError, ValueError):
        return _ClaimState(top, None, None)
    return _ClaimState(top, Claim(winner.fields.get("worker", "?"), expires, top), winner)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}-\d+$")


@dataclass(slots=True)
class _Issue:
    """An issue as read, with what the write paths need beside the task."""

    task: Task
    state_id: str
    state_type: str
    label_ids: dict[str, str]  # name -> id, including "blocked"
    relation_ids: dict[str, str]  # dependency task id -> relation id
    entries: list[_Entry]
    marker: dict[str, Any]
    updated_at: str
    claim_state: _ClaimState


@dataclass
class RateLimit:
    """What the last response's headers said about the budgets."""

    requests_remaining: int | None = None
    requests_reset: float | None = None  # epoch seconds
    complexity_remaining: int | None = None
    complexity_reset: float | None = None
    last_complexity: int | None = None


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


@dataclass
class _Team:
    id: str
    name: str
    key: str
    states: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # name -> id


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
        self.endpoint = endpoint or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        self.team_id = team_id
        self.project_name = project_name
        self.sessions_path = Path(state_dir) / "linear_sessions.json"
        self._now = now
        self._sleep = sleep
        self._wall = wall
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_rate_limit_wait = max_rate_limit_wait
        self._full_refresh_every = max(1, full_refresh_every)
        self._client = httpx.Client(
            transport=transport,
            timeout=timeout,
            headers={"Authorization": key, "Content-Type": "application/json", "User-Agent": "autonomous-runner"},
        )
        self.requests = 0  # HTTP requests sent, retries included
        self.requests_by_operation: dict[str, int] = {}
        self.rate_limit = RateLimit()
        self.rate_limit_waits: list[float] = []
        self._team: _Team | None = None
        self._project_id: str | None = None
        self._cache: dict[str, _Issue] = {}
        self._mark: str | None = None  # the newest updatedAt seen by a poll
        self._polls = 0
        self._last_created: datetime | None = None
        self._held: dict[str, tuple[int, str]] = {}  # task id -> (token, nonce) of claims made here

    # -- HTTP -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def _request(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one document; retry what is worth retrying; return ``data``."""
        name = _operation_name(document)
        waited = 0.0
        attempt = 0
        while True:
            self._wait_for_budget()
            self.requests += 1
            self.requests_by_operation[name] = self.requests_by_operation.get(name, 0) + 1
            try:
                return self._send(document, variables or {})
            except _Retry as retry:
                attempt += 1
                if retry.wait is not None:  # rate limited: wait for the reset, bounded in total
                    wait = max(0.0, retry.wait)
                    if waited + wait > self._max_rate_limit_wait:
                        raise ProviderError(
                            f"Linear: rate limited ({retry}); the budget resets in {wait:.0f}s, more than the "
                            f"{self._max_rate_limit_wait:.0f}s this provider waits"
                        ) from None
                    waited += wait
                    self.rate_limit_waits.append(wait)
                    self._sleep(wait)
                    self.rate_limit.requests_remaining = self.rate_limit.complexity_remaining = None  # reset now
                    if attempt <= self._max_retries + 3:
                        continue
                elif attempt <= self._max_retries:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise ProviderError(f"Linear: {name} failed after {attempt} attempts: {retry}") from None

    def _wait_for_budget(self) -> None:
        """Honour an exhausted budget before sending, rather than spending a request to learn it."""
        rl = self.rate_limit
        for remaining, reset in (
            (rl.requests_remaining, rl.requests_reset),
            (rl.complexity_remaining, rl.complexity_reset),
        ):
            if remaining is not None and remaining <= 0 and reset is not None:
                wait = reset - self._wall()
                if wait > 0:
                    wait = min(wait, self._max_rate_limit_wait)
                    self.rate_limit_waits.append(wait)
                    self._sleep(wait)
                rl.requests_remaining = rl.complexity_remaining = None

    def _send(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(self.endpoint, json={"query": document, "variables": variables})
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"network error: {exc}") from exc
        self._read_rate_headers(response.headers)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = body.get("errors") or [] if isinstance(body, dict) else []
        codes = [str((e.get("extensions") or {}).get("code", "")) for e in errors if isinstance(e, dict)]
        messages = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict)) or response.text[:200]
        if "RATELIMITED" in codes or status == 429:
            raise _Retry(f"rate limited: {messages}", wait=self._reset_wait())
        if status in (401, 403) or "AUTHENTICATION_ERROR" in codes or "FORBIDDEN" in codes:
            raise self._auth_error(status, codes, messages)
        if status >= 500 or "INTERNAL_SERVER_ERROR" in codes:
            raise _Retry(f"HTTP {status}: {messages}")
        if errors:
            raise LinearGraphQLError(f"Linear: {messages}", codes[0] if codes else "", errors)
        if status != 200 or not isinstance(body, dict) or "data" not in body:
            raise LinearGraphQLError(f"Linear: unexpected HTTP {status} answer: {response.text[:200]}")
        return body["data"] or {}

    def _auth_error(self, status: int, codes: list[str], messages: str) -> ProviderAuthError:
        if status == 403 or "FORBIDDEN" in codes:
            return ProviderAuthError(
                f"Linear refused the API key in {self.api_key_env}: it lacks a permission ({messages}). "
                "The key needs Read and Write access (or Create issues and Create comments) to the team; "
                "create a new key with those scopes"
            )
        return ProviderAuthError(
            f"Linear rejected the API key in {self.api_key_env} (HTTP {status}: {messages}); "
            "check that it is a valid, unrevoked personal API key with Read and Write access"
        )

    def _read_rate_headers(self, headers: httpx.Headers) -> None:
        rl = self.rate_limit

        def num(name: str) -> float | None:
            try:
                return float(headers[name])
            except (KeyError, ValueError):
                return None

        if (v := num("x-ratelimit-requests-remaining")) is not None:
            rl.requests_remaining = int(v)
        if (v := num("x-ratelimit-requests-reset")) is not None:
            rl.requests_reset = v / 1000.0  # Linear sends epoch milliseconds
        if (v := num("x-ratelimit-complexity-remaining")) is not None:
            rl.complexity_remaining = int(v)
        if (v := num("x-ratelimit-complexity-reset")) is not None:
            rl.complexity_reset = v / 1000.0
        if (v := num("x-complexity")) is not None:
            rl.last_complexity = int(v)

    def _reset_wait(self) -> float:
        rl = self.rate_limit
        resets = [r for r in (rl.requests_reset, rl.complexity_reset) if r is not None]
        if not resets:
            return 60.0  # no header: Linear's buckets refill within a minute
        exhausted = [
            r
            for rem, r in ((rl.requests_remaining, rl.requests_reset), (rl.complexity_remaining, rl.complexity_reset))
            if r is not None and rem is not None and rem <= 0
        ]
        return max(0.0, max(exhausted or resets) - self._wall())

    def _pages(self, document: str, variables: dict[str, Any], path: Sequence[str]) -> list[dict[str, Any]]:
        """Every node of a connection, following ``pageInfo`` to the end."""
        nodes: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            data = self._request(document, {**variables, "after": after})
            conn: Any = data
            for step in path:
                conn = conn[step]
            nodes.extend(conn["nodes"])
            info = conn["pageInfo"]
            if not info["hasNextPage"]:
                return nodes
            after = info["endCursor"]

    # -- setup: team, states, labels, project (read once) -----------------------------------------
    def _setup(self) -> _Team:
        if self._team is not None:
            return self._team
        team_id = self.team_id
        if not team_id:
            teams = self._pages(TEAMS_QUERY, {"first": PAGE_SIZE}, ["teams"])
            if not teams:
                raise ProviderAuthError(
                    f"Linear: the API key in {self.api_key_env} sees no team; give it access to the team to use"
                )
            if len(teams) > 1:
                listing = ", ".join(f"{t['name']} ({t['key']}, id {t['id']})" for t in teams)
                raise ConfigError(
                    f"state_provider.team_id: the API key sees {len(teams)} Linear teams: {listing}; "
                    "set team_id to one of these ids"
                )
            team_id = teams[0]["id"]
        try:
            data = self._request(TEAM_SETUP_QUERY, {"teamId": team_id, "first": PAGE_SIZE})
        except LinearGraphQLError as exc:
            raise ConfigError(
                f"state_provider.team_id: Linear has no team {team_id!r} this key can see ({exc})"
            ) from exc
        raw = data["team"]
        team = _Team(raw["id"], raw["name"], raw["key"])
        states = list(raw["states"]["nodes"])
        if raw["states"]["pageInfo"]["hasNextPage"]:
            states += self._more(TEAM_STATES_QUERY, team.id, raw["states"]["pageInfo"]["endCursor"], ["team", "states"])
        labels = list(raw["labels"]["nodes"])
        if raw["labels"]["pageInfo"]["hasNextPage"]:
            labels += self._more(TEAM_LABELS_QUERY, team.id, raw["labels"]["pageInfo"]["endCursor"], ["team", "labels"])
        team.states = sorted(states, key=lambda s: s["position"])
        team.labels = {label["name"]: label["id"] for label in labels}
        self._team = team
        if self.project_name:
            projects = self._pages(TEAM_PROJECTS_QUERY, {"teamId": team.id, "first": PAGE_SIZE}, ["team", "projects"])
            found = [p for p in projects if p["name"] == self.project_name]
            if found:
                self._project_id = found[0]["id"]
            else:
                data = self._request(
                    PROJECT_CREATE_MUTATION,
                    {"input": {"id": str(uuid.uuid4()), "name": self.project_name, "teamIds": [team.id]}},
                )
                self._project_id = data["projectCreate"]["project"]["id"]
        return team

    def _more(self, document: str, owner_id: str, after: str, path: Sequence[str], key: str = "teamId") -> list[dict]:
        nodes: list[dict[str, Any]] = []
        while after:
            data = self._request(document, {key: owner_id, "first": PAGE_SIZE, "after": after})
            conn: Any = data
            for step in path:
                conn = conn[step]
            nodes.extend(conn["nodes"])
            after = conn["pageInfo"]["endCursor"] if conn["pageInfo"]["hasNextPage"] else ""
        return nodes

    @property
    def project_id(self) -> str | None:
        self._setup()
        return self._project_id

    def _review_state_id(self) -> str | None:
        review = review_state(self._setup().states)
        return review["id"] if review else None

    def _state_for(self, status: TaskStatus) -> dict[str, Any]:
        team = self._setup()
        review = review_state(team.states)
        if status is TaskStatus.IN_REVIEW and review is not None:
            return review
        for state_type in _STATUS_TO_TYPES[status]:
            for state in team.states:
                if state["type"] == state_type and (state is not review or status is TaskStatus.IN_REVIEW):
                    return state
        raise ProviderError(
            f"Linear team {team.name} has no workflow state of type {'/'.join(_STATUS_TO_TYPES[status])} "
            f"to represent {status.value}"
        )

    def _label_ids(self, names: Iterable[str]) -> list[str]:
        team = self._setup()
        ids = []
        for name in dict.fromkeys(names):
            if name not in team.labels:
                data = self._request(
                    LABEL_CREATE_MUTATION, {"input": {"id": str(uuid.uuid4()), "name": name, "teamId": team.id}}
                )
                team.labels[name] = data["issueLabelCreate"]["issueLabel"]["id"]
            ids.append(team.labels[name])
        return ids

    def _scope_filter(self) -> dict[str, Any]:
        team = self._setup()
        if self._project_id:
            return {"project": {"id": {"eq": self._project_id}}}
        return {"team": {"id": {"eq": team.id}}}

    # -- issues -> tasks ------------------------------------------------------------------------------
    def _complete(self, node: dict[str, Any]) -> dict[str, Any]:
        """Fetch the rest of any nested connection that did not fit on the first page."""
        for conn_name, document in (
            ("labels", ISSUE_LABELS_PAGE_QUERY),
            ("inverseRelations", ISSUE_RELATIONS_PAGE_QUERY),
            ("comments", ISSUE_COMMENTS_PAGE_QUERY),
        ):
            conn = node[conn_name]
            if conn["pageInfo"]["hasNextPage"]:
                more = self._more(document, node["id"], conn["pageInfo"]["endCursor"], ["issue", conn_name], key="id")
                node[conn_name] = {"nodes": conn["nodes"] + more, "pageInfo": {"hasNextPage": False, "endCursor": None}}
        return node

    def _parse(self, node: dict[str, Any]) -> _Issue:
        node = self._complete(node)
        description, criteria, steps, marker = parse_description(node.get("description"))
        label_ids = {label["name"]: label["id"] for label in node["labels"]["nodes"]}
        relations = [r for r in node["inverseRelations"]["nodes"] if r["type"] == "blocks"]
        order = {dep: i for i, dep in enumerate(marker.get("deps", []))}
        relations.sort(key=lambda r: order.get(r["issue"]["id"], len(order)))
        comments = sorted(node["comments"]["nodes"], key=lambda c: (c["createdAt"], c["id"]))
        entries = [_parse_entry(c) for c in comments]
        claim_state = _claim_state(entries)
        notes = []
        for e in entries:
            if e.kind in ("note", "released", "fence") and e.text is not None:
                at = _dt(e.fields["at"]) if "at" in e.fields else e.created_at
                notes.append(Note(text=e.text, author=e.author, at=at))
            elif e.kind == "" and e.text is not None:
                notes.append(Note(text=e.text, author=e.author, at=e.created_at))
        state_type = node["state"]["type"]
        created = _dt(marker["created"]) if "created" in marker else _dt(node["createdAt"])
        task = Task(
            id=node["id"],
            key=str(marker.get("key") or derive_key(node["title"])),
            title=node["title"],
            description=description,
            acceptance_criteria=criteria,
            test_steps=steps,
            status=status_from_state_type(
                state_type, label_ids, in_review_state=node["state"]["id"] == self._review_state_id()
            ),
            priority=priority_from_linear(node.get("priority")),
            labels=[name for name in label_ids if name not in (BLOCKED_LABEL, REVIEW_LABEL)],
            dependencies=[r["issue"]["id"] for r in relations],
            notes=notes,
            claim=claim_state.claim,
            created_at=created,
            updated_at=_dt(node["updatedAt"]),
            cost_usd=float(marker.get("cost", 0.0)),
            turns=int(marker.get("turns", 0)),
        )
        issue = _Issue(
            task=task,
            state_id=node["state"]["id"],
            state_type=state_type,
            label_ids=label_ids,
            relation_ids={r["issue"]["id"]: r["id"] for r in relations},
            entries=entries,
            marker=marker,
            updated_at=node["updatedAt"],
            claim_state=claim_state,
        )
        if not node.get("trashed") and not node.get("archivedAt"):
            self._cache[task.id] = issue
        return issue

    def _fetch(self, task_id: str) -> _Issue:
        """A fresh read of one issue; TaskNotFound for unknown, trashed or foreign issues."""
        self._setup()
        if not (_UUID.match(task_id) or _IDENTIFIER.match(task_id)):
            raise TaskNotFound(f"no task with id {task_id!r}")
        try:
            node = self._request(ISSUE_QUERY, {"id": task_id})["issue"]
        except LinearGraphQLError as exc:
            if _not_found(exc):
                self._cache.pop(task_id, None)
                raise TaskNotFound(f"no task with id {task_id!r} (Linear: {exc})") from exc
            raise
        if node is None or node.get("trashed") or node.get("archivedAt"):
            self._cache.pop(task_id, None)
            raise TaskNotFound(f"no task with id {task_id!r} (the issue was deleted or archived)")
        if not self._in_scope(node):
            raise TaskNotFound(f"no task with id {task_id!r} (the issue belongs to another team or project)")
        return self._parse(node)

    def _in_scope(self, node: dict[str, Any]) -> bool:
        team = self._setup()
        if self._project_id:
            return (node.get("project") or {}).get("id") == self._project_id
        return (node.get("team") or {}).get("id") == team.id

    def _mutate_issue(self, document: str, variables: dict[str, Any], field_name: str = "issueUpdate") -> _Issue:
        try:
            data = self._request(document, variables)
        except LinearGraphQLError as exc:
            if _not_found(exc):
                raise TaskNotFound(f"no task with id {variables.get('id')!r} (Linear: {exc})") from exc
            raise
        return self._parse(data[field_name]["issue"])

    # -- reading ----------------------------------------------------------------------------------------
    def _poll(self) -> None:
        """Bring the cache up to date: everything the first time (and every
        ``full_refresh_every`` polls), else only issues updated since the last poll."""
        scope = self._scope_filter()
        self._polls += 1
        full = self._mark is None or self._polls % self._full_refresh_every == 0
        if full:
            nodes = self._pages(
                ISSUES_QUERY, {"filter": scope, "first": PAGE_SIZE, "includeArchived": False}, ["issues"]
            )
            self._cache = {}
        else:
            since = _ts(_dt(self._mark) - timedelta(seconds=1))  # type: ignore[arg-type]
            nodes = self._pages(
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
        todo_state = self._state_for(TaskStatus.TODO)
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
                "priority": _PRIORITY_TO_LINEAR[Priority(nt.priority)],
                "stateId": todo_state["id"],
                "labelIds": self._label_ids(nt.labels),
            }
            if self._project_id:
                item["projectId"] = self._project_id
            inputs.append(item)
        created: dict[str, _Issue] = {}
        for start in range(0, len(inputs), BATCH_SIZE):
            data = self._request(ISSUE_BATCH_CREATE_MUTATION, {"input": {"issues": inputs[start : start + BATCH_SIZE]}})
            for node in data["issueBatchCreate"]["issues"]:
                created[node["id"]] = self._parse(node)
        for task_id, deps in deps_of.items():
            for dep in deps:
                self._request(
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

    def _check_token(self, issue: _Issue, token: int | None) -> None:
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

    def _marker(self, issue: _Issue, **changes: Any) -> dict[str, Any]:
        marker = dict(issue.marker)
        marker.setdefault("key", issue.task.key)
        marker.setdefault("created", _ts(issue.task.created_at))
        marker.update(changes)
        return {k: v for k, v in marker.items() if v not in (None, [], "")}

    def _description(self, issue: _Issue, marker: dict[str, Any], **fields: Any) -> str:
        task = issue.task
        return render_description(
            fields.get("description", task.description),
            fields.get("acceptance_criteria", task.acceptance_criteria),
            fields.get("test_steps", task.test_steps),
            marker,
        )

    def _status_input(self, issue: _Issue, status: TaskStatus, labels: list[str] | None = None) -> dict[str, Any]:
        """The state and label part of one issueUpdate: blocked is a label, not a state."""
        names = list(issue.task.labels if labels is None else labels)
        if status is TaskStatus.BLOCKED:
            names.append(BLOCKED_LABEL)
            state_id = issue.state_id if _TYPE_TO_STATUS.get(issue.state_type) is TaskStatus.TODO else None
        elif status is TaskStatus.IN_REVIEW:
            if self._review_state_id() is None:
                names.append(REVIEW_LABEL)
            state_id = None
        else:
            same = _TYPE_TO_STATUS.get(issue.state_type) is status and issue.state_id != self._review_state_id()
            state_id = issue.state_id if same else None
        return {"stateId": state_id or self._state_for(status)["id"], "labelIds": self._label_ids(names)}

    def update_task(
        self,
        task_id: str,
        *,
        token: int | None = None,
        force: bool = False,
        title: str = _UNSET,
        description: str = _UNSET,
        acceptance_criteria: list[str] = _UNSET,
        test_steps: list[str] = _UNSET,
        status: TaskStatus = _UNSET,
        priority: Priority = _UNSET,
        labels: list[str] = _UNSET,
        dependencies: list[str] = _UNSET,
    ) -> Task:
        """The file provider's rules (see its docstring): a token must be current; without
        one a live claim refuses unless ``force``, which ends it with a ``fence`` entry."""
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        task, state = issue.task, issue.claim_state
        now = self._now()
        live = state.claim is not None and state.claim.live(now)
        end_claim = update_ends_claim(
            task.key, task_id, state.claim, live, token=token, force=force, status_given=status is not _UNSET
        )
        new_status = status_after_update(task.status, None if status is _UNSET else status, end_claim)
        if dependencies is not _UNSET:
            self._set_relations(issue, list(dict.fromkeys(dependencies)))
        fields = {
            k: v
            for k, v in (
                ("description", description),
                ("acceptance_criteria", acceptance_criteria),
                ("test_steps", test_steps),
            )
            if v is not _UNSET
        }
        marker = self._marker(issue, deps=list(dict.fromkeys(dependencies)) if dependencies is not _UNSET else None)
        if dependencies is _UNSET and "deps" in issue.marker:
            marker["deps"] = issue.marker["deps"]
        update: dict[str, Any] = {"description": self._description(issue, marker, **fields)}
        if title is not _UNSET:
            update["title"] = title
        if priority is not _UNSET:
            update["priority"] = _PRIORITY_TO_LINEAR[Priority(priority)]
        update.update(self._status_input(issue, new_status, None if labels is _UNSET else list(labels)))
        if end_claim:
            body = entry_body("fence", None, token=state.fence + 1, by="update" if not force else "force", at=_ts(now))
            fresh = self._mutate_issue(
                COMMENT_AND_UPDATE_MUTATION,
                {"id": task_id, "comment": self._comment_input(task_id, body), "input": update},
            )
        else:
            fresh = self._mutate_issue(ISSUE_UPDATE_MUTATION, {"id": task_id, "input": update})
        return fresh.task.copy()

    def _set_relations(self, issue: _Issue, deps: list[str]) -> None:
        known = set(self._cache)
        for dep in deps:
            if dep not in known and dep not in issue.relation_ids:
                self._fetch(dep)  # TaskNotFound for an unknown id, before anything is written
        for dep, relation_id in issue.relation_ids.items():
            if dep not in deps:
                self._request(RELATION_DELETE_MUTATION, {"id": relation_id})
        for dep in deps:
            if dep not in issue.relation_ids:
                self._request(
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
        elif not (_UUID.match(task_id) or _IDENTIFIER.match(task_id)):
            raise TaskNotFound(f"no task with id {task_id!r}")
        now = self._now()
        body = entry_body("note", text, author=author, at=_ts(now))
        try:
            data = self._request(COMMENT_CREATE_MUTATION, {"input": self._comment_input(task_id, body)})
        except LinearGraphQLError as exc:
            if _not_found(exc):
                raise TaskNotFound(f"no task with id {task_id!r} (Linear: {exc})") from exc
            raise
        note = Note(text=text, author=author, at=now)
        cached = self._cache.get(task_id)
        if cached is not None:  # comments do not move updatedAt: keep our own view current
            comment = data["commentCreate"]["comment"]
            cached.entries.append(_Entry(comment["id"], "note", {"author": author, "at": _ts(now)}, text, now, author))
            cached.task.notes.append(note)
        return note

    # -- claims ---------------------------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        return self._claim(self._fetch(task_id), worker_id, lease_seconds)

    def _claim(self, issue: _Issue, worker_id: str, lease_seconds: float) -> Task:
        now = self._now()
        task = issue.task
        check_takeable(task, now)
        token = issue.claim_state.fence + 1
        nonce = uuid.uuid4().hex[:12]
        expires = now + timedelta(seconds=lease_seconds)
        body = entry_body("claim", None, token=token, worker=worker_id, until=_ts(expires), nonce=nonce)
        update = self._status_input(issue, TaskStatus.IN_PROGRESS)
        update["description"] = self._description(issue, self._marker(issue, lease=_ts(expires)))
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

    def claim_next(
        self,
        worker_id: str,
        lease_seconds: float,
        ordering: scheduler.Ordering = "strict",
        exclude: Iterable[str] = (),
        review_satisfies: bool = False,
    ) -> Task | None:
        """Poll once, ask the scheduler, claim from the poll's view (no second read)."""
        self._poll()
        return claim_first_ready(
            lambda: [issue.task for issue in list(self._cache.values())],
            lambda task: self._claim(self._cache[task.id], worker_id, lease_seconds),
            self._now,
            ordering,
            exclude,
            lost=(ClaimConflict, TaskNotFound),
            review_satisfies=review_satisfies,
        )

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        entry = issue.claim_state.entry
        assert entry is not None  # a current token has a claim entry
        expires = self._now() + timedelta(seconds=lease_seconds)
        fields = {**entry.fields, "until": _ts(expires)}
        body = entry_body("claim", None, **fields)
        update = {"description": self._description(issue, self._marker(issue, lease=_ts(expires)))}
        fresh = self._mutate_issue(
            RENEW_MUTATION, {"id": task_id, "commentId": entry.comment_id, "comment": {"body": body}, "input": update}
        )
        return fresh.task.copy()

    def release(
        self,
        task_id: str,
        token: int,
        *,
        status: TaskStatus = TaskStatus.TODO,
        note: str | None = None,
        author: str = "runner",
        cost_usd: float = 0.0,
        turns: int = 0,
    ) -> Task:
        issue = self._fetch(task_id)
        self._check_token(issue, token)
        now = self._now()
        new_status = TaskStatus(status)
        worker = issue.claim_state.claim.worker_id if issue.claim_state.claim else "?"
        marker = self._marker(
            issue, cost=round(issue.task.cost_usd + cost_usd, 6) or None, turns=issue.task.turns + turns or None
        )
        marker.pop("lease", None)
        update = {"description": self._description(issue, marker), **self._status_input(issue, new_status)}
        body = entry_body(
            "released", note, token=token, worker=worker, status=new_status.value, author=author, at=_ts(now)
        )
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


def _operation_name(document: str) -> str:
    m = re.search(r"\b(?:query|mutation)\s+(\w+)", document)
    return m.group(1) if m else "anonymous"


def _not_found(exc: LinearGraphQLError) -> bool:
    text = str(exc).lower()
    return "not found" in text or "could not find" in text or exc.code in ("NOT_FOUND", "ENTITY_NOT_FOUND")
