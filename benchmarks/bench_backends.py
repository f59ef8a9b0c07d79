"""Backend overhead: wall time from calling ``Backend.run()`` to receiving its Outcome.

    python benchmarks/bench_backends.py [--runs 10] [--only claude-code ...]

Each backend is the real thing (``claude-code``: the CLI bundled in claude-agent-sdk;
``claude-code-sdk``: the Claude Agent SDK driving that CLI; ``anthropic-sdk``: the
``anthropic`` client) talking to :class:`ScriptedModelServer` on 127.0.0.1, which answers
at once. Two scenarios per backend, each run in a fresh project directory:

- ``one-turn``: the model answers the prompt with a completion report;
- ``two-turn``: a Write tool call (``write_file`` for anthropic-sdk), then the report.

Every run must end ``completed``. One unmeasured warm-up run per backend and scenario
comes first. The server's own time (reading a request to flushing its answer, summed over
the run's requests) is measured inside the server and shown beside the wall time, so
``overhead`` = wall - server is what the backend and its client cost (median of the runs'
differences). ``1st event``: median time to the first event the backend yields
(``backend_start``; for the CLI backends, once the CLI has started and printed its init line).
``child CPU``: median user + system CPU time of the processes the run started and reaped
(the CLI: node), which moves less than wall time when other work shares the machine.
With 10 runs, p95 is the slowest run.

No real credentials are read or needed: this process's environment is replaced, before
anything starts, by one built from nothing (``claude_cli_env``: a throwaway HOME, a fake
API key, ``ANTHROPIC_BASE_URL`` = the scripted server), so neither the CLI (which inherits
the environment) nor the SDKs can see the user's tokens, settings or sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autonomous.backends import BACKENDS, get_backend
from autonomous.backends.base import RunOptions
from autonomous.events import Outcome, OutcomeStatus
from autonomous.testing import model_server
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer, complete_task_rules

# Time spent by the server on each request, from the handler itself (the clients' view includes them).
SERVER_TIMES: list[float] = []
_dispatch = model_server._Handler._dispatch


def _timed_dispatch(self: model_server._Handler) -> None:
    started = time.perf_counter()
    try:
        _dispatch(self)
    finally:
        SERVER_TIMES.append(time.perf_counter() - started)


model_server._Handler._dispatch = _timed_dispatch  # type: ignore[method-assign]


def rules() -> list[Rule]:
    """One key per (scenario, tool flavour); the prompt names the key."""
    api_write = {"name": "write_file", "input": {"path": "b.txt", "content": "b\n"}}
    return [
        *complete_task_rules("BENCHONE"),
        *complete_task_rules("BENCHTWOCLI", {"b.txt": "b\n"}),  # Claude Code's Write tool
        Rule(
            name="BENCHTWOAPI: write",
            match=Match(contains="BENCHTWOAPI", turn=1, has_tools=True),
            response=Response(text="Writing.", tool_use=[api_write]),
        ),
        complete_task_rules("BENCHTWOAPI", {"b.txt": "b\n"})[1],  # the report after the tool result
    ]


def prompt(backend: str, scenario: str) -> str:
    if scenario == "one-turn":
        return "Implement BENCHONE."
    return f"Implement {'BENCHTWOAPI' if backend == 'anthropic-sdk' else 'BENCHTWOCLI'}."


async def one_run(name: str, scenario: str, env: dict[str, str], scratch: Path) -> tuple[float, ...]:
    """(wall, server, first-event, child CPU seconds, requests) of one run in a fresh project directory."""
    project = Path(tempfile.mkdtemp(dir=scratch, prefix="project-"))
    options = RunOptions(
        cwd=project,
        env=env,
        claude_path=str(bundled_claude_path()),
        max_turns=10,
        rate_limit_rpm=0,  # anthropic-sdk's request pacing is policy, not overhead
        inactivity_timeout=60,
        task_id="BENCH",
    )
    backend = get_backend(name)
    SERVER_TIMES.clear()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    outcome, first = None, 0.0
    async for item in backend.run(prompt(name, scenario), options):
        first = first or time.perf_counter() - started
        if isinstance(item, Outcome):
            outcome = item
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime
    if outcome is None or outcome.status is not OutcomeStatus.COMPLETED:
        raise SystemExit(f"{name} {scenario}: did not complete: {outcome}")
    if scenario == "two-turn" and not (project / "b.txt").is_file():
        raise SystemExit(f"{name} {scenario}: the Write tool call did not write b.txt")
    return wall, sum(SERVER_TIMES), first, cpu, len(SERVER_TIMES)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per backend and scenario (default 10)")
    parser.add_argument("--only", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    args = parser.parse_args()
    if bundled_claude_path() is None:
        print("the bundled Claude Code CLI is missing: pip install 'autonomous-runner[sdk]'", file=sys.stderr)
        return 2

    scratch = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    (scratch / "home").mkdir()
    with ScriptedModelServer(rules()) as server:
        env = claude_cli_env(server.url, scratch / "home")
        os.environ.clear()  # nothing of the user's environment reaches a backend, a client or the CLI
        os.environ.update(env)
        columns = ("median", "p95", "min", "server", "overhead", "1st event", "child CPU")
        print(f"{'backend':16} {'scenario':9} {'reqs':>4} " + " ".join(f"{c:>9}" for c in columns))
        for name in args.only:
            for scenario in ("one-turn", "two-turn"):
                asyncio.run(one_run(name, scenario, env, scratch))  # warm-up
                runs = [asyncio.run(one_run(name, scenario, env, scratch)) for _ in range(args.runs)]
                walls = [r[0] for r in runs]
                server_s = statistics.median(r[1] for r in runs)
                overhead = statistics.median(r[0] - r[1] for r in runs)
                first, cpu = (statistics.median(r[i] for r in runs) for i in (2, 3))
                figures = (statistics.median(walls), p95(walls), min(walls), server_s, overhead, first, cpu)
                ms = " ".join(f"{v * 1000:7.0f}ms" for v in figures)
                print(f"{name:16} {scenario:9} {runs[0][4]:>4} {ms}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"runs per row: {args.runs} (after 1 warm-up); load average at the end: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
