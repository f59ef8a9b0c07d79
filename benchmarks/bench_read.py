"""Reading commands, ``init`` and the runner's per-task overhead, as whole processes.

    python benchmarks/bench_read.py                         # 1K, 10K, 100K tasks; runner at 100, 1K, 10K
    python benchmarks/bench_read.py --sizes 1000 --runner-sizes 100 --runs 3
    python benchmarks/bench_read.py --no-task-master        # skip Task Master even if installed

For each size a project is made with a small ``.ai-agents/config.yml`` and a structured
spec of phases of 100 tasks (``[APP-p.n] ...`` with a one-line description; every other
task depends on the one before it). Then, each command a fresh process, as a user runs it:

* ``autonomous init --spec spec.md --no-model`` (into a fresh project each run);
* ``autonomous next --json``, ``status --json``, ``tasks --json`` (output to /dev/null);
* ``autonomous --version`` (the floor: interpreter, click, the package);
* Task Master's ``next`` and ``list`` on the same graph (``.taskmaster/tasks/tasks.json``),
  when ``task-master-ai`` is installed (``--task-master DIR``: a folder where
  ``npm install task-master-ai`` ran; default ``$TASK_MASTER_DIR``).

Printed per command: the median CPU time (user + system) of the process and its peak
resident memory (the largest of the runs), read from ``wait4``; CPU time moves less than
wall time when other work shares the machine. Then the runner's own overhead per task
(``benchmarks/bench_runner.py``: an instantly answering backend, the real file store).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = """\
autonomous:
  model: sonnet
  max_tasks_per_session: 20
execution:
  ordering: strict
verification:
  commands: ["true"]
"""
PER_PHASE = 100


def make_graph(n: int) -> list[dict]:
    """The plan: ``n`` tasks in phases of 100, every other one depending on the one before."""
    tasks = []
    for i in range(n):
        phase, number = i // PER_PHASE + 1, i % PER_PHASE + 1
        deps = [i - 1] if i % 2 and i else []
        tasks.append({"i": i, "phase": phase, "number": number, "deps": deps})
    return tasks


def key(task: dict) -> str:
    return f"APP-{task['phase']}.{task['number']}"


def spec_text(graph: list[dict]) -> str:
    lines = ["# Bench project", ""]
    phase = 0
    for t in graph:
        if t["phase"] != phase:
            phase = t["phase"]
            lines += ["", f"## Phase {phase}: area {phase}", ""]
        lines.append(f"- [{key(t)}] Implement component {t['i']}")
        lines.append(f"  - Build component {t['i']} and its unit tests.")
        if t["deps"]:
            lines.append(f"  - Depends on: {key(graph[t['deps'][0]])}")
    return "\n".join(lines) + "\n"


def task_master_json(graph: list[dict]) -> dict:
    """The same graph in Task Master's tagged ``tasks.json`` format (ids from 1)."""
    return {
        "master": {
            "tasks": [
                {
                    "id": t["i"] + 1,
                    "title": f"[{key(t)}] Implement component {t['i']}",
                    "description": f"Build component {t['i']} and its unit tests.",
                    "details": "",
                    "testStrategy": "",
                    "status": "pending",
                    "dependencies": [d + 1 for d in t["deps"]],
                    "priority": "medium",
                    "subtasks": [],
                }
                for t in graph
            ],
            "metadata": {"created": "2025-01-01T00:00:00.000Z", "description": "bench"},
        }
    }


# Started from a small launcher process: a child's peak RSS (ru_maxrss) starts at its
# parent's high-water mark, and this script holds the whole 100,000-task graph.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of one process, output to /dev/null; fails loudly."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=cwd, env=env, capture_output=True, text=True)
    code, cpu, maxrss = proc.stdout.split()
    if proc.returncode != 0 or code != "0":
        raise SystemExit(f"{' '.join(args)} failed ({code}): {proc.stderr[-2000:]}")
    return float(cpu), int(maxrss) / 1024


