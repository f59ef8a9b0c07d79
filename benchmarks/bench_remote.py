"""Many machines on one remote: 2 runners x 2 workers against 1 runner x 4 workers.

The same two-phase project (``--tasks`` in phase 1, half as many in phase 2, ``ordering:
phases``) and the same fixed model time per task (``asyncio.sleep``, standing in for the
model), on one PostgreSQL schema and one bare git repository as ``execution.git.remote``.
Each runner is its own process in its own clone, as on separate machines; every finished
task is merged, verified (``true``), and pushed (fetch, rebase when another runner pushed
first, verify again, push fast-forward only). Run with::

    python benchmarks/bench_remote.py                    # 24 + 12 tasks, 0.5 s each
    python benchmarks/bench_remote.py --tasks 16 --delay 1

Prints the wall time of each layout, tasks per second, and the pushes that had to rebase.
Needs PostgreSQL (``AUTONOMOUS_TEST_POSTGRES_DSN``, default the local test database).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_parallel import FixedDelayBackend  # a script beside this one (python benchmarks/bench_remote.py)

from autonomous.config import RunnerConfig
from autonomous.runner import AutonomousRunner
from autonomous.tasks import NewTask, TaskStatus

DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def child(clone: Path, workers: int, schema: str, delay: float) -> None:
    """One runner (one 'machine'): ``python bench_remote.py --child CLONE WORKERS SCHEMA DELAY``."""
    config = RunnerConfig(
        project_dir=clone,
        workers=workers,
        max_tasks_per_session=None,
        cost_limit_per_session=None,
        lease_seconds=600,
        state_provider={"type": "postgres", "dsn": DSN, "schema": schema},
        execution={"ordering": "phases", "git": {"remote": "origin"}},
        verification={"commands": ["true"]},
    )
    result = AutonomousRunner(config, backend=FixedDelayBackend(delay), out=lambda s: None).start()
    sys.exit(result.exit_code)


def bench(layout: list[int], tasks: int, delay: float) -> tuple[float, int]:
    """Wall time of runners with ``layout`` workers each; and how many pushes rebased."""
    from autonomous.providers.postgres import PostgresProvider

    schema = f"bench_remote_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = root / "origin.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        seed = root / "seed"
        seed.mkdir()
        git(seed, "init", "-q", "-b", "main")
        (seed / "README.md").write_text("# bench\n")
        git(seed, "add", "README.md")
        git(seed, "-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-q", "-m", "init")
        git(seed, "push", "-q", str(bare), "main")
        clones = []
        for i in range(len(layout)):
            clone = root / f"machine{i + 1}"
            git(root, "clone", "-q", str(bare), str(clone))
            git(clone, "config", "user.email", f"m{i}@example.com")
            git(clone, "config", "user.name", f"m{i}")
            clones.append(clone)
        store = PostgresProvider(DSN, schema=schema, drop_schema_on_close=True)
        try:
            phase2 = max(1, tasks // 2)
            store.create_tasks(
                [
                    NewTask("META: bench"),
                    *(NewTask(f"[RB-1.{i + 1}] task {i}") for i in range(tasks)),
                    *(NewTask(f"[RB-2.{i + 1}] task {i}") for i in range(phase2)),
                ]
            )
            start = time.perf_counter()
            procs = [
                subprocess.Popen([sys.executable, __file__, "--child", str(c), str(n), schema, str(delay)])
                for c, n in zip(clones, layout, strict=True)
            ]
            codes = [p.wait() for p in procs]
            elapsed = time.perf_counter() - start
            if codes != [0] * len(procs):
                for t in store.list_tasks():
                    if t.status is not TaskStatus.DONE and not t.is_meta:
                        print(t.key, t.status.value, t.notes[-1].text if t.notes else "", file=sys.stderr)
                raise SystemExit(f"a runner failed: exit codes {codes}")
            done = [t for t in store.list_tasks([TaskStatus.DONE]) if not t.is_meta]
            assert len(done) == tasks + phase2, len(done)
            rebased = sum("after rebasing" in t.notes[-1].text for t in done)
            subjects = git(bare, "log", "--format=%s", "main").splitlines()
            assert sum(s.startswith("RB-") for s in subjects) == tasks + phase2, subjects
        finally:
            store.close()
    return elapsed, rebased


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=24, help="tasks in phase 1 (phase 2 has half as many)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds of 'model time' per task")
    args = parser.parse_args()
    total = args.tasks + max(1, args.tasks // 2)
    print(f"{total} tasks ({args.tasks} + {max(1, args.tasks // 2)}) x {args.delay}s, one remote, PostgreSQL")
    for name, layout in (("1 runner  x 4 workers", [4]), ("2 runners x 2 workers", [2, 2])):
        elapsed, rebased = bench(layout, args.tasks, args.delay)
        print(f"{name}  {elapsed:7.2f} s  {total / elapsed:5.2f} tasks/s  pushes that rebased: {rebased}")


if __name__ == "__main__":
    main()
