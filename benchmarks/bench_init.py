"""``autonomous init`` on a 10,000-task structured spec, file provider.

Generates a spec of ``--phases`` phases of ``--per-phase`` tasks each (every task with a
description, two acceptance criteria, a test step; every tenth with a priority, every
fifth with a dependency, every twentieth with a letter suffix), then measures:

* read + parse: :func:`read_spec` and :func:`parse_structured` (what ``--dry-run`` costs
  before printing);
* total init: the whole ``ProjectInitializer.initialize`` into a fresh SQLite store,
  META task and marker included;
* re-init with ``--force`` and an unchanged spec (every task matched by key, none written).

Run with::

    python benchmarks/bench_init.py                 # 10,000 tasks (100 phases x 100)
    python benchmarks/bench_init.py --phases 10 --per-phase 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from autonomous.config import InitializerConfig
from autonomous.init.apply import ProjectInitializer
from autonomous.init.dependencies import resolve_dependencies
from autonomous.init.source import read_spec
from autonomous.init.structured import parse_structured


def make_spec(phases: int, per_phase: int) -> str:
    lines = ["# Benchmark Project", "", "A generated plan.", ""]
    for p in range(1, phases + 1):
        lines += [f"## Phase {p}: Area {p}", ""]
        for n in range(1, per_phase + 1):
            i = (p - 1) * per_phase + n
            suffix = "a" if i % 20 == 0 else ""
            number = n - 1 if suffix and n > 1 else n
            if suffix and n == 1:
                suffix = ""
            lines.append(f"- [BENCH-{p}.{number}{suffix}] Implement component {i} of area {p}")
            lines.append(f"  - Build component {i} with its unit tests and wire it into area {p}.")
            if i % 10 == 0:
                lines.append("  - Priority: high")
            if i % 5 == 0 and n > 2:
                lines.append(f"  - Depends on: BENCH-{p}.{n - 2}")
            lines += [
                "  - Acceptance criteria:",
                f"    - component {i} handles valid input",
                f"    - component {i} rejects invalid input with a clear error",
                "  - Test steps:",
                f"    - pytest tests/test_component_{i}.py",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--per-phase", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        spec_path = project / "spec.md"
        spec_path.write_text(make_spec(args.phases, args.per_phase), encoding="utf-8")
        size = spec_path.stat().st_size

        started = time.perf_counter()
        parsed = parse_structured(read_spec(spec_path).text)
        warnings = resolve_dependencies(parsed.tasks)
        parse_s = time.perf_counter() - started
        assert not warnings, warnings[:3]

        config = InitializerConfig(backend="claude-code", project_dir=project)
        started = time.perf_counter()
        result = ProjectInitializer(config).initialize(spec_path)
        init_s = time.perf_counter() - started

        started = time.perf_counter()
        again = ProjectInitializer(config).initialize(spec_path, force=True)
        reinit_s = time.perf_counter() - started

    n = len(parsed.tasks)
    assert result.tasks_created == n and len(again.unchanged) == n
    print(f"spec: {n:,} tasks, {size / 1e6:.1f} MB")
    print(f"read + parse: {parse_s:.2f} s ({parse_s / n * 1e6:.0f} us per task)")
    print(f"total init (parse, create in one batch, META, marker): {init_s:.2f} s")
    print(f"re-init --force, spec unchanged: {reinit_s:.2f} s")


if __name__ == "__main__":
    main()
