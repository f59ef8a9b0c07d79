"""What only the local SQLite store promises: real processes racing, kill -9, files that
are not ours, migrations. The shared behaviour is in test_provider_contract.py."""

from __future__ import annotations

import collections
import hashlib
import os
import random
import signal
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from provider_processes import claimed_by, spawn, start_together, winners_by_task

from autonomous.errors import ConfigError, ProviderError, StoreCorrupt
from autonomous.providers import _sqlite as file_module
from autonomous.providers import get_provider
from autonomous.providers._sqlite import APPLICATION_ID, MIGRATIONS
from autonomous.providers.file import FILENAME, FileProvider
from autonomous.tasks import NewTask, TaskStatus


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- several processes ---------------------------------------------------------------------------------

CLAIM_UNTIL_EMPTY = """
    import sys
    import time
    from autonomous.providers.file import FileProvider
    store = FileProvider(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    while (task := store.claim_next(sys.argv[2], 600, "dependencies")) is not None:
        print(task.id, task.claim.token, flush=True)
        time.sleep(0.001)  # pacing, not synchronisation: lets slower starters join the race
"""


def test_concurrent_claimers_each_task_claimed_exactly_once(tmp_path):
    store = FileProvider(tmp_path)
    ids = [t.id for t in store.create_tasks([NewTask(f"Task number {i}") for i in range(200)]).created]
    workers = [f"w{n}" for n in range(8)]
    outputs = start_together(timeout=120, children=[spawn(CLAIM_UNTIL_EMPTY, str(tmp_path), w) for w in workers])

    claimed = claimed_by(workers, outputs)
    counts = collections.Counter(tid for got in claimed.values() for tid in got)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    final = {t.id: t for t in store.list_tasks()}
    for worker, got in claimed.items():
        for tid in got:
            assert final[tid].claim.worker_id == worker
            assert final[tid].status is TaskStatus.IN_PROGRESS


CLAIM_EACH = """
    import sys
    from autonomous.errors import ClaimConflict
    from autonomous.providers.file import FileProvider
    store = FileProvider(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for task_id in sys.argv[3:]:
        try:
            store.claim(task_id, sys.argv[2], 600)
            print("won", task_id, flush=True)
        except ClaimConflict:
            print("lost", task_id, flush=True)
"""


def test_racing_for_one_task_exactly_one_wins(tmp_path):
    store = FileProvider(tmp_path)
    ids = [t.id for t in store.create_tasks([NewTask(f"Task number {i}") for i in range(30)]).created]
    workers = [f"w{n}" for n in range(8)]
    outputs = start_together(timeout=120, children=[spawn(CLAIM_EACH, str(tmp_path), w, *ids) for w in workers])
    winners = winners_by_task(workers, outputs, ids)
    for tid in ids:
        assert len(winners[tid]) == 1, (tid, winners[tid])
        task = store.get_task(tid)
        assert (task.claim.worker_id, task.claim.token) == (winners[tid][0], 1)


