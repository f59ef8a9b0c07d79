"""Importing a 10,000-task Spec Kit ``tasks.md`` (and a Kiro one of the same size).

Generates ``--phases`` phases of ``--per-phase`` tasks (every third ``[P]``, a story tag
on every story phase, every seventh with ``(depends on ...)``, every eleventh ticked, a
"Dependencies" section of 100 lines), then measures CPU seconds (``time.process_time``,
best of ``--runs``):

* detect + parse: :func:`autonomous.init.detect` and :func:`autonomous.init.parse`;
* plan: ``ProjectInitializer.plan`` (read, detect, parse, dependency check);
* init: the whole ``ProjectInitializer.initialize`` into a fresh file store (tasks in one
  batch, the statuses of ticked tasks, META, ledger, marker);
* the ``autonomous init`` command as a process (user + system CPU of the child).

Target (issue 15): the import of a 10,000-task ``tasks.md`` in at most 3 s CPU.

Run with::

    python benchmarks/bench_import.py
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autonomous.config import parse_config
from autonomous.init import detect, parse
from autonomous.init.apply import ProjectInitializer


def speckit_text(phases: int, per_phase: int) -> str:
    lines = ["---", "feature: bench", "---", "", "# Tasks: Benchmark", ""]
    n = 0
    for p in range(1, phases + 1):
        story = f" - User Story {p - 2} (Priority: P{1 + p % 3})" if 2 < p < phases else ""
        lines += [f"## Phase {p}: Area {p}{story}", ""]
        for _ in range(per_phase):
            n += 1
            box = "x" if n % 11 == 0 else " "
            markers = (" [P]" if n % 3 == 0 else "") + (f" [US{p - 2}]" if story else "")
            dep = f" (depends on T{n - 5:05d})" if n % 7 == 0 and n > 5 else ""
            lines.append(f"- [{box}] T{n:05d}{markers} Implement component {n} in src/area{p}/c{n}.py{dep}")
        lines += ["", f"**Checkpoint**: area {p} works", ""]
    lines += ["## Dependencies & Execution Order", ""]
    lines += [f"- T{k:05d} depends on T{k - 50:05d}" for k in range(100, min(n, 10_000), 100)]
    return "\n".join(lines) + "\n"


def kiro_text(groups: int, per_group: int) -> str:
    lines = ["# Implementation Plan", ""]
    for g in range(1, groups + 1):
        lines.append(f"- [ ] {g}. Area {g} 🚀")
        for s in range(1, per_group):
            star = "*" if s % 9 == 0 else ""
            lines.append(f"  - [ ]{star} {g}.{s} Build part {s} of area {g}")
            lines.append(f"    - Write src/area{g}/part{s}.py")
            lines.append(f"    - _Requirements: {g}.{s}_")
        lines.append("")
    return "\n".join(lines)


def best(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def init_into_fresh_store(spec: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ProjectInitializer(parse_config({}, root=Path(tmp))).initialize(spec)


def command_cpu(spec: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "autonomous", "init", "--spec", str(spec), "--no-model"],
            cwd=tmp, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--per-phase", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, text in (
            ("speckit", speckit_text(args.phases, args.per_phase)),
            ("kiro", kiro_text(args.phases, args.per_phase + 1)),
        ):
            spec = Path(tmp) / f"{fmt}-tasks.md"
            spec.write_text(text, encoding="utf-8")
            tasks = parse(text, fmt).tasks
            assert detect(text).format == fmt
            print(f"{fmt}: {len(tasks)} tasks, {len(text) / 1e6:.2f} MB")
            imported = best(args.runs, lambda t=text: parse(t, detect(t).format))
            planned = best(args.runs, lambda s=spec: ProjectInitializer(parse_config({}, root=Path(tmp))).plan(s))
            stored = best(args.runs, lambda s=spec: init_into_fresh_store(s))
            process = min(command_cpu(spec) for _ in range(args.runs))
            print(f"  detect + parse                 {imported:.3f} s")
            print(f"  plan (read, parse, deps)       {planned:.3f} s")
            print(f"  init into a fresh store        {stored:.3f} s")
            print(f"  `autonomous init` process CPU  {process:.3f} s")


if __name__ == "__main__":
    main()
