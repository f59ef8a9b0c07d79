"""Start-up time of ``autonomous status``: import time of its modules and wall time.

    python benchmarks/bench_startup.py [--runs 7] [--top 12]

1. Import time of the ``status`` path: ``python -X importtime -c "import autonomous.cli,
   autonomous.config, autonomous.providers.file, autonomous.progress"`` (what the command
   imports before it prints), summed over the top-level imports that interpreter start-up
   alone (``-c pass``) does not already do. Median over the runs, and the heaviest
   top-level modules of the median run by cumulative time.
2. Wall time of ``python -m autonomous status`` in an empty project (a directory with an
   empty ``.ai-agents/``), and of ``python -c pass`` for reference. Median over the runs.

Every run is a fresh interpreter; nothing is cached between runs except the OS page
cache and the bytecode (warm, as for a user's second command: the children run with
bytecode writing on, into a private ``pycache_prefix``, whatever PYTHONDONTWRITEBYTECODE
says). CPU time (user + system) is reported beside wall time because it moves less
when other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

STATUS_PATH = "import autonomous.cli, autonomous.config, autonomous.providers.file, autonomous.progress"
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


# Bytecode cached as for a user (pip compiles on install; the first run writes the rest), in a
# private folder so the benchmark neither needs nor touches __pycache__ in the source tree.
CACHE = tempfile.mkdtemp(prefix="bench-startup-pycache-")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def python(*args: str) -> list[str]:
    return [sys.executable, "-X", f"pycache_prefix={CACHE}", *args]


def importtime(code: str) -> dict[str, int]:
    """Top-level imports of ``python -X importtime -c code``: name -> cumulative microseconds."""
    proc = subprocess.run(python("-X", "importtime", "-c", code), capture_output=True, text=True, check=True, env=ENV)
    top: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: imported by the script itself
            top[m.group(4)] = int(m.group(2))
    return top


def wall(args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run. CPU time (user + system) moves less than
    wall time when other work shares the machine, so both are reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN) if resource else None
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, capture_output=True, check=True, env=ENV)
    elapsed = time.perf_counter() - started
    if resource is None or before is None:
        return elapsed, float("nan")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f} ms)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    baseline = set(importtime("pass"))
    importtime(STATUS_PATH)  # warm __pycache__
    runs = []
    for _ in range(args.runs):
        top = {name: us for name, us in importtime(STATUS_PATH).items() if name not in baseline}
        runs.append((sum(top.values()), top))
    runs.sort(key=lambda run: run[0])
    median_total, median_top = runs[len(runs) // 2]
    print(
        f"import time of the status path ({args.runs} runs): median {median_total / 1000:.0f} ms "
        f"(min {runs[0][0] / 1000:.0f} ms, max {runs[-1][0] / 1000:.0f} ms)"
    )
    print("heaviest top-level imports of the median run (cumulative):")
    for name, us in sorted(median_top.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {us / 1000:7.1f} ms  {name}")

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / ".ai-agents").mkdir()
        wall(python("-m", "autonomous", "status"), project)  # warm
        status = [wall(python("-m", "autonomous", "status"), project) for _ in range(args.runs)]
        bare = [wall(python("-c", "pass"), project) for _ in range(args.runs)]
    for label, runs_ in (("`autonomous status` in an empty project", status), ("`python -c pass`", bare)):
        print(f"{label}: wall {_ms([w for w, _ in runs_])}, CPU {_ms([c for _, c in runs_])}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f})")
    shutil.rmtree(CACHE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
