"""Local store: how long ``claim_next`` (find the next ready task + claim it) takes.

    /work/venv/bin/python benchmarks/bench_claim.py [--sizes 1000 10000 100000] [--claims 200]

For each size it creates a plan of realistic shape in one ``create_tasks`` call (a META
task, then phases of 20 ``[APP-X.Y]`` tasks, about half depending on the task before
them and each phase's first task on the previous phase's last), then times
``claim_next`` for every ordering policy, twice: on the fresh plan, and with the first
half of the tasks done. Each timed claim is followed by an untimed release as done, so
the plan moves forward as a worker would move it. The first claim after a change of the
dependency graph also runs the scheduler's cycle check; it is reported on its own.
Prints a Markdown table (docs/benchmarks.md holds the figures).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autonomous import scheduler
from autonomous.providers.file import FileProvider
from autonomous.tasks import NewTask, Priority

PHASE = 20


def plan(size: int) -> list[NewTask]:
    tasks = [NewTask("META: Benchmark project", priority=Priority.LOW)]
    priorities = list(Priority)
    for i in range(size - 1):
        phase, number = divmod(i, PHASE)
        key = f"APP-{phase + 1}.{number + 1}"
        deps = []
        if number and i % 2:
            deps.append(f"APP-{phase + 1}.{number}")
        elif not number and phase:
            deps.append(f"APP-{phase}.{PHASE}")
        tasks.append(
            NewTask(
                f"[{key}] Build part {i} of the system",
                description="Implement the part, with tests.\n" * 3,
                acceptance_criteria=["it works", "it is tested"],
                test_steps=["run the tests"],
                priority=priorities[i % 4],
                labels=["backend"] if i % 3 else ["frontend"],
                dependencies=deps,
            )
        )
    return tasks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_claims(store: FileProvider, ordering: scheduler.Ordering, claims: int) -> tuple[float, list[float]]:
    timings = []
    first = 0.0
    for n in range(claims + 1):
        start = time.perf_counter()
        task = store.claim_next("bench", 600, ordering)
        elapsed = time.perf_counter() - start
        if task is None:
            raise SystemExit(f"nothing ready after {n} claims ({ordering})")
        store.release(task.id, task.claim.token, status="done")
        if n == 0:
            first = elapsed
        else:
            timings.append(elapsed)
    return first, timings


def reset(store: FileProvider, done_fraction: float, size: int) -> None:
    """Set up a plan state directly (set-up only, not measured): the first part done, the rest todo."""
    with store._file.write() as db:
        db.execute("UPDATE tasks SET status = 'todo', worker_id = NULL, expires_at = NULL")
        db.execute("UPDATE tasks SET status = 'done' WHERE rowid <= ? AND kind != 0", (int(size * done_fraction),))
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'graph_rev'")  # a reopened task: check again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where to create the stores (default: a temp dir)")
    args = parser.parse_args()

    print(f"python {platform.python_version()}, sqlite {__import__('sqlite3').sqlite_version}, {platform.machine()}")
    print()
    print("| tasks | create_tasks | ordering | plan state | first claim | median | p95 |")
    print("|---:|---:|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes:
            store = FileProvider(Path(tmp) / f"n{size}")
            tasks = plan(size)
            start = time.perf_counter()
            store.create_tasks(tasks)
            created = time.perf_counter() - start
            for ordering in scheduler.ORDERINGS:
                for done_fraction, state in ((0.0, "fresh"), (0.5, "half done")):
                    reset(store, done_fraction, size)
                    first, timings = time_claims(store, ordering, args.claims)
                    print(
                        f"| {size:,} | {created:.2f} s | {ordering} | {state} | {first * 1000:.1f} ms "
                        f"| {statistics.median(timings) * 1000:.2f} ms | {percentile(timings, 0.95) * 1000:.2f} ms |",
                        flush=True,
                    )
            store.close()


if __name__ == "__main__":
    sys.exit(main())
