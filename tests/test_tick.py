"""autonomous.init.tick: a finished task's box ticked in its imported tasks.md, guarded by
the hash of its line; the Kiro group's box with its last sub-task; a file git does not
track ticked but never marked for the commit. Real files, a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autonomous.config import parse_config
from autonomous.init.apply import ProjectInitializer
from autonomous.init.tick import tick_done
from autonomous.tasks import Task

SPECKIT = """\
# Tasks: Demo

## Phase 1: Setup

- [ ] T001 Create the package
- [ ] T002 [P] Add the linter config
- [x] T003 Write the README
"""

KIRO = """\
# Implementation Plan

- [ ] 1. Model
  - [ ] 1.1 Dataclass
  - [ ]* 1.2 Tests
  - [ ] 1.3 Validation
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    return tmp_path


def imported(project: Path, name: str, text: str, *, track: bool = True) -> Path:
    spec = project / "specs" / name
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(text)
    if track:
        git(project, "add", str(spec))
        git(project, "commit", "-qm", "spec")
    ProjectInitializer(parse_config({}, root=project)).initialize(spec)
    return spec


def state(project: Path) -> Path:
    return project / ".ai-agents" / "state"


def task(key: str) -> Task:
    return Task(id="T-x", key=key, title=key)


def test_tick_one_character_on_the_tasks_line(repo: Path):
    spec = imported(repo, "tasks.md", SPECKIT)
    tick = tick_done(task("T002"), repo, state(repo))
    assert tick is not None and tick.lines == [6] and tick.commit_path == spec
    assert spec.read_text() == SPECKIT.replace("- [ ] T002", "- [x] T002")
    assert tick.note == "Ticked T002 in specs/tasks.md (line 6), committed with the task"
    again = tick_done(task("T002"), repo, state(repo))
    assert again is not None and not again.ticked and "already ticked" in again.note
    assert spec.read_text() == SPECKIT.replace("- [ ] T002", "- [x] T002")


def test_an_edited_line_is_never_clobbered_and_a_moved_one_is_found(repo: Path):
    spec = imported(repo, "tasks.md", SPECKIT)
    edited = SPECKIT.replace("T001 Create the package", "T001 Create the package and its tests")
    spec.write_text("Intro line added by a person\n\n" + edited)
    tick = tick_done(task("T001"), repo, state(repo))
    assert tick is not None and not tick.ticked and tick.commit_path is None
    assert tick.note == "Source checklist not ticked: the line of T001 in specs/tasks.md was edited since init"
    assert spec.read_text() == "Intro line added by a person\n\n" + edited
    tick = tick_done(task("T002"), repo, state(repo))  # moved down two lines, text unchanged
    assert tick is not None and tick.lines == [8]
    assert "- [x] T002 [P] Add the linter config" in spec.read_text()


def test_kiro_group_ticked_with_its_last_sub_task(repo: Path):
    spec = imported(repo, "tasks.md", KIRO)
    assert tick_done(task("1.1"), repo, state(repo)).lines == [4]
    tick = tick_done(task("1.3"), repo, state(repo))
    # 1.2 is optional and canceled: not done, so the group stays open
    assert tick.lines == [6] and "- [ ] 1. Model" in spec.read_text()
    spec.write_text(spec.read_text().replace("- [ ]* 1.2", "- [x]* 1.2"))  # a person did the optional task
    spec.write_text(spec.read_text().replace("- [x] 1.3", "- [ ] 1.3"))
    tick = tick_done(task("1.3"), repo, state(repo))
    assert tick.lines == [6, 3]
    assert spec.read_text().splitlines()[2] == "- [x] 1. Model"


def test_untracked_checklist_is_ticked_on_disk_only(repo: Path):
    spec = imported(repo, "tasks.md", SPECKIT, track=False)
    tick = tick_done(task("T001"), repo, state(repo))
    assert tick is not None and tick.ticked and tick.commit_path is None
    assert "on disk only" in tick.note
    assert "- [x] T001" in spec.read_text()


def test_json_imports_and_native_specs_have_nothing_to_tick(repo: Path):
    spec = repo / "tasks.json"
    spec.write_text('{"tasks": [{"id": 1, "title": "a", "status": "pending"}]}')
    ProjectInitializer(parse_config({}, root=repo)).initialize(spec)
    assert tick_done(task("1"), repo, state(repo)) is None
    native = repo / "spec.md"
    native.write_text("# X\n\n## Phase 1: A\n- [X-1.1] One\n- [X-1.2] Two\n")
    ProjectInitializer(parse_config({}, root=repo)).initialize(native, force=True)
    assert tick_done(task("X-1.1"), repo, state(repo)) is None  # the ledger went with the imported list
