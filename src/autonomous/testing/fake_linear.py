"""A fake Linear GraphQL API on 127.0.0.1, for tests and rehearsals that touch no network.

It executes the documents a client sends (with graphql-core) against in-memory
workspaces: teams with workflow states of every type, labels, projects, issues, comments
and relations. Its schema, :data:`SCHEMA_SDL`, is a small subset of Linear's official one
(``tests/providers/test_linear_schema.py`` checks that every type, field and argument it declares
exists there with the same type), so a document the fake accepts is shaped like one
Linear accepts.

Usage::

    with FakeLinear() as server:
        key = server.add_workspace(teams=["Engineering"])      # a fresh workspace and its API key
        provider = LinearProvider(endpoint=server.url, env={"LINEAR_API_KEY": key})
        ...
        server.fail_next("ratelimit")                          # fault injection, see below
        assert server.operations().count("IssueUpdate") == 1

Faults (:meth:`FakeLinear.fail_next`, each for the next ``times`` requests):
``ratelimit`` (HTTP 400, ``extensions.code: RATELIMITED``, reset headers ``reset_in``
seconds ahead, as Linear does), ``5xx`` (HTTP ``status``, default 500), ``internal``
(HTTP 200 with an ``INTERNAL_SERVER_ERROR`` error), ``hang`` (no answer until the
server stops or ``hang_seconds`` pass: the client's timeout fires). A key added with
``scopes="read"`` gets ``FORBIDDEN`` on every mutation, an unknown key HTTP 401
``AUTHENTICATION_ERROR``. :meth:`Workspace.delete_issue` trashes an issue mid-run.
``on_request`` is called before each request is executed (outside the lock), which lets
a test interleave two clients deterministically.

Timestamps come from each workspace's clock (``now=``) and strictly increase, so
``createdAt`` order is commit order, as the provider's claim rule assumes.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import graphql

SCHEMA_SDL = """
scalar DateTime
scalar DateTimeOrDuration

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
type User { id: ID! name: String! email: String! }
type Team {
  id: ID!
  name: String!
  key: String!
  states(first: Int, after: String): WorkflowStateConnection!
  labels(first: Int, after: String): IssueLabelConnection!
  projects(first: Int, after: String): ProjectConnection!
}
type TeamConnection { nodes: [Team!]! pageInfo: PageInfo! }
type WorkflowState { id: ID! name: String! type: String! position: Float! team: Team! }
type WorkflowStateConnection { nodes: [WorkflowState!]! pageInfo: PageInfo! }
type IssueLabel { id: ID! name: String! team: Team }
type IssueLabelConnection { nodes: [IssueLabel!]! pageInfo: PageInfo! }
type Project { id: ID! name: String! }
type ProjectConnection { nodes: [Project!]! pageInfo: PageInfo! }
type Issue {
  id: ID!
  identifier: String!
  title: String!
  description: String
  priority: Float!
  createdAt: DateTime!
  updatedAt: DateTime!
  archivedAt: DateTime
  trashed: Boolean
  state: WorkflowState!
  team: Team!
  project: Project
  labels(first: Int, after: String): IssueLabelConnection!
  relations(first: Int, after: String): IssueRelationConnection!
  inverseRelations(first: Int, after: String): IssueRelationConnection!
  comments(first: Int, after: String): CommentConnection!
}
type IssueConnection { nodes: [Issue!]! pageInfo: PageInfo! }
type IssueRelation { id: ID! type: String! issue: Issue! relatedIssue: Issue! }
type IssueRelationConnection { nodes: [IssueRelation!]! pageInfo: PageInfo! }
type Comment { id: ID! body: String! createdAt: DateTime! updatedAt: DateTime! user: User issue: Issue }
type CommentConnection { nodes: [Comment!]! pageInfo: PageInfo! }

