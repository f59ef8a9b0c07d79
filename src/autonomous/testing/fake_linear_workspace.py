"""The fake Linear's in-memory workspaces: teams with workflow states of every type,
labels, projects, issues, comments and relations, as objects whose methods are the
graphql-core resolvers of :data:`autonomous.testing.fake_linear.SCHEMA_SDL`. The HTTP
side, faults and keys are in :mod:`autonomous.testing.fake_linear`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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


class Root:
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
