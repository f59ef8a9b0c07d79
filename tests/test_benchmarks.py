"""The benchmark scripts keep working as the code under them moves: each imports, and the
two that drive the runner with an instant backend finish a handful of tasks. Figures are not
asserted (docs/benchmarks.md holds them); a script that no longer runs would be."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))  # a benchmark may import another
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("bench_*.py")))
def test_every_benchmark_imports(name: str) -> None:
    assert callable(load(name).main)


def test_the_runner_benchmark_finishes_its_tasks() -> None:
    elapsed, count = load("bench_runner").bench(5, False, [])
    assert count == 5 and elapsed > 0


def test_the_parallel_benchmark_finishes_its_tasks() -> None:
    assert load("bench_parallel").bench(2, 4, 0.0, False, []) > 0
