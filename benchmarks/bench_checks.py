"""What the runner's own checks cost per task, beyond running the project's tests.

* detection of the test command (``verification.commands: auto``), once per session, on a
  project with many files;
* the task's diff and diffstat (evidence and review), on change sets of 10 and 100 files;
* reading failing test ids from a pytest junit report of 5,000 test cases (every check run).

Run with::

    python benchmarks/bench_checks.py

Prints one line per measurement: what, the median of several runs, in milliseconds.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autonomous.checks import baseline, detect
from autonomous.checks.diff import task_diff
from autonomous.workspace import changes


def median_ms(fn: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(2000):
            (root / "src" / f"pkg{i % 20}").mkdir(parents=True, exist_ok=True)
            (root / "src" / f"pkg{i % 20}" / f"mod{i}.py").write_text("x = 1\n" * 50)
        (root / "tests").mkdir()
        (root / "tests" / "test_zz.py").write_text("def test(): pass\n")
        (root / "AGENTS.md").write_text("# Conventions\n\n" + "Keep functions small.\n" * 200)
        print(
            f"detect (2,000 source files, AGENTS.md without a command): {median_ms(lambda: detect.detect(root)):.2f} ms"
        )

        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "init")
        for size in (10, 100):
            before = changes.capture(root)
            for i in range(size):
                path = root / "src" / f"pkg{i % 20}" / f"mod{i}.py"
                path.write_text(path.read_text() + f"y = {i}\n")
                (root / "src" / f"new{size}_{i}.py").write_text("z = 2\n" * 20)
            change_set = changes.diff(before, changes.capture(root))
            took = median_ms(lambda cs=change_set, b=before: task_diff(cs, b.head).diffstat(cs), runs=5)
            print(f"task diff + diffstat ({len(change_set)} paths: {size} modified, {size} new): {took:.1f} ms")

        cases = "".join(
            f'<testcase classname="tests.test_m{i // 50}" name="test_{i}">'
            + ("<failure message='x'>boom</failure>" if i % 10 == 0 else "")
            + "</testcase>"
            for i in range(5000)
        )
        report = root / "junit.xml"
        report.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
        ids = baseline.failing_tests(report)
        assert ids is not None and len(ids) == 500
        took = median_ms(lambda: baseline.failing_tests(report))
        print(f"failing ids from a junit report (5,000 cases, 500 failing): {took:.1f} ms")


if __name__ == "__main__":
    main()
