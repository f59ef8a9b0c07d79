"""PostgreSQL provider: ``claim_next`` throughput and latency with concurrent claimers.

For each claimer count (default 1, 4, 16) a fresh schema gets ``--tasks`` tasks (default
2,000; ordering ``dependencies``, so every task is ready and claimers really compete),
then that many processes, each with its own provider (its own pool), start together
and call ``claim_next`` until it returns None. Measured:

* throughput: tasks claimed per second, from the common start to the last claimer's end;
* latency of one ``claim_next`` call that claimed a task: median and 95th percentile;
* for scale, the latency of a durable one-row commit on the same server (a claim is one
  committed statement, so this is its floor for a single claimer).

Every task is checked to be claimed exactly once. Run with::

    python benchmarks/bench_postgres.py                       # $AUTONOMOUS_TEST_POSTGRES_DSN or local test db
    python benchmarks/bench_postgres.py --dsn postgresql://postgres@127.0.0.1:5432/test --tasks 5000 --claimers 1 8
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid
from collections import Counter

from autonomous.providers.postgres import PostgresProvider
from autonomous.tasks import NewTask

DEFAULT_DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def claimer(dsn: str, schema: str, worker: str, barrier, results) -> None:  # runs in a child process
    store = PostgresProvider(dsn, schema=schema)
    store.list_tasks([])  # warm: the pool's connection is open before the clock starts
    barrier.wait()
    started = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on Linux
    ids, latencies = [], []
    while True:
        t0 = time.perf_counter()
        task = store.claim_next(worker, 600, "dependencies")
        if task is None:
            break
        latencies.append(time.perf_counter() - t0)
        ids.append(task.id)
    results.put((worker, started, time.perf_counter(), ids, latencies))
    store.close()


def run(dsn: str, tasks: int, claimers: int) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    store = PostgresProvider(dsn, schema=schema, drop_schema_on_close=True)
    try:
        all_ids = {t.id for t in store.create_tasks([NewTask(f"Bench task {i}") for i in range(tasks)]).created}
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(claimers), ctx.Queue()
        procs = [ctx.Process(target=claimer, args=(dsn, schema, f"w{n}", barrier, results)) for n in range(claimers)]
        for proc in procs:
            proc.start()
        outcome = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"a claimer failed (exit code {proc.exitcode})")
    finally:
        store.close()
    counts = Counter(tid for *_, ids, _ in outcome for tid in ids)
    if set(counts) != all_ids or set(counts.values()) != {1}:
        raise SystemExit("BUG: not every task was claimed exactly once")
    latencies = sorted(lat for *_, lats in outcome for lat in lats)
    wall = max(end for _, _, end, _, _ in outcome) - min(start for _, start, _, _, _ in outcome)
    return {
        "claimers": claimers,
        "tasks": tasks,
        "wall_s": wall,
        "throughput": tasks / wall,
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
    }


def commit_baseline(dsn: str, rounds: int = 300) -> tuple[float, float]:
    """Median and p95 (ms) of a one-row INSERT committed on its own."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    store = PostgresProvider(dsn, schema=schema, drop_schema_on_close=True)
    try:
        store._sql("CREATE TABLE probe (a int)")
        latencies = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            store._sql("INSERT INTO probe VALUES (1)")
            latencies.append(time.perf_counter() - t0)
    finally:
        store.close()
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(0.95 * (len(latencies) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--claimers", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    print(f"PostgreSQL claim_next, {args.tasks} ready tasks, ordering dependencies, cpus: {os.cpu_count()}")
    median, p95 = commit_baseline(args.dsn)
    print(f"durable one-row commit on this server: median {median:.2f} ms, p95 {p95:.2f} ms")
    print("| claimer processes | tasks | wall (s) | claims/s | median latency (ms) | p95 latency (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.claimers:
        r = run(args.dsn, args.tasks, n)
        print(
            f"| {r['claimers']} | {r['tasks']} | {r['wall_s']:.2f} | {r['throughput']:.0f} | "
            f"{r['median_ms']:.2f} | {r['p95_ms']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
