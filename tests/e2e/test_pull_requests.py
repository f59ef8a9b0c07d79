"""``execution.handoff: pr`` end to end: ``autonomous start`` through the REAL Claude Code CLI
against the scripted model server, in a clone of a bare repository (the shared remote), with
pull requests on the fake GitHub server (which merges for real in that bare repository):

* merged -> done (and a restart while the pull request is open, or after a runner died
  before recording it, opens no second one);
* changes requested -> the review's comments reach the agent, whose second round is pushed
  to the same branch and so to the same pull request;
* closed unmerged -> blocked;
* the next phase waits for an open pull request, unless
  ``execution.review_unblocks_dependents``.

The GitHub token never reaches the event log, the logs or the notes.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from e2e_project import conversations, env_for, file_store, git, start_cmd, states, task_rules
from test_many_machines import make_clone, make_origin

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path
from autonomous.testing.fake_github import FakeGitHub
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

TOKEN = "ghp_" + "Zq9" * 12  # the runner's GitHub token: never in a log, an event or a note


def project_with_pulls(tmp_path: Path, keys: list[str], **options: object) -> tuple[Path, Path, FakeGitHub]:
    bare = make_origin(tmp_path)
    gh = FakeGitHub(token=TOKEN, git_dir=bare).start()
    execution = {
        **options,
        "handoff": "pr",
        "pull_requests": {"repo": "acme/widgets", "api_url": gh.url},
        "pr_poll_seconds": 0.1,
        "pr_wait": "${PR_WAIT:-0}",
    }
    project = make_clone(bare, tmp_path / "one", {"execution": execution})
    with file_store(project) as provider:
        provider.create_tasks([NewTask(f"[{k}] Part {k}") for k in keys])
    return bare, project, gh


def env(server: ScriptedModelServer, tmp_path: Path) -> dict[str, str]:
    return {**env_for(server, tmp_path), "GITHUB_TOKEN": TOKEN}


def run(project: Path, server: ScriptedModelServer, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        start_cmd(), cwd=project, env=env(server, tmp_path), capture_output=True, text=True, timeout=300
    )


def assert_token_kept(project: Path, server: ScriptedModelServer) -> None:
    """Not in the tool's files, nor the notes, nor anything the agent sent the model."""
    assert all(TOKEN not in json.dumps(r.body) for r in server.message_requests())
    for path in (project / ".ai-agents").rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".log", ".json", ".md", ".txt"):
            assert TOKEN not in path.read_text(errors="replace"), path
    with file_store(project) as provider:
        assert all(TOKEN not in n.text for t in provider.list_tasks() for n in t.notes)


