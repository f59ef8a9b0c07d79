"""init/apply.py and `autonomous init` (cli/init.py): a structured spec -> tasks, META and
marker; --force, --prune, --dry-run; crash safety; bad input; the configuration."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from init_project import EXAMPLES, SPEC, initialize, keys_in_store, make_config, open_store, state_dir

from autonomous.cli import init as init_cli
from autonomous.cli.init import run_init
from autonomous.errors import AlreadyInitialized, SpecError
from autonomous.init import apply as init_apply
from autonomous.init.apply import MARKER_NAME
from autonomous.providers.file import FileProvider
from autonomous.tasks import Priority, TaskStatus

# -- structured specs --------------------------------------------------------------------------


def test_structured_spec_creates_tasks_meta_and_marker(project: Path, spec: Path):
    result = initialize(project, spec)

    assert result.method == "structured" and result.model_calls == 0 and result.cost_usd == 0
    assert result.tasks_created == 5
    assert [t.key for t in result.tasks] == ["SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"]
    with open_store(project) as store:
        tasks = {t.key: t for t in store.list_tasks()}
        meta = store.meta_task()
    assert set(tasks) == {"META", "SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"}
    assert tasks["SHOP-1.1"].title == "[SHOP-1.1] Create the product model"
    assert tasks["SHOP-1.1"].priority is Priority.HIGH
    assert tasks["SHOP-1.1"].acceptance_criteria == ["a product has a name and a price in cents"]
    assert tasks["SHOP-1.1"].test_steps == ["pytest tests/test_product.py"]
    assert tasks["SHOP-2.1"].dependencies == [tasks["SHOP-1.2"].id]

    assert meta is not None and meta.title == "META: Shop" and "meta" in meta.labels
    assert str(spec) in meta.description and "Tasks: 5" in meta.description and "Created: " in meta.description
    assert "Phase 1: Catalogue: 3 tasks" in meta.description

    marker = json.loads((project / MARKER_NAME).read_text())
    assert marker["initialized"] is True
    assert marker["project_name"] == "Shop"
    assert marker["provider"]["type"] == "file"
    assert marker["provider"]["meta_task_id"] == meta.id
    assert {"team_id", "project_id", "repo"} <= set(marker["provider"])
    assert marker["spec"]["path"] == "spec.md"  # relative to the project
    assert len(marker["spec"]["sha256"]) == 64
    assert marker["task_count"] == 5
    assert marker["created_at"]
    assert not [p for p in project.iterdir() if p.name.startswith(f".{MARKER_NAME}.")]  # no temp file left


def test_project_name_argument_wins_and_directory_name_is_the_fallback(project: Path):
    spec = project / "plain.md"
    spec.write_text("- [A-1.1] One\n- [A-1.2] Two\n")
    result = initialize(project, spec)
    assert result.project_name == "proj"
    other = project.parent / "other"
    other.mkdir()
    assert initialize(other, spec, project_name="My App").project_name == "My App"


def test_second_init_without_force_refuses_and_changes_nothing(project: Path, spec: Path):
    initialize(project, spec)
    marker_before = (project / MARKER_NAME).read_bytes()
    spec.write_text(SPEC + "- [SHOP-2.3] Send a receipt\n")
    with pytest.raises(AlreadyInitialized, match=MARKER_NAME):
        initialize(project, spec)
    err = io.StringIO()
    code = run_init(spec, config=make_config(project), out=io.StringIO(), err=err)
    assert code == 2
    assert err.getvalue().startswith("error: project already initialized") and MARKER_NAME in err.getvalue()
    assert err.getvalue().count("\n") == 1
    assert (project / MARKER_NAME).read_bytes() == marker_before
    assert "SHOP-2.3" not in keys_in_store(project)


def test_force_applies_the_edited_spec_by_key(project: Path, spec: Path):
    initialize(project, spec)
    with open_store(project) as store:
        t11 = store.find_task("SHOP-1.1")
        store.update_task(t11.id, status=TaskStatus.DONE)
        store.add_note(t11.id, "implemented in models.py", "runner")
        t12 = store.find_task("SHOP-1.2")
        store.update_task(t12.id, status=TaskStatus.BLOCKED)
        before = {t.key: t for t in store.list_tasks()}

    edited = (
        SPEC.replace("- [SHOP-1.2] List products", "- [SHOP-1.2] List products with prices\n  - Priority: urgent")
        .replace("- [SHOP-2.2] Pay with a card\n", "")
        .replace(
            "- [SHOP-2.1] Add a cart\n  - Depends on: SHOP-1.2", "- [SHOP-2.1] Add a cart\n  - Depends on: SHOP-1.2a"
        )
        + "- [SHOP-2.3] Send a receipt\n  - Depends on: SHOP-2.1\n"
    )
    spec.write_text(edited)
    result = initialize(project, spec, force=True)

    assert [t.key for t in result.created] == ["SHOP-2.3"]
    assert sorted(t.key for t in result.updated) == ["SHOP-1.2", "SHOP-2.1"]
    assert sorted(t.key for t in result.unchanged) == ["SHOP-1.1", "SHOP-1.2a"]
    assert [t.key for t in result.not_in_spec] == ["SHOP-2.2"]
    assert result.canceled == []
    assert any("SHOP-2.2 is no longer in the spec" in w for w in result.warnings)

    with open_store(project) as store:
        after = {t.key: t for t in store.list_tasks()}
    assert sorted(after) == sorted([*before, "SHOP-2.3"])  # nothing duplicated, nothing deleted
    assert after["SHOP-1.1"].status is TaskStatus.DONE
    assert [n.text for n in after["SHOP-1.1"].notes] == ["implemented in models.py"]
    assert after["SHOP-1.1"].updated_at == before["SHOP-1.1"].updated_at  # untouched
    assert after["SHOP-1.2"].title == "[SHOP-1.2] List products with prices"
    assert after["SHOP-1.2"].priority is Priority.URGENT
    assert after["SHOP-1.2"].status is TaskStatus.BLOCKED  # never status
    assert after["SHOP-2.1"].dependencies == [after["SHOP-1.2a"].id]
    assert after["SHOP-2.3"].dependencies == [after["SHOP-2.1"].id]
    assert after["SHOP-2.2"].status is TaskStatus.TODO
    marker = json.loads((project / MARKER_NAME).read_text())
    assert marker["task_count"] == 5
    meta = after["META"]
    assert "Tasks: 5" in meta.description
    assert len(meta.notes) == 2  # one note per init run

    # --prune cancels what left the spec, with a note; running again changes nothing more
    pruned = initialize(project, spec, force=True, prune=True)
    assert [t.key for t in pruned.canceled] == ["SHOP-2.2"]
    assert pruned.tasks_created == 0 and pruned.updated == []
    with open_store(project) as store:
        t22 = store.find_task("SHOP-2.2")
        total = len(store.list_tasks())
    assert t22.status is TaskStatus.CANCELED and "--prune" in t22.notes[-1].text
    assert total == 7


def test_new_tasks_reopen_a_meta_that_said_everything_was_done(project: Path, spec: Path):
    """A finished project whose spec gains a task: META goes back to todo, so the tracker
    does not read "done" while work is open; a re-init that adds nothing leaves it done."""
    initialize(project, spec)
    with open_store(project) as store:
        for task in store.list_tasks():
            store.update_task(task.id, status=TaskStatus.DONE)
    initialize(project, spec, force=True)
    with open_store(project) as store:
        assert store.find_task("META").status is TaskStatus.DONE
    spec.write_text(SPEC + "- [SHOP-2.3] Send a receipt\n")
    initialize(project, spec, force=True)
    with open_store(project) as store:
        assert store.find_task("META").status is TaskStatus.TODO
        assert store.find_task("SHOP-2.3").status is TaskStatus.TODO


def test_force_does_not_take_a_claimed_task_from_its_worker(project: Path, spec: Path):
    initialize(project, spec)
    with open_store(project) as store:
        claimed = store.claim(store.find_task("SHOP-1.1").id, "worker-1", 600)
    spec.write_text(SPEC.replace("Create the product model", "Create the product model v2"))
    result = initialize(project, spec, force=True)
    assert any("SHOP-1.1 is claimed" in w for w in result.warnings)
    with open_store(project) as store:
        task = store.find_task("SHOP-1.1")
    assert task.title == "[SHOP-1.1] Create the product model"
    assert task.claim is not None and task.claim.token == claimed.claim.token


def test_a_large_init_prints_the_first_rows_and_the_count(project: Path):
    spec = project / "spec.md"
    spec.write_text("# Big\n\n## Phase 1\n" + "".join(f"- [BIG-1.{n}] task {n}\n" for n in range(1, 251)))
    out = io.StringIO()
    assert run_init(spec, no_model=True, config=make_config(project), out=out, err=io.StringIO()) == 0
    lines = out.getvalue().splitlines()
    rows = [line for line in lines if line.startswith("created ")]
    assert len(rows) == init_cli.TABLE_ROWS and rows[0].split()[1] == "BIG-1.1"
    assert "... and 50 more (`autonomous tasks` lists them; --json prints every one)" in lines
    assert any(line.startswith("Created 250 task(s)") for line in lines)
    with open_store(project) as store:
        assert store.count_by_status().total == 250
    # asyncio formats the result of the task it ran: the results' reprs are summaries
    result = initialize(project, spec, force=True)
    assert repr(result) == "InitResult('Big', structured, dry_run=False, created=0, updated=0, unchanged=250)"


def test_dry_run_touches_nothing(project: Path, spec: Path):
    out = io.StringIO()
    assert run_init(spec, dry_run=True, config=make_config(project), out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "create  SHOP-1.2a" in text and "Would create 5 task(s)" in text and "nothing was written" in text
    assert sorted(p.name for p in project.iterdir()) == ["spec.md"]

    out = io.StringIO()
    assert run_init(spec, dry_run=True, as_json=True, config=make_config(project), out=out) == 0
    data = json.loads(out.getvalue())
    assert data["schema_version"] == 1 and data["dry_run"] is True and data["tasks_created"] == 5
    assert [t["key"] for t in data["created"]] == ["SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"]
    assert data["created"][0]["phase"] == "Phase 1: Catalogue"
    assert sorted(p.name for p in project.iterdir()) == ["spec.md"]


def test_dry_run_with_force_shows_the_changes_and_writes_nothing(project: Path, spec: Path):
    initialize(project, spec)
    marker = (project / MARKER_NAME).read_bytes()
    spec.write_text(SPEC.replace("Pay with a card", "Pay by card") + "- [SHOP-2.3] Send a receipt\n")
    result = initialize(project, spec, force=True, dry_run=True)
    assert [t.key for t in result.to_create] == ["SHOP-2.3"]
    assert [t.key for t in result.to_update] == ["SHOP-2.2"]
    assert (project / MARKER_NAME).read_bytes() == marker
    assert "SHOP-2.3" not in keys_in_store(project)
    with open_store(project) as store:
        assert store.find_task("SHOP-2.2").title == "[SHOP-2.2] Pay with a card"


def test_json_output_of_a_real_run(project: Path, spec: Path):
    out = io.StringIO()
    assert run_init(spec, as_json=True, config=make_config(project), out=out) == 0
    data = json.loads(out.getvalue())
    assert data["tasks_created"] == 5 and data["method"] == "structured"
    assert data["created"][0]["status"] == "todo" and data["created"][0]["id"]
    assert data["meta"]["title"] == "META: Shop"
    assert data["marker"] == str(project / MARKER_NAME)


# -- crash safety ------------------------------------------------------------------------------

CRASH_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from autonomous.init import apply
    from autonomous.providers import file as file_provider

    where = sys.argv[3]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "before-marker":
        apply.write_marker = die  # tasks are committed; the marker is never written
    else:  # inside the batch's transaction, after the INSERTs, before COMMIT
        file_provider.FileProvider._bump_graph = staticmethod(die)
    apply.ProjectInitializer(project_dir=sys.argv[1]).initialize(sys.argv[2])
    """
)