input IDComparator { eq: ID in: [ID!] }
input DateComparator { gt: DateTimeOrDuration gte: DateTimeOrDuration }
input TeamFilter { id: IDComparator }
input NullableProjectFilter { id: IDComparator }
input IssueFilter { team: TeamFilter project: NullableProjectFilter updatedAt: DateComparator }

type Query {
  viewer: User!
  teams(first: Int, after: String): TeamConnection!
  team(id: String!): Team!
  issue(id: String!): Issue!
  issues(filter: IssueFilter, first: Int, after: String, includeArchived: Boolean): IssueConnection!
}

enum IssueRelationType { blocks duplicate related similar }
input IssueCreateInput {
  id: String teamId: String! title: String description: String priority: Int stateId: String
  labelIds: [String!] projectId: String
}
input IssueBatchCreateInput { issues: [IssueCreateInput!]! }
input IssueUpdateInput {
  title: String description: String priority: Int stateId: String labelIds: [String!] projectId: String
  trashed: Boolean
}
input CommentCreateInput { id: String issueId: String body: String }
input CommentUpdateInput { body: String }
input IssueRelationCreateInput { id: String issueId: String! relatedIssueId: String! type: IssueRelationType! }
input IssueLabelCreateInput { id: String name: String! teamId: String }
input ProjectCreateInput { id: String name: String! teamIds: [String!]! }

type IssuePayload { success: Boolean! issue: Issue }
type IssueBatchPayload { success: Boolean! issues: [Issue!]! }
type IssueArchivePayload { success: Boolean! entity: Issue }
type CommentPayload { success: Boolean! comment: Comment! }
type IssueRelationPayload { success: Boolean! issueRelation: IssueRelation! }
type DeletePayload { success: Boolean! entityId: String! }
type IssueLabelPayload { success: Boolean! issueLabel: IssueLabel! }
type ProjectPayload { success: Boolean! project: Project }