def test_a_merged_pull_request_makes_the_task_done_and_a_restart_opens_no_second_one(tmp_path: Path) -> None:
    bare, project, gh = project_with_pulls(tmp_path, ["PR-1.1"])
    with gh, ScriptedModelServer(task_rules(["PR-1.1"])) as server:
        first = run(project, server, tmp_path)
        assert first.returncode == 3, first.stderr
        assert "paused awaiting review: PR-1.1" in first.stderr
        (number,) = gh.pulls()
        with file_store(project) as provider:
            task = states(provider)["PR-1.1"]
        assert task.status is TaskStatus.IN_REVIEW
        assert task.notes[-1].text.startswith(
            f"In review: pull request #{number} https://github.com/acme/widgets/pull/"
        )
        assert git(bare, "show", "autonomous/PR-1.1:PR-1.1.txt") == "PR-1.1\n"
        assert "PR-1.1" not in git(bare, "log", "--format=%s", "main")  # nothing lands before the merge

        # a restart that keeps polling (execution.pr_wait) while the pull request is open:
        # no second pull request; unchanged reads are 304s; the merge ends the wait
        before = sum(1 for ex in gh.requests if ex.path.endswith(f"/pulls/{number}"))
        waiting = subprocess.Popen(
            start_cmd(), cwd=project, env={**env(server, tmp_path), "PR_WAIT": "120"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            gh.wait_for_request("GET", f"/pulls/{number}$", count=before + 2)
            merge = gh.merge_pull(number)
            _, stderr = waiting.communicate(timeout=120)
        finally:
            if waiting.poll() is None:
                waiting.kill()
        assert waiting.returncode == 0, stderr
        assert gh.pulls() == [number]
        assert sum(1 for ex in gh.requests if ex.method == "POST" and ex.path.endswith("/pulls")) == 1
    with file_store(project) as provider:
        task = states(provider)["PR-1.1"]
    assert task.status is TaskStatus.DONE
    assert task.notes[-1].text.startswith(f"Done (pull request #{number} merged as {merge[:12]})")
    assert git(bare, "show", "main:PR-1.1.txt") == "PR-1.1\n"
    assert conversations(server, "PR-1.1") == 1  # the merge ran no agent
    assert any(ex.status == 304 for ex in gh.requests)  # unchanged pull requests were read conditionally
    assert_token_kept(project, server)


def test_a_runner_that_stopped_before_recording_its_pull_request_reuses_it(tmp_path: Path) -> None:
    """Pushed and opened, then the runner died before the task reached in_review: the task is
    taken again, and its branch's open pull request is reused, not opened twice."""
    bare, project, gh = project_with_pulls(tmp_path, ["RS-1.1"])
    with gh, ScriptedModelServer(task_rules(["RS-1.1"])) as server:
        assert run(project, server, tmp_path).returncode == 3
        (number,) = gh.pulls()
        with file_store(project) as provider:  # as if the record had never been written
            provider.update_task(states(provider)["RS-1.1"].id, status=TaskStatus.TODO)
        again = run(project, server, tmp_path)
        assert again.returncode == 3, again.stderr
    assert gh.pulls() == [number]
    assert sum(1 for ex in gh.requests if ex.method == "POST" and ex.path.endswith("/pulls")) == 1
    with file_store(project) as provider:
        note = states(provider)["RS-1.1"].notes[-1].text.splitlines()[0]
    assert note.startswith(f"In review: pull request #{number} ") and "updated)" in note
    assert git(bare, "show", "autonomous/RS-1.1:RS-1.1.txt") == "RS-1.1\n"


def test_requested_changes_reach_the_agent_and_its_second_round_updates_the_same_pull_request(tmp_path: Path) -> None:
    bare, project, gh = project_with_pulls(tmp_path, ["CR-1.1"])
    redo = Rule(
        name="CR-1.1 after the review",
        match=Match(contains="make it louder, please", turn=1, has_tools=True),
        response=Response(
            text="Redoing it.", tool_use=(ToolCall("Write", {"file_path": "CR-1.1.txt", "content": "CR-1.1!\n"}),)
        ),
    )
    with gh, ScriptedModelServer([redo, *task_rules(["CR-1.1"])]) as server:
        assert run(project, server, tmp_path).returncode == 3
        (number,) = gh.pulls()
        gh.review(number, body="Not loud enough.", comments=[("CR-1.1.txt", 1, "make it louder, please")])
        second = run(project, server, tmp_path)
        assert second.returncode == 3, second.stderr
        assert server.rule_hits.get("CR-1.1 after the review") == 1
        prompts = [r for r in server.message_requests() if r.rule == "CR-1.1 after the review"]
        assert "Not loud enough." in str(prompts[0].body)  # the review's text reached the agent too
        assert gh.pulls() == [number]  # the same pull request, updated
        assert len(git(bare, "rev-list", "main..autonomous/CR-1.1").split()) == 2
        assert git(bare, "show", "autonomous/CR-1.1:CR-1.1.txt") == "CR-1.1!\n"
        with file_store(project) as provider:
            task = states(provider)["CR-1.1"]
        assert task.status is TaskStatus.IN_REVIEW
        assert any(n.text.startswith(f"Changes requested on pull request #{number} by reviewer") for n in task.notes)
        assert task.notes[-1].text.startswith(f"In review: pull request #{number} ")
        assert "updated)" in task.notes[-1].text.splitlines()[0]  # the open pull request was reused

        gh.merge_pull(number)
        assert run(project, server, tmp_path).returncode == 0
    assert git(bare, "show", "main:CR-1.1.txt") == "CR-1.1!\n"
    assert_token_kept(project, server)


def test_a_pull_request_closed_without_merging_blocks_the_task(tmp_path: Path) -> None:
    bare, project, gh = project_with_pulls(tmp_path, ["CL-1.1"])
    with gh, ScriptedModelServer(task_rules(["CL-1.1"])) as server:
        assert run(project, server, tmp_path).returncode == 3
        (number,) = gh.pulls()
        gh.close_pull(number)
        closed = run(project, server, tmp_path)
    assert closed.returncode == 1, closed.stderr
    with file_store(project) as provider:
        task = states(provider)["CL-1.1"]
    assert task.status is TaskStatus.BLOCKED
    assert task.notes[-1].text.startswith(f"Blocked: pull request #{number} was closed without being merged")
    assert "CL-1.1" not in git(bare, "log", "--format=%s", "main")


@pytest.mark.parametrize("unblocks", [False, True])
def test_the_next_phase_waits_for_an_open_pull_request_unless_review_unblocks_dependents(
    tmp_path: Path, unblocks: bool
) -> None:
    keys = ["RU-1.1", "RU-2.1"]
    bare, project, gh = project_with_pulls(tmp_path, keys, review_unblocks_dependents=unblocks)
    with gh, ScriptedModelServer(task_rules(keys)) as server:
        first = run(project, server, tmp_path)
    assert first.returncode == 3, first.stderr
    with file_store(project) as provider:
        later = states(provider)["RU-2.1"]
    assert later.status is (TaskStatus.IN_REVIEW if unblocks else TaskStatus.TODO)
    assert len(gh.pulls()) == (2 if unblocks else 1)
    assert conversations(server, "RU-2.1") == (1 if unblocks else 0)
    if unblocks:  # the price of the option: the dependant started without the work in review
        assert "RU-1.1.txt" not in git(bare, "ls-tree", "--name-only", "autonomous/RU-2.1").split()


def test_with_the_github_state_provider_pull_requests_use_its_repository_and_token(tmp_path: Path) -> None:
    """No ``execution.pull_requests``: the tasks' issues and the pull requests live in one
    repository, over one client; pull requests never count as tasks."""
    from autonomous.testing.fake_github import open_test_provider

    bare = make_origin(tmp_path)
    gh = FakeGitHub(token=TOKEN, git_dir=bare).start()
    config = {
        "state_provider": {"type": "github", "repo": "acme/widgets", "write_interval": 0},
        "execution": {"handoff": "pr", "pr_poll_seconds": 0.1},
    }
    project = make_clone(bare, tmp_path / "one", config)
    provider = open_test_provider(fake=gh)  # closing it stops the fake too
    provider.create_tasks([NewTask("[GP-1.1] Part GP-1.1")])
    with contextlib.closing(provider), ScriptedModelServer(task_rules(["GP-1.1"])) as server:
        environ = {**env(server, tmp_path), "GITHUB_API_URL": gh.url}
        first = subprocess.run(start_cmd(), cwd=project, env=environ, capture_output=True, text=True, timeout=300)
        assert first.returncode == 3, first.stderr
        (number,) = gh.pulls()
        gh.merge_pull(number)
        last = subprocess.run(start_cmd(), cwd=project, env=environ, capture_output=True, text=True, timeout=300)
        assert last.returncode == 0, last.stderr
        (task,) = provider.list_tasks()  # the pull request is no task
        assert task.status is TaskStatus.DONE and task.notes[-1].text.startswith(f"Done (pull request #{number}")
    assert git(bare, "show", "main:GP-1.1.txt") == "GP-1.1\n"
    assert all(TOKEN not in str(ex.response) for ex in gh.requests)