def test_threads_get_their_own_connections(tmp_path):
    store = FileProvider(tmp_path)
    store.create_tasks([NewTask(f"Task number {i}") for i in range(40)])
    got: list[str] = []
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            while (task := store.claim_next(worker, 600, "dependencies")) is not None:
                got.append(task.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(got) == sorted(t.id for t in store.list_tasks())
    assert len(set(got)) == 40
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(tmp_path):
    store = FileProvider(tmp_path)
    (task,) = store.create_tasks([NewTask("Only task")]).created
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if store.claim_next("child", 600, "dependencies").id == task.id else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_task(task.id).claim.worker_id == "child"  # the parent's connection still works
    store.add_note(task.id, "parent again", "parent")


# -- kill -9 --------------------------------------------------------------------------------------------

WRITER = """
    import sys
    from autonomous.providers.file import FileProvider
    from autonomous.tasks import NewTask, TaskStatus
    store = FileProvider(sys.argv[1])
    round_ = sys.argv[2]
    anchor = store.create_tasks([NewTask("Anchor", key="anchor")]).tasks[0]
    i = 0
    while True:
        i += 1
        kind = i % 4
        if kind == 0:
            prefix = f"r{round_}-b{i}"
            store.create_tasks([NewTask(f"Batch {prefix} {j}", key=f"{prefix}-{j}") for j in range(50)])
            print("batch", prefix, flush=True)
        elif kind == 1:
            key = f"r{round_}-t{i}"
            store.create_tasks([NewTask(f"Single {key}", key=key)])
            print("task", key, flush=True)
        elif kind == 2:
            text = f"r{round_}-n{i}"
            store.add_note(anchor.id, text, "writer")
            print("note", text, flush=True)
        else:
            task = store.claim_next("writer", 600, "dependencies", exclude=[anchor.id])
            store.release(task.id, task.claim.token, status=TaskStatus.DONE)
            print("done", task.id, flush=True)
"""


def test_kill_9_at_any_moment_keeps_every_committed_write(tmp_path):
    rng = random.Random("kill-9")
    reported: list[list[str]] = []
    for round_ in range(15):
        child = spawn(WRITER, str(tmp_path), str(round_))
        for _ in range(rng.randint(1, 40)):  # let it commit a random number of writes, then kill
            line = child.stdout.readline()
            assert line.endswith("\n"), child.stderr.read()
            reported.append(line.split())
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        # lines printed before the kill were committed too; a cut-off last line was not reported
        reported += [line.split() for line in rest.splitlines(keepends=True) if line.endswith("\n")]

        raw = sqlite3.connect(tmp_path / FILENAME)
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        raw.close()
        store = FileProvider(tmp_path)
        tasks = {t.key: t for t in store.list_tasks()}
        by_id = {t.id: t for t in tasks.values()}
        notes = {n.text for n in tasks["anchor"].notes}
        for what, value in reported:
            if what == "batch":
                assert all(f"{value}-{j}" in tasks for j in range(50)), value
            elif what == "task":
                assert value in tasks
            elif what == "note":
                assert value in notes
            else:
                assert by_id[value].status is TaskStatus.DONE
        # no half batch: a batch is all there or not at all
        batch_sizes = collections.Counter(k.rsplit("-", 1)[0] for k in tasks if "-b" in k)
        assert set(batch_sizes.values()) <= {50}
        store.close()
    assert len(reported) > 15


# -- files that are not ours -------------------------------------------------------------------------


def assert_refused_untouched(state_dir: Path, match: str) -> None:
    path = state_dir / FILENAME
    before, listing = digest(path), sorted(os.listdir(state_dir))
    with pytest.raises(StoreCorrupt, match=match) as raised:
        FileProvider(state_dir)
    assert str(path) in str(raised.value)
    assert digest(path) == before
    assert sorted(os.listdir(state_dir)) == listing


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a database\n" * 100, bytes(random.Random(1).randrange(256) for _ in range(8192))],
    ids=["text", "random-bytes"],
)
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path, content):
    (tmp_path / FILENAME).write_bytes(content)
    assert_refused_untouched(tmp_path, "not a SQLite database")


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, what TEXT)")
    db.execute("INSERT INTO tasks (what) VALUES ('someone else''s data')")
    db.commit()
    db.close()
    assert_refused_untouched(tmp_path, "not an autonomous task store")


def test_another_applications_database_is_refused_and_left_alone(tmp_path):
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("PRAGMA application_id = 1234")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    assert_refused_untouched(tmp_path, "another application")


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    FileProvider(tmp_path).close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    assert_refused_untouched(tmp_path, f"schema version {len(MIGRATIONS) + 1} is newer")


def test_a_damaged_store_is_reported_as_corrupt(tmp_path):
    store = FileProvider(tmp_path)
    store.create_tasks([NewTask(f"Task with a long description {i}", description="x" * 500) for i in range(300)])
    store.close()
    path = tmp_path / FILENAME
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the header page
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match=str(path)):
        FileProvider(tmp_path).list_tasks()


def test_an_empty_file_becomes_a_new_store(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"")  # e.g. a first open killed before its first commit
    store = FileProvider(tmp_path)
    assert store.list_tasks() == []
    store.create_tasks([NewTask("One")])
    assert len(store.list_tasks()) == 1


# -- layout, pragmas, migrations -------------------------------------------------------------------


def test_layout_and_durability_settings(tmp_path):
    state_dir = tmp_path / "deep" / "state"
    store = FileProvider(state_dir)
    (task,) = store.create_tasks([NewTask("One")]).created
    assert task.id == "T-1"
    assert (state_dir / FILENAME).exists()
    db = store._file.db()
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_ids_are_short_sequential_and_never_reused(tmp_path):
    store = FileProvider(tmp_path)
    first = store.create_tasks([NewTask("One"), NewTask("Two")]).created
    store.create_tasks([NewTask("One")])  # exists: allocates nothing
    with pytest.raises(ProviderError):
        store.create_tasks([NewTask("Three", dependencies=["nope"])])  # rolled back
    (third,) = store.create_tasks([NewTask("Three")]).created
    assert [t.id for t in first] + [third.id] == ["T-1", "T-2", "T-3"]


def test_batch_order_is_kept_as_creation_order(tmp_path):
    store = FileProvider(tmp_path)
    created = store.create_tasks([NewTask(f"Untitled chore {i}") for i in range(12)]).created
    assert [t.created_at for t in created] == sorted({t.created_at for t in created})
    order = []
    while (task := store.claim_next("w", 60, "dependencies")) is not None:
        order.append(task.id)
    assert order == [t.id for t in created]  # T-10 does not jump ahead of T-2


def test_a_missing_dependency_makes_a_task_wait(tmp_path):
    store = FileProvider(tmp_path)
    a, b = store.create_tasks([NewTask("Alpha"), NewTask("Beta")]).created
    with store._file.write() as db:
        db.execute("INSERT INTO dependencies (task_id, depends_on, pos) VALUES (?, 'T-404', 0)", (a.id,))
    assert store.get_task(a.id).dependencies == ["T-404"]
    assert store.claim_next("w", 60, "dependencies").id == b.id
    assert store.claim_next("w", 60, "dependencies") is None


