"""Whole runs with a team tracker as the store: ``autonomous init --spec`` then
``autonomous start`` as real subprocesses, the REAL Claude Code CLI (bundled with
claude-agent-sdk) against the scripted model server, on a temporary git repository, with
the tasks in a fake Linear or fake GitHub served from this test process.

The subprocesses reach the fakes the way a user points the tool elsewhere
(``LINEAR_API_URL`` / ``GITHUB_API_URL``) and read their keys from ``LINEAR_API_KEY`` /
``GITHUB_TOKEN``; the assertions read the fake's own state (workflow state types, issue
states and reasons, stored comments), not what the provider makes of it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.fake_github import FakeGitHub
from autonomous.testing.fake_linear import FakeLinear
from autonomous.testing.model_server import Rule, ScriptedModelServer, complete_task_rules

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

KEYS = ["WID-1.1", "WID-1.2", "WID-2.1", "WID-2.2"]
FILES = {"WID-1.1": "a.txt", "WID-1.2": "b.txt", "WID-2.1": "c.txt", "WID-2.2": "d.txt"}
SPEC = """\
# Widgets

## Phase 1: Basics
- [WID-1.1] Create a
  - Acceptance criteria:
    - a.txt exists
- [WID-1.2] Create b
  - Depends on: WID-1.1

## Phase 2: More
- [WID-2.1] Create c
- [WID-2.2] Create d
  - Test steps:
    - test -f d.txt
