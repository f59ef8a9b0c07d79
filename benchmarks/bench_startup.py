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
cache and ``__pycache__`` (warm, as a user's second command would be).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATUS_PATH = "import autonomous.cli, autonomous.config, autonomous.providers.file, autonomous.progress"
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(code: str) -> dict[str, int]:
    """Top-level imports of ``python -X importtime -c code``: name -> cumulative microseconds."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    top: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: imported by the script itself
            top[m.group(4)] = int(m.group(2))
    return top


def wall(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - started


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
        env_python = [sys.executable]
        wall([*env_python, "-m", "autonomous", "status"], project)  # warm
        status = sorted(wall([*env_python, "-m", "autonomous", "status"], project) for _ in range(args.runs))
        bare = sorted(wall([*env_python, "-c", "pass"], project) for _ in range(args.runs))
    print(
        f"wall time of `autonomous status` in an empty project: median {statistics.median(status) * 1000:.0f} ms "
        f"(min {status[0] * 1000:.0f} ms)"
    )
    print(f"wall time of `python -c pass`: median {statistics.median(bare) * 1000:.0f} ms")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
