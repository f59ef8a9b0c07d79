"""Parallel workers: speed-up at 1, 2, 4, 8 workers with a fixed model time per task.

A backend that takes a fixed time per task (``asyncio.sleep``, standing in for the model)
completes one phase of independent tasks; what is measured is how well the runner keeps N
workers busy: shared limits, claims, records, and (``--git``) a worktree per task, a commit
on its branch and the merge queue (one ``git merge --no-ff`` at a time, verification run
again on the merged result when ``--verify`` is given). Run with::

    python benchmarks/bench_parallel.py                  # no git: scheduling only
    python benchmarks/bench_parallel.py --git            # worktrees + merge queue
    python benchmarks/bench_parallel.py --git --verify true

Prints one line per worker count: wall time, tasks per second, speed-up over one worker and
the efficiency (speed-up / workers).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from autonomous.backends.base import Backend, Run
from autonomous.config import RunnerConfig
from autonomous.events import BackendStart, Event, Outcome, OutcomeStatus
from autonomous.runner import AutonomousRunner
from autonomous.tasks import NewTask


class FixedDelayBackend(Backend):
    """Every task takes ``delay`` seconds and writes one file named after the task."""

    name = "fixed-delay"

    def __init__(self, delay: float):
        self.delay = delay

    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[Event | Outcome]:
        yield run.ev(BackendStart, session_id="s")
        await asyncio.sleep(self.delay)
        name = f"{run.options.task_id}.txt"
        (Path(run.options.cwd) / name).write_text("work\n")
        yield Outcome(OutcomeStatus.COMPLETED, summary="done", turns=1, cost_usd=0.001, files_changed=[name])


def bench(workers: int, tasks: int, delay: float, use_git: bool, verify: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        if use_git:
            for args in (
                ["init", "-q", "-b", "main"],
                ["config", "user.email", "bench@example.com"],
                ["config", "user.name", "bench"],
            ):
                subprocess.run(["git", *args], cwd=project, check=True)
            (project / ".gitignore").write_text(".ai-agents/\n")
            subprocess.run(["git", "add", "-A"], cwd=project, check=True)
            subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=project, check=True)
        from autonomous.providers.file import FileProvider

        provider = FileProvider(project / ".ai-agents" / "state")
        provider.create_tasks([NewTask("META: bench"), *(NewTask(f"[PAR-1.{i + 1}] task {i}") for i in range(tasks))])
        config = RunnerConfig(
            project_dir=project,
            workers=workers,
            max_tasks_per_session=None,
            cost_limit_per_session=None,
            lease_seconds=600,
            execution={"ordering": "phases", "git": {"commit": use_git, "branch_per_task": use_git}},
            verification={"commands": verify},
        )
        runner = AutonomousRunner(config, provider=provider, backend=FixedDelayBackend(delay), out=lambda s: None)
        start = time.perf_counter()
        result = runner.start()
        elapsed = time.perf_counter() - start
        provider.close()
        assert result.exit_code == 0, result.reason
        assert len(result.tasks_completed) == tasks, (len(result.tasks_completed), tasks)
        if use_git:
            merges = subprocess.run(
                ["git", "log", "--merges", "--oneline"], cwd=project, capture_output=True, text=True, check=True
            ).stdout.splitlines()
            assert len(merges) == tasks, len(merges)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds of 'model time' per task")
    parser.add_argument("--git", action="store_true", help="worktree per task and the merge queue")
    parser.add_argument("--verify", action="append", default=[], help="a verification command, e.g. true")
    args = parser.parse_args()
    base = None
    print(f"{args.tasks} tasks x {args.delay}s, git={'on' if args.git else 'off'}, verify={args.verify or '-'}")
    for n in (int(s) for s in args.workers.split(",")):
        elapsed = bench(n, args.tasks, args.delay, args.git, args.verify)
        base = base if base is not None else elapsed * n  # the first count is the baseline (ideally 1)
        speedup = base / elapsed
        print(
            f"{n:>2} workers  {elapsed:7.2f} s  {args.tasks / elapsed:6.2f} tasks/s  "
            f"speed-up {speedup:5.2f}  efficiency {speedup / n:4.0%}"
        )


if __name__ == "__main__":
    main()