"""
# recognisable and never legitimately printed: a leak anywhere is a hit for a plain search
LINEAR_KEY = "lin_api_E2EsecretLINEARkey0f3c9a7d51"
GITHUB_TOKEN = "ghp_E2EsecretGITHUBtoken7b2e4c9a18"
TITLE_KEY = re.compile(r"^\[(WID-\d\.\d)\]|^(META)\b")


@dataclass
class Issue:
    """One task as the fake stores it, provider-neutral."""

    key: str
    done: bool
    comments: list[str] = field(default_factory=list)


class Tracker:
    """A fake tracker in this process and how a subprocess reaches it."""

    name: str
    token: str

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def state_provider(self) -> dict[str, Any]:
        raise NotImplementedError

    def issues(self) -> dict[str, Issue]:
        raise NotImplementedError

    def stored_text(self) -> list[str]:
        """Every title, body and comment the fake holds."""
        raise NotImplementedError

    def credentials_sent(self) -> set[str]:
        """The credential on each request the fake received."""
        raise NotImplementedError


class LinearTracker(Tracker):
    name, token = "linear", LINEAR_KEY

    def __init__(self, fake: FakeLinear) -> None:
        self.fake = fake
        self.ws = fake.workspace(fake.add_workspace(["Engineering"], key=LINEAR_KEY))

    def env(self) -> dict[str, str]:
        return {"LINEAR_API_KEY": LINEAR_KEY, "LINEAR_API_URL": self.fake.url}

    def state_provider(self) -> dict[str, Any]:
        return {"type": "linear", "project_name": "Widgets"}

    def issues(self) -> dict[str, Issue]:
        out = {}
        for issue in self.ws.issues.values():
            m = TITLE_KEY.match(issue.title)
            assert m, issue.title
            assert issue.project is not None and issue.project.name == "Widgets"
            comments = sorted((c for c in self.ws.comments.values() if c.issue is issue), key=lambda c: c.createdAt)
            key = m.group(1) or m.group(2)
            out[key] = Issue(key, issue.state.type == "completed", [c.body for c in comments])
        return out

    def stored_text(self) -> list[str]:
        issues = [f"{i.title}\n{i.description or ''}" for i in self.ws.issues.values()]
        return issues + [c.body for c in self.ws.comments.values()]

    def credentials_sent(self) -> set[str]:
        return {r.api_key for r in self.fake.requests}


class GitHubTracker(Tracker):
    name, token = "github", GITHUB_TOKEN

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    def env(self) -> dict[str, str]:
        return {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": self.fake.url}

    def state_provider(self) -> dict[str, Any]:
        # no write spacing: GitHub's 1 s between writes is for api.github.com, not the fake
        return {"type": "github", "repo": f"{self.fake.owner}/{self.fake.repo}", "write_interval": 0}

    def issues(self) -> dict[str, Issue]:
        out = {}
        for number, issue in self.fake.issues.items():
            if "autonomous:sessions" in issue["labels"]:
                continue  # the session log, not a task
            m = TITLE_KEY.match(issue["title"])
            assert m, issue["title"]
            key = m.group(1) or m.group(2)
            done = issue["state"] == "closed" and issue["state_reason"] == "completed"
            comments = [c["body"] for c in self.fake.comments if c["_number"] == number]  # creation order
            out[key] = Issue(key, done, comments)
        return out

    def stored_text(self) -> list[str]:
        issues = [f"{i['title']}\n{i['body'] or ''}" for i in self.fake.issues.values()]
        return issues + [c["body"] for c in self.fake.comments]

    def credentials_sent(self) -> set[str]:
        return {ex.headers.get("authorization", "") for ex in self.fake.requests}


@pytest.fixture(params=["linear", "github"])
def tracker(request: pytest.FixtureRequest) -> Iterator[Tracker]:
    if request.param == "linear":
        with FakeLinear() as linear:
            yield LinearTracker(linear)
    else:
        with FakeGitHub(owner="acme", repo="widgets", token=GITHUB_TOKEN) as github:
            yield GitHubTracker(github)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    (root / ".gitignore").write_text(".ai-agents/\n")
    (root / "spec.md").write_text(SPEC)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def rules() -> list[Rule]:
    # later tasks first: a later task's prompt quotes earlier tasks' notes (the handoff),
    # an earlier task's prompt never names a later task
    return [
        rule
        for key in reversed(KEYS)
        for rule in complete_task_rules(
            f"Task {key}:", files={FILES[key]: f"{key}\n"}, summary=f"Implemented {key} in {FILES[key]}"
        )
    ]


def autonomous(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autonomous", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def first_request_per_task(server: ScriptedModelServer) -> list[str]:
    """Task keys in the order the model first heard of them."""
    seen: list[str] = []
    for req in server.message_requests():
        for key in KEYS:
            if f"Task {key}:" in json.dumps(req.body) and key not in seen:
                seen.append(key)
    return seen


@pytest.mark.timeout(600)
def test_init_and_start_run_a_two_phase_project_in_the_tracker(tracker: Tracker, project: Path, tmp_path: Path) -> None:
    config = {
        "state_provider": tracker.state_provider(),
        "autonomous": {"max_tasks_per_session": 20, "lease_seconds": 60},
        "verification": {"require_changes": True},
    }
    (project / ".ai-agents").mkdir()
    (project / ".ai-agents" / "config.yml").write_text(yaml.safe_dump(config))
    home = tmp_path / "home"
    home.mkdir()
    with ScriptedModelServer(rules()) as server:
        env = {**claude_cli_env(server.url, home), **tracker.env(), "PYTHONPATH": os.pathsep.join(sys.path)}
        init = autonomous(project, env, "init", "--spec", "spec.md")
        assert init.returncode == 0, init.stdout + init.stderr
        assert server.message_requests() == []  # a structured spec needs no model
        start = autonomous(project, env, "start")
        order = first_request_per_task(server)
    assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]

    issues = tracker.issues()
    assert sorted(issues) == sorted([*KEYS, "META"])
    assert [k for k in KEYS if not issues[k].done] == []

    # in order: phase 1 before phase 2, and the dependency before its dependant
    assert order == KEYS
    subjects = [s.split(":")[0] for s in git(project, "log", "--format=%s").splitlines()]
    assert subjects == [*reversed(KEYS), "init"]  # one commit per task: none done twice
    claimed = [e["key"] for e in events(project) if e["kind"] == "task_claimed"]
    assert claimed == KEYS

    for key in KEYS:
        notes = issues[key].comments
        done = [n for n in notes if re.search(r"^Done \(commit [0-9a-f]{7,}\)", n, re.M)]
        assert len(done) == 1, notes
        assert f"Summary: Implemented {key} in {FILES[key]}" in done[0] and FILES[key] in done[0]
        assert (project / FILES[key]).read_text() == f"{key}\n"
    meta = issues["META"].comments
    assert any(re.search(r"Session summary \S+: done 4 \(" + re.escape(", ".join(KEYS)) + r"\)", n) for n in meta), meta

    # the key reached the fake on every request and went nowhere else
    assert tracker.credentials_sent() in ({LINEAR_KEY}, {f"Bearer {GITHUB_TOKEN}"})
    leaks = [
        ("init output", init.stdout + init.stderr),
        ("start output", start.stdout + start.stderr),
        *((str(p.relative_to(project)), p.read_text(errors="replace")) for p in files_under(project / ".ai-agents")),
        *(("stored by the fake", text) for text in tracker.stored_text()),
        *(("sent to the model", json.dumps(r.body)) for r in server.requests),
    ]
    assert [where for where, text in leaks if tracker.token in text] == []
    assert (project / ".ai-agents" / "logs" / "events.jsonl").is_file()


def events(project: Path) -> list[dict]:
    path = project / ".ai-agents" / "logs" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_the_configured_write_interval_reaches_the_github_provider(tmp_path: Path) -> None:
    from autonomous.config import load_config
    from autonomous.providers import get_provider

    path = tmp_path / ".ai-agents" / "config.yml"
    path.parent.mkdir()
    for section, expected in (({}, 1.0), ({"write_interval": 0.25}, 0.25)):
        path.write_text(yaml.safe_dump({"state_provider": {"type": "github", "repo": "acme/widgets", **section}}))
        provider = get_provider(load_config(path), env={"GITHUB_TOKEN": GITHUB_TOKEN})
        try:
            assert provider.write_interval == expected  # type: ignore[attr-defined]
        finally:
            provider.close()
