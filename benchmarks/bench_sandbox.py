"""The sandbox's cost: start-up per command the agent runs.

    python benchmarks/bench_sandbox.py [--runs 50] [--cli-commands 10]

Two measurements, both with the real parts:

- ``bash``: the anthropic-sdk backend's tool (``LocalTools.execute("bash", ...)``) running
  ``true`` in a fresh git project, without a sandbox and inside bubblewrap
  (``autonomous.sandbox``); each figure is the wall time of one call, ``--runs`` calls after
  one unmeasured warm-up. The difference is what bubblewrap's namespaces and mounts cost.
- ``claude-code``: one run of the bundled Claude Code CLI against the scripted model
  server whose model asks for ``--cli-commands`` Bash ``true`` calls (one per turn), with
  and without the sandbox settings; ``per command`` = (sandboxed - plain) / commands, the
  median of three runs each. The CLI builds its bubblewrap command line (and proxy) per
  call, so this is the cost a claude-code user sees.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autonomous.backends import get_backend
from autonomous.backends.base import RunOptions
from autonomous.backends.tools import LocalTools
from autonomous.events import Outcome
from autonomous.sandbox import Confinement, bwrap
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer


def project(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def bash_times(tools: LocalTools, runs: int) -> list[float]:
    async def go() -> list[float]:
        await tools.execute("bash", {"command": "true"})  # warm-up
        out = []
        for _ in range(runs):
            began = time.perf_counter()
            result = await tools.execute("bash", {"command": "true"})
            out.append(time.perf_counter() - began)
            assert not result.is_error, result.content
        return out

    return asyncio.run(go())


def cli_run(base: Path, name: str, commands: int, sandboxed: bool) -> float:
    path = project(base, name)
    rules = [
        Rule(
            match=Match(has_tools=True, turn=turn),
            response=Response(tool_use=[{"name": "Bash", "input": {"command": "true"}}]),
        )
        for turn in range(1, commands + 1)
    ] + [
        Rule(
            match=Match(has_tools=True), response=Response(text='```json\n{"status": "complete", "summary": "ok"}\n```')
        )
    ]
    with ScriptedModelServer(rules) as server:
        options = RunOptions(
            cwd=path, env=claude_cli_env(server.url, base / f"home-{name}"), claude_path=str(bundled_claude_path()),
            max_turns=commands + 3, sandbox=Confinement.for_project(path) if sandboxed else None,
        )  # fmt: skip

        async def go() -> Outcome:
            outcome = None
            async for item in get_backend("claude-code").run("bench", options):
                if isinstance(item, Outcome):
                    outcome = item
            assert outcome is not None
            return outcome

        began = time.perf_counter()
        outcome = asyncio.run(go())
        elapsed = time.perf_counter() - began
    assert outcome.status.value == "completed", outcome.error
    return elapsed


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"median {statistics.median(values) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cli-commands", type=int, default=10)
    args = parser.parse_args()
    problem = bwrap.problem()
    if problem:
        print(f"no sandbox on this machine: {problem}", file=sys.stderr)
        return 2
    print(f"bubblewrap: {subprocess.run(['bwrap', '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        plain_dir, boxed_dir = project(base, "plain"), project(base, "boxed")
        plain = bash_times(LocalTools(plain_dir), args.runs)
        boxed = bash_times(LocalTools(boxed_dir, sandbox=Confinement.for_project(boxed_dir)), args.runs)
        print(f"bash, no sandbox     ({args.runs} calls): {ms(plain)}")
        print(f"bash, bubblewrap     ({args.runs} calls): {ms(boxed)}")
        print(f"bubblewrap start-up per command: {(statistics.median(boxed) - statistics.median(plain)) * 1000:.1f} ms")
        if bundled_claude_path() is None:
            print("claude-code: skipped (the bundled CLI needs claude-agent-sdk)")
            return 0
        n = args.cli_commands
        plain_runs = [cli_run(base, f"cli-plain-{i}", n, False) for i in range(3)]
        boxed_runs = [cli_run(base, f"cli-boxed-{i}", n, True) for i in range(3)]
        plain_s, boxed_s = statistics.median(plain_runs), statistics.median(boxed_runs)
        print(f"claude-code run, {n} Bash calls, no sandbox: median {plain_s:.2f} s (3 runs)")
        print(f"claude-code run, {n} Bash calls, sandboxed:  median {boxed_s:.2f} s (3 runs)")
        print(f"claude-code sandbox cost per command: {(boxed_s - plain_s) / n * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
