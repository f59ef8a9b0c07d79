"""Team providers: how many API requests a task costs (what rate limits are spent on).

    /work/venv/bin/python benchmarks/bench_providers.py [--tasks 100]

One function per provider, each against its fake server from ``autonomous.testing``
(no network). A *task cycle* is what the runner does per task: ``claim_next`` (find the
next ready task and claim it), one tokened note, ``release`` as done with a note. Prints
requests per cycle and for a whole run of N tasks (init included); docs/benchmarks.md
holds the figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from autonomous.tasks import NewTask, TaskStatus


def _spec(n: int) -> list[NewTask]:
    """A META task and N phased tasks, each depending on the one before (10 per phase)."""
    tasks = [NewTask("META: Benchmark project")]
    for i in range(n):
        phase, number = i // 10 + 1, i % 10 + 1
        deps = [tasks[-1].key] if i else []
        tasks.append(NewTask(f"[B-{phase}.{number}] task {i}", dependencies=deps))
    return tasks


def bench_github(n: int) -> dict[str, float]:
    """GitHub: requests (and 304s) per task cycle and per N-task run, on the fake over HTTP."""
    from autonomous.providers.github import GitHubProvider
    from autonomous.testing.fake_github import FakeGitHub, open_test_provider

    with FakeGitHub() as fake:
        provider = open_test_provider(fake=fake)
        try:
            provider.create_tasks(_spec(n))
            init = provider.request_count
            cycles = []
            while True:
                before, before_304 = provider.request_count, provider.not_modified_count
                task = provider.claim_next("bench", 900)
                if task is None:
                    break
                provider.add_note(task.id, "working on it", "bench", token=task.claim.token)
                provider.release(task.id, task.claim.token, status=TaskStatus.DONE, note="done")
                cycles.append((provider.request_count - before, provider.not_modified_count - before_304))
        finally:
            GitHubProvider.close(provider)
    per_cycle = [c for c, _ in cycles]
    return {
        "init requests": init,
        "requests per cycle (median)": sorted(per_cycle)[len(per_cycle) // 2],
        "requests per cycle (max)": max(per_cycle),
        "304s per cycle (max)": max(m for _, m in cycles),
        f"requests for {n} cycles": sum(per_cycle),
        f"requests per {n}-task run (init + cycles)": init + sum(per_cycle),
    }


def bench_linear(n: int) -> dict[str, float]:
    """Linear: requests per task cycle and per N-task run, on the fake over HTTP."""
    import tempfile

    from autonomous.providers.linear import LinearProvider
    from autonomous.testing.fake_linear import FakeLinear

    with FakeLinear() as fake, tempfile.TemporaryDirectory() as state_dir:
        key = fake.add_workspace()
        provider = LinearProvider(
            endpoint=fake.url, env={"LINEAR_API_KEY": key}, project_name="Benchmark", state_dir=state_dir
        )
        try:
            provider.create_tasks(_spec(n))
            init = provider.requests
            per_cycle = []
            while True:
                before = provider.requests
                task = provider.claim_next("bench", 900)
                if task is None:
                    final_poll = provider.requests - before
                    break
                provider.add_note(task.id, "working on it", "bench", token=task.claim.token)
                provider.release(task.id, task.claim.token, status=TaskStatus.DONE, note="done")
                per_cycle.append(provider.requests - before)
        finally:
            provider.close()
    return {
        "init requests": init,
        "requests per cycle (median)": sorted(per_cycle)[len(per_cycle) // 2],
        "requests per cycle (max, a full re-listing every 20 polls)": max(per_cycle),
        f"requests for {n} cycles": sum(per_cycle),
        f"requests per {n}-task run (init + cycles + final empty poll)": init + sum(per_cycle) + final_poll,
    }


BENCHES: dict[str, Callable[[int], dict[str, float]]] = {"github": bench_github, "linear": bench_linear}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args()
    for name in args.only or sorted(BENCHES):
        print(f"{name} ({args.tasks} tasks)")
        for what, value in BENCHES[name](args.tasks).items():
            print(f"  {what}: {value:g}")


if __name__ == "__main__":
    main()
