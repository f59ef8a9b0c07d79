"""The Linear team the tasks live in, read once per provider: its workflow states (status
is written as the team's first state of a type), its labels (created on first use) and
the project that scopes the tasks (created on first use). Everything a write needs to
name a state or a label comes from here, so no write spends a request to look one up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from autonomous.errors import ConfigError, LinearGraphQLError, ProviderAuthError, ProviderError
from autonomous.providers.linear.client import LinearClient
from autonomous.providers.linear.codec import STATUS_TO_TYPES, review_state
from autonomous.providers.linear.queries import (
    LABEL_CREATE_MUTATION,
    PAGE_SIZE,
    PROJECT_CREATE_MUTATION,
    TEAM_LABELS_QUERY,
    TEAM_PROJECTS_QUERY,
    TEAM_SETUP_QUERY,
    TEAM_STATES_QUERY,
    TEAMS_QUERY,
)
from autonomous.tasks import TaskStatus


@dataclass
class Team:
    id: str
    name: str
    key: str
    states: list[dict[str, Any]] = field(default_factory=list)  # by position
    labels: dict[str, str] = field(default_factory=dict)  # name -> id
    project_id: str | None = None

    @property
    def review_state_id(self) -> str | None:
        review = review_state(self.states)
        return review["id"] if review else None

    def state_for(self, status: TaskStatus) -> dict[str, Any]:
        """The state to write for ``status``: the review state is only ever in_review."""
        review = review_state(self.states)
        if status is TaskStatus.IN_REVIEW and review is not None:
            return review
        for state_type in STATUS_TO_TYPES[status]:
            for state in self.states:
                if state["type"] == state_type and (state is not review or status is TaskStatus.IN_REVIEW):
                    return state
        raise ProviderError(
            f"Linear team {self.name} has no workflow state of type {'/'.join(STATUS_TO_TYPES[status])} "
            f"to represent {status.value}"
        )

    def label_ids(self, client: LinearClient, names: Iterable[str]) -> list[str]:
        ids = []
        for name in dict.fromkeys(names):
            if name not in self.labels:
                data = client.request(
                    LABEL_CREATE_MUTATION, {"input": {"id": str(uuid.uuid4()), "name": name, "teamId": self.id}}
                )
                self.labels[name] = data["issueLabelCreate"]["issueLabel"]["id"]
            ids.append(self.labels[name])
        return ids

    def scope_filter(self) -> dict[str, Any]:
        """The IssueFilter of the tasks: the project when there is one, else the team."""
        if self.project_id:
            return {"project": {"id": {"eq": self.project_id}}}
        return {"team": {"id": {"eq": self.id}}}

    def in_scope(self, node: dict[str, Any]) -> bool:
        if self.project_id:
            return (node.get("project") or {}).get("id") == self.project_id
        return (node.get("team") or {}).get("id") == self.id


def load_team(client: LinearClient, team_id: str | None, project_name: str | None) -> Team:
    """The team (the only one the key sees when ``team_id`` is not given), its states and
    labels, and the project named ``project_name``."""
    if not team_id:
        teams = client.pages(TEAMS_QUERY, {"first": PAGE_SIZE}, ["teams"])
        if not teams:
            raise ProviderAuthError(
                f"Linear: the API key in {client.api_key_env} sees no team; give it access to the team to use"
            )
        if len(teams) > 1:
            listing = ", ".join(f"{t['name']} ({t['key']}, id {t['id']})" for t in teams)
            raise ConfigError(
                f"state_provider.team_id: the API key sees {len(teams)} Linear teams: {listing}; "
                "set team_id to one of these ids"
            )
        team_id = teams[0]["id"]
    try:
        data = client.request(TEAM_SETUP_QUERY, {"teamId": team_id, "first": PAGE_SIZE})
    except LinearGraphQLError as exc:
        raise ConfigError(f"state_provider.team_id: Linear has no team {team_id!r} this key can see ({exc})") from exc
    raw = data["team"]
    owner = {"teamId": raw["id"]}
    states = raw["states"]["nodes"] + client.rest(TEAM_STATES_QUERY, owner, raw["states"], ["team", "states"])
    labels = raw["labels"]["nodes"] + client.rest(TEAM_LABELS_QUERY, owner, raw["labels"], ["team", "labels"])
    team = Team(
        raw["id"],
        raw["name"],
        raw["key"],
        states=sorted(states, key=lambda s: s["position"]),
        labels={label["name"]: label["id"] for label in labels},
    )
    if project_name:
        projects = client.pages(TEAM_PROJECTS_QUERY, {**owner, "first": PAGE_SIZE}, ["team", "projects"])
        found = [p for p in projects if p["name"] == project_name]
        if found:
            team.project_id = found[0]["id"]
        else:
            data = client.request(
                PROJECT_CREATE_MUTATION,
                {"input": {"id": str(uuid.uuid4()), "name": project_name, "teamIds": [team.id]}},
            )
            team.project_id = data["projectCreate"]["project"]["id"]
    return team