def test_reopening_does_not_migrate_again(tmp_path):
    FileProvider(tmp_path).create_tasks([NewTask("One")])
    again = FileProvider(tmp_path)
    assert [t.key for t in again.list_tasks()] == ["one"]


def test_pending_migrations_run_in_order_once(tmp_path, monkeypatch):
    FileProvider(tmp_path).create_tasks([NewTask("One")])
    monkeypatch.setattr(
        file_module,
        "MIGRATIONS",
        [*MIGRATIONS, "ALTER TABLE tasks ADD COLUMN estimate REAL;", "UPDATE tasks SET estimate = 1.5;"],
    )
    store = FileProvider(tmp_path)
    db = store._file.db()
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 2,)
    assert db.execute("SELECT key, estimate FROM tasks").fetchall() == [("one", 1.5)]
    store.create_tasks([NewTask("Two")])
    FileProvider(tmp_path)  # nothing left to run
    assert db.execute("SELECT key, estimate FROM tasks ORDER BY key").fetchall() == [("one", 1.5), ("two", None)]


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    FileProvider(tmp_path).create_tasks([NewTask("One")])
    monkeypatch.setattr(
        file_module,
        "MIGRATIONS",
        [*MIGRATIONS, "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);"],
    )
    with pytest.raises(ProviderError, match=f"migration to version {len(MIGRATIONS) + 1} failed"):
        FileProvider(tmp_path)
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone() == (0,)
    db.close()


# -- get_provider ------------------------------------------------------------------------------------


def test_get_provider_by_name(tmp_path):
    store = get_provider("file", state_dir=tmp_path / "s")
    assert isinstance(store, FileProvider)
    assert store.path == tmp_path / "s" / FILENAME


def test_get_provider_from_a_config_resolves_state_dir_against_the_project(tmp_path):
    config = SimpleNamespace(
        project_root=tmp_path, state_provider=SimpleNamespace(type="file", state_dir=".ai-agents/state")
    )
    store = get_provider(config)
    assert store.kind == "file"
    assert store.path == tmp_path / ".ai-agents" / "state" / FILENAME
    absolute = SimpleNamespace(state_provider=SimpleNamespace(type="file", state_dir=str(tmp_path / "abs")))
    assert get_provider(absolute).path == tmp_path / "abs" / FILENAME


def test_get_provider_finds_the_project_from_the_config_file(tmp_path):
    config = SimpleNamespace(
        source=tmp_path / ".ai-agents" / "config.yml", state_provider=SimpleNamespace(type="file", state_dir="st")
    )
    assert get_provider(config).path == tmp_path / "st" / FILENAME


def test_get_provider_refuses_unknown_types(tmp_path):
    with pytest.raises(ConfigError, match="nosuch"):
        get_provider("nosuch")
    with pytest.raises(ConfigError, match=r"state_provider\.type"):
        get_provider(SimpleNamespace(project_root=tmp_path, state_provider=SimpleNamespace(type="nosuch")))


def test_get_provider_uses_the_real_configuration(tmp_path):
    from autonomous.config import load_config

    config_file = tmp_path / ".ai-agents" / "config.yml"
    config_file.parent.mkdir()
    config_file.write_text("state_provider:\n  type: file\n  state_dir: my-state\n")
    config = load_config(config_file)
    with get_provider(config) as store:
        assert store.path == config.state_dir / FILENAME
        assert store.path.parent.resolve() == (tmp_path / "my-state").resolve()


def test_claims_and_counts_walk_the_ordered_index_never_sort(tmp_path):
    """The store's reading and claiming queries stay O(1) in the plan's size: SQLite's own
    query plan for each walks the partial index of open tasks in scheduling order, with no
    sort of every open task (another index, such as the status counts', must not win)."""
    store = FileProvider(tmp_path)
    store.create_tasks([NewTask(f"[A-{i // 50 + 1}.{i % 50 + 1}] t{i}") for i in range(300)] + [NewTask("ARK-1 x")])
    sql: list[str] = []
    with store._file.read() as db:
        db.set_trace_callback(sql.append)
        for ordering in ("strict", "phases", "dependencies"):
            FileProvider._candidate(db, ordering, "2000-01-01", "[]")
            FileProvider._ready_count(db, ordering, "2000-01-01")
        db.set_trace_callback(None)
        plans = {q: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {q}", {"now": "x", "exclude": "[]",
                                                                                "head": "T-1", "phase": 1})]
                 for q in sql if "LIMIT 1" in q and "kind >=" in q}  # fmt: skip
    assert plans
    for query, plan in plans.items():
        assert any("tasks_open_order" in step for step in plan), (query, plan)
        assert not any("TEMP B-TREE" in step for step in plan), (query, plan)
    store.close()
