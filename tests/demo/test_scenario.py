"""The demo's scenario and its sample project (package data under autonomous/demo/sample/),
checked in seconds rather than in the e2e run through the CLI (tests/e2e/test_demo.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from autonomous.demo import DEMO_TASKS, demo_rules
from autonomous.demo.run import find_spec
from autonomous.demo.scenario import SAMPLE, sample_files


def test_demo_sample_code_passes_its_own_tests(tmp_path: Path) -> None:
    """The files the demo's scripted agent writes, in their final versions, pass pytest."""
    for task in DEMO_TASKS:
        for path, content in task.writes.items():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        # as under `nohup autonomous start &`: SIGINT is inherited ignored, and Ctrl-C must still stop the server
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = demo_rules(tmp_path)
    assert {r.name for r in rules} >= {f"{t.key}: report" for t in DEMO_TASKS}
    # later tasks' rules come first: a later prompt quotes earlier tasks' notes
    assert rules[0].name.startswith(DEMO_TASKS[-1].key) and rules[-1].name.startswith(DEMO_TASKS[0].key)


def test_every_sample_folder_belongs_to_a_task_and_every_task_writes() -> None:
    folders = {p.name for p in SAMPLE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {t.key for t in DEMO_TASKS} | {"project"}
    for task in DEMO_TASKS:
        assert task.writes, task.key
        assert set(task.reads) <= set(task.writes), f"{task.key} reads only files it then rewrites"
    assert set(sample_files("project")) == {"AGENTS.md", "gitignore"}


def test_the_sample_spec_is_found_and_names_every_task() -> None:
    spec = find_spec().read_text()
    for task in DEMO_TASKS:
        assert f"[{task.key}]" in spec