type Mutation {
  issueCreate(input: IssueCreateInput!): IssuePayload!
  issueBatchCreate(input: IssueBatchCreateInput!): IssueBatchPayload!
  issueUpdate(id: String!, input: IssueUpdateInput!): IssuePayload!
  issueDelete(id: String!): IssueArchivePayload!
  commentCreate(input: CommentCreateInput!): CommentPayload!
  commentUpdate(id: String!, input: CommentUpdateInput!): CommentPayload!
  issueRelationCreate(input: IssueRelationCreateInput!): IssueRelationPayload!
  issueRelationDelete(id: String!): DeletePayload!
  issueLabelCreate(input: IssueLabelCreateInput!): IssueLabelPayload!
  projectCreate(input: ProjectCreateInput!): ProjectPayload!
}
"""

# Every workflow-state type Linear has, in its usual order (names deliberately not the
# type names, so a client that maps by name fails the tests).
DEFAULT_STATES = [
    ("Triage", "triage"),
    ("Icebox", "backlog"),
    ("Ready", "unstarted"),
    ("Doing", "started"),
    ("In Review", "started"),
    ("Shipped", "completed"),
    ("Won't do", "canceled"),
    ("Duplicate", "canceled"),
]


class GraphQLFault(Exception):
    """A resolver error with Linear-like extensions."""

    def __init__(self, message: str, code: str = "INVALID_INPUT") -> None:
        super().__init__(message)
        self.extensions = {"code": code, "type": "invalid input", "userPresentableMessage": message}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _connection(items: list[Any], first: int | None = None, after: str | None = None) -> dict[str, Any]:
    start = int(after) + 1 if after else 0
    size = 50 if first is None else max(0, first)
    page = items[start : start + size]
    end = start + len(page) - 1
    return {
        "nodes": page,
        "pageInfo": {
            "hasNextPage": start + size < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": str(start) if page else None,
            "endCursor": str(end) if page else None,
        },
    }


# -- the in-memory model: objects whose methods are graphql-core resolvers ---------------------


@dataclass(eq=False)
class FakeUser:
    id: str
    name: str
    email: str


@dataclass(eq=False)
class FakeState:
    id: str
    name: str
    type: str
    position: float
    team: FakeTeam


@dataclass(eq=False)
class FakeLabel:
    id: str
    name: str
    team: FakeTeam | None


@dataclass(eq=False)
class FakeProject:
    id: str
    name: str
    team_ids: list[str]


@dataclass(eq=False)
class FakeTeam:
    id: str
    name: str
    key: str
    ws: Workspace
    state_list: list[FakeState] = field(default_factory=list)
    next_number: int = 1

    def states(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection(self.state_list, first, after)

    def labels(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([lb for lb in self.ws.labels.values() if lb.team is self], first, after)

    def projects(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([p for p in self.ws.projects.values() if self.id in p.team_ids], first, after)


@dataclass(eq=False)
class FakeComment:
    id: str
    body: str
    createdAt: str
    updatedAt: str
    user: FakeUser
    issue: FakeIssue


@dataclass(eq=False)
class FakeRelation:
    id: str
    type: str
    issue: FakeIssue
    relatedIssue: FakeIssue
    created_seq: int


@dataclass(eq=False)
class FakeIssue:
    id: str
    identifier: str
    title: str
    description: str | None
    priority: float
    createdAt: str
    updatedAt: str
    state: FakeState
    team: FakeTeam
    project: FakeProject | None
    ws: Workspace
    label_ids: list[str] = field(default_factory=list)
    archivedAt: str | None = None
    trashed: bool | None = None

    def labels(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([self.ws.labels[i] for i in self.label_ids if i in self.ws.labels], first, after)

    def relations(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([r for r in self.ws.relation_list() if r.issue is self], first, after)

    def inverseRelations(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([r for r in self.ws.relation_list() if r.relatedIssue is self], first, after)

    def comments(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection([c for c in self.ws.comments.values() if c.issue is self], first, after)


class Workspace:
    """One organisation: what one API key sees. Test helpers are plain methods."""

    def __init__(self, teams: list[str], now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._last: datetime | None = None
        self.lock = threading.RLock()
        self.viewer = FakeUser(str(uuid.uuid4()), "Autonomous Bot", "bot@example.com")
        self.teams: dict[str, FakeTeam] = {}
        self.labels: dict[str, FakeLabel] = {}
        self.projects: dict[str, FakeProject] = {}
        self.issues: dict[str, FakeIssue] = {}
        self.comments: dict[str, FakeComment] = {}
        self.relations: dict[str, FakeRelation] = {}
        self._seq = 0
        for name in teams:
            self.add_team(name)

    def tick(self) -> str:
        """The next timestamp: the clock's, but strictly after the previous one."""
        now = self._now()
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(milliseconds=1)
        self._last = now
        return _iso(now)

    def add_team(self, name: str, key: str | None = None) -> FakeTeam:
        team = FakeTeam(str(uuid.uuid4()), name, key or name[:3].upper(), self)
        for position, (state_name, state_type) in enumerate(DEFAULT_STATES):
            team.state_list.append(FakeState(str(uuid.uuid4()), state_name, state_type, float(position), team))
        self.teams[team.id] = team
        return team

    def relation_list(self) -> list[FakeRelation]:
        return sorted(self.relations.values(), key=lambda r: r.created_seq)

    def find_issue(self, ref: str) -> FakeIssue:
        issue = self.issues.get(ref) or next((i for i in self.issues.values() if i.identifier == ref), None)
        if issue is None:
            raise GraphQLFault("Entity not found: Issue - Could not find referenced Issue.", "INVALID_INPUT")
        return issue

    def delete_issue(self, ref: str) -> None:
        """What a person's "Delete issue" does: the issue goes to the trash (archived)."""
        with self.lock:
            issue = self.find_issue(ref)
            issue.trashed = True
            issue.archivedAt = issue.updatedAt = self.tick()

    def add_dangling_blocker(self, issue_ref: str, ghost_id: str) -> None:
        """A ``blocks`` relation from a trashed issue with id ``ghost_id`` (what a tracker shows
        once the blocking issue was deleted): the dependant names an id no task has."""
        with self.lock:
            issue = self.find_issue(issue_ref)
            ghost = self.issues.get(ghost_id) or self.create_issue({"id": ghost_id, "teamId": issue.team.id})
            ghost.trashed, ghost.archivedAt = True, self.tick()
            self._seq += 1
            relation = FakeRelation(str(uuid.uuid4()), "blocks", ghost, issue, self._seq)
            self.relations[relation.id] = relation

    def issue_by_title(self, title: str) -> FakeIssue:
        return next(i for i in self.issues.values() if i.title == title)

    # -- resolvers used by the root types ----------------------------------------------------
    def create_issue(self, data: dict[str, Any]) -> FakeIssue:
        team = self.teams.get(data["teamId"])
        if team is None:
            raise GraphQLFault(f"Entity not found: Team {data['teamId']}")
        issue_id = data.get("id") or str(uuid.uuid4())
        if issue_id in self.issues:
            raise GraphQLFault(f"Issue with id {issue_id} already exists", "INVALID_INPUT")
        states = {s.id: s for s in team.state_list}
        state = states.get(data.get("stateId") or "") or next(s for s in team.state_list if s.type == "backlog")
        project = self.projects.get(data.get("projectId") or "")
        for label_id in data.get("labelIds") or []:
            if label_id not in self.labels:
                raise GraphQLFault(f"Entity not found: IssueLabel {label_id}")
        stamp = self.tick()
        issue = FakeIssue(
            id=issue_id,
            identifier=f"{team.key}-{team.next_number}",
            title=data.get("title") or "",
            description=data.get("description"),
            priority=float(data.get("priority") or 0),
            createdAt=stamp,
            updatedAt=stamp,
            state=state,
            team=team,
            project=project,
            ws=self,
            label_ids=list(data.get("labelIds") or []),
        )
        team.next_number += 1
        self.issues[issue.id] = issue
        return issue

    def update_issue(self, ref: str, data: dict[str, Any]) -> FakeIssue:
        issue = self.find_issue(ref)
        if "stateId" in data and data["stateId"] is not None:
            states = {s.id: s for s in issue.team.state_list}
            if data["stateId"] not in states:
                raise GraphQLFault(f"Entity not found: WorkflowState {data['stateId']}")
            issue.state = states[data["stateId"]]
        for name in ("title", "description"):
            if name in data and data[name] is not None:
                setattr(issue, name, data[name])
        if data.get("priority") is not None:
            issue.priority = float(data["priority"])
        if data.get("labelIds") is not None:
            for label_id in data["labelIds"]:
                if label_id not in self.labels:
                    raise GraphQLFault(f"Entity not found: IssueLabel {label_id}")
            issue.label_ids = list(dict.fromkeys(data["labelIds"]))
        if data.get("projectId") is not None:
            issue.project = self.projects[data["projectId"]]
        if data.get("trashed"):
            issue.trashed = True
            issue.archivedAt = self.tick()
        issue.updatedAt = self.tick()
        return issue

    def add_comment(self, data: dict[str, Any]) -> FakeComment:
        issue = self.find_issue(data.get("issueId") or "")
        comment_id = data.get("id") or str(uuid.uuid4())
        if comment_id in self.comments:
            raise GraphQLFault(f"Comment with id {comment_id} already exists")
        stamp = self.tick()
        comment = FakeComment(comment_id, data.get("body") or "", stamp, stamp, self.viewer, issue)
        self.comments[comment.id] = comment
        return comment  # like Linear (as far as we rely on it), a comment does not touch the issue

    def matches(self, issue: FakeIssue, flt: dict[str, Any] | None, include_archived: bool) -> bool:
        if not include_archived and (issue.trashed or issue.archivedAt):
            return False
        flt = flt or {}
        if "team" in flt and not _id_ok(issue.team.id, flt["team"].get("id")):
            return False
        if "project" in flt and not _id_ok(issue.project.id if issue.project else None, flt["project"].get("id")):
            return False
        if "updatedAt" in flt:
            cmp = flt["updatedAt"]
            updated = _parse_dt(issue.updatedAt)
            if cmp.get("gt") is not None and not updated > _parse_dt(cmp["gt"]):
                return False
            if cmp.get("gte") is not None and not updated >= _parse_dt(cmp["gte"]):
                return False
        return True


