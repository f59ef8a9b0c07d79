"""The loop, with the testing kit's scripted backend (it tests the runner, not a backend)
and the real file store (claims, fencing tokens, notes, sessions)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from autonomous import checkpoints as cp
from autonomous import runner_state
from autonomous.backends.base import Backend, RunOptions
from autonomous.config import Config, parse_config
from autonomous.errors import RunnerBusy
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.events.bus import EventBus
from autonomous.providers.base import StateProvider
from autonomous.providers.file import FileProvider
from autonomous.runner import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_USAGE,
    HANDOFF_CAP,
    AutonomousRunner,
    build_prompt,
    handoff_notes,
    request_stop,
)
from autonomous.tasks import NewTask, Task, TaskStatus, utcnow
from autonomous.testing.scripted_backend import ScriptedBackend, Step, complete, outcome


# -- the store: the real file store, recording the order of claims --------------------------------
class Store(FileProvider):
    """The file store in a fresh directory beside the project; ``claims`` lists task keys in claim order."""

    def __init__(self, project: Path) -> None:
        self.offset = timedelta(0)  # moved only by steal(): the store's clock, not the runner's
        super().__init__(project.parent / "stores" / uuid.uuid4().hex, now=lambda: utcnow() + self.offset)
        self.claims: list[str] = []

    def claim(self, task_id, worker_id, lease_seconds):
        task = super().claim(task_id, worker_id, lease_seconds)
        self.claims.append(task.key)
        return task

    def claim_next(self, *args, **kw):
        task = super().claim_next(*args, **kw)
        if task is not None:
            self.claims.append(task.key)
        return task

    def by_key(self, key: str) -> Task:
        return next(t for t in self.list_tasks() if t.key == key)

    def steal(self, key: str) -> None:
        """Another worker takes the task over after our lease ran out (our token becomes stale)."""
        self.offset = timedelta(hours=1)
        try:
            FileProvider.claim(self, self.by_key(key).id, "other:1:x", 7200)
        finally:
            self.offset = timedelta(0)


def task_names(provider: StateProvider) -> Callable[[RunOptions], list[str]]:
    """How the scripted backend finds a run's steps: by the task's key, else its title."""

    def names(options: RunOptions) -> list[str]:
        task = provider.get_task(options.task_id)
        return [task.key, task.title]

    return names


# -- fixtures -------------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / ".gitignore").write_text(".ai-agents/\n")
    (root / "README.md").write_text("demo\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def config(project: Path, **sections: dict) -> Config:
    """A real configuration rooted in ``project``: the given sections over the defaults
    (config.py's), with a short lease and room for every task of these tests. These tests
    script the agent, not the project: no detected checks and no change requirement
    unless a test asks (tests/test_checks.py covers the defaults)."""
    auto = {"lease_seconds": 60, "max_tasks_per_session": 50, **sections.pop("autonomous", {})}
    verification = {"commands": [], "require_changes": False, **sections.pop("verification", {})}
    return parse_config({"autonomous": auto, "verification": verification, **sections}, root=project)


def two_phase(provider: Store) -> None:
    provider.create_tasks(
        [
            NewTask("META: Demo project", labels=["meta"]),
            NewTask("[DEMO-1.1] Create a", description="make a.txt", acceptance_criteria=["a.txt exists"]),
            NewTask("[DEMO-1.2] Create b"),
            NewTask("[DEMO-2.1] Create c"),
        ]
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def kinds(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]


def make_runner(project: Path, provider: Store, backend: Backend, **kw) -> tuple[AutonomousRunner, Recorder]:
    rec = Recorder()
    backend.names = task_names(provider)
    approver = kw.pop("approver", cp.NoTerminal())
    r = AutonomousRunner(
        config(project, **kw),
        provider=provider,
        backend=backend,
        bus=EventBus([rec]),
        approver=approver,
        out=lambda s: None,
    )
    return r, rec


# -- the loop -------------------------------------------------------------------------------
def test_two_phase_run_in_order_with_notes_commits_and_summary(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend(
        {
            "DEMO-1.1": [complete("a.txt", cost=0.1)],
            "DEMO-1.2": [complete("b.txt", cost=0.2)],
            "DEMO-2.1": [complete("c.txt", cost=0.3)],
        }
    )
    runner, rec = make_runner(
        project, p, backend, verification={"commands": ["test -f a.txt"], "require_changes": True}
    )
    result = runner.start()
    assert result.exit_code == EXIT_OK, result.reason
    assert "no work left" in result.reason
    assert p.claims == ["DEMO-1.1", "DEMO-1.2", "DEMO-2.1"]
    assert all(p.by_key(k).status is TaskStatus.DONE for k in ("DEMO-1.1", "DEMO-1.2", "DEMO-2.1"))
    assert result.cost_usd == pytest.approx(0.6)
    log = git(project, "log", "--format=%s")
    assert log.splitlines()[:3] == [
        "DEMO-2.1: [DEMO-2.1] Create c",
        "DEMO-1.2: [DEMO-1.2] Create b",
        "DEMO-1.1: [DEMO-1.1] Create a",
    ]
    assert git(project, "show", "--name-only", "--format=", "HEAD").split() == ["c.txt"]
    done_note = p.by_key("DEMO-1.1").notes[-1].text
    sha = git(project, "rev-parse", "HEAD~2").strip()
    assert done_note.startswith("Done (commit ") and sha in done_note
    assert "a.txt" in done_note and "Turns: 2" in done_note
    assert any(n.text.startswith("Verification passed") for n in p.by_key("DEMO-1.1").notes)
    # every task ran in a fresh context
    assert all(opts.session_id is None for _, _, opts in backend.runs)
    # the handoff: task 1.2's prompt carries 1.1's note
    prompt_12 = next(pr for k, pr, _ in backend.runs if k == "DEMO-1.2")
    assert "from DEMO-1.1" in prompt_12 and "## When you finish" in prompt_12
    meta_notes = [n.text for n in p.by_key("META").notes]
    assert meta_notes[0].startswith("Session ") and "started" in meta_notes[0]
    assert meta_notes[-1].startswith("Session summary") and "done 3" in meta_notes[-1]
    (session,) = p.list_sessions()
    assert session.ended_at is not None and session.summary["tasks_completed"] == ["DEMO-1.1", "DEMO-1.2", "DEMO-2.1"]
    state = runner_state.load(project / ".ai-agents" / "state")
    assert state.state == "completed" and state.exit_code == 0 and state.current == []
    assert runner.get_status()["tasks_completed"] == 3
    kinds = [e.kind for e in rec.events]
    assert kinds[0] is EventKind.SESSION_START and kinds[-1] is EventKind.SESSION_END
    assert len(rec.kinds(EventKind.TASK_CLAIMED)) == 3 and len(rec.kinds(EventKind.TASK_RECORDED)) == 3


def test_claimed_completion_with_failing_verification_goes_back_then_blocks(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend({"DEMO-1.1": [complete(None), complete(None), complete(None)]})
    runner, rec = make_runner(
        project, p, backend, verification={"commands": ["echo checking; test -f a.txt"], "max_attempts": 2}
    )
    result = runner.start()
    assert result.exit_code == EXIT_FAILED and "stop-on-failure" in result.reason
    task = p.by_key("DEMO-1.1")
    assert task.status is TaskStatus.BLOCKED
    assert [k for k, _, _ in backend.runs] == ["DEMO-1.1", "DEMO-1.1"]  # one follow-up, then stop
    follow_up = backend.runs[1]
    assert follow_up[2].session_id == "sess-1"  # same conversation
    assert "verification FAILED" in follow_up[1] and "checking" in follow_up[1]
    evidence = [n.text for n in task.notes if n.text.startswith("Verification FAILED")]
    assert len(evidence) == 2 and "test -f a.txt" in evidence[0] and "exit 1" in evidence[0]
    assert p.by_key("DEMO-1.2").status is TaskStatus.TODO  # never started
    assert p.claims == ["DEMO-1.1"]
    assert [e.data["checkpoint"] for e in rec.kinds(EventKind.CHECKPOINT)] == ["regression_failure"] * 2


def test_verification_failure_fixed_on_follow_up_is_done(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend({"DEMO-1.1": [complete(None), complete("a.txt")]})
    runner, _ = make_runner(
        project,
        p,
        backend,
        verification={"commands": ["test -f a.txt"], "max_attempts": 3},
        autonomous={"max_tasks_per_session": 1},
    )
    result = runner.start()
    assert result.exit_code == EXIT_OK and "max_tasks_per_session" in result.reason
    assert p.by_key("DEMO-1.1").status is TaskStatus.DONE


def test_require_changes_refuses_a_task_that_changed_nothing(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend({"DEMO-1.1": [complete(None)]})
    runner, _ = make_runner(project, p, backend, verification={"require_changes": True, "max_attempts": 1})
    assert runner.start().exit_code == EXIT_FAILED
    task = p.by_key("DEMO-1.1")
    assert task.status is TaskStatus.BLOCKED and "changed nothing" in task.notes[-1].text


def test_blocked_task_stops_the_run(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend(
        {"DEMO-1.1": [outcome(OutcomeStatus.BLOCKED, blocker="no database credentials", turns=1)]}
    )
    runner, _ = make_runner(project, p, backend)
    result = runner.start()
    assert result.exit_code == EXIT_FAILED and result.tasks_blocked == ["DEMO-1.1"]
    assert p.by_key("DEMO-1.1").status is TaskStatus.BLOCKED
    assert "no database credentials" in p.by_key("DEMO-1.1").notes[-1].text
    assert p.claims == ["DEMO-1.1"]


def test_meta_is_in_progress_while_a_session_runs_and_done_when_every_task_is(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    seen: list[TaskStatus] = []

    def look(prompt: str, options: RunOptions) -> Outcome:
        seen.append(p.by_key("META").status)
        return complete()(prompt, options)

    runner, rec = make_runner(project, p, ScriptedBackend(default=look))
    assert runner.start().exit_code == EXIT_OK
    assert seen == [TaskStatus.IN_PROGRESS] * 3
    assert p.by_key("META").status is TaskStatus.DONE
    (start,) = rec.kinds(EventKind.SESSION_START)
    assert (start.data["tasks_done"], start.data["tasks_total"]) == (0, 3)  # the display's "done N of M"


def test_meta_goes_back_to_todo_when_a_session_ends_with_work_left(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend({"DEMO-1.1": [outcome(OutcomeStatus.BLOCKED, blocker="no database")]})
    runner, _ = make_runner(project, p, backend)
    assert runner.start().exit_code == EXIT_FAILED
    assert p.by_key("META").status is TaskStatus.TODO


def test_on_failure_continue_skips_only_dependants(project: Path) -> None:
    p = Store(project)
    p.create_tasks(
        [
            NewTask("Build the parser", key="parser"),
            NewTask("Use the parser", key="user", dependencies=["parser"]),
            NewTask("Write the docs", key="docs"),
        ]
    )
    backend = ScriptedBackend(
        {"Build the parser": [outcome(OutcomeStatus.FAILED, error="crashed")]}, default=complete()
    )
    runner, _ = make_runner(project, p, backend, execution={"on_failure": "continue", "ordering": "dependencies"})
    result = runner.start()
    assert p.claims == ["parser", "docs"]
    assert p.by_key("parser").status is TaskStatus.TODO  # left for a retry
    assert p.by_key("user").status is TaskStatus.TODO and p.by_key("docs").status is TaskStatus.DONE
    assert result.exit_code == EXIT_FAILED and result.tasks_failed == ["parser"]


def test_cost_limit_never_starts_a_task_it_cannot_cover(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    told: list[float | None] = []

    def spend(prompt: str, options: RunOptions) -> Outcome:
        told.append(options.allowance.usd_left if options.allowance else None)
        return complete(cost=0.4)(prompt, options)

    backend = ScriptedBackend(default=spend)
    runner, _ = make_runner(project, p, backend, autonomous={"cost_limit_per_session": 1.0})
    result = runner.start()
    # 0.4 + 0.4 spent; 0.2 left < 0.4 expected: the third task is never claimed
    assert result.exit_code == EXIT_BUDGET and "cost limit" in result.reason
    assert p.claims == ["DEMO-1.1", "DEMO-1.2"]
    assert result.cost_usd == pytest.approx(0.8) and result.cost_usd <= 1.0
    assert told == [pytest.approx(1.0), pytest.approx(0.6)]  # each task's allowance: what the session has left


def test_first_task_floor_applies_before_any_cost_is_known(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    runner, _ = make_runner(
        project, p, ScriptedBackend(), autonomous={"cost_limit_per_session": 0.5, "first_task_cost": 1.0}
    )
    result = runner.start()
    assert result.exit_code == EXIT_BUDGET and p.claims == []


def test_backend_budget_exceeded_and_auth_error(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    runner, _ = make_runner(project, p, ScriptedBackend({"DEMO-1.1": [outcome(OutcomeStatus.BUDGET_EXCEEDED)]}))
    assert runner.start().exit_code == EXIT_BUDGET
    assert p.by_key("DEMO-1.1").status is TaskStatus.TODO
    runner, _ = make_runner(project, p, ScriptedBackend({"DEMO-1.1": [outcome(OutcomeStatus.AUTH_ERROR, error="401")]}))
    assert runner.start().exit_code == EXIT_USAGE
    assert p.by_key("DEMO-1.1").status is TaskStatus.TODO


def test_failed_run_leaves_work_committed_as_wip_and_task_todo(project: Path) -> None:
    p = Store(project)
    two_phase(p)

    def partial(prompt: str, options: RunOptions) -> Outcome:
        (options.cwd / "half.txt").write_text("half\n")
        return Outcome(OutcomeStatus.MAX_TURNS, error="max turns", turns=50)

    runner, _ = make_runner(project, p, ScriptedBackend({"DEMO-1.1": [partial]}))
    assert runner.start().exit_code == EXIT_FAILED
    assert git(project, "log", "-1", "--format=%s").startswith("WIP DEMO-1.1")
    assert p.by_key("DEMO-1.1").status is TaskStatus.TODO
    assert "max_turns" in p.by_key("DEMO-1.1").notes[-1].text


def test_context_high_requeues_into_a_fresh_context(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    full = outcome(OutcomeStatus.MAX_TURNS, context_tokens=190_000, turns=30)
    backend = ScriptedBackend({"DEMO-1.1": [full, complete("a.txt")]}, default=complete())
    runner, rec = make_runner(
        project,
        p,
        backend,
        autonomous={"context_window": 200_000, "max_tasks_per_session": 2},
        execution={"checkpoints": {"context_threshold": 0.8}},
    )
    result = runner.start()
    assert p.claims[:2] == ["DEMO-1.1", "DEMO-1.1"]
    assert backend.runs[1][2].session_id is None  # fresh context
    assert "Context high" in backend.runs[1][1]  # the handoff note reaches the new context
    assert p.by_key("DEMO-1.1").status is TaskStatus.DONE
    assert result.exit_code == EXIT_OK
    assert any(e.data.get("checkpoint") == "context_high" for e in rec.kinds(EventKind.CHECKPOINT))


def test_lost_lease_interrupts_and_records_nothing(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend({"DEMO-1.1": [complete("a.txt")]})
    backend.hold["DEMO-1.1"] = asyncio.Event()  # never released: only losing the lease ends it
    runner, rec = make_runner(project, p, backend, autonomous={"lease_seconds": 0.3, "max_tasks_per_session": 1})
    original_renew = p.renew

    def renew(task_id, token, lease_seconds):
        p.steal("DEMO-1.1")
        return original_renew(task_id, token, lease_seconds)

    p.renew = renew
    result = runner.start()
    task = p.by_key("DEMO-1.1")
    assert task.claim.worker_id == "other:1:x"  # the new owner is untouched
    assert not [n for n in task.notes if n.author == "runner"]
    assert result.exit_code == EXIT_OK and result.tasks_completed == []
    assert any("lost the lease" in e.message for e in rec.kinds(EventKind.WARNING))


def test_stop_interrupts_checkpoints_and_resume_continues_the_conversation(project: Path) -> None:
    p = Store(project)
    two_phase(p)

    def partial_then_wait(prompt: str, options: RunOptions) -> Outcome:
        raise AssertionError("not reached")

    backend = ScriptedBackend({"DEMO-1.1": [partial_then_wait]})
    gate = backend.hold["DEMO-1.1"] = asyncio.Event()
    runner, _ = make_runner(project, p, backend)

    async def go():
        task = asyncio.ensure_future(runner.run())
        while not backend.entered:
            await asyncio.sleep(0)
        (project / "wip.txt").write_text("half done\n")
        runner.request_stop("interrupted by SIGINT")
        return await task

    result = asyncio.run(go())
    assert result.exit_code == EXIT_INTERRUPTED
    task = p.by_key("DEMO-1.1")
    assert task.status is TaskStatus.TODO and task.claim is None
    assert "Interrupted" in task.notes[-1].text
    assert git(project, "log", "-1", "--format=%s").startswith("WIP DEMO-1.1")
    state = runner_state.load(project / ".ai-agents" / "state")
    assert state.state == "stopped" and state.current[0].key == "DEMO-1.1"
    assert state.current[0].backend_session_id == "sess-1"
    status = runner.get_status()
    assert status["state"] == "stopped" and status["tasks_completed"] == 0
    assert [c["key"] for c in status["current"]] == ["DEMO-1.1"]

    gate.set()
    backend2 = ScriptedBackend(default=complete())
    runner2, _ = make_runner(project, p, backend2)
    result2 = runner2.start(resume=True)
    assert result2.exit_code == EXIT_OK
    _, first_prompt, first_opts = backend2.runs[0]
    assert first_opts.session_id == "sess-1" and "You were interrupted" in first_prompt
    assert result2.session_id == result.session_id  # the same session continues
    assert all(p.by_key(k).status is TaskStatus.DONE for k in ("DEMO-1.1", "DEMO-1.2", "DEMO-2.1"))


def test_the_state_file_shows_the_tasks_progress_across_its_runs_and_keeps_it_when_stopped(project: Path) -> None:
    """Turns and cost in ``status`` count every run of the task (the bus follows its
    events), and an interrupted task keeps them in the state file for ``--resume``."""
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend(tool="Bash")

    def first_run(prompt: str, options: RunOptions) -> Outcome:
        backend.hold["DEMO-1.1"] = asyncio.Event()  # the follow-up run waits: the test stops it there
        return complete(None, cost=0.25, turns=3)(prompt, options)

    backend.enqueue("DEMO-1.1", first_run)
    runner, _ = make_runner(project, p, backend, verification={"commands": ["test -f a.txt"], "max_attempts": 2})
    state_dir = project / ".ai-agents" / "state"

    async def scenario() -> tuple[int, runner_state.RunnerState]:
        session = asyncio.ensure_future(runner.run())
        while not backend.entered:  # the follow-up run started (its session id was saved at once)
            await asyncio.sleep(0)
        mid_run = runner_state.load(state_dir)
        live = runner.bus.live[runner.worker_id]
        assert (live.tool, live.turns, live.cost_usd) == ("Bash", 3, 0.25)
        runner.request_stop("test stop")
        return (await session).exit_code, mid_run

    exit_code, mid_run = asyncio.run(scenario())
    assert exit_code == EXIT_INTERRUPTED
    assert mid_run is not None and mid_run.state == "running"
    assert (mid_run.current[0].turns, mid_run.current[0].cost_usd) == (3, 0.25)
    kept = runner_state.load(state_dir)
    assert kept is not None and kept.state == "stopped"
    assert (kept.current[0].key, kept.current[0].turns, kept.current[0].cost_usd) == ("DEMO-1.1", 3, 0.25)


def test_supervised_pause_without_terminal_exits_3_and_resumes(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend(default=complete(turns=5))
    runner, rec = make_runner(
        project, p, backend, execution={"mode": "supervised", "checkpoints": {"turn_interval": 3}}
    )
    result = runner.start()
    assert result.exit_code == EXIT_PAUSED and "turn_interval" in result.reason
    state = runner_state.load(project / ".ai-agents" / "state")
    assert state.state == "paused" and state.pause_reason
    assert p.claims == ["DEMO-1.1"] and p.by_key("DEMO-1.1").status is TaskStatus.DONE
    assert rec.kinds(EventKind.SESSION_END)[-1].notify is True

    answers = iter(["d", "c", "c", "c"])
    approver = cp.TerminalApprover(input_fn=lambda prompt: next(answers), stdout=open(os.devnull, "w"))  # noqa: SIM115
    runner2, _ = make_runner(
        project,
        p,
        backend,
        execution={"mode": "supervised", "checkpoints": {"turn_interval": 3}},
        approver=approver,
    )
    result2 = runner2.start(resume=True)
    assert result2.exit_code == EXIT_OK
    assert p.claims == ["DEMO-1.1", "DEMO-1.2", "DEMO-2.1"]
    approver.stdout.close()


def test_autonomous_mode_never_pauses_on_turn_interval(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    runner, rec = make_runner(
        project, p, ScriptedBackend(default=complete(turns=5)), execution={"checkpoints": {"turn_interval": 3}}
    )
    assert runner.start().exit_code == EXIT_OK
    assert [e.data["checkpoint"] for e in rec.kinds(EventKind.CHECKPOINT)] == ["turn_interval"] * 3


def test_interactive_mode_asks_before_each_task(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    answers = iter(["c", "a"])
    approver = cp.TerminalApprover(input_fn=lambda prompt: next(answers), stdout=open(os.devnull, "w"))  # noqa: SIM115
    runner, _ = make_runner(
        project, p, ScriptedBackend(default=complete()), execution={"mode": "interactive"}, approver=approver
    )
    result = runner.start()
    approver.stdout.close()
    assert result.exit_code == EXIT_INTERRUPTED and p.claims == ["DEMO-1.1"]


def test_rate_limit_waits_then_continues_or_stops(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    soon = outcome(OutcomeStatus.RATE_LIMITED, retry_at=utcnow())
    backend = ScriptedBackend({"DEMO-1.1": [soon, complete()]}, default=complete())
    runner, rec = make_runner(project, p, backend)
    assert runner.start().exit_code == EXIT_OK
    assert p.claims[:2] == ["DEMO-1.1", "DEMO-1.1"] and rec.kinds(EventKind.RATE_LIMIT)

    p2 = Store(project)
    two_phase(p2)
    later = outcome(OutcomeStatus.RATE_LIMITED, retry_at=utcnow() + timedelta(hours=5))
    runner2, _ = make_runner(
        project, p2, ScriptedBackend({"DEMO-1.1": [later]}), autonomous={"max_rate_limit_wait": 60}
    )
    result = runner2.start()
    assert result.exit_code == EXIT_BUDGET and "rate limited" in result.reason
    assert p2.by_key("DEMO-1.1").status is TaskStatus.TODO


def test_dead_runner_claims_are_recovered_at_start(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    host = os.uname().nodename
    dead = subprocess.Popen(["true"])
    dead.wait()
    ghost = f"{host}:{dead.pid}:abc"
    task = p.claim(p.by_key("DEMO-1.1").id, ghost, 600)
    state_dir = project / ".ai-agents" / "state"
    runner_state.save(
        state_dir,
        runner_state.RunnerState(
            session_id="s-old",
            worker_id=ghost,
            pid=dead.pid,
            current=[
                runner_state.CurrentTask(id=task.id, key=task.key, title=task.title, started_at="", worker_id=ghost)
            ],
        ),
    )
    runner, _ = make_runner(project, p, ScriptedBackend(default=complete()))
    assert runner.start().exit_code == EXIT_OK
    assert p.claims.count("DEMO-1.1") == 2  # the ghost's claim, then ours: done once
    assert all(t.status is TaskStatus.DONE for t in p.list_tasks() if t.key != "META")
    assert any(n.text.startswith("Recovered") for n in p.by_key("DEMO-1.1").notes)


def test_a_live_runner_is_not_started_twice(project: Path) -> None:
    """The project lock is an flock held by another process: a second runner refuses
    (exit 2) before claiming anything, and runs once the holder is gone."""
    p = Store(project)
    two_phase(p)
    state_dir = project / ".ai-agents" / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(state_dir / "runner.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        runner, _ = make_runner(project, p, ScriptedBackend(default=complete()))
        busy = f"another runner is running on this project \\(pid {holder.pid}\\)"
        with pytest.raises(RunnerBusy, match=busy) as err:
            runner.start()
        assert err.value.exit_code == EXIT_USAGE
        assert p.claims == []
    finally:
        holder.communicate("")  # the holder exits: the kernel frees its lock
    runner, _ = make_runner(project, p, ScriptedBackend(default=complete()))
    assert runner.start().exit_code == EXIT_OK


HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def test_stop_signals_the_runner_named_in_the_state_file(project: Path) -> None:
    state_dir = project / ".ai-agents" / "state"
    live = subprocess.Popen(["sleep", "30"])
    try:
        runner_state.save(
            state_dir,
            runner_state.RunnerState(session_id="s", worker_id=f"{os.uname().nodename}:{live.pid}:x", pid=live.pid),
        )
        ok, message = request_stop(state_dir)
        assert ok and "SIGTERM" in message
        live.wait()
    finally:
        live.kill()
    ok, message = request_stop(state_dir)
    assert not ok and "no runner is running" in message


def test_request_stop_without_any_runner(tmp_path: Path) -> None:
    ok, message = request_stop(tmp_path)
    assert not ok and "no runner" in message


def test_dry_run_plans_and_spends_nothing(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend()
    out: list[str] = []
    backend.names = task_names(p)
    runner = AutonomousRunner(config(project), provider=p, backend=backend, out=out.append)
    result = runner.start(dry_run=True)
    assert result.exit_code == EXIT_OK and backend.runs == [] and p.claims == []
    text = out[0]
    assert "DEMO-1.1" in text and "Skipping DEMO-2.1 - blocked by: DEMO-1.1 (todo)" in text
    assert "# Task DEMO-1.1: [DEMO-1.1] Create a" in text
    assert not (project / ".ai-agents" / "state" / "runner_state.json").exists()


# -- prompts ---------------------------------------------------------------------------------
def test_prompt_has_task_conventions_and_capped_handoff(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    (project / "AGENTS.md").write_text("Use tabs.\n" + "x" * 50_000)
    for i in range(30):
        p.add_note(p.by_key("DEMO-1.1").id, f"note {i} " + "y" * 3000, "runner")
    p.update_task(p.by_key("DEMO-1.1").id, status=TaskStatus.DONE, force=True)
    tasks = p.list_tasks()
    task = p.by_key("DEMO-1.2")
    prompt = build_prompt(task, tasks, config(project, verification={"commands": ["pytest -q"]}))
    assert "# Task DEMO-1.2: [DEMO-1.2] Create b" in prompt
    assert "Use tabs." in prompt and "(truncated)" in prompt
    assert "`pytest -q` must exit 0" in prompt
    assert "from DEMO-1.1" in prompt and "note 29" in prompt
    assert len(handoff_notes(task, tasks).encode()) <= HANDOFF_CAP
    assert len(prompt) < 20_000
    assert "$" not in prompt.split("## When you finish")[0]  # every placeholder filled


def test_status_of_a_project_that_never_ran(project: Path) -> None:
    status = AutonomousRunner(config(project), provider=Store(project)).get_status()
    assert status["state"] == "never_run" and status["tasks_completed"] == 0 and status["current"] == []


def test_events_are_redacted(project: Path) -> None:
    p = Store(project)
    two_phase(p)
    runner, rec = make_runner(
        project,
        p,
        ScriptedBackend(default=complete(summary="used sk-ant-abcdefghijkl1234")),
        autonomous={"max_tasks_per_session": 1},
    )
    runner.start()
    dumped = json.dumps([e.to_dict() for e in rec.events], default=str)
    assert "sk-ant-abcdefghijkl1234" not in dumped
    assert "sk-ant-abcdefghijkl1234" not in p.by_key("DEMO-1.1").notes[-1].text


def test_sdk_runner_runs_the_same_loop_async(project: Path) -> None:
    from autonomous.runner_sdk import AutonomousRunnerSDK

    p = Store(project)
    two_phase(p)
    backend = ScriptedBackend(default=complete())
    backend.names = task_names(p)
    runner = AutonomousRunnerSDK(config(project), provider=p, backend=backend, out=lambda s: None)
    result = asyncio.run(runner.start())
    assert result.exit_code == EXIT_OK and p.claims == ["DEMO-1.1", "DEMO-1.2", "DEMO-2.1"]
    assert AutonomousRunnerSDK(config(project), provider=p).config.autonomous.backend == "claude-code-sdk"


# -- parallel workers ---------------------------------------------------------------------------
def one_phase(provider: Store, n: int) -> None:
    provider.create_tasks(
        [NewTask("META: Demo project", labels=["meta"]), *(NewTask(f"[PAR-1.{i}] Part {i}") for i in range(1, n + 1))]
    )


class BarrierBackend(ScriptedBackend):
    """Every run waits until ``parties`` runs are in flight at once: the test hangs (and
    times out) unless the workers really run side by side."""

    def __init__(self, parties: int, *args, **kw):
        super().__init__(*args, **kw)
        self.barrier = asyncio.Barrier(parties)
        self.cwds: set[Path] = set()

    async def _stream(self, prompt, run):
        self.cwds.add(run.options.cwd)
        await asyncio.wait_for(self.barrier.wait(), timeout=20)
        async for item in super()._stream(prompt, run):
            yield item


def merges(project: Path) -> list[str]:
    return git(project, "log", "--merges", "--format=%s").splitlines()


def test_three_workers_run_side_by_side_in_worktrees_and_merge_each_task(project: Path) -> None:
    p = Store(project)
    one_phase(p, 3)
    steps = {f"PAR-1.{i}": [complete(f"part{i}.txt")] for i in range(1, 4)}
    backend = BarrierBackend(3, steps)
    runner, rec = make_runner(
        project,
        p,
        backend,
        autonomous={"workers": 3},
        execution={"ordering": "phases"},
        verification={"commands": ["test -f README.md"], "require_changes": True},
    )
    result = runner.start()
    assert result.exit_code == EXIT_OK, result.reason
    assert sorted(p.claims) == ["PAR-1.1", "PAR-1.2", "PAR-1.3"]
    assert all(p.by_key(f"PAR-1.{i}").status is TaskStatus.DONE for i in range(1, 4))
    # each agent worked in its own worktree, never in the project itself
    assert len(backend.cwds) == 3 and project not in backend.cwds
    assert all(".ai-agents/worktrees/PAR-1." in str(c) for c in backend.cwds)
    assert sorted(merges(project)) == sorted(
        f"Merge autonomous/PAR-1.{i}: PAR-1.{i} [PAR-1.{i}] Part {i}" for i in range(1, 4)
    )
    assert all((project / f"part{i}.txt").exists() for i in range(1, 4))
    # merged worktrees and branches are gone
    assert "autonomous/" not in git(project, "branch", "--list")
    assert "worktrees" not in git(project, "worktree", "list")
    workers = {e.worker_id for e in rec.kinds(EventKind.TASK_CLAIMED)}
    assert len(workers) == 3 and all(w.startswith(runner.worker_id + ":w") for w in workers)
    assert "Done (commit" in p.by_key("PAR-1.1").notes[-1].text and "merged into" in p.by_key("PAR-1.1").notes[-1].text


def test_workers_share_the_task_limit_and_the_budget(project: Path) -> None:
    p = Store(project)
    one_phase(p, 6)
    backend = BarrierBackend(2, default=complete(cost=0.1))
    runner, _ = make_runner(
        project, p, backend, autonomous={"workers": 4, "max_tasks_per_session": 2}, execution={"ordering": "phases"}
    )
    result = runner.start()
    assert result.exit_code == EXIT_OK and "max_tasks_per_session" in result.reason
    assert len(p.claims) == 2  # claims are counted, not completions: 4 workers did not start 4 tasks

    p2 = Store(project)
    one_phase(p2, 6)
    # 0.25 covers two tasks at the 0.1 floor, not three: only two workers of four get one
    backend2 = BarrierBackend(2, default=complete(cost=0.1))
    runner2, _ = make_runner(
        project,
        p2,
        backend2,
        autonomous={"workers": 4, "cost_limit_per_session": 0.25, "first_task_cost": 0.1},
        execution={"ordering": "phases"},
    )
    result2 = runner2.start()
    assert result2.exit_code == EXIT_BUDGET, result2.reason
    assert len(p2.claims) == 2 and result2.cost_usd <= 0.25


def test_a_merge_conflict_goes_back_and_is_redone_on_the_new_base(project: Path) -> None:
    (project / "shared.txt").write_text("base\n")
    git(project, "add", "shared.txt")
    git(project, "commit", "-q", "-m", "shared")

    def write(text: str) -> Step:
        def step(prompt: str, options: RunOptions) -> Outcome:
            (options.cwd / "shared.txt").write_text(text)
            return Outcome(OutcomeStatus.COMPLETED, summary="edited", turns=1)

        return step

    p = Store(project)
    one_phase(p, 2)
    backend = BarrierBackend(
        2,
        {"PAR-1.1": [write("base\nA\n")], "PAR-1.2": [write("base\nB\n")]},
        default=write("base\nA\nB\n"),  # the retry, on the new base, keeps both
    )
    backend.barrier = asyncio.Barrier(2)
    runner, _ = make_runner(project, p, backend, autonomous={"workers": 2}, execution={"ordering": "phases"})
    # the retry runs alone: let it pass the barrier
    original = backend._stream

    async def _stream(prompt, run):
        if len(backend.runs) >= 2:
            async for item in ScriptedBackend._stream(backend, prompt, run):
                yield item
            return
        async for item in original(prompt, run):
            yield item

    backend._stream = _stream
    result = runner.start()
    assert result.exit_code == EXIT_OK, result.reason
    assert all(p.by_key(k).status is TaskStatus.DONE for k in ("PAR-1.1", "PAR-1.2"))
    assert (project / "shared.txt").read_text() == "base\nA\nB\n"
    retried = [k for k in ("PAR-1.1", "PAR-1.2") if any(n.text.startswith("Merge failed") for n in p.by_key(k).notes)]
    assert len(retried) == 1
    note = next(n.text for n in p.by_key(retried[0]).notes if n.text.startswith("Merge failed"))
    assert "conflict" in note and "shared.txt" in note
    # the first attempt's commit is kept on a branch of its own
    assert f"autonomous/{retried[0]}-attempt" in git(project, "branch", "--list")
    assert len(merges(project)) == 2


def test_stop_on_failure_stops_claiming_for_every_worker(project: Path) -> None:
    p = Store(project)
    one_phase(p, 5)
    backend = BarrierBackend(
        2, {"PAR-1.1": [outcome(OutcomeStatus.BLOCKED, blocker="no key")]}, default=complete("x.txt")
    )
    runner, _ = make_runner(project, p, backend, autonomous={"workers": 2}, execution={"ordering": "phases"})
    result = runner.start()
    assert result.exit_code == EXIT_FAILED and "stop-on-failure" in result.reason
    assert sorted(p.claims) == ["PAR-1.1", "PAR-1.2"]  # the running one finished, nothing new started
    assert p.by_key("PAR-1.2").status is TaskStatus.DONE
    assert p.by_key("PAR-1.3").status is TaskStatus.TODO


def test_idle_worker_waits_for_the_phase_to_finish(project: Path) -> None:
    p = Store(project)
    p.create_tasks(
        [
            NewTask("META: Demo", labels=["meta"]),
            NewTask("[P-1.1] first"),
            NewTask("[P-2.1] second"),
            NewTask("[P-2.2] third"),
        ]
    )
    backend = ScriptedBackend(default=complete())
    runner, _ = make_runner(project, p, backend, autonomous={"workers": 2}, execution={"ordering": "phases"})
    result = runner.start()
    assert result.exit_code == EXIT_OK, result.reason
    assert p.claims[0] == "P-1.1" and sorted(p.claims[1:]) == ["P-2.1", "P-2.2"]
    assert all(p.by_key(k).status is TaskStatus.DONE for k in ("P-1.1", "P-2.1", "P-2.2"))


def test_leftover_worktrees_are_cleaned_or_kept_and_reported(project: Path) -> None:
    from autonomous.progress import collect_status, render_status

    p = Store(project)
    one_phase(p, 1)
    wt = project / ".ai-agents" / "worktrees"
    git(project, "worktree", "add", "-q", "-b", "autonomous/OLD-1", str(wt / "OLD-1"))
    (wt / "OLD-1" / "wip.txt").write_text("unfinished\n")
    git(wt / "OLD-1", "add", "wip.txt")
    git(wt / "OLD-1", "commit", "-q", "-m", "wip")
    git(project, "worktree", "add", "-q", "-b", "autonomous/DONE-1", str(wt / "DONE-1"))
    runner, rec = make_runner(project, p, ScriptedBackend(default=complete("y.txt")), autonomous={"workers": 2})
    assert runner.start().exit_code == EXIT_OK
    assert not (wt / "DONE-1").exists() and "autonomous/DONE-1" not in git(project, "branch", "--list")
    assert (wt / "OLD-1" / "wip.txt").exists() and "autonomous/OLD-1" in git(project, "branch", "--list")
    warnings = [e.data["message"] for e in rec.kinds(EventKind.WARNING)]
    assert any("OLD-1" in w and "kept" in w for w in warnings)
    status = collect_status(project / ".ai-agents" / "state", project / ".ai-agents" / "logs", None)
    assert [k["key"] for k in status["worktrees_kept"]] == ["OLD-1"]
    assert "Worktree:" in render_status(status) and "OLD-1" in render_status(status)


def test_a_failing_check_after_the_merge_undoes_it_then_blocks(project: Path) -> None:
    p = Store(project)
    one_phase(p, 1)
    backend = ScriptedBackend(default=complete("bad.txt"))
    # passes in the worktree (no marker there), fails on the merged result (the marker is in main)
    (project / "MAIN_ONLY").write_text("x\n")
    git(project, "add", "MAIN_ONLY")
    git(project, "commit", "-q", "-m", "marker")
    git(project, "rm", "-q", "--cached", "MAIN_ONLY")
    (project / ".git" / "info" / "exclude").write_text("MAIN_ONLY\n")
    git(project, "commit", "-q", "-m", "untrack marker")
    before = git(project, "rev-parse", "HEAD").strip()
    runner, _ = make_runner(
        project,
        p,
        backend,
        autonomous={"workers": 2},
        execution={"ordering": "phases", "on_failure": "continue"},
        verification={"commands": ["test ! -f MAIN_ONLY"]},
    )
    result = runner.start()
    assert result.exit_code == EXIT_FAILED, result.reason
    task = p.by_key("PAR-1.1")
    assert task.status is TaskStatus.BLOCKED
    merge_notes = [n.text for n in task.notes if n.text.startswith("Merge failed")]
    assert len(merge_notes) == 2  # max_merge_attempts (2): one retry, then blocked
    assert "verification failed on the merged result" in merge_notes[0] and "blocked" in merge_notes[1]
    assert git(project, "rev-parse", "HEAD").strip() == before  # every merge was undone
    assert not (project / "bad.txt").exists()
    # the work is kept: the first attempt on a branch of its own, the last one in its worktree
    assert "autonomous/PAR-1.1-attempt" in git(project, "branch", "--list")
    assert (project / ".ai-agents" / "worktrees" / "PAR-1.1" / "bad.txt").exists()
    assert json.loads((project / ".ai-agents" / "state" / "worktrees.json").read_text())["kept"][0]["key"] == "PAR-1.1"


def test_rebase_strategy_gives_a_linear_history(project: Path) -> None:
    p = Store(project)
    one_phase(p, 3)
    backend = BarrierBackend(2, {f"PAR-1.{i}": [complete(f"r{i}.txt")] for i in range(1, 4)})
    backend.barrier = asyncio.Barrier(1)
    runner, _ = make_runner(
        project, p, backend, autonomous={"workers": 2}, execution={"git": {"merge_strategy": "rebase"}}
    )
    assert runner.start().exit_code == EXIT_OK
    assert merges(project) == []
    subjects = git(project, "log", "--format=%s").splitlines()
    assert sorted(subjects[:3]) == [f"PAR-1.{i}: [PAR-1.{i}] Part {i}" for i in range(1, 4)]
    assert all((project / f"r{i}.txt").exists() for i in range(1, 4))


def test_one_rate_limit_pauses_every_worker(project: Path) -> None:
    p = Store(project)
    one_phase(p, 4)
    soon = outcome(OutcomeStatus.RATE_LIMITED, retry_at=utcnow() + timedelta(seconds=0.3))
    backend = BarrierBackend(2, {"PAR-1.1": [soon, complete()]}, default=complete())
    runner, rec = make_runner(project, p, backend, autonomous={"workers": 2}, execution={"ordering": "phases"})
    original = backend._stream

    async def _stream(prompt, run):  # only the first two runs meet at the barrier
        if len(backend.runs) >= 2:
            async for item in ScriptedBackend._stream(backend, prompt, run):
                yield item
            return
        async for item in original(prompt, run):
            yield item

    backend._stream = _stream
    result = runner.start()
    assert result.exit_code == EXIT_OK, result.reason
    assert all(p.by_key(f"PAR-1.{i}").status is TaskStatus.DONE for i in range(1, 5))
    pauses = [e for e in rec.kinds(EventKind.RATE_LIMIT) if e.retry_at is not None]
    assert len(pauses) == 1  # one pause for the session, counted once
    # nobody claimed during the pause: every claim after the rate limit came after retry_at
    claimed_after = [e for e in rec.kinds(EventKind.TASK_CLAIMED) if e.at > pauses[0].at]
    assert claimed_after and all(e.at.isoformat() >= pauses[0].retry_at for e in claimed_after)


def test_status_shows_every_busy_worker(project: Path) -> None:
    from autonomous.progress import collect_status, render_status
    from autonomous.runner_state import CurrentTask, RunnerState

    state_dir = project / ".ai-agents" / "state"
    now = utcnow().isoformat()
    state = RunnerState(session_id="s-1", worker_id="h:1:abc", started_at=now, backend="scripted")
    state.current = [
        CurrentTask("t2", "PAR-1.1", "Part 1", now, tool="Bash", turns=3, cost_usd=0.12, worker_id="h:1:abc:w1"),
        CurrentTask("t3", "PAR-1.2", "Part 2", now, tool="Edit", turns=5, cost_usd=0.3, worker_id="h:1:abc:w2"),
    ]
    runner_state.save(state_dir, state)
    status = collect_status(state_dir, project / ".ai-agents" / "logs", None)
    assert [c["worker_id"] for c in status["current"]] == ["h:1:abc:w1", "h:1:abc:w2"]
    text = render_status(status)
    assert "Current:  [w1] PAR-1.1 Part 1" in text and "tool Bash, 3 turns, $0.1200" in text
    assert "Current:  [w2] PAR-1.2 Part 2" in text and "tool Edit, 5 turns, $0.3000" in text


def test_stop_interrupts_every_worker_and_keeps_both_for_resume(project: Path) -> None:
    p = Store(project)
    one_phase(p, 3)
    backend = ScriptedBackend(default=complete())
    backend.hold = {"PAR-1.1": asyncio.Event(), "PAR-1.2": asyncio.Event()}
    runner, _ = make_runner(project, p, backend, autonomous={"workers": 2}, execution={"ordering": "phases"})

    async def scenario() -> int:
        session = asyncio.ensure_future(runner.run())
        while len(backend.entered) < 2:  # both agents are inside their task
            await asyncio.sleep(0)
        runner.request_stop("test stop")
        return (await session).exit_code

    assert asyncio.run(scenario()) == EXIT_INTERRUPTED
    assert sorted(p.claims) == ["PAR-1.1", "PAR-1.2"]
    assert all(p.by_key(k).status is TaskStatus.TODO for k in ("PAR-1.1", "PAR-1.2", "PAR-1.3"))
    state = runner_state.load(project / ".ai-agents" / "state")
    assert sorted(c.key for c in state.current) == ["PAR-1.1", "PAR-1.2"]
    assert len({c.worker_id for c in state.current}) == 2


def test_a_worker_refused_by_the_budget_waits_for_the_running_tasks_to_settle(project: Path) -> None:
    class Counting(ScriptedBackend):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.in_flight = self.most = self.started = 0
            self.pair = asyncio.Barrier(2)

        async def _stream(self, prompt, run):
            self.in_flight += 1
            self.started += 1
            self.most = max(self.most, self.in_flight)
            try:
                if self.started <= 2:  # the first two run together (the third worker tries meanwhile)
                    await asyncio.wait_for(self.pair.wait(), timeout=20)
                async for item in super()._stream(prompt, run):
                    yield item
            finally:
                self.in_flight -= 1

    p = Store(project)
    one_phase(p, 4)
    backend = Counting(default=complete(cost=0.01))
    runner, _ = make_runner(
        project,
        p,
        backend,
        autonomous={"workers": 3, "cost_limit_per_session": 0.25, "first_task_cost": 0.1},
        execution={"ordering": "phases"},
    )
    result = runner.start()
    # two tasks fit the budget at the 0.1 floor: never three at once; the cheap actual costs
    # then leave room for the rest
    assert result.exit_code == EXIT_OK, result.reason
    assert backend.most == 2
    assert all(p.by_key(f"PAR-1.{i}").status is TaskStatus.DONE for i in range(1, 5))
    assert result.cost_usd == pytest.approx(0.04)


# -- done means done: the defaults (tests/test_checks.py: the checks; e2e: through the CLI) ------------


def default_runner(project: Path, provider: Store, backend: Backend, **sections) -> AutonomousRunner:
    """A runner on the config's own defaults: no verification section unless given."""
    backend.names = task_names(provider)
    auto = {"lease_seconds": 60, "max_tasks_per_session": 50}
    return AutonomousRunner(
        parse_config({"autonomous": auto, **sections}, root=project),
        provider=provider,
        backend=backend,
        approver=cp.NoTerminal(),
        out=lambda s: None,
    )


def test_defaults_warn_once_without_a_test_command_and_still_require_changes(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    p = Store(project)
    p.create_tasks([NewTask("[DEMO-1.1] Investigate", labels=["no-changes"]), NewTask("[DEMO-1.2] Create b")])
    backend = ScriptedBackend({"DEMO-1.1": [complete(None)], "DEMO-1.2": [complete(None), complete(None)]})
    result = default_runner(project, p, backend).start()
    assert result.exit_code == EXIT_FAILED
    assert p.by_key("DEMO-1.1").status is TaskStatus.DONE  # labelled no-changes: an investigation
    assert p.by_key("DEMO-1.2").status is TaskStatus.BLOCKED  # claimed completion, changed nothing
    assert capsys.readouterr().err.count("no test command found") == 1


def test_dry_run_shows_the_detected_command(project: Path) -> None:
    (project / "AGENTS.md").write_text("Run the tests with `make test-fast`.\n")
    p = Store(project)
    two_phase(p)
    out: list[str] = []
    backend = ScriptedBackend()
    backend.names = task_names(p)
    runner = AutonomousRunner(parse_config({}, root=project), provider=p, backend=backend, out=out.append)
    assert runner.start(dry_run=True).exit_code == EXIT_OK
    line = next(line for line in out[0].splitlines() if line.startswith("Verification:"))
    assert "`make test-fast` [auto: detected `make test-fast` (from AGENTS.md line 1)]" in line
    assert "+ require changes" in line and "+ baseline" in line


def test_the_review_shares_the_tasks_turn_allowance(project: Path) -> None:
    p = Store(project)
    p.create_tasks([NewTask("[DEMO-1.1] Create a", acceptance_criteria=["a.txt exists"])])
    allowances = []

    def reviewer(prompt: str, options: RunOptions) -> Outcome:
        allowances.append(options.allowance)
        assert "# Review of task DEMO-1.1" in prompt and "+work for a.txt" in prompt  # the diff
        assert options.allowed_tools == ["Read", "Glob", "Grep"] and options.session_id is None
        return Outcome(OutcomeStatus.COMPLETED, summary="reviewed", turns=3)

    def agent(prompt: str, options: RunOptions) -> Outcome:
        allowances.append(options.allowance)
        return complete("a.txt", turns=4)(prompt, options)

    backend = ScriptedBackend(
        default=lambda prompt, o: (reviewer if "# Review of task" in prompt else agent)(prompt, o)
    )
    runner = default_runner(project, p, backend, verification={"review": True}, autonomous={"max_turns_per_task": 20})
    runner.start()
    task = p.by_key("DEMO-1.1")
    # the reviewer answered without a JSON verdict: no approval, the task is not done
    assert task.status is TaskStatus.BLOCKED and "review gave no verdict" in task.notes[-1].text
    assert len({id(a) for a in allowances}) == 1  # one allowance for every run of the task
