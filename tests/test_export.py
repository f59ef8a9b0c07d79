"""autonomous.init.export: export then import gives the same tasks back (hypothesis
properties, one per format), and ``autonomous export`` writes what ``init`` imported."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autonomous.cli import main
from autonomous.config import parse_config
from autonomous.init import parse
from autonomous.init.apply import ProjectInitializer
from autonomous.init.common import Imported
from autonomous.init.export import export
from autonomous.tasks import Priority, Task, TaskStatus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789éü🚀_-./", min_size=1, max_size=8)
_TEXT = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)
_LINE = _TEXT.filter(lambda s: s.strip(" -*\t") == s)
_STATUSES = [TaskStatus.TODO, TaskStatus.BLOCKED, TaskStatus.DONE, TaskStatus.CANCELED]


def as_tasks(imported: Imported) -> list[Task]:
    """An import as the store would hold it (ids for keys, the file's statuses)."""
    ids = {st.key: f"T-{n}" for n, st in enumerate(imported.tasks, 1)}
    return [
        Task(
            id=ids[s.key], key=s.key, title=s.task.title, description=s.task.description,
            acceptance_criteria=list(s.task.acceptance_criteria), test_steps=list(s.task.test_steps),
            status=imported.statuses[s.key], priority=s.task.priority, labels=list(s.task.labels),
            dependencies=[ids[d] for d in s.task.dependencies if d in ids],
        )
        for s in imported.tasks
    ]  # fmt: skip


def shape(tasks: list[Task], *, keys: bool = True, fields: tuple[str, ...] = ()) -> list[tuple]:
    """What a format carries, with dependencies as positions (keys may be renumbered)."""
    position = {t.id: i for i, t in enumerate(tasks)}
    return [
        (
            t.key if keys else i,
            t.title,
            t.status,
            t.priority,
            sorted(position[d] for d in t.dependencies),
            *(getattr(t, f) for f in fields),
        )
        for i, t in enumerate(tasks)
    ]


@st.composite
def task_lists(draw, *, labels: bool) -> list[Task]:
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        tasks.append(
            Task(
                id=f"T-{i + 1}",
                key=f"bd-{i + 1:x}",
                title=draw(_TEXT),
                description=draw(st.lists(_TEXT, max_size=3).map("\n".join)),
                acceptance_criteria=draw(st.lists(_LINE, max_size=3)) if labels else [],
                test_steps=[] if labels else draw(st.lists(_LINE, max_size=3)),
                status=draw(st.sampled_from(_STATUSES)),
                priority=draw(st.sampled_from(list(Priority))),
                labels=draw(st.lists(st.sampled_from(["bug", "feature", "ui", "task", "api", "epic"]), unique=True))
                if labels
                else [],
                dependencies=[f"T-{d + 1}" for d in deps],
            )
        )
    return tasks


@PROPERTY
@given(task_lists(labels=False))
def test_taskmaster_round_trip(tasks):
    back = as_tasks(parse(export(tasks, "taskmaster", project_name="p"), "taskmaster"))
    assert shape(back, keys=False, fields=("description", "test_steps")) == shape(
        tasks, keys=False, fields=("description", "test_steps")
    )
    assert [t.key for t in back] == [str(i) for i in range(1, len(tasks) + 1)]


@PROPERTY
@given(task_lists(labels=True))
def test_beads_round_trip(tasks):
    back = as_tasks(parse(export(tasks, "beads"), "beads"))
    fields = ("description", "acceptance_criteria", "labels")
    assert shape(back, fields=fields) == shape(tasks, fields=fields)


@st.composite
def speckit_files(draw) -> str:
    lines = ["# Tasks: Generated", ""]
    number = 0
    for p in range(1, draw(st.integers(1, 4)) + 1):
        priority = draw(st.sampled_from(["", " (Priority: P1)", " (Priority: P2)", " (Priority: P3)"]))
        lines += [f"## Phase {p}: {draw(_TEXT)}{priority}", ""]
        for _ in range(draw(st.integers(1, 5))):
            number += 1
            box = draw(st.sampled_from([" ", "x", "X"]))
            markers = draw(st.lists(st.sampled_from(["[P]", "[US1]", "[US2]", "[api]"]), unique=True, max_size=2))
            deps = draw(st.lists(st.integers(1, number - 1), unique=True, max_size=2)) if number > 1 else []
            text = " ".join([f"- [{box}] T{number:03d}", *markers, draw(_TEXT)])
            if deps:
                text += " (depends on " + ", ".join(f"T{d:03d}" for d in deps) + ")"
            lines.append(text)
            lines += [f"  - {line}" for line in draw(st.lists(_LINE, max_size=2))]
        if draw(st.booleans()):
            lines += ["", f"**Checkpoint**: {draw(_TEXT)}"]
        lines.append("")
    return "\n".join(lines)


@PROPERTY
@given(speckit_files())
def test_speckit_round_trip(text):
    first = parse(text, "speckit")
    tasks = as_tasks(first)
    again = parse(export(tasks, "speckit", project_name="Generated", ledger=first.ledger("tasks.md")), "speckit")
    fields = ("description", "labels", "acceptance_criteria")
    back = as_tasks(again)
    assert shape(back, fields=fields) == shape(tasks, fields=fields)
    assert [st.phase for st in again.tasks] == [st.phase for st in first.tasks]


def test_export_command_writes_what_init_imported(tmp_path: Path, monkeypatch):
    spec = tmp_path / "tasks.json"
    spec.write_text((FIXTURES / "taskmaster-tagged.json").read_text())
    ProjectInitializer(parse_config({}, root=tmp_path)).initialize(spec)
    (tmp_path / ".ai-agents").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "back.json"
    result = CliRunner().invoke(main, ["export", "--format", "taskmaster", "--output", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())["master"]
    assert data["metadata"]["description"] == "Tasks for the API gateway"
    rows = {t["title"]: t for t in data["tasks"]}
    assert rows["Metrics endpoint"]["status"] == "review"  # the source's own status, kept in the ledger
    assert rows["Initialize the repository"]["details"] == "Use uv init; add src/ and tests/."
    result = CliRunner().invoke(main, ["export", "--format", "beads"])
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 7
    result = CliRunner().invoke(main, ["export", "--format", "speckit"])
    assert result.exit_code == 0 and "- [x] T001 Initialize the repository" in result.output
