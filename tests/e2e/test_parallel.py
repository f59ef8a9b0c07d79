"""Parallel workers end to end: ``autonomous start --workers N`` through the REAL Claude Code
CLI (bundled with claude-agent-sdk) against the scripted model server, on real temporary git
repositories: worktrees per task, the merge queue, a conflict redone on the new base, kill -9
with two workers, and two runner processes sharing one PostgreSQL store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from e2e_project import conversations, env_for, events, file_store, git, start, start_cmd, states, task_rules

from autonomous.tasks import NewTask, TaskStatus
from autonomous.testing.cli_env import bundled_claude_path
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, ToolCall, complete_task_rules

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bundled_claude_path() is None, reason="needs the Claude Code CLI bundled with claude-agent-sdk"),
]

PG_DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "e2e@example.com")
    git(root, "config", "user.name", "e2e")
    (root / ".gitignore").write_text(".ai-agents/\n")
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def create(provider, keys: list[str]) -> None:
    provider.create_tasks([NewTask("META: Parallel"), *(NewTask(f"[{k}] Part {k}") for k in keys)])


def configure(project: Path, **sections: dict) -> None:
    auto = {"max_tasks_per_session": 50, "lease_seconds": 60, **sections.pop("autonomous", {})}
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"autonomous": auto, **sections}))


def merge_subjects(project: Path) -> list[str]:
    return git(project, "log", "--merges", "--format=%s", "main").splitlines()


# -- (a) speed-up ------------------------------------------------------------------------------


def test_three_workers_finish_a_phase_of_six_about_three_times_faster(tmp_path: Path) -> None:
    keys = [f"PAR-1.{i}" for i in range(1, 7)]
    walls: dict[int, float] = {}
    for workers in (1, 3):
        project = make_repo(tmp_path / f"proj{workers}")
        with file_store(project) as provider:
            create(provider, keys)
        configure(project, execution={"ordering": "phases", "git": {"branch_per_task": True}})
        with ScriptedModelServer(task_rules(keys, delay=2.5)) as server:
            started = time.monotonic()
            proc = start(project, server, tmp_path, "--workers", str(workers))
            walls[workers] = time.monotonic() - started
            assert proc.returncode == 0, proc.stderr
            assert all(conversations(server, k) == 1 for k in keys)  # every task ran exactly once
        with file_store(project) as provider:
            assert all(states(provider)[k].status is TaskStatus.DONE for k in keys)
        merges = merge_subjects(project)
        assert sorted(m.split(":")[0] for m in merges) == sorted(f"Merge autonomous/{k}" for k in keys)
        assert all((project / f"{k}.txt").read_text() == f"{k}\n" for k in keys)
        assert not list((project / ".ai-agents" / "worktrees").glob("*"))
        claimed = {e["worker_id"] for e in events(project) if e["kind"] == "task_claimed"}
        assert len(claimed) == workers
    speedup = walls[1] / walls[3]
    print(f"\nsingle worker {walls[1]:.1f}s, three workers {walls[3]:.1f}s, speed-up {speedup:.2f}")
    assert speedup > 1.8, walls


# -- (b) a merge conflict, redone on the new base ----------------------------------------------


def write_rule(name: str, key: str, content: str, times: int | None = None, delay: float = 0.0) -> Rule:
    return Rule(
        name=name,
        times=times,
        match=Match(contains=f"Task {key}:", turn=1, has_tools=True),
        response=Response(
            text=f"Editing shared.txt for {key}.",
            tool_use=(ToolCall("Write", {"file_path": "shared.txt", "content": content}),),
            delay=delay,
        ),
    )


def test_conflicting_tasks_one_merges_the_other_is_redone_on_the_new_base(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "proj", {"shared.txt": "base\n"})
    keys = ["CON-1.1", "CON-1.2"]
    with file_store(project) as provider:
        create(provider, keys)
    rules = []
    for key, line in (("CON-1.2", "B"), ("CON-1.1", "A")):
        rules += [
            # first attempts: each adds its own line to the same place (they conflict)
            write_rule(f"{key} first", key, f"base\n{line}\n", times=1, delay=1.0),
            # a retry starts from the merged result and keeps both lines
            write_rule(f"{key} retry", key, "base\nA\nB\n"),
            *complete_task_rules(f"Task {key}:", files={"shared.txt": ""}, summary="edited shared.txt")[1:],
        ]
    configure(
        project,
        autonomous={"workers": 2},
        execution={"ordering": "phases"},
        verification={"commands": ["grep -q base shared.txt"]},
    )
    with ScriptedModelServer(rules) as server:
        proc = start(project, server, tmp_path)
        hits = server.rule_hits
    assert proc.returncode == 0, proc.stderr
    with file_store(project) as provider:
        done = states(provider)
    assert all(done[k].status is TaskStatus.DONE for k in keys)
    assert (project / "shared.txt").read_text() == "base\nA\nB\n"  # nothing lost
    retried = [k for k in keys if any(n.text.startswith("Merge failed") for n in done[k].notes)]
    assert len(retried) == 1, hits
    note = next(n.text for n in done[retried[0]].notes if n.text.startswith("Merge failed"))
    assert "conflict" in note and "shared.txt" in note
    assert hits.get(f"{retried[0]} retry") == 1
    assert len(merge_subjects(project)) == 2
    # the conflicting first attempt is kept on its own branch, never deleted
    (kept,) = git(project, "branch", "--list", "--format=%(refname:short)", f"autonomous/{retried[0]}-attempt*").split()
    line = "A" if retried[0] == "CON-1.1" else "B"
    assert git(project, "show", f"{kept}:shared.txt") == f"base\n{line}\n"


# -- (c) kill -9 with two workers --------------------------------------------------------------


def test_kill_9_with_two_workers_then_restart_completes_each_task_once(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "proj")
    keys = ["KIL-1.1", "KIL-1.2", "KIL-1.3", "KIL-1.4"]
    with file_store(project) as provider:
        create(provider, keys)
    hangs = [
        Rule(
            name=f"hang {k}",
            times=1,
            match=Match(contains=f"Task {k}:", has_tools=True),
            response=Response(text="x", stall=True),
        )
        for k in keys[:2]
    ]
    configure(project, autonomous={"workers": 2, "lease_seconds": 3}, execution={"ordering": "phases"})
    with ScriptedModelServer([*hangs, *task_rules(keys)]) as server:
        proc = subprocess.Popen(
            start_cmd(),
            cwd=project,
            env=env_for(server, tmp_path),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # both workers are inside a task (their first requests reached the server)
            while not all(server.rule_hits.get(f"hang {k}", 0) for k in keys[:2]):
                server.wait_for_requests(len(server.message_requests()) + 1, timeout=60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with file_store(project) as provider:
            assert all(states(provider)[k].status is TaskStatus.IN_PROGRESS for k in keys[:2])
        again = start(project, server, tmp_path)
        assert again.returncode == 0, again.stderr
        assert all(conversations(server, k) == 1 for k in keys), server.rule_hits
    with file_store(project) as provider:
        done = states(provider)
    assert all(done[k].status is TaskStatus.DONE for k in keys)
    assert all(any(n.text.startswith("Recovered") for n in done[k].notes) for k in keys[:2])
    merged = Counter(m.split(":")[0].removeprefix("Merge autonomous/") for m in merge_subjects(project))
    assert merged == Counter(keys)  # each task merged exactly once


# -- (d) two runner processes, one PostgreSQL store --------------------------------------------


def test_two_runner_processes_share_one_postgres_store_without_doing_a_task_twice(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    from autonomous.providers.postgres import PostgresProvider

    try:
        psycopg.connect(PG_DSN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {PG_DSN} ({exc})")
    schema = f"e2e_par_{uuid.uuid4().hex[:10]}"
    keys = [f"PG-1.{i}" for i in range(1, 5)] + ["PG-2.1"]
    origin = make_repo(tmp_path / "origin")
    clones = []
    for name in ("one", "two"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        git(clone, "config", "user.email", f"{name}@example.com")
        git(clone, "config", "user.name", name)
        configure(
            clone,
            state_provider={"type": "postgres", "dsn": PG_DSN, "schema": schema},
            execution={"ordering": "phases"},
        )
        clones.append(clone)
    store = PostgresProvider(PG_DSN, schema=schema, drop_schema_on_close=True)
    try:
        create(store, keys)
        with ScriptedModelServer(task_rules(keys, delay=0.5)) as server:
            procs = [
                subprocess.Popen(
                    start_cmd(),
                    cwd=clone,
                    env=env_for(server, tmp_path),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for clone in clones
            ]
            outs = [p.communicate(timeout=300) for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outs
            assert all(conversations(server, k) == 1 for k in keys), server.rule_hits
        done = states(store)
        assert all(done[k].status is TaskStatus.DONE for k in keys)
        claims = Counter(e["key"] for clone in clones for e in events(clone) if e["kind"] == "task_claimed")
        assert claims == Counter(keys)  # each task claimed once, across both processes
        commits = Counter(
            s.split(":")[0] for clone in clones for s in git(clone, "log", "--format=%s").splitlines()[:-1]
        )
        assert commits == Counter(keys)
    finally:
        store.close()
