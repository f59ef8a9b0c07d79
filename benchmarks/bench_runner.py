"""Runner overhead per task: everything but the model's time.

An instantly answering backend completes every task; what is measured is the loop
itself: limits, claim (lease), prompt building (notes, conventions), heartbeat set-up,
verification baseline and check, release with the note, runner_state.json writes,
session records. Run with::

    python benchmarks/bench_runner.py            # 100 and 1,000 tasks, file provider
    python benchmarks/bench_runner.py --git      # also commit every task (git per task)

Prints one line per size: tasks, total seconds, milliseconds per task.
"""

from __future__ import annotations

import argparse
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

LAST_CPU = [0.0]  # CPU seconds (every thread of this process) of the last bench() session


class InstantBackend(Backend):
    name = "instant"

    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[Event | Outcome]:
        yield run.ev(BackendStart, session_id="s")
        yield Outcome(OutcomeStatus.COMPLETED, summary="done", turns=1, cost_usd=0.001)


def make_provider(state_dir: Path):
    from autonomous.providers.file import FileProvider

    return FileProvider(state_dir)


def bench(n: int, use_git: bool, verify_commands: list[str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        if use_git:
            subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        state_dir = project / ".ai-agents" / "state"
        provider = make_provider(state_dir)
        per_phase = 50
        provider.create_tasks(
            [NewTask("META: bench")]
            + [
                NewTask(f"[BENCH-{i // per_phase + 1}.{i % per_phase + 1}] task {i}", description="x" * 500)
                for i in range(n)
            ]
        )
        config = RunnerConfig(
            project_dir=project,
            max_tasks_per_session=None,
            cost_limit_per_session=None,
            lease_seconds=600,
            execution={"git": {"commit": use_git}},
            verification={"commands": verify_commands, "require_changes": False},  # the backend writes nothing
        )
        runner = AutonomousRunner(config, provider=provider, backend=InstantBackend(), out=lambda s: None)
        start, cpu_start = time.perf_counter(), time.process_time()
        result = runner.start()
        elapsed = time.perf_counter() - start
        LAST_CPU[0] = time.process_time() - cpu_start
        provider.close()
        assert result.exit_code == 0, result.reason
        assert len(result.tasks_completed) == n, (len(result.tasks_completed), n)
        return elapsed, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--git", action="store_true", help="commit every task (empty commits are skipped)")
    parser.add_argument("--verify", action="append", default=[], help="a verification command, e.g. true")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        elapsed, count = bench(n, args.git, args.verify)
        print(
            f"{count:>6} tasks  {elapsed:8.2f} s  {elapsed / count * 1000:8.2f} ms/task  "
            f"(CPU {LAST_CPU[0] / count * 1000:.2f} ms/task)"
        )


if __name__ == "__main__":
    main()