def measure(args: list[str], cwd: Path, runs: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median CPU and largest peak of ``runs`` runs, after one untimed run (the first
    reading command after a change of the config file validates it in full)."""
    if runs > 1:
        run(args, cwd, env)
    results = [run(args, cwd, env) for _ in range(runs)]
    return statistics.median(c for c, _ in results), max(m for _, m in results)


def new_project(root: Path, spec: str) -> Path:
    project = Path(tempfile.mkdtemp(dir=root))
    (project / ".ai-agents").mkdir()
    (project / ".ai-agents" / "config.yml").write_text(CONFIG)
    (project / "spec.md").write_text(spec)
    return project


def row(label: str, cpu: float, mem: float) -> None:
    print(f"  {label:<34} CPU {cpu * 1000:8.0f} ms   peak {mem:7.1f} MiB", flush=True)


def bench_size(n: int, runs: int, tm_bin: Path | None, root: Path) -> None:
    autonomous = [sys.executable, "-m", "autonomous"]
    graph = make_graph(n)
    spec = spec_text(graph)
    print(f"{n:,} tasks (spec {len(spec) / 1e6:.1f} MB)", flush=True)
    inits = []
    project = None
    for _ in range(runs):
        project = new_project(root, spec)
        inits.append(run([*autonomous, "init", "--spec", "spec.md", "--no-model"], project))
    row("init --no-model", statistics.median(c for c, _ in inits), max(m for _, m in inits))
    assert project is not None
    for command in (["next", "--json"], ["status", "--json"], ["tasks", "--json"], ["--version"]):
        row(" ".join(command), *measure([*autonomous, *command], project, runs))
    if tm_bin is not None:
        tm_project = Path(tempfile.mkdtemp(dir=root))
        tasks_file = tm_project / ".taskmaster" / "tasks" / "tasks.json"
        tasks_file.parent.mkdir(parents=True)
        tasks_file.write_text(json.dumps(task_master_json(graph)))
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        for command in (["next"], ["list"]):
            # one run at 100,000 tasks: Task Master's list takes minutes there
            tm_runs = 1 if n >= 100_000 else runs
            row(f"Task Master {' '.join(command)}", *measure(["node", str(tm_bin), *command], tm_project, tm_runs, env))
        shutil.rmtree(tm_project, ignore_errors=True)


def init_steps(n: int, root: Path) -> None:
    """Where ``init``'s CPU goes, step by step, in this process: the floor under its target."""
    import gc
    import time

    from autonomous.init.dependencies import resolve_dependencies
    from autonomous.init.source import read_spec
    from autonomous.init.structured import parse_structured
    from autonomous.providers.file import FileProvider

    project = new_project(root, spec_text(make_graph(n)))
    gc.disable()  # as init does while it parses and applies a spec (autonomous.init.plan._bulk)
    steps: list[tuple[str, float]] = []
    started = time.process_time()

    def step(label: str) -> None:
        nonlocal started
        now = time.process_time()
        steps.append((label, now - started))
        started = now

    spec = read_spec(project / "spec.md")
    step("read the spec")
    parsed = parse_structured(spec.text)
    step("parse_structured (spec.py)")
    resolve_dependencies(parsed.tasks, (), "strict")
    step("resolve_dependencies + cycle check (spec.py)")
    store = FileProvider(project / ".ai-agents" / "state")
    store.create_tasks([t.task for t in parsed.tasks])
    step("create_tasks: one transaction, executemany")
    store.close()
    print(f"init steps at {n:,} tasks (in one process, CPU):")
    for label, seconds in steps:
        print(f"  {label:<46} {seconds * 1000:8.0f} ms")


def find_task_master(folder: str | None) -> Path | None:
    if not folder:
        return None
    for candidate in ("node_modules/task-master-ai/bin/task-master.js", "node_modules/.bin/task-master"):
        path = Path(folder) / candidate
        if path.exists():
            return path.resolve()
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runner-sizes", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--task-master", default=os.environ.get("TASK_MASTER_DIR"))
    parser.add_argument("--no-task-master", action="store_true")
    parser.add_argument("--init-steps", type=int, default=0, help="time init's steps at N tasks, then stop")
    args = parser.parse_args()
    if args.init_steps:
        with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
            init_steps(args.init_steps, Path(tmp))
        return 0
    tm_bin = None if args.no_task_master else find_task_master(args.task_master)
    if tm_bin is None and not args.no_task_master:
        print("Task Master: not installed (npm install task-master-ai in a folder, then --task-master FOLDER)")
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        for n in (int(s) for s in args.sizes.split(",") if s):
            bench_size(n, args.runs, tm_bin, Path(tmp))
    if args.runner_sizes:
        sys.path.insert(0, str(HERE))
        from bench_runner import LAST_CPU, bench

        print("runner overhead per task (instant backend, file store, no git; wall, and CPU of the process):")
        for n in (int(s) for s in args.runner_sizes.split(",")):
            elapsed, count = bench(n, False, [])
            print(
                f"  {count:>6} tasks  {elapsed:8.2f} s  {elapsed / count * 1000:6.2f} ms/task  "
                f"CPU {LAST_CPU[0] / count * 1000:6.2f} ms/task  (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    load = os.getloadavg()[0]
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
