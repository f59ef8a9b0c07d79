"""What only the PostgreSQL store promises: real processes racing on one queue, concurrent
migrations, schemas that are not ours, dropped connections, errors that name the server
but never its password. The shared behaviour is in test_provider_contract.py.

These tests need the server on 127.0.0.1:5432 (``AUTONOMOUS_TEST_POSTGRES_DSN`` to change
it); when it does not answer they fail, saying so: CI has the server. Each test works in
its own schema, dropped afterwards, so tests are isolated and may run in parallel.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import psycopg
import pytest
from provider_processes import claimed_by, spawn, start_together, winners_by_task
from psycopg import sql

from autonomous.errors import AutonomousError, ConfigError, ProviderError, StoreCorrupt
from autonomous.providers import _pg as postgres_module
from autonomous.providers import get_provider
from autonomous.providers._pg import MIGRATIONS
from autonomous.providers.postgres import PostgresProvider
from autonomous.tasks import NewTask, TaskStatus

pytestmark = pytest.mark.postgres

DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def server() -> str:
    """The test server's DSN; fails (never skips) when the server does not answer."""
    try:
        psycopg.connect(DSN, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL does not answer at {DSN} ({exc}); start it or set AUTONOMOUS_TEST_POSTGRES_DSN")
    return DSN


def admin() -> psycopg.Connection:
    return psycopg.connect(DSN, autocommit=True)


@pytest.fixture
def schema(server: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with admin() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def store(schema: str) -> Iterator[PostgresProvider]:
    provider = PostgresProvider(DSN, schema=schema)
    yield provider
    provider.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backends(conn: psycopg.Connection, schema: str, waiting: bool = False) -> list[int]:
    """The provider's server processes (by its application_name), optionally only those
    waiting for a lock."""
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    return [r[0] for r in conn.execute(query, (f"autonomous:{schema}",))]


def wait_for(condition, what: str, timeout: float = 30.0):
    """Poll a server-side condition (no sleeping: each poll is a query) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
    pytest.fail(f"timed out waiting for {what}")


# -- several processes ---------------------------------------------------------------------------------

CLAIM_UNTIL_EMPTY = """
    import sys
    from autonomous.providers.postgres import PostgresProvider
    store = PostgresProvider(sys.argv[1], schema=sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    while (task := store.claim_next(sys.argv[3], 600, "dependencies")) is not None:
        print(task.id, task.claim.token, flush=True)
    store.close()
"""


def test_sixteen_processes_claim_a_thousand_tasks_each_exactly_once(store, schema):
    ids = [t.id for t in store.create_tasks([NewTask(f"Task number {i}") for i in range(1000)]).created]
    workers = [f"w{n}" for n in range(16)]
    outputs = start_together([spawn(CLAIM_UNTIL_EMPTY, DSN, schema, w) for w in workers])

    claimed = claimed_by(workers, outputs)
    counts = collections.Counter(tid for got in claimed.values() for tid in got)
    assert sorted(counts) == sorted(ids)  # every task claimed ...
    assert set(counts.values()) == {1}  # ... exactly once
    assert sum(1 for got in claimed.values() if got) > 1  # the race really was a race
    final = {t.id: t for t in store.list_tasks()}
    for worker, got in claimed.items():
        for tid in got:
            assert (final[tid].status, final[tid].claim.worker_id, final[tid].claim.token) == (
                TaskStatus.IN_PROGRESS,
                worker,
                1,
            )


CLAIM_EACH = """
    import sys
    from autonomous.errors import ClaimConflict
    from autonomous.providers.postgres import PostgresProvider
    store = PostgresProvider(sys.argv[1], schema=sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    for task_id in sys.argv[4:]:
        try:
            store.claim(task_id, sys.argv[3], 600)
            print("won", task_id, flush=True)
        except ClaimConflict:
            print("lost", task_id, flush=True)
    store.close()
"""


def test_racing_for_one_named_task_exactly_one_wins(store, schema):
    ids = [t.id for t in store.create_tasks([NewTask(f"Task number {i}") for i in range(30)]).created]
    workers = [f"w{n}" for n in range(6)]
    outputs = start_together([spawn(CLAIM_EACH, DSN, schema, w, *ids) for w in workers])
    winners = winners_by_task(workers, outputs, ids)
    for tid in ids:
        assert len(winners[tid]) == 1, (tid, winners[tid])
        assert store.get_task(tid).claim.worker_id == winners[tid][0]


# -- migrations ---------------------------------------------------------------------------------------

OPEN_STORE = """
    import sys
    from autonomous.providers.postgres import PostgresProvider
    print("ready", flush=True)
    sys.stdin.readline()
    PostgresProvider(sys.argv[1], schema=sys.argv[2]).close()
"""


def versions(schema: str) -> list[tuple[int, object]]:
    with admin() as conn:
        return conn.execute(
            sql.SQL("SELECT version, applied_at FROM {}.schema_version ORDER BY version").format(sql.Identifier(schema))
        ).fetchall()


def test_processes_migrating_at_once_migrate_once(schema):
    start_together([spawn(OPEN_STORE, DSN, schema) for _ in range(4)])
    applied = versions(schema)
    assert [v for v, _ in applied] == list(range(1, len(MIGRATIONS) + 1))
    with admin() as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    assert {"tasks", "dependencies", "notes", "sessions", "meta", "schema_version"} <= tables
    # opening again changes nothing
    PostgresProvider(DSN, schema=schema).close()
    assert versions(schema) == applied


def test_pending_migrations_run_in_order_once(store, schema, monkeypatch):
    store.create_tasks([NewTask("One")])
    monkeypatch.setattr(
        postgres_module,
        "MIGRATIONS",
        [*MIGRATIONS, "ALTER TABLE tasks ADD COLUMN estimate real;", "UPDATE tasks SET estimate = 1.5;"],
    )
    again = PostgresProvider(DSN, schema=schema)
    assert again.schema_version() == len(MIGRATIONS) + 2
    assert again._sql("SELECT key, estimate FROM tasks") == [("one", 1.5)]
    again.create_tasks([NewTask("Two")])
    PostgresProvider(DSN, schema=schema).close()  # nothing left to run
    assert again._sql("SELECT key, estimate FROM tasks ORDER BY key") == [("one", 1.5), ("two", None)]
    again.close()


def test_a_failing_migration_changes_nothing(store, schema, monkeypatch):
    store.create_tasks([NewTask("One")])
    monkeypatch.setattr(
        postgres_module, "MIGRATIONS", [*MIGRATIONS, "CREATE TABLE half_done (x int); INSERT INTO nowhere VALUES (1);"]
    )
    with pytest.raises(ProviderError, match=f"migration to version {len(MIGRATIONS) + 1} failed"):
        PostgresProvider(DSN, schema=schema)
    assert [v for v, _ in versions(schema)] == list(range(1, len(MIGRATIONS) + 1))
    assert store._sql("SELECT to_regclass('half_done')") == [(None,)]


def test_a_newer_schema_is_refused_and_left_alone(store, schema):
    store.create_tasks([NewTask("One")])
    store._sql("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    before = versions(schema)
    with pytest.raises(StoreCorrupt, match=f"version {len(MIGRATIONS) + 1}, newer than") as raised:
        PostgresProvider(DSN, schema=schema)
    assert "upgrade autonomous" in str(raised.value)
    assert versions(schema) == before
    assert [t.key for t in store.list_tasks()] == ["one"]


def test_a_schema_that_is_not_ours_is_refused_and_left_alone(schema):
    with admin() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.tasks (id int, what text)").format(sql.Identifier(schema)))
    with pytest.raises(StoreCorrupt, match="not an autonomous task store"):
        PostgresProvider(DSN, schema=schema)
    with admin() as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
    assert tables == ["tasks"]


def test_schemas_keep_projects_apart(schema):
    other = f"{schema}_b"
    first = PostgresProvider(DSN, schema=schema)
    second = PostgresProvider(DSN, schema=other, drop_schema_on_close=True)
    try:
        first.create_tasks([NewTask("Only in the first")])
        second.create_tasks([NewTask("Only in the second")])
        assert [t.key for t in first.list_tasks()] == ["only-in-the-first"]
        assert [t.key for t in second.list_tasks()] == ["only-in-the-second"]
        with admin() as conn:
            public = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'tasks' AND schemaname = 'public'")
            assert public.fetchone() == (0,)
    finally:
        first.close()
        second.close()


# -- dropped connections -------------------------------------------------------------------------------


def test_connections_terminated_between_operations_are_replaced(store, schema):
    ids = [t.id for t in store.create_tasks([NewTask(f"Task number {i}") for i in range(60)]).created]
    got = []
    with admin() as conn:
        for n in range(60):
            if n % 5 == 0:  # kill every connection the provider holds, waiting until they are gone
                pids = backends(conn, schema)
                assert pids
                for pid in pids:
                    conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            task = store.claim_next("w", 600, "dependencies")
            store.add_note(task.id, f"note {n}", "w", token=task.claim.token)
            got.append(task.id)
    assert sorted(got) == sorted(ids)
    tasks = store.list_tasks()
    assert all(t.claim.token == 1 and len(t.notes) == 1 for t in tasks)  # nothing applied twice


def test_a_claim_whose_backend_is_terminated_mid_statement_is_retried_once(store, schema):
    (task,) = store.create_tasks([NewTask("Contended")]).created
    result: list[object] = []
    with admin() as holder, admin() as watcher:
        holder.execute("BEGIN")
        holder.execute(
            sql.SQL("SELECT 1 FROM {}.tasks WHERE id = %s FOR UPDATE").format(sql.Identifier(schema)), (task.id,)
        )

        def claim() -> None:
            try:
                result.append(store.claim(task.id, "w1", 600))
            except BaseException as exc:  # reported below
                result.append(exc)

        thread = threading.Thread(target=claim)
        thread.start()
        (first,) = wait_for(lambda: backends(watcher, schema, waiting=True), "the claim to wait for the row lock")
        watcher.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
        # the retry: a new backend, waiting for the same lock again
        wait_for(lambda: [p for p in backends(watcher, schema, waiting=True) if p != first], "the retried claim")
        holder.execute("ROLLBACK")
        thread.join(timeout=60)
    (claimed,) = result
    assert not isinstance(claimed, BaseException), claimed
    assert (claimed.claim.worker_id, claimed.claim.token) == ("w1", 1)
    assert store.get_task(task.id).claim.token == 1


def test_an_ambiguous_commit_is_resolved_by_reading_back(store, monkeypatch):
    """The claim commits but the answer is lost with the connection: the retry finds the
    claim is ours instead of claiming a second task."""
    store.create_tasks([NewTask("Alpha"), NewTask("Beta")])
    real = store._claim_next_work
    calls = []

    def commit_then_drop(conn, *args):
        answer = real(conn, *args)
        calls.append(answer)
        conn.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "_claim_next_work", commit_then_drop)
    task = store.claim_next("w1", 600, "dependencies")
    assert len(calls) == 1  # not run again
    assert (task.id, task.claim.token) == (calls[0][1].id, 1)
    in_progress = store.list_tasks([TaskStatus.IN_PROGRESS])
    assert [t.id for t in in_progress] == [task.id]


def test_a_write_that_did_not_commit_is_run_again(store, monkeypatch):
    (task,) = store.create_tasks([NewTask("Alpha")]).created
    token = store.claim(task.id, "w1", 600).claim.token
    real = store._db.run
    dropped = []

    def drop_first(work, **kw):
        def flaky(conn):
            if not dropped:
                dropped.append(conn.info.backend_pid)
                conn.close()  # before anything was sent: nothing committed
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return work(conn)

        return real(flaky, **kw)

    monkeypatch.setattr(store._db, "run", drop_first)
    done = store.release(task.id, token, status=TaskStatus.DONE, note="finished", cost_usd=0.5, turns=3)
    monkeypatch.undo()
    assert dropped
    assert (done.status, done.cost_usd, done.turns, [n.text for n in done.notes]) == (
        TaskStatus.DONE,
        0.5,
        3,
        ["finished"],
    )
    assert store.get_task(task.id) == done


# -- configuration and errors --------------------------------------------------------------------------


def test_server_unreachable_names_host_and_port_in_one_line():
    port = closed_port()
    with pytest.raises(ProviderError) as raised:
        PostgresProvider(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=3)
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "cannot reach PostgreSQL" in message
    assert "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no chained traceback


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres:S3cret-pass-word@127.0.0.1:{port}/test",
        "host=127.0.0.1 port={port} user=postgres password=S3cret-pass-word dbname=test",
        "postgresql://postgres:S3cret-pass-word@127.0.0.1:5432/no_such_database_here",
        "postgresql://postgres:S3cret-pass-word@127.0.0.1:5432/test?no_such_option=1",
        "host=127.0.0.1 password=S3cret-pass-word port=5432 'unbalanced",
    ],
    ids=["url-closed-port", "keywords-closed-port", "missing-database", "bad-option", "malformed"],
)
def test_the_dsn_password_never_appears_in_errors(server, dsn):
    with pytest.raises(AutonomousError) as raised:
        PostgresProvider(dsn.format(port=closed_port()), connect_timeout=3)
    assert "S3cret-pass-word" not in str(raised.value)
    assert "S3cret-pass-word" not in repr(raised.value)


def test_missing_dsn_names_the_key_and_the_variable(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"state_provider\.dsn.*DATABASE_URL"):
        PostgresProvider()
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        get_provider("postgres")


def test_dsn_from_database_url_and_env_references(schema, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", DSN)
    store = PostgresProvider(schema=schema)
    store.close()
    monkeypatch.setenv("MY_PG", DSN)
    store = PostgresProvider("${MY_PG}", schema=schema)
    store.close()
    monkeypatch.delenv("MY_PG")
    with pytest.raises(ConfigError, match="MY_PG"):
        PostgresProvider("${MY_PG}", schema=schema)


def test_bad_schema_names_are_refused(server):
    with pytest.raises(ConfigError, match=r"state_provider\.schema"):
        PostgresProvider(DSN, schema='x"; DROP TABLE tasks; --')


def test_missing_psycopg_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(postgres_module, "_IMPORT_ERROR", ImportError("No module named 'psycopg'"))
    with pytest.raises(ProviderError, match=r"pip install 'autonomous-runner\[postgres\]'"):
        PostgresProvider(DSN)


def test_get_provider_by_name_and_from_a_config(schema):
    store = get_provider("postgres", dsn=DSN, schema=schema)
    assert isinstance(store, PostgresProvider)
    assert (store.kind, store.schema, store.where) == ("postgres", schema, "127.0.0.1:5432/test")
    store.close()
    config = SimpleNamespace(state_provider=SimpleNamespace(type="postgres", dsn=DSN, state_dir=".ai-agents/state"))
    store = get_provider(config, schema=schema)
    assert store.schema == schema
    store.create_tasks([NewTask("One")])
    assert [t.key for t in store.list_tasks()] == ["one"]
    store.close()


def test_server_time_is_the_default_clock(store):
    (task,) = store.create_tasks([NewTask("One")]).created
    claimed = store.claim(task.id, "w1", 60)
    (server_now,) = store._sql("SELECT now()")[0]
    assert abs((claimed.claim.expires_at - server_now).total_seconds() - 60) < 5
    assert claimed.claim.live(server_now)


def test_a_closed_provider_says_so(schema):
    store = PostgresProvider(DSN, schema=schema)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(ProviderError, match="closed"):
        store.list_tasks()