def _parse_dt(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _id_ok(value: str | None, cmp: dict[str, Any] | None) -> bool:
    if not cmp:
        return True
    if cmp.get("eq") is not None and value != cmp["eq"]:
        return False
    return not (cmp.get("in") is not None and value not in cmp["in"])


class _Root:
    """Query and Mutation resolvers, bound to one workspace per request."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # queries
    def viewer(self, info: Any) -> FakeUser:
        return self.ws.viewer

    def teams(self, info: Any, first: int | None = None, after: str | None = None) -> dict[str, Any]:
        return _connection(list(self.ws.teams.values()), first, after)

    def team(self, info: Any, id: str) -> FakeTeam:
        team = self.ws.teams.get(id)
        if team is None:
            raise GraphQLFault(f"Entity not found: Team - Could not find referenced Team {id}.")
        return team

    def issue(self, info: Any, id: str) -> FakeIssue:
        return self.ws.find_issue(id)

    def issues(
        self,
        info: Any,
        filter: dict[str, Any] | None = None,
        first: int | None = None,
        after: str | None = None,
        includeArchived: bool | None = None,
    ) -> dict[str, Any]:
        found = [i for i in self.ws.issues.values() if self.ws.matches(i, filter, bool(includeArchived))]
        return _connection(found, first, after)

    # mutations
    def issueCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "issue": self.ws.create_issue(input)}

    def issueBatchCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        if len(input["issues"]) > 50:
            raise GraphQLFault("issueBatchCreate takes at most 50 issues")
        return {"success": True, "issues": [self.ws.create_issue(item) for item in input["issues"]]}

    def issueUpdate(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "issue": self.ws.update_issue(id, input)}

    def issueDelete(self, info: Any, id: str) -> dict[str, Any]:
        self.ws.delete_issue(id)
        return {"success": True, "entity": self.ws.find_issue(id)}

    def commentCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "comment": self.ws.add_comment(input)}

    def commentUpdate(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        comment = self.ws.comments.get(id)
        if comment is None:
            raise GraphQLFault("Entity not found: Comment")
        if input.get("body") is not None:
            comment.body = input["body"]
        comment.updatedAt = self.ws.tick()
        return {"success": True, "comment": comment}

    def issueRelationCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue, related = self.ws.find_issue(input["issueId"]), self.ws.find_issue(input["relatedIssueId"])
        relation_id = input.get("id") or str(uuid.uuid4())
        if relation_id in self.ws.relations:
            raise GraphQLFault(f"IssueRelation with id {relation_id} already exists")
        self.ws._seq += 1
        relation = FakeRelation(relation_id, input["type"], issue, related, self.ws._seq)
        self.ws.relations[relation.id] = relation
        return {"success": True, "issueRelation": relation}

    def issueRelationDelete(self, info: Any, id: str) -> dict[str, Any]:
        if self.ws.relations.pop(id, None) is None:
            raise GraphQLFault("Entity not found: IssueRelation")
        return {"success": True, "entityId": id}

    def issueLabelCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        team = self.ws.teams.get(input.get("teamId") or "")
        if any(lb.name == input["name"] and lb.team is team for lb in self.ws.labels.values()):
            raise GraphQLFault(f"Duplicate label name {input['name']!r}")
        label = FakeLabel(input.get("id") or str(uuid.uuid4()), input["name"], team)
        self.ws.labels[label.id] = label
        return {"success": True, "issueLabel": label}

    def projectCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        project = FakeProject(input.get("id") or str(uuid.uuid4()), input["name"], list(input["teamIds"]))
        self.ws.projects[project.id] = project
        return {"success": True, "project": project}


# -- the HTTP server ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    operation: str
    variables: dict[str, Any]
    api_key: str
    status: int = 0
    fault: str = ""


@dataclass
class _Fault:
    kind: str
    times: int
    options: dict[str, Any]


class FakeLinear:
    """The server. ``with FakeLinear() as server:`` starts it on a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.schema = graphql.build_schema(SCHEMA_SDL)
        self._host, self._port = host, port
        self.keys: dict[str, tuple[Workspace, str]] = {}  # api key -> (workspace, scopes)
        self.requests: list[RecordedRequest] = []
        self.faults: list[_Fault] = []
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self.requests_limit = 5000
        self._remaining: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._parsed: dict[str, graphql.DocumentNode] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------
    def add_workspace(
        self, teams: list[str] | None = None, *, now: Callable[[], datetime] | None = None, key: str | None = None
    ) -> str:
        """A fresh workspace with these teams; returns the API key that sees it."""
        ws = Workspace(["Engineering"] if teams is None else teams, now)
        key = key or f"lin_api_{uuid.uuid4().hex}"
        self.keys[key] = (ws, "write")
        return key

    def add_key(self, workspace_key: str, *, scopes: str = "write") -> str:
        """Another key on the workspace of ``workspace_key``; ``scopes="read"`` cannot write."""
        key = f"lin_api_{uuid.uuid4().hex}"
        self.keys[key] = (self.keys[workspace_key][0], scopes)
        return key

    def workspace(self, key: str) -> Workspace:
        return self.keys[key][0]

    def fail_next(self, kind: str, times: int = 1, **options: Any) -> None:
        if kind not in ("ratelimit", "5xx", "internal", "hang"):
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self.faults.append(_Fault(kind, times, options))

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not running"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/graphql"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeLinear:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out as two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add 40 ms to every answer
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body, headers = server._handle(self.headers.get("Authorization") or "", raw)
                if status == 0:  # hung: the client gave up; close without an answer
                    self.close_connection = True
                    return
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-linear", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLinear:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------------
    def _rate_headers(self, key: str, remaining: int | None = None, reset_in: float = 3600.0) -> dict[str, str]:
        left = self._remaining.get(key, self.requests_limit) if remaining is None else remaining
        reset = str(int((time.time() + reset_in) * 1000))
        return {
            "X-RateLimit-Requests-Limit": str(self.requests_limit),
            "X-RateLimit-Requests-Remaining": str(left),
            "X-RateLimit-Requests-Reset": reset,
            "X-RateLimit-Complexity-Limit": "3000000",
            "X-RateLimit-Complexity-Remaining": "2999000",
            "X-RateLimit-Complexity-Reset": reset,
            "X-Complexity": "100",
        }

    def _handle(self, key: str, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            payload = json.loads(raw or b"{}")
            query, variables = payload["query"], payload.get("variables") or {}
        except (ValueError, KeyError):
            return 400, {"errors": [{"message": "Body must be JSON with a query"}]}, {}
        operation = self._operation(query)
        record = RecordedRequest(operation, variables, key)
        with self._lock:
            self.requests.append(record)
            fault = self.faults[0] if self.faults else None
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.pop(0)
            self._remaining[key] = max(0, self._remaining.get(key, self.requests_limit) - 1)
        if self.on_request is not None:
            self.on_request(record)
        status, body, headers = self._answer(key, query, variables, fault, record)
        record.status = status
        return status, body, headers

    def _answer(
        self, key: str, query: str, variables: dict[str, Any], fault: _Fault | None, record: RecordedRequest
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if key.lower().startswith("bearer ") or key not in self.keys:
            return (
                401,
                {
                    "errors": [
                        {
                            "message": "Authentication required, not authenticated",
                            "extensions": {"code": "AUTHENTICATION_ERROR", "type": "authentication error"},
                        }
                    ]
                },
                {},
            )
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "ratelimit":
                reset_in = float(fault.options.get("reset_in", 2.0))
                body = {
                    "errors": [
                        {
                            "message": "Rate limit exceeded",
                            "extensions": {"code": "RATELIMITED", "type": "ratelimited"},
                        }
                    ]
                }
                return 400, body, self._rate_headers(key, remaining=0, reset_in=reset_in)
            if fault.kind == "5xx":
                return int(fault.options.get("status", 500)), {"errors": [{"message": "Internal error"}]}, {}
            if fault.kind == "internal":
                error = {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
                return 200, {"data": None, "errors": [error]}, self._rate_headers(key)
            if fault.kind == "hang":
                self._stopping.wait(float(fault.options.get("hang_seconds", 5.0)))
                return 0, {}, {}
        ws, scopes = self.keys[key]
        document = self._parse(query)
        if isinstance(document, list):
            return 400, {"errors": document}, self._rate_headers(key)
        is_mutation = any(
            isinstance(d, graphql.OperationDefinitionNode) and d.operation is graphql.OperationType.MUTATION
            for d in document.definitions
        )
        if is_mutation and scopes != "write":
            error = {
                "message": "Forbidden: the API key lacks the write scope (Invalid scope: `write` required)",
                "extensions": {"code": "FORBIDDEN", "type": "forbidden"},
            }
            return 400, {"data": None, "errors": [error]}, self._rate_headers(key)
        with ws.lock:
            result = graphql.execute(self.schema, document, root_value=_Root(ws), variable_values=variables)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_error(e) for e in result.errors]
        status = 400 if result.errors and result.data is None else 200
        return status, body, self._rate_headers(key)

    def _parse(self, query: str) -> graphql.DocumentNode | list[dict[str, Any]]:
        cached = self._parsed.get(query)
        if cached is not None:
            return cached
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            return [{"message": exc.message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]
        problems = graphql.validate(self.schema, document)
        if problems:
            return [{"message": p.message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for p in problems]
        self._parsed[query] = document
        return document

    @staticmethod
    def _operation(query: str) -> str:
        m = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
        return m.group(1) if m else "anonymous"


def _error(error: graphql.GraphQLError) -> dict[str, Any]:
    original = error.original_error
    extensions = getattr(original, "extensions", None) or {"code": "INTERNAL_SERVER_ERROR"}
    if original is None:
        extensions = {"code": "GRAPHQL_VALIDATION_FAILED"}
    return {"message": error.message, "path": error.path, "extensions": extensions}


# -- for tests: one shared server, a fresh workspace per provider ---------------------------------

_shared: FakeLinear | None = None
_shared_lock = threading.Lock()


def shared_server() -> FakeLinear:
    """One server for a whole test session (a daemon thread; it dies with the process)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FakeLinear().start()
        return _shared


def open_test_provider(
    clock: Callable[[], datetime], state_dir: Any, *, project_name: str | None = "Contract", **options: Any
) -> Any:
    """A LinearProvider on a fresh workspace of the shared server, on the test's clock and
    never sleeping; ``provider.fake`` is the server, ``provider.fake_key`` its API key."""
    from autonomous.providers.linear import LinearProvider

    server = shared_server()
    key = server.add_workspace(now=clock)
    options = {"sleep": lambda seconds: None, **options}
    provider = LinearProvider(
        endpoint=server.url,
        env={"LINEAR_API_KEY": key},
        project_name=project_name,
        state_dir=state_dir,
        now=clock,
        **options,
    )
    provider.fake, provider.fake_key = server, key  # type: ignore[attr-defined]
    return provider
