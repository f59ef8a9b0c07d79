"""autonomous.init: Spec Kit, Kiro, Task Master and beads task lists imported exactly
(fixtures in tests/fixtures/import/, written for these tests in each tool's grammar, with
the drift real files show), format detection, bad input, and ``init`` storing them with
their statuses and ledger in the real file store, whose claim skips optional tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autonomous import scheduler
from autonomous.config import parse_config
from autonomous.errors import SpecError
from autonomous.init import detect, parse
from autonomous.init.apply import ProjectInitializer
from autonomous.init.common import sequence
from autonomous.init.ledger import read_ledger
from autonomous.providers.file import FileProvider
from autonomous.tasks import Priority, TaskStatus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def by_key(imported):
    return {st.key: st for st in imported.tasks}


# -- Spec Kit -----------------------------------------------------------------------------------


def test_speckit_keys_order_phases_and_statuses():
    imp = parse(fixture("speckit-tasks.md"), "speckit")
    assert [t.key for t in imp.tasks] == [f"T{n:03d}" for n in range(1, 17)]  # T900/T901 are in a comment/fence
    assert imp.title == "Bookmark Service"
    tasks = by_key(imp)
    assert tasks["T001"].task.title == "1.1: Create the package layout in src/bookmarks/ per plan.md"
    assert tasks["T005"].task.title.startswith("2.1: ")
    assert tasks["T011"].phase.startswith("Phase 3: User Story 1")
    assert [k for k, s in imp.statuses.items() if s is TaskStatus.DONE] == ["T001", "T002"]  # [x] and [X]
    assert tasks["T001"].line == 31


def test_speckit_markers_priority_and_dependencies():
    tasks = by_key(parse(fixture("speckit-tasks.md"), "speckit"))
    assert tasks["T009"].task.labels == ["parallel", "US1"]
    assert tasks["T011"].task.labels == ["US1"]
    assert tasks["T009"].task.priority is Priority.HIGH  # (Priority: P1)
    assert tasks["T013"].task.priority is Priority.NORMAL  # P2
    assert tasks["T001"].task.priority is Priority.NORMAL
    # [P] runs side by side after the step before; the next task waits for the whole run
    assert tasks["T003"].task.dependencies == ["T002"] and tasks["T004"].task.dependencies == ["T002"]
    assert tasks["T008"].task.dependencies == ["T006", "T007"]  # also its "(depends on T006, T007)"
    assert tasks["T008"].task.title == "2.4: Repository layer in src/bookmarks/repo.py"
    # the Dependencies section: "T014 depends on T011, T013", "T012 blocks T016"
    assert set(tasks["T014"].task.dependencies) == {"T013", "T011"}
    assert "T012" in tasks["T016"].task.dependencies
    # checkpoints are acceptance criteria of the phase's last task
    assert tasks["T008"].task.acceptance_criteria == ["Foundation ready - user stories can begin"]
    # an indented line under a task is more of its description
    assert tasks["T016"].task.description == (
        "Run quickstart.md validation\nverify: every command in quickstart.md exits 0"
    )


def test_sequence_rule():
    assert sequence(["a", "b", "c", "d", "e"], [False, True, True, False, False]) == {
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c"],
        "e": ["d"],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("## Phase 1: Setup\n- [ ] T001 ok\n- [ ] T0A2 broken id\n", "line 3: malformed task id 'T0A2'"),
        ("## Phase 1: Setup\n\n- [y] T001 odd box\n", "line 3: checkbox [y]"),
        ("- [ ] T001 one\n- [ ] T002 two\n- [ ] T001 again\n", "duplicate task id T001 on lines 1 and 3"),
        ("- [ ] T001 [P]\n", "line 1: task T001 has no description"),
    ],
)
def test_speckit_malformed_lines_name_their_line(text, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse(text, "speckit")


# -- Kiro -------------------------------------------------------------------------------------------


def test_kiro_keys_groups_and_drift():
    imp = parse(fixture("kiro-tasks.md"), "kiro")
    assert [t.key for t in imp.tasks] == ["1", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "5"]
    # parents with sub-tasks are groups, not tasks; "## Task 4:" is one too
    assert {k: g.members for k, g in imp.groups.items()} == {
        "2": ["2.1", "2.2", "2.3"],
        "3": ["3.1", "3.2", "3.3"],
        "4": ["4.1", "4.2"],
    }
    tasks = by_key(imp)
    assert tasks["1"].task.title == "1.0: Set up the project structure ⚙️"  # emojis kept, not in the way
    assert tasks["3.3"].task.title == "3.3: 🚀 Checkpoint - make sure all tests pass"  # a checkpoint is a task
    assert tasks["2.1"].phase == "2. Build the note model 📝"
    assert imp.statuses["1"] is TaskStatus.DONE and imp.statuses["2.1"] is TaskStatus.DONE
    assert imp.statuses["2.2"] is TaskStatus.TODO


def test_kiro_details_references_and_dependencies():
    imp = parse(fixture("kiro-tasks.md"), "kiro")
    tasks = by_key(imp)
    d21 = tasks["2.1"].task.description
    assert "Fields: id, title, body, created_at" in d21 and "Requirements: 1.2, 2.3" in d21
    assert imp.sources["2.1"].fields["requirements"] == ["1.2, 2.3"]
    assert "Validates: Requirements 2.1" in tasks["2.2"].task.description
    assert tasks["2.2"].task.labels == ["parallel"]  # cc-sdd (P), gone from the title
    assert tasks["2.2"].task.title == "2.2: Validate note titles"
    assert tasks["3.1"].task.dependencies == ["2.1"]  # _Depends: 2.1_
    assert imp.sources["3.1"].fields["boundary"] == ["storage"]
    assert tasks["4.2"].task.dependencies == ["3.1", "3.2", "3.3", "4.1"]  # on group 3: all of it


def test_kiro_optional_tasks_are_canceled_unless_included():
    imp = parse(fixture("kiro-tasks.md"), "kiro")
    for key in ("2.3", "3.2"):  # "- [ ]*" and "- [ ]\*"
        assert by_key(imp)[key].task.labels == ["optional"]
        assert imp.statuses[key] is TaskStatus.CANCELED
    included = parse(fixture("kiro-tasks.md"), "kiro", include_optional=True)
    assert included.statuses["2.3"] is TaskStatus.TODO and by_key(included)["2.3"].task.labels == ["optional"]


def test_kiro_emphasis_and_emojis_around_the_number():
    text = "- [ ] ✅ 1. Emoji first\n- [ ] **2.** Bold number\n- [x] 🎯 **3. Bold all**\n- [ ] Task 4: Worded\n"
    imp = parse(text, "kiro")
    assert [(t.key, t.task.title) for t in imp.tasks] == [
        ("1", "1.0: Emoji first"), ("2", "2.0: Bold number"), ("3", "3.0: Bold all"), ("4", "4.0: Worded"),
    ]  # fmt: skip
    assert imp.statuses["3"] is TaskStatus.DONE


def test_kiro_task_heading_variant_and_inconsistent_group():
    text = "# Plan\n\n## Task 1: Setup 🎉\n\n- [ ] Create folders\n- [ ] Add config\n\n### Task 2: Deploy\n"
    imp = parse(text, "kiro")
    assert [t.key for t in imp.tasks] == ["1.1", "1.2", "2"]
    assert imp.groups["1"].line == 0  # a heading has no box to tick
    text = "- [x] 1. Group\n  - [ ] 1.1 Child\n"
    imp = parse(text, "kiro")
    assert imp.warnings == ["line 2: 1.1 is not ticked but its group 1 (line 1) is; kept as not done"]
    with pytest.raises(SpecError, match=r"duplicate task number 1\.1 on lines 2 and 3"):
        parse("- [ ] 1. A\n- [ ] 1.1 B\n- [ ] 1.1 C\n", "kiro")


# -- Task Master ---------------------------------------------------------------------------------


def test_taskmaster_tagged_fields_subtasks_and_statuses():
    imp = parse(fixture("taskmaster-tagged.json"), "taskmaster")
    assert [t.key for t in imp.tasks] == ["1", "2.1", "2.2", "2.3", "3", "4", "5"]
    assert imp.title == "Tasks for the API gateway"
    t = by_key(imp)
    assert t["1"].task.description == "Create the project skeleton.\n\nUse uv init; add src/ and tests/."
    assert t["1"].task.test_steps == ["Run pytest and see it collect nothing."]
    assert t["3"].task.test_steps == ["curl /metrics", "check the counter grows"]
    assert (t["1"].task.priority, t["3"].task.priority) == (Priority.HIGH, Priority.LOW)
    assert {k: s.value for k, s in imp.statuses.items()} == {
        "1": "done", "2.1": "done", "2.2": "todo", "2.3": "todo", "3": "in_review", "4": "canceled", "5": "todo",
    }  # fmt: skip
    # sub-tasks inherit the parent's dependencies; bare numbers are siblings; "2" means all of group 2
    assert t["2.2"].task.dependencies == ["1", "2.1"]
    assert t["2.3"].task.dependencies == ["1", "2.1"]
    assert t["3"].task.dependencies == ["2.1", "2.2", "2.3"]
    assert imp.groups["2"].members == ["2.1", "2.2", "2.3"]
    # unknown and format-only fields are kept, not dropped
    assert imp.sources["3"].fields == {"status": "review", "split": 16}
    assert imp.sources["2.1"].parent == "2"
    assert imp.groups["2"].fields["complexity"] == 7 and imp.groups["2"].fields["title"] == "Rate limiter"


def test_taskmaster_tags_and_legacy():
    imp = parse(fixture("taskmaster-tagged.json"), "taskmaster", tag="feature-x")
    assert [t.task.title for t in imp.tasks] == ["Spike"]
    with pytest.raises(SpecError, match="--tag nope: no such tag \\(the file has master, feature-x\\)"):
        parse(fixture("taskmaster-tagged.json"), "taskmaster", tag="nope")
    legacy = parse(fixture("taskmaster-legacy.json"), "taskmaster")
    assert [t.key for t in legacy.tasks] == ["1", "2"] and legacy.statuses["2"] is TaskStatus.CANCELED
    bad = json.dumps({"tasks": [{"id": 1, "title": "x", "status": "someday"}]})
    with pytest.raises(SpecError, match="tasks\\[0\\] \\(1\\): unknown status 'someday'"):
        parse(bad, "taskmaster")
    with pytest.raises(SpecError, match="line 3: not valid JSON"):
        parse('{\n "tasks": [\n  {,}\n ]}', "taskmaster")


# -- beads ------------------------------------------------------------------------------------------


def test_beads_fields_statuses_and_dependency_types():
    imp = parse(fixture("beads-issues.jsonl"), "beads")
    assert [t.key for t in imp.tasks] == ["nt-a1f", "nt-b2c", "nt-c3d", "nt-d4e", "nt-e5f"]  # tombstone skipped
    t = by_key(imp)
    assert {k: s.value for k, s in imp.statuses.items()} == {
        "nt-a1f": "todo", "nt-b2c": "done", "nt-c3d": "todo", "nt-d4e": "canceled", "nt-e5f": "blocked",
    }  # fmt: skip
    assert [t[k].task.priority for k in ("nt-b2c", "nt-a1f", "nt-c3d", "nt-e5f", "nt-d4e")] == [
        Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW, Priority.LOW,
    ]  # fmt: skip
    assert t["nt-b2c"].task.description == "Hash with argon2.\n\nDesign:\nUse argon2-cffi defaults."
    assert t["nt-b2c"].task.acceptance_criteria == ["hashes differ per salt", "verify accepts the right password"]
    assert t["nt-b2c"].task.labels == ["security"] and t["nt-a1f"].task.labels == ["epic"]
    assert t["nt-c3d"].task.dependencies == ["nt-b2c"]  # blocks
    assert t["nt-a1f"].task.dependencies == ["nt-b2c", "nt-c3d"]  # parent-child: the epic waits for its children
    assert imp.sources["nt-c3d"].fields["references"] == {"related": ["nt-e5f"]}
    assert imp.sources["nt-e5f"].fields["references"] == {"discovered-from": ["nt-c3d"]}
    assert imp.sources["nt-c3d"].fields["assignee"] == "ana"


def test_beads_bad_lines_name_their_line():
    good = fixture("beads-issues.jsonl").splitlines()
    with pytest.raises(SpecError, match="line 3: not a JSON object"):
        parse("\n".join([good[0], good[1], '{"id": "x", "title": ', good[3]]), "beads")
    with pytest.raises(SpecError, match="line 2 \\(nt-z\\): priority 9 is not 0-4"):
        parse(good[0] + '\n{"id": "nt-z", "title": "z", "priority": 9}', "beads")


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("speckit-tasks.md", "speckit"),
        ("kiro-tasks.md", "kiro"),
        ("taskmaster-tagged.json", "taskmaster"),
        ("taskmaster-legacy.json", "taskmaster"),
        ("beads-issues.jsonl", "beads"),
    ],
)
def test_detect_from_content(name, fmt):
    det = detect(fixture(name))
    assert det.format == fmt and det.warnings == []


def test_detect_mixed_formats_says_which_and_why():
    text = "## Phase 1: A\n- [ ] T001 one\n- [ ] T002 two\n- [ ] T003 three\n\n- [ ] 1. Kiro style\n"
    det = detect(text)
    assert det.format == "speckit"
    assert det.warnings == [
        "the file mixes task formats: chose speckit (3 Spec Kit '- [ ] T001' task line(s)) over 1 Kiro '- [ ] 1.', "
        "because it has the most task lines; pass --format to choose another"
    ]
    assert detect("# Idea\n\nJust prose about an app.\n").format == "autonomous"
    with pytest.raises(SpecError, match="neither Task Master"):
        detect('{"name": "package.json"}')


# -- init: the real file store ------------------------------------------------------------------


def _init(project: Path, spec: Path, **kw):
    sections = {name: kw.pop(name) for name in ("execution", "initializer") if name in kw}
    config = parse_config(sections, root=project)
    return ProjectInitializer(config).initialize(spec, **kw)


def test_init_imports_statuses_ledger_and_warns_on_unknown_dependency(tmp_path: Path):
    spec = tmp_path / "tasks.json"
    spec.write_text(fixture("taskmaster-tagged.json"))
    result = _init(tmp_path, spec)
    assert result.format == "taskmaster" and result.method == "structured" and result.model_calls == 0
    assert "5: dependency '99' names no task; dropped" in result.warnings  # names both
    with FileProvider(tmp_path / ".ai-agents" / "state") as store:
        tasks = {t.key: t for t in store.list_tasks() if t.key != "META"}
    assert {k: t.status.value for k, t in tasks.items()} == {
        "1": "done", "2.1": "done", "2.2": "todo", "2.3": "todo", "3": "in_review", "4": "canceled", "5": "todo",
    }  # fmt: skip
    assert tasks["2.2"].dependencies == [tasks["1"].id, tasks["2.1"].id]
    ledger = read_ledger(tmp_path / ".ai-agents" / "state")
    assert ledger is not None and ledger["format"] == "taskmaster" and ledger["source"] == "tasks.json"
    assert ledger["groups"]["2"]["members"] == ["2.1", "2.2", "2.3"] and "2" not in ledger["tasks"]
    assert ledger["tasks"]["3"]["fields"]["status"] == "review"


def test_init_speckit_order_and_parallel_steps_under_phases(tmp_path: Path):
    spec = tmp_path / "tasks.md"
    spec.write_text(fixture("speckit-tasks.md"))
    _init(tmp_path, spec, execution={"ordering": "phases"})
    with FileProvider(tmp_path / ".ai-agents" / "state") as store:
        tasks = store.list_tasks()
        order = [t.key for t in scheduler.order(tasks) if not scheduler.is_meta(t)]
        assert order == [f"T{n:03d}" for n in range(1, 17)]
        ready = [d.task.key for d in scheduler.plan(tasks, ordering="phases") if d.ready]
        assert ready == ["T003", "T004"]  # the [P] pair of phase 1, side by side
        ready = [d.task.key for d in scheduler.plan(tasks, ordering="strict") if d.ready]
        assert ready == ["T003"]  # strict allows one at a time


def test_optional_tasks_not_claimed_unless_included(tmp_path: Path):
    spec = tmp_path / "tasks.md"
    spec.write_text("# P\n\n- [ ] 1. Required\n- [ ]* 2. Optional tests\n- [ ] 3. After\n")
    _init(tmp_path, spec, execution={"ordering": "strict"})
    with FileProvider(tmp_path / ".ai-agents" / "state") as store:
        claimed = []
        while (task := store.claim_next("w", 60)) is not None:
            claimed.append(task.key)
            store.release(task.id, task.claim.token, status=TaskStatus.DONE)
        assert claimed == ["1", "3"]  # the store's own candidate query skips the optional task
        assert store.find_task("2").status is TaskStatus.CANCELED
    # a re-init including optional work reopens it
    _init(tmp_path, spec, force=True, initializer={"include_optional": True})
    with FileProvider(tmp_path / ".ai-agents" / "state") as store:
        task = store.claim_next("w", 60)
        assert task is not None and task.key == "2" and task.labels == ["optional"]


def test_force_format_and_tag_errors(tmp_path: Path):
    spec = tmp_path / "tasks.md"
    spec.write_text(fixture("kiro-tasks.md"))
    plan = ProjectInitializer(parse_config({}, root=tmp_path)).plan(spec, format="kiro")
    assert plan.format == "kiro" and len(plan.tasks) == 10
    with pytest.raises(SpecError, match="--tag is for Task Master files"):
        ProjectInitializer(parse_config({}, root=tmp_path)).plan(spec, tag="master")
