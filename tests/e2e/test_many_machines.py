"""Many machines, one codebase, end to end: ``autonomous start`` through the REAL Claude Code
CLI against the scripted model server, runners in clones of one bare repository (the shared
remote), set up like a new user's (untracked config and .env, no .gitignore):

* two runner processes sharing one PostgreSQL schema finish a two-phase project whose
  phase-2 tasks need phase-1 files; the remote branch holds every task's commit once;
* ``kill -9`` mid-push (before the remote took it, and after), then a restart: nothing
  lost, nothing done twice;
* ``execution.handoff: review``: exit 3 while only reviews remain, reject with a note that
  reaches the agent, approve merges without running the agent again.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from e2e_project import conversations, env_for, events, file_store, git, start, start_cmd, states, task_rules

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]


PG_DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def make_origin(tmp_path: Path) -> Path:
    """A bare repository with one commit on ``main``: the remote every runner pushes to."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    git(seed, "config", "user.email", "seed@example.com")
    git(seed, "config", "user.name", "seed")
    (seed / "README.md").write_text("# app\n")
    git(seed, "add", "README.md")
    git(seed, "commit", "-q", "-m", "init")
    git(seed, "push", "-q", str(bare), "main")
    return bare


def make_clone(bare: Path, where: Path, config: dict) -> Path:
    """A new user's checkout: the tool's config and a .env untracked, no .gitignore."""
    git(where.parent, "clone", "-q", str(bare), str(where))
    git(where, "config", "user.email", f"{where.name}@example.com")
    git(where, "config", "user.name", where.name)
    (where / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-not-for-git\n")
    path = where / ".ai-agents" / "config.yml"
    path.parent.mkdir()
    auto = {"max_tasks_per_session": 50, "lease_seconds": 60, **config.pop("autonomous", {})}
    execution = {"ordering": "phases", **config.pop("execution", {})}
    execution["git"] = {"remote": "origin", **execution.get("git", {})}
    path.write_text(yaml.safe_dump({"autonomous": auto, "execution": execution, **config}))
    return where


def remote_subjects(bare: Path) -> list[str]:
    return git(bare, "log", "--format=%s", "main").splitlines()


def task_commits(bare: Path, keys: list[str]) -> Counter:
    """How often each task's own commit (subject ``KEY: title``) is on the remote branch."""
    return Counter(s.split(":")[0] for s in remote_subjects(bare) if s.split(":")[0] in keys)


def untracked(project: Path) -> list[str]:
    out = git(project, "status", "--porcelain", "--untracked-files=all")
    return sorted(line[3:] for line in out.splitlines() if line.startswith("??"))


# -- two runners, one remote, one PostgreSQL schema ----------------------------------------------


PHASE_1 = ["RM-1.1", "RM-1.2", "RM-1.3"]
PHASE_2 = ["RM-2.1", "RM-2.2"]
# phase-2 work only passes on a tree that has every phase-1 file
NEEDS_PHASE_1 = (
    "sh -c 'if ls RM-2.*.txt >/dev/null 2>&1; then "
    "for k in RM-1.1 RM-1.2 RM-1.3; do test -e $k.txt || exit 1; done; fi'"
)


def test_two_runners_on_one_remote_finish_a_two_phase_project_each_task_once(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    from autonomous.providers.postgres import PostgresProvider

    try:
        psycopg.connect(PG_DSN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {PG_DSN} ({exc})")
    schema = f"e2e_remote_{uuid.uuid4().hex[:10]}"
    keys = PHASE_1 + PHASE_2
    bare = make_origin(tmp_path)
    clones = [
        make_clone(
            bare,
            tmp_path / name,
            {
                "state_provider": {"type": "postgres", "dsn": PG_DSN, "schema": schema},
                "verification": {"commands": [NEEDS_PHASE_1]},
            },
        )
        for name in ("one", "two")
    ]
    store = PostgresProvider(PG_DSN, schema=schema, drop_schema_on_close=True)
    try:
        store.create_tasks([NewTask("META: Remote"), *(NewTask(f"[{k}] Part {k}") for k in keys)])
        with ScriptedModelServer(task_rules(keys, delay=0.5)) as server:
            procs = [
                subprocess.Popen(
                    start_cmd(),
                    cwd=c,
                    env=env_for(server, tmp_path),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for c in clones
            ]
            outs = [p.communicate(timeout=300) for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outs
            assert all(conversations(server, k) == 1 for k in keys), server.rule_hits
        done = states(store)
        assert all(done[k].status is TaskStatus.DONE for k in keys)
        assert all("pushed to origin/main" in done[k].notes[-1].text for k in keys), [done[k].notes for k in keys]
        claims = Counter(e["key"] for c in clones for e in events(c) if e["kind"] == "task_claimed")
        assert claims == Counter(keys)
        by_runner = [{e["key"] for e in events(c) if e["kind"] == "task_claimed"} for c in clones]
        assert all(by_runner), by_runner  # both machines did work
        assert task_commits(bare, keys) == Counter(keys)  # the remote holds every task's commit, once
        for key in PHASE_2:
            sha = git(bare, "log", "-1", "--format=%H", f"--grep=^{key}:", "main").strip()
            tree = git(bare, "ls-tree", "-r", "--name-only", sha).split()
            assert {f"{k}.txt" for k in PHASE_1} <= set(tree), (key, tree)
        for c in clones:  # never a force push: each clone's history is an ancestor of the remote's
            git(c, "fetch", "-q", "origin")
            git(c, "merge-base", "--is-ancestor", "main", "origin/main")
            assert untracked(c) == [".ai-agents/config.yml", ".env"]
    finally:
        store.close()


# -- kill -9 mid-push ------------------------------------------------------------------------------


def blocking_hook(path: Path, reached: Path, once: Path) -> None:
    """A git hook that, the first time, says it was reached (through a FIFO the test reads)
    and then blocks until the runner is killed."""
    path.write_text(
        f'#!/bin/sh\n[ -e "{once}" ] && exit 0\ntouch "{once}"\necho reached > "{reached}"\nexec sleep 600\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("when", ["before-the-remote-took-it", "after-the-remote-took-it"])
def test_kill_9_mid_push_then_restart_loses_nothing_and_does_nothing_twice(tmp_path: Path, when: str) -> None:
    keys = ["KP-1.1", "KP-1.2"]
    bare = make_origin(tmp_path)
    project = make_clone(bare, tmp_path / "one", {})
    with file_store(project) as provider:
        provider.create_tasks([NewTask("META: Kill"), *(NewTask(f"[{k}] Part {k}") for k in keys)])
    reached, once = tmp_path / "reached", tmp_path / "once"
    os.mkfifo(reached)
    hook = (project / ".git" / "hooks" / "pre-push") if when.startswith("before") else (bare / "hooks" / "post-receive")
    blocking_hook(hook, reached, once)
    with ScriptedModelServer(task_rules(keys)) as server:
        proc = subprocess.Popen(
            start_cmd(), cwd=project, env=env_for(server, tmp_path), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert reached.read_text().strip() == "reached"  # blocks until the first push is under way
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with file_store(project) as provider:
            assert states(provider)["KP-1.1"].status is TaskStatus.IN_PROGRESS
        taken = task_commits(bare, keys)
        assert taken == (Counter() if when.startswith("before") else Counter(["KP-1.1"]))
        again = start(project, server, tmp_path)
        assert again.returncode == 0, again.stderr
        assert all(conversations(server, k) == 1 for k in keys), server.rule_hits  # KP-1.1 was not redone
    with file_store(project) as provider:
        done = states(provider)
    assert all(done[k].status is TaskStatus.DONE for k in keys)
    assert "already on origin/main" in done["KP-1.1"].notes[-1].text
    assert task_commits(bare, keys) == Counter(keys)  # nothing lost, nothing twice
    assert git(bare, "show", "main:KP-1.1.txt") == "KP-1.1\n"
    assert untracked(project) == [".ai-agents/config.yml", ".env"]


# -- review mode -----------------------------------------------------------------------------------


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*start_cmd()[:-1], *args], cwd=project, capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )


def test_review_mode_waits_for_approve_and_reject_and_exits_3_while_only_reviews_remain(tmp_path: Path) -> None:
    keys = ["RV-1.1", "RV-2.1"]
    bare = make_origin(tmp_path)
    project = make_clone(bare, tmp_path / "one", {"execution": {"handoff": "review"}})
    with file_store(project) as provider:
        provider.create_tasks([NewTask("META: Review"), *(NewTask(f"[{k}] Part {k}") for k in keys)])
    redo = Rule(
        name="RV-1.1 after the rejection",
        match=Match(contains="say it louder", turn=1, has_tools=True),
        response=Response(
            text="Redoing it.", tool_use=(ToolCall("Write", {"file_path": "RV-1.1.txt", "content": "RV-1.1!\n"}),)
        ),
    )
    rules = [redo, *task_rules(keys)]
    with ScriptedModelServer(rules) as server:
        first = start(project, server, tmp_path)
        assert first.returncode == 3, first.stderr
        assert "paused awaiting review: RV-1.1" in first.stderr
        with file_store(project) as provider:
            task = states(provider)["RV-1.1"]
            assert task.status is TaskStatus.IN_REVIEW
            assert task.notes[-1].text.startswith("In review: branch autonomous/RV-1.1")
            assert states(provider)["RV-2.1"].status is TaskStatus.TODO  # its dependant waits
        assert task_commits(bare, keys) == Counter()  # nothing lands before a person says so
        assert git(bare, "branch", "--list", "autonomous/RV-1.1")  # pushed for a reviewer on any machine

        rejected = cli(project, "reject", "RV-1.1", "--note", "say it louder")
        assert rejected.returncode == 0, rejected.stderr
        second = start(project, server, tmp_path)
        assert second.returncode == 3, second.stderr
        assert server.rule_hits.get("RV-1.1 after the rejection") == 1  # the note reached the agent

        approved = cli(project, "approve", "RV-1.1")
        assert approved.returncode == 0, approved.stderr
        third = start(project, server, tmp_path)
        assert third.returncode == 3 and "paused awaiting review: RV-2.1" in third.stderr, third.stderr
        assert conversations(server, "RV-1.1") == 1  # approval merged it without running the agent
        assert git(bare, "show", "main:RV-1.1.txt") == "RV-1.1!\n"
        assert not git(bare, "branch", "--list", "autonomous/RV-1.1")  # landed: its review branch is gone

        assert cli(project, "approve", "RV-2.1").returncode == 0
        last = start(project, server, tmp_path)
        assert last.returncode == 0, last.stderr
    with file_store(project) as provider:
        done = states(provider)
    assert all(done[k].status is TaskStatus.DONE for k in keys)
    assert task_commits(bare, keys)["RV-2.1"] == 1
    assert cli(project, "approve", "RV-2.1").returncode != 0  # done: nothing to review


def test_a_remote_the_checkout_does_not_have_stops_start_with_exit_2_before_any_claim(tmp_path: Path) -> None:
    bare = make_origin(tmp_path)
    project = make_clone(bare, tmp_path / "one", {"execution": {"git": {"remote": "upstream"}}})
    with file_store(project) as provider:
        provider.create_tasks([NewTask("[NR-1.1] Part NR-1.1")])
    with ScriptedModelServer(task_rules(["NR-1.1"])) as server:
        proc = start(project, server, tmp_path)
        assert not server.message_requests()
    assert proc.returncode == 2, proc.stderr
    assert "execution.git.remote: the checkout" in proc.stderr and "has no remote 'upstream'" in proc.stderr
    with file_store(project) as provider:
        task = states(provider)["NR-1.1"]
        assert task.status is TaskStatus.TODO and task.claim is None