def crash_child(project: Path, spec: Path, where: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(project), str(spec), where],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_killed_between_tasks_and_marker_then_rerun_creates_no_duplicates(project: Path, spec: Path):
    proc = crash_child(project, spec, "before-marker")
    assert proc.returncode == -9, proc.stderr
    assert not (project / MARKER_NAME).exists()
    assert keys_in_store(project) == ["META", "SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"]

    result = initialize(project, spec)  # no marker: no --force needed
    assert result.tasks_created == 0 and len(result.unchanged) == 5
    assert keys_in_store(project) == ["META", "SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"]
    assert json.loads((project / MARKER_NAME).read_text())["provider"]["meta_task_id"] == result.meta.id


def test_killed_inside_the_batch_write_leaves_nothing_then_rerun_creates_everything(project: Path, spec: Path):
    proc = crash_child(project, spec, "inside-batch")
    assert proc.returncode == -9, proc.stderr
    assert keys_in_store(project) == []  # the batch is one transaction: all or nothing
    result = initialize(project, spec)
    assert result.tasks_created == 5
    assert keys_in_store(project) == ["META", "SHOP-1.1", "SHOP-1.2", "SHOP-1.2a", "SHOP-2.1", "SHOP-2.2"]


def test_injected_failure_before_marker_then_rerun(project: Path, spec: Path, monkeypatch: pytest.MonkeyPatch):
    def boom(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(init_apply, "write_marker", boom)
    with pytest.raises(OSError, match="disk full"):
        initialize(project, spec)
    monkeypatch.undo()
    assert initialize(project, spec).tasks_created == 0
    assert len(keys_in_store(project)) == 6


# -- bad input and exit codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.md", "not found"),
        (lambda d: _write(d / "empty.md", b""), "empty"),
        (lambda d: _write(d / "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00"), "binary"),
        (lambda d: d, "directory"),
        (lambda d: _write(d / "latin.md", "# Caf\u00e9\n".encode("latin-1")), "not UTF-8"),
    ],
    ids=["missing", "empty", "binary", "directory", "non-utf8"],
)
def test_bad_specs_exit_2_with_one_line(project: Path, make, message: str):
    path = make(project)
    err = io.StringIO()
    assert run_init(path, config=make_config(project), out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith("error: ") and message in err.getvalue() and err.getvalue().count("\n") == 1
    assert not (project / MARKER_NAME).exists() and not (project / ".ai-agents").exists()
    with pytest.raises(SpecError):
        initialize(project, path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_no_model_refuses_free_form_specs(project: Path):
    err = io.StringIO()
    code = run_init(EXAMPLES / "freeform-spec.md", no_model=True, config=make_config(project), err=err)
    assert code == 2 and "free-form" in err.getvalue() and "--no-model" in err.getvalue()
    assert list(project.iterdir()) == []


def test_no_model_and_model_only_exclude_each_other(project: Path, spec: Path):
    err = io.StringIO()
    assert run_init(spec, no_model=True, model_only=True, config=make_config(project), err=err) == 2
    assert "exclude each other" in err.getvalue()


def test_example_spec_initializes_offline(project: Path):
    result = initialize(project, EXAMPLES / "todo-api" / "spec.md")
    assert result.project_name == "Todo API" and result.method == "structured"
    assert 8 <= result.tasks_created <= 12 and result.warnings == []


# -- configuration -----------------------------------------------------------------------------------


def test_public_api_with_initializer_config(project: Path, spec: Path):
    from autonomous import InitializerConfig
    from autonomous import ProjectInitializer as Public

    config = InitializerConfig(model="opus", backend="claude-code", project_dir=project)
    result = Public(config).initialize(spec, project_name="My App")
    assert result.tasks_created == 5
    assert (project / MARKER_NAME).exists() and state_dir(project).is_dir()
    assert json.loads((project / MARKER_NAME).read_text())["project_name"] == "My App"


def test_run_init_reads_the_config_file(project: Path, spec: Path):
    (project / ".ai-agents").mkdir()
    (project / ".ai-agents" / "config.yml").write_text('state_provider:\n  type: file\n  state_dir: "store"\n')
    out = io.StringIO()
    assert run_init(spec, config_path=project / ".ai-agents" / "config.yml", out=out, err=io.StringIO()) == 0
    assert "Created 5 task(s) for 'Shop'" in out.getvalue()
    marker = json.loads((project / MARKER_NAME).read_text())
    assert marker["provider"]["state_dir"] == str(project / "store")
    with FileProvider(project / "store") as store:
        assert len(store.list_tasks()) == 6


def test_bad_config_file_is_exit_2(project: Path, spec: Path):
    (project / ".ai-agents").mkdir()
    (project / ".ai-agents" / "config.yml").write_text("autonomous:\n  backend: gpt\n")
    err = io.StringIO()
    assert run_init(spec, config_path=project / ".ai-agents" / "config.yml", err=err) == 2
    assert "autonomous.backend" in err.getvalue()
    assert not (project / MARKER_NAME).exists()
