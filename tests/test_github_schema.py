"""What the GitHub provider sends and what the fake answers, checked against GitHub's own
OpenAPI description (the vendored subset ``tests/fixtures/github/openapi-subset.json``; see
tests/fixtures/README.md).

A whole init + run is recorded against the fake over HTTP; then every exchange must be an
operation of the description (path template and method), send only declared query
parameters, carry a body valid against the operation's ``requestBody`` schema, and get a
response valid against the operation's schema for that status. An operation the subset
lacks fails here by name: add it to ``GITHUB_OPERATIONS`` in tests/fixtures/regenerate.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from autonomous.errors import GitHubAPIError
from autonomous.providers.base import SessionRecord
from autonomous.providers.github import GitHubClient, GitHubProvider
from autonomous.tasks import NewTask, Priority, TaskStatus, utcnow
from autonomous.testing.fake_github import Exchange, FakeGitHub, open_test_provider
from autonomous.workspace import pull_requests

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "github" / "openapi-subset.json"
BASE = "urn:github-openapi"


def _nullable_to_union(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema: null joins the type (and the enum)."""
    if isinstance(node, list):
        return [_nullable_to_union(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_union(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    return _nullable_to_union(json.loads(REFERENCE.read_text()))


@pytest.fixture(scope="session")
def validator_for(openapi):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource(BASE, Resource.from_contents(openapi, default_specification=DRAFT202012))
    cache: dict[str, Any] = {}

    def validator(pointer: str) -> Any:
        if pointer not in cache:
            cache[pointer] = Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=registry)
        return cache[pointer]

    return validator


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _deref(openapi: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (components/parameters, components/responses) to its target."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = openapi
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def record_a_whole_run(fake: FakeGitHub, clock) -> list[Exchange]:
    """init (with dependencies, a META task and a re-run), a run of claims, notes, releases,
    an edit of dependencies, sessions, and reads that end in 304s."""
    provider = open_test_provider(clock, fake=fake)
    try:
        fake.add_pull_request("Unrelated pull request")
        spec = [
            NewTask("META: Widgets", priority=Priority.LOW),
            NewTask("[W-1.1] Base", description="The base", acceptance_criteria=["exists"], test_steps=["make"]),
            NewTask("[W-1.2] Middle", dependencies=["W-1.1"], priority=Priority.HIGH, labels=["backend"]),
            NewTask("[W-2.1] Top", dependencies=["W-1.2", "W-2.2"]),
            NewTask("[W-2.2] Side"),
        ]
        provider.create_tasks(spec)
        provider.create_tasks(spec)  # a second init creates nothing
        provider.record_session(SessionRecord("s1", "w1", clock()))
        while (task := provider.claim_next("w1", 600, "dependencies")) is not None:
            provider.renew(task.id, task.claim.token, 600)
            provider.add_note(task.id, "progress", "w1", token=task.claim.token)
            status = TaskStatus.BLOCKED if task.key == "W-2.2" else TaskStatus.DONE
            provider.release(task.id, task.claim.token, status=status, note="finished", cost_usd=0.1, turns=3)
            if status is TaskStatus.BLOCKED:
                provider.update_task(task.id, status=TaskStatus.CANCELED)
        top = provider.find_task("W-2.1")
        provider.update_task(top.id, dependencies=[provider.find_task("W-1.1").id])
        provider.list_tasks()
        provider.list_tasks()  # unchanged: 304s
        provider.get_task(top.id)
        provider.meta_task()
        provider.record_session(SessionRecord("s1", "w1", clock(), clock(), "stopped", {"done": 4}))
        provider.list_sessions()
    finally:
        GitHubProvider.close(provider)
    return list(fake.requests)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def record_pull_requests(fake: FakeGitHub, tmp: Path) -> list[Exchange]:
    """handoff: pr's traffic on a real bare repository: open (and reuse, and a refused
    duplicate), changes requested with line comments, unchanged reads (304s), merged, closed."""
    bare, work = tmp / "origin.git", tmp / "work"
    _git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(tmp, "init", "-q", "-b", "main", str(work))
    _git(work, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "init")
    _git(work, "push", "-q", str(bare), "main")
    for name in ("W-1", "W-2"):
        _git(work, "checkout", "-q", "-b", f"autonomous/{name}", "main")
        (work / f"{name}.txt").write_text(name)
        _git(work, "add", ".")
        _git(work, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", name)
        _git(work, "push", "-q", str(bare), f"autonomous/{name}")
    fake.git_dir = bare
    start = len(fake.requests)
    client = GitHubClient("acme/widgets", env={"GITHUB_TOKEN": next(iter(fake.tokens))}, api_url=fake.url,
                          write_interval=0.0, need=pull_requests.NEED)  # fmt: skip
    pulls = pull_requests.PullRequests(client, "main")
    try:
        first, opened = pulls.open_or_reuse("autonomous/W-1", "W-1: one", "the first")
        assert opened and pulls.open_or_reuse("autonomous/W-1", "W-1: one", "again") == (first, False)
        with pytest.raises(GitHubAPIError, match="422"):
            client.call("POST", "/pulls", {"title": "twice", "head": "autonomous/W-1", "base": "main"})
        review = fake.review(first.number, body="Please rename", comments=[("W-1.txt", 1, "say hello")])
        verdict = pulls.verdict(first.number, set())
        assert (verdict.kind, verdict.review_id, verdict.feedback) == (
            "changes",
            review,
            ["Please rename", "W-1.txt:1: say hello"],
        )
        assert pulls.verdict(first.number, {review}).kind == "waiting"
        sha = fake.merge_pull(first.number)
        assert pulls.verdict(first.number, {review}).pull.merge_sha == sha == _git(bare, "rev-parse", "main").strip()
        second, _ = pulls.open_or_reuse("autonomous/W-2", "W-2: two", "")
        fake.close_pull(second.number)
        assert pulls.verdict(second.number, set()).kind == "closed"
    finally:
        client.close()
    return fake.requests[start:]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> list[Exchange]:
    with FakeGitHub() as fake:
        return [*record_a_whole_run(fake, utcnow), *record_pull_requests(fake, tmp_path_factory.mktemp("pulls"))]


def test_pull_requests_used_every_pulls_operation(traffic):
    used = {(ex.method, ex.template, ex.status) for ex in traffic if "/pulls" in ex.template}
    assert {(m, t) for m, t, _ in used} == {
        ("GET", "/repos/{owner}/{repo}/pulls"), ("POST", "/repos/{owner}/{repo}/pulls"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"),
    }  # fmt: skip
    assert {status for _, _, status in used} >= {200, 201, 304, 422}


def test_the_run_used_every_kind_of_exchange(traffic):
    used = {(ex.method, ex.template) for ex in traffic}
    assert len(used) >= 11, sorted(used)
    assert any(ex.status == 304 for ex in traffic)
    assert any(ex.method == "DELETE" for ex in traffic)


def test_every_request_is_an_operation_of_githubs_description(openapi, validator_for, traffic):
    for ex in traffic:
        assert ex.template, f"{ex.method} {ex.path}: the fake knows no such route"
        assert ex.template in openapi["paths"], f"{ex.template} is not a GitHub path"
        item = openapi["paths"][ex.template]
        operation = item.get(ex.method.lower())
        assert operation is not None, f"{ex.method} {ex.template} is not a GitHub operation"
        concrete = ex.template.replace("{owner}", "acme").replace("{repo}", "widgets")
        assert _template_regex(concrete).match(ex.path), (ex.path, ex.template)
        declared = {
            p["name"]
            for p in (_deref(openapi, p) for p in [*item.get("parameters", []), *operation.get("parameters", [])])
            if p["in"] == "query"
        }
        assert set(ex.query) <= declared, f"{ex.method} {ex.template}: undeclared query {set(ex.query) - declared}"
        if ex.body is not None:
            assert "requestBody" in operation, f"{ex.method} {ex.template} takes no body"
            pointer = _pointer("paths", ex.template, ex.method.lower(), "requestBody")
            body = _deref(openapi, operation["requestBody"])
            assert "application/json" in body["content"]
            errors = [
                e.message for e in validator_for(pointer + "/content/application~1json/schema").iter_errors(ex.body)
            ]
            assert not errors, f"{ex.method} {ex.template} body {ex.body}: {errors[:3]}"


def test_every_response_of_the_fake_matches_the_description(openapi, validator_for, traffic):
    checked = 0
    for ex in traffic:
        operation = openapi["paths"][ex.template][ex.method.lower()]
        if ex.status == 304:
            assert ex.method == "GET" and ex.response is None  # conditional requests apply to every GET
            continue
        status = str(ex.status)
        assert status in operation["responses"], f"{ex.method} {ex.template} never answers {status}"
        response = _deref(openapi, operation["responses"][status])
        content = response.get("content", {}).get("application/json")
        if content is None:
            assert ex.response is None
            continue
        ref = operation["responses"][status].get("$ref")
        pointer = (
            ref.removeprefix("#") if ref else _pointer("paths", ex.template, ex.method.lower(), "responses", status)
        )
        errors = [
            e.message for e in validator_for(pointer + "/content/application~1json/schema").iter_errors(ex.response)
        ]
        assert not errors, f"{ex.method} {ex.template} {status}: {errors[:3]}"
        checked += 1
    assert checked > 30


def test_the_fakes_error_answers_match_githubs_error_schemas(validator_for):
    """Faults the provider tests rehearse: secondary rate limit, 5xx, missing permission,
    deleted issue, unknown route. Their bodies are GitHub's ``basic-error``."""
    with FakeGitHub() as fake:
        provider = open_test_provider(utcnow, fake=fake, max_retries=0)
        (task,) = provider.create_tasks([NewTask("1.1: a")]).created
        fake.delete_issue(int(task.id))
        fake.secondary_rate_limit(retry_after=1)
        fake.fail(status=502)
        for call in (provider.list_tasks, provider.list_tasks, lambda: provider.get_task(task.id)):
            with pytest.raises(Exception):  # noqa: B017 - each fails differently; the bodies are the point
                call()
        GitHubProvider.close(provider)
        errors = [ex for ex in fake.requests if ex.status >= 400]
    assert {ex.status for ex in errors} == {403, 502, 410}
    for ex in errors:
        problems = list(validator_for("/components/schemas/basic-error").iter_errors(ex.response))
        assert not problems, (ex.status, ex.response, problems)
