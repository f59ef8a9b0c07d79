"""The shared store (``state_provider.type: postgres``): tasks in a PostgreSQL schema, for
teams whose agents run on many machines against one queue.

Configuration: ``state_provider.dsn`` (a libpq connection string or URL), else
``$DATABASE_URL``; ``schema`` (default ``autonomous``) holds every object, so several
projects (or test runs) share one database without seeing each other. Needs the
``postgres`` extra (psycopg 3 and psycopg-pool).

The guarantees, and how each is obtained:

* **One owner per task.** ``claim_next`` is one statement: it finds the scheduler's
  first ready task in SQL (``SELECT ... FOR UPDATE SKIP LOCKED``) and updates it in the
  same statement. Row locks decide races: a claimer never waits for, and never takes,
  a row another claimer holds, and PostgreSQL re-checks the readiness condition on the
  newest version of the row it locks, so of N concurrent claimers exactly one gets a
  task. ``claim`` (one named task) is a conditional ``UPDATE ... WHERE <takeable>``.
* **Fencing.** ``fence`` is a per-task counter that only grows (each claim adds one,
  a forced takeover too). Every write under a claim carries its token in the statement
  that writes (``UPDATE ... WHERE id = %s AND fence = %s``): a stale token matches no
  row, and the write becomes :class:`StaleClaim`.
* **The scheduler's decision.** As in the local store (``providers/file.py``), the
  scheduling columns (kind, phase, number, letter, priority rank, META) are derived at
  write time by :mod:`autonomous.scheduler` itself and a partial index keeps open tasks
  in scheduling order; the SQL implements the scheduler's readiness rule for each
  ordering policy, and the contract suite checks on random task sets that both pick the
  same task. A large batch of new tasks is followed by ``ANALYZE``, so the planner walks
  that index from the start (and stops at the first ready task) instead of sorting.
  Dependency cycles are found by the scheduler's own check, run again only when
  ``graph_rev`` (bumped by the writes that can close a cycle) has changed: the claim
  statement reads ``graph_rev`` in its own snapshot and claims nothing when it differs
  from the revision that was checked. Under concurrency "the first ready task" is
  judged on the statement's snapshot, and a task another transaction holds locked at
  that instant is skipped, not waited for.
* **Idempotent creation.** ``create_tasks`` runs in one transaction holding the id
  counter's row lock (creators take turns), inserts with ``ON CONFLICT (key) DO
  NOTHING``, and resolves dependency keys to ids; an unknown key rolls everything back.
* **Time.** By default every lease and timestamp is the server's ``now()`` (the start of
  the transaction), so machines with skewed clocks agree on which leases have expired.
  ``now=`` injects a clock instead (tests), used for every timestamp alike.
* **Migrations.** Numbered scripts, applied in one transaction under a
  ``pg_advisory_xact_lock`` per schema, so machines starting together migrate once; the
  ``schema_version`` table records them. A version newer than this code knows, or a
  schema holding tables that are not ours, raises :class:`StoreCorrupt` and is left untouched.
* **Dropped connections.** Connections come from a small ``psycopg_pool`` pool. An
  operation whose connection breaks (server restart, ``pg_terminate_backend``, network)
  is retried once on a fresh connection, after the pool has discarded its dead ones.
  Reads are simply run again. Every write stamps the rows it changes with a fresh
  ``write_nonce``; before a write is retried the old backend is terminated (so it can no
  longer commit) and the nonce is looked up: found, the write had committed and its
  result is returned (a claim is never applied twice); not found, it is run again.
  If the server itself was unreachable for the retry too, the error names host:port.

Errors never show the DSN's password: messages name ``host:port/database``.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from autonomous import scheduler
from autonomous.errors import ClaimConflict, ConfigError, ProviderError, StoreCorrupt, TaskNotFound
from autonomous.providers import _sql
from autonomous.providers._sql import HEAD_MARK, ID_PREFIX
from autonomous.providers._sql import OPEN as _OPEN
from autonomous.providers._sql import ORDER as _ORDER
from autonomous.providers._sql import SATISFIED as _SATISFIED
from autonomous.providers.base import (
    _UNSET,
    CreateResult,
    SessionRecord,
    StateProvider,
    TaskCounts,
    check_takeable,
    check_token,
    given,
    stale_claim,
    update_ends_claim,
)
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus

try:  # the optional extra; reported when the provider is opened, not on import
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _missing
else:
    _IMPORT_ERROR = None

T = TypeVar("T")

DEFAULT_SCHEMA = "autonomous"
ANALYZE_AFTER = 100  # tasks created in one batch that call for fresh planner statistics
INSTALL_HINT = "pip install 'autonomous-runner[postgres]'"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ENV_REF = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}$")
_LOCK_CLASS = 0x4155544F  # "AUTO": first key of the migration advisory lock (second: the schema)

# Numbered migrations: MIGRATIONS[i] takes the schema from version i to i + 1, all pending
# ones in one transaction together with their schema_version rows.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value bigint NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('next_task_number', 1), ('graph_rev', 0);

    CREATE TABLE tasks (
        id                  text COLLATE "C" PRIMARY KEY,  -- "C": ids order as Python strings do
        num                 bigint NOT NULL UNIQUE,         -- creation order
        key                 text COLLATE "C" NOT NULL UNIQUE,
        title               text NOT NULL,
        description         text NOT NULL DEFAULT '',
        acceptance_criteria text[] NOT NULL DEFAULT '{}',
        test_steps          text[] NOT NULL DEFAULT '{}',
        status              text NOT NULL CHECK (status IN ('todo', 'in_progress', 'blocked', 'done', 'canceled')),
        priority            text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
        labels              text[] NOT NULL DEFAULT '{}',
        -- scheduling columns, derived from title/labels/priority by autonomous.scheduler
        kind                smallint NOT NULL,  -- TitleKind; 0 (META) for every META task
        phase               integer NOT NULL,
        number              integer NOT NULL,
        letter              text COLLATE "C" NOT NULL,
        prio                smallint NOT NULL,  -- Priority.rank
        is_meta             boolean NOT NULL,
        -- the claim: present iff worker_id is not null; fence only ever grows
        worker_id           text,
        expires_at          timestamptz,
        fence               bigint NOT NULL DEFAULT 0,
        write_nonce         uuid,               -- the last write's id: lets a retry see it committed
        created_at          timestamptz NOT NULL,
        updated_at          timestamptz NOT NULL,
        cost_usd            double precision NOT NULL DEFAULT 0,
        turns               integer NOT NULL DEFAULT 0
    );
    -- open tasks in scheduling order: what claim_next walks
    CREATE INDEX tasks_open_order ON tasks (kind, phase, number, letter, prio, created_at, id)
        WHERE status IN ('todo', 'in_progress', 'blocked');
    CREATE INDEX tasks_key_lower ON tasks (lower(key));

    CREATE TABLE dependencies (
        task_id    text COLLATE "C" NOT NULL,
        depends_on text COLLATE "C" NOT NULL,
        pos        integer NOT NULL,
        PRIMARY KEY (task_id, depends_on)
    );
    CREATE INDEX dependencies_reverse ON dependencies (depends_on);

    CREATE TABLE notes (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        task_id text COLLATE "C" NOT NULL,
        at      timestamptz NOT NULL,
        author  text NOT NULL,
        text    text NOT NULL
    );
    CREATE INDEX notes_task ON notes (task_id, id);

    CREATE TABLE sessions (
        seq        bigint GENERATED ALWAYS AS IDENTITY,
        id         text PRIMARY KEY,
        worker_id  text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at   timestamptz,
        state      text NOT NULL,
        summary    jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX sessions_started ON sessions (started_at, seq);
    """,
    # 2: the in_review status (execution.handoff: review); it gates what follows like the other open ones
    """
    ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
    ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
        CHECK (status IN ('todo', 'in_progress', 'blocked', 'in_review', 'done', 'canceled'));
    DROP INDEX tasks_open_order;
    CREATE INDEX tasks_open_order ON tasks (kind, phase, number, letter, prio, created_at, id)
        WHERE status IN ('todo', 'in_progress', 'blocked', 'in_review');
    """,
]

_NOW = "coalesce(%(now)s::timestamptz, now())"
_TAKEABLE = f"""
    ((t.status = 'todo' AND (t.worker_id IS NULL OR t.expires_at <= {_NOW}))
     OR (t.status = 'in_progress' AND t.worker_id IS NOT NULL AND t.expires_at <= {_NOW}))
"""
# The scheduler's readiness of one open task, minus the policy's gate.
_READY = f"""
    t.status IN {_OPEN}
    AND {_TAKEABLE}
    AND NOT EXISTS (
        SELECT 1 FROM dependencies d LEFT JOIN tasks x ON x.id = d.depends_on
        WHERE d.task_id = t.id AND (x.id IS NULL OR x.status NOT IN {_SATISFIED}))
    AND NOT (t.id = ANY(%(exclude)s::text[]))
"""
# Which open tasks a policy lets go ahead, given the first open phased task ("head").
_GATES = {
    "dependencies": "t.kind >= 1",
    "strict": "(t.kind >= 2 OR t.id = (SELECT id FROM head))",
    "phases": "(t.kind >= 2 OR (t.kind = 1 AND t.phase = (SELECT phase FROM head)))",
}
_HEAD = (
    f"SELECT h.id, h.phase FROM tasks h WHERE h.status IN {_OPEN} {HEAD_MARK.format('h')} AND h.kind = 1 "
    f"{_ORDER.replace('t.', 'h.')} LIMIT 1"
)
_COLUMNS = (
    "t.id, t.key, t.title, t.description, t.acceptance_criteria, t.test_steps, t.status, t.priority, t.labels, "
    "t.worker_id, t.expires_at, t.fence, t.created_at, t.updated_at, t.cost_usd, t.turns, "
    "coalesce((SELECT array_agg(d.depends_on ORDER BY d.pos) FROM dependencies d WHERE d.task_id = t.id), "
    "'{}'::text[]), "
    "coalesce((SELECT json_agg(json_build_array(n.at, n.author, n.text) ORDER BY n.id) FROM notes n "
    "WHERE n.task_id = t.id), '[]'::json)"
)
_CLAIM_SET = (
    f"status = 'in_progress', worker_id = %(worker)s, expires_at = {_NOW} + %(lease)s::interval, "
    f"fence = t.fence + 1, updated_at = {_NOW}, write_nonce = %(nonce)s"
)


def _claim_next_sql(ordering: str) -> str:
    return f"""
        WITH rev AS (SELECT value FROM meta WHERE key = 'graph_rev'),
        head AS ({_HEAD}),
        cand AS (
            SELECT t.id FROM tasks t
            WHERE (SELECT value FROM rev) = %(rev)s AND {_GATES[ordering]} AND {_READY}
            {_ORDER} LIMIT 1 FOR UPDATE OF t SKIP LOCKED
        ),
        claimed AS (
            UPDATE tasks t SET {_CLAIM_SET} FROM cand WHERE t.id = cand.id RETURNING t.*
        )
        SELECT (SELECT value FROM rev), {_COLUMNS.replace("t.", "c.")}
        FROM (SELECT 1) AS one LEFT JOIN claimed c ON true
    """


def _both(sql: str) -> dict[bool, str]:
    """A readiness query without and with execution.review_unblocks_dependents."""
    return {False: sql, True: _sql.review_satisfies(sql)}


_CLAIM_NEXT = {ordering: _both(_claim_next_sql(ordering)) for ordering in scheduler.ORDERINGS}


def _ready_sql(ordering: str, what: str) -> str:
    """``claim_next``'s candidate query without the claim: ``what`` of the ready tasks
    (their columns, first in scheduling order; or their count), with the graph revision."""
    tail = f"{_ORDER} LIMIT 1" if what == "first" else ""
    select = _COLUMNS if what == "first" else "count(*)"
    return f"""
        WITH rev AS (SELECT value FROM meta WHERE key = 'graph_rev'),
        head AS ({_HEAD}),
        ready AS (SELECT {select} FROM tasks t WHERE {_GATES[ordering]} AND {_READY} {tail})
        SELECT (SELECT value FROM rev), ready.* FROM (SELECT 1) AS one LEFT JOIN ready ON true
    """


_NEXT_READY = {ordering: _both(_ready_sql(ordering, "first")) for ordering in scheduler.ORDERINGS}
_COUNT_READY = {ordering: _both(_ready_sql(ordering, "count")) for ordering in scheduler.ORDERINGS}
_STREAM_PAGE = 500  # rows per round trip when streaming tasks

# Connections a forked child inherited: never used nor closed there (closing would end the
# parent's sessions); kept referenced so no finaliser closes them.
_ABANDONED: list[Any] = []


class _Retry:
    """``recover`` found that the failed write did not commit: run it again."""


RETRY = _Retry()


def _same(value: T) -> T:
    return value


def _task(row: Sequence[Any]) -> Task:
    """The task of a row of ``_COLUMNS``: the shared task columns, then dependencies and notes."""
    notes = [Note(text=text, author=author, at=datetime.fromisoformat(at)) for at, author, text in row[-1]]
    return _sql.row_task(row[:-2], list(row[-2]), notes, decode_list=list, decode_time=_same)


# -- the DSN: where it comes from, what may be shown of it ------------------------------------------

_URL_PASSWORD = re.compile(r"^[a-zA-Z][\w+.-]*://[^:/@]*:(?P<password>[^@]*)@")
_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


def resolve_dsn(dsn: str | None, environ: dict[str, str] | None = None) -> str:
    """The connection string: ``dsn`` (a ``${NAME}`` reference is read from the
    environment), else ``$DATABASE_URL``; ConfigError naming both when neither is set."""
    env = os.environ if environ is None else environ
    if dsn:
        ref = _ENV_REF.match(dsn.strip())
        if ref:
            value = env.get(ref["name"], "")
            if not value:
                raise ConfigError(f"state_provider.dsn refers to ${{{ref['name']}}}, which is not set")
            return value
        return dsn
    value = env.get("DATABASE_URL", "")
    if not value:
        raise ConfigError(
            "state_provider.dsn is not set and DATABASE_URL is empty: the postgres provider needs a "
            "connection string such as postgresql://user@host:5432/dbname"
        )
    return value


def dsn_passwords(dsn: str) -> list[str]:
    """Every password the DSN carries, to scrub from messages."""
    found = []
    url = _URL_PASSWORD.match(dsn)
    if url and url["password"]:
        found.append(url["password"])
    found += [m["password"].strip("'") for m in _KV_PASSWORD.finditer(dsn)]
    try:
        parsed = conninfo_to_dict(dsn)
    except Exception:  # an invalid DSN: the regexes are all we have
        parsed = {}
    if parsed.get("password"):
        found.append(str(parsed["password"]))
    return sorted({p for p in found if p}, key=len, reverse=True)


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "(an invalid connection string)"
    host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(info.get("port") or os.environ.get("PGPORT") or "5432")
    dbname = str(info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or "")
    return f"{host}:{port}/{dbname}" if dbname else f"{host}:{port}"


class PostgresProvider(StateProvider):
    """Tasks in a PostgreSQL schema (see the module docstring for the guarantees).

    ``dsn``: libpq connection string or URL (None: ``$DATABASE_URL``). ``schema``: where
    every table lives (created on first use). ``now``: a clock to read instead of the
    server's (tests). ``pool_min``/``pool_max``: connections kept per process.
    ``connect_timeout``: seconds to wait for the server (connecting, or a free pooled
    connection). ``drop_schema_on_close``: for tests and benchmarks on throwaway schemas.
    """

    kind = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        now: Callable[[], datetime] | None = None,
        pool_min: int = 1,
        pool_max: int = 4,
        connect_timeout: float = 10.0,
        drop_schema_on_close: bool = False,
    ) -> None:
        if _IMPORT_ERROR is not None:
            raise ProviderError(f"the postgres provider needs psycopg 3 and psycopg-pool: {INSTALL_HINT}")
        self._dsn = resolve_dsn(dsn)
        self._secrets = dsn_passwords(self._dsn)
        self.where = describe_dsn(self._dsn)
        try:
            conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"state_provider.dsn is not a valid PostgreSQL connection string: {self._scrub(exc)}"
            ) from None
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"state_provider.schema: {schema!r} is not a plain lower-case identifier ([a-z_][a-z0-9_]*, up to 63)"
            )
        self.schema = schema
        self._now = now
        self._pool_min, self._pool_max = pool_min, pool_max
        self._timeout = connect_timeout
        self._drop_on_close = drop_schema_on_close
        self._kwargs = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": f"autonomous:{schema}"[:63],
            "options": f"-c search_path={schema} -c TimeZone=UTC",
        }
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pool_pid = 0
        self._closed = False
        self._acyclic: dict[str, int] = {}  # ordering -> graph_rev found free of cycles
        self._migrate()
        self._get_pool()

    # -- messages -----------------------------------------------------------------------
    def _scrub(self, exc: BaseException | str) -> str:
        text = " ".join(str(exc).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: BaseException, doing: str = "") -> ProviderError:
        what = f" ({doing})" if doing else ""
        if isinstance(exc, PoolTimeout):
            return ProviderError(
                f"PostgreSQL at {self.where} did not answer within {self._timeout:g}s{what}: is the server running?"
            )
        if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
            reason = self._scrub(exc)
            for marker in ("failed:", "connection failed:"):
                if marker in reason:
                    reason = reason.rsplit(marker, 1)[1].strip()
            return ProviderError(f"cannot reach PostgreSQL at {self.where}{what}: {reason}")
        return ProviderError(f"PostgreSQL at {self.where}{what}: {self._scrub(exc)}")

    # -- schema ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return psycopg.connect(self._dsn, **self._kwargs)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _migrate(self) -> None:
        """Bring the schema to ``len(MIGRATIONS)`` (see the module docstring)."""
        conn = self._connect()
        ident = sql.Identifier(self.schema)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema))
                exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone()
                version = 0
                if exists:
                    has_versions = conn.execute(
                        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = 'schema_version'",
                        (self.schema,),
                    ).fetchone()
                    if has_versions:
                        version = conn.execute(
                            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(ident)
                        ).fetchone()[0]
                    elif conn.execute(
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s",
                        (self.schema,),
                    ).fetchone()[0]:
                        raise StoreCorrupt(
                            f"PostgreSQL at {self.where}: schema {self.schema!r} holds objects but no "
                            "schema_version table: not an autonomous task store; it was left untouched "
                            "(choose another state_provider.schema)"
                        )
                if version > len(MIGRATIONS):
                    raise StoreCorrupt(
                        f"PostgreSQL at {self.where}: schema {self.schema!r} is at version {version}, newer than "
                        f"this version of autonomous supports ({len(MIGRATIONS)}); upgrade autonomous"
                    )
                if version == len(MIGRATIONS):
                    return
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    try:
                        with conn.transaction():  # a savepoint: report which script failed
                            conn.execute(script)
                    except psycopg.errors.OperationalError:
                        raise
                    except psycopg.Error as exc:
                        raise ProviderError(
                            f"PostgreSQL at {self.where}: schema migration to version {number} failed "
                            f"({self._scrub(exc)}); nothing was changed"
                        ) from None
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        except psycopg.Error as exc:
            raise self._error(exc, "migrating the schema") from None
        finally:
            conn.close()

    def schema_version(self) -> int:
        return self._run(lambda c: c.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    # -- connections ---------------------------------------------------------------------
    def _get_pool(self) -> Any:
        pid = os.getpid()
        if self._pool is not None and self._pool_pid == pid:
            return self._pool
        with self._lock:
            if self._closed:
                raise ProviderError(f"the postgres provider for {self.where} is closed")
            if self._pool is not None and self._pool_pid != pid:  # we are a forked child
                _ABANDONED.append(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._dsn,
                    kwargs=self._kwargs,
                    min_size=self._pool_min,
                    max_size=max(self._pool_min, self._pool_max),
                    open=True,
                    timeout=self._timeout,
                    name=f"autonomous-{self.schema}",
                    num_workers=1,
                )
                self._pool_pid = pid
            return self._pool

    def _run(
        self,
        work: Callable[[Any], T],
        *,
        recover: Callable[[Any], T | _Retry] | None = None,
        idempotent: bool = True,
        doing: str = "",
    ) -> T:
        """Run ``work(conn)`` on a pooled connection; when the connection drops, once more
        on a fresh one: reads and idempotent writes directly, other writes only after
        ``recover(conn)`` (run once the old backend is gone) found they did not commit."""
        pool = self._get_pool()
        lost: list[tuple[Any, int]] = []  # the connection, and its backend's pid
        try:
            with pool.connection() as conn:
                lost.append((conn, conn.info.backend_pid))
                return work(conn)
        except psycopg.OperationalError as exc:
            if not lost or not (lost[0][0].broken or lost[0][0].closed):
                raise self._error(exc, doing) from None
            old_pid = lost[0][1]
        except PoolTimeout as exc:
            raise self._error(exc, doing) from None
        # The connection dropped: discard the pool's other dead connections, then retry once.
        try:
            pool.check()
            with pool.connection() as conn:
                if recover is not None:
                    self._end_backend(conn, old_pid)
                    result = recover(conn)
                    if not isinstance(result, _Retry):
                        return result
                elif not idempotent:
                    raise ProviderError(
                        f"PostgreSQL at {self.where}: the connection dropped while {doing or 'writing'}; "
                        "the write may or may not have been applied"
                    )
                return work(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._error(exc, doing) from None

    @staticmethod
    def _end_backend(conn: Any, pid: int) -> None:
        """Make sure the backend of a dropped connection is gone (waiting up to 5 s), so a
        write it was running commits before we look, or never."""
        if pid:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE pid = %s AND application_name = current_setting('application_name')",
                (pid,),
            )

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self._now() if self._now is not None else None
        return params

    def _nonce_task(self, conn: Any, nonce: uuid.UUID) -> Task | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM tasks t WHERE t.write_nonce = %s", (nonce,)).fetchone()
        return _task(row) if row else None

    def _sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in the store's schema (tests, maintenance); its rows, if any."""

        def work(conn: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

        return self._run(work, idempotent=False)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            if self._pool_pid == os.getpid():
                pool.close()
            else:
                _ABANDONED.append(pool)
        if self._drop_on_close:
            self._drop_on_close = False
            conn = self._connect()
            try:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
            finally:
                conn.close()

    # -- reading -------------------------------------------------------------------------
    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        if statuses is None:
            query, params = f"SELECT {_COLUMNS} FROM tasks t ORDER BY t.num", None
        else:
            wanted = [TaskStatus(s).value for s in statuses]
            query, params = f"SELECT {_COLUMNS} FROM tasks t WHERE t.status = ANY(%s) ORDER BY t.num", (wanted,)
        return self._run(lambda c: [_task(r) for r in c.execute(query, params)], doing="listing tasks")

    def get_task(self, task_id: str) -> Task:
        row = self._run(lambda c: c.execute(f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = %s", (task_id,)).fetchone())
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return _task(row)

    def find_task(self, ref: str) -> Task:
        row = self._run(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = %(ref)s OR lower(t.key) = lower(%(ref)s) "
                "ORDER BY t.id = %(ref)s DESC, t.key = %(ref)s DESC, t.num LIMIT 1",
                {"ref": ref},
            ).fetchone()
        )
        if row is None:
            raise TaskNotFound(f"no task with id or key {ref!r}")
        return _task(row)

    def meta_task(self) -> Task | None:
        query = f"SELECT {_COLUMNS} FROM tasks t WHERE t.kind = 0 {_ORDER} LIMIT 1"
        row = self._run(lambda c: c.execute(query).fetchone())
        return _task(row) if row else None

    def iter_tasks(
        self, statuses: Iterable[TaskStatus] | None = None, *, limit: int | None = None, offset: int = 0
    ) -> Iterator[Task]:
        """Stream tasks in scheduling order through a server-side cursor, in one
        read-only snapshot on a pooled connection of its own (the store stays usable
        while iterating). A dropped connection ends the stream with a ProviderError."""
        wanted = None if statuses is None else [TaskStatus(s).value for s in statuses]
        query = (
            f"SELECT {_COLUMNS} FROM tasks t WHERE (%(wanted)s::text[] IS NULL OR t.status = ANY(%(wanted)s)) "
            f"{_ORDER} LIMIT %(limit)s OFFSET %(offset)s"
        )
        params = {"wanted": wanted, "limit": limit, "offset": max(0, offset)}
        try:
            with self._get_pool().connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with conn.cursor(name=f"tasks_{uuid.uuid4().hex[:8]}") as cursor:
                    cursor.itersize = _STREAM_PAGE
                    cursor.execute(query, params)
                    for row in cursor:
                        yield _task(row)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc, "listing tasks") from None

    def count_by_status(self) -> TaskCounts:
        rows = self._run(
            lambda c: c.execute(
                "SELECT status, count(*), coalesce(sum(cost_usd), 0) FROM tasks WHERE kind >= 1 GROUP BY status"
            ).fetchall(),
            doing="counting tasks",
        )
        counts = TaskCounts()
        for status, n, cost in rows:
            counts.by_status[TaskStatus(status)] = n
            counts.cost_usd += cost
        return counts

    def next_ready(
        self, ordering: scheduler.Ordering = "strict", exclude: Iterable[str] = (), review_satisfies: bool = False
    ) -> Task | None:
        """``claim_next``'s candidate query, without the claim."""
        row = self._ready(_NEXT_READY, ordering, sorted(set(exclude)), review_satisfies)
        return _task(row[1:]) if row[1] is not None else None

    def count_ready(self, ordering: scheduler.Ordering = "strict") -> int:
        return int(self._ready(_COUNT_READY, ordering, [])[1])

    def _ready(
        self,
        queries: dict[str, dict[bool, str]],
        ordering: scheduler.Ordering,
        skip: list[str],
        review_satisfies: bool = False,
    ) -> Any:
        """The row of a readiness query, on a graph revision checked free of cycles."""
        _sql.check_ordering(ordering)
        while True:
            rev = self._acyclic.get(ordering)
            if rev is None:
                self._check_cycles(ordering)
                continue
            params = self._params(exclude=skip)
            query = queries[ordering][review_satisfies]
            row = self._run(lambda c, p=params, q=query: c.execute(q, p).fetchone(), doing="finding ready tasks")
            if row[0] == rev:
                return row
            self._acyclic.pop(ordering, None)  # the graph changed since it was checked

    # -- writing -------------------------------------------------------------------------
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        if not new_tasks:
            return CreateResult()
        nonce = uuid.uuid4()

        def work(conn: Any) -> CreateResult:
            result = CreateResult()
            with conn.transaction():
                # the counter's row lock makes creators take turns: keys are checked and
                # inserted with no other creator in between
                number, now = conn.execute(
                    f"SELECT value, {_NOW} FROM meta WHERE key = 'next_task_number' FOR UPDATE", self._params()
                ).fetchone()
                keys = _sql.keys_of(new_tasks)
                known = dict(conn.execute("SELECT key, id FROM tasks WHERE key = ANY(%s)", (keys,)).fetchall())
                plan = _sql.plan_batch(new_tasks, known, number, now)
                batch = plan.created
                if batch:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO tasks (id, num, key, title, description, acceptance_criteria, test_steps, "
                            "status, priority, labels, kind, phase, number, letter, prio, is_meta, created_at, "
                            "updated_at, write_nonce) VALUES (%s, %s, %s, %s, %s, %s::text[], %s::text[], %s, %s, "
                            "%s::text[], %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                            [
                                (
                                    t.id, int(t.id[len(ID_PREFIX):]), t.key, t.title, t.description,
                                    t.acceptance_criteria, t.test_steps, t.status.value, t.priority.value, t.labels,
                                    *_sql.schedule_columns(t), t.created_at, t.updated_at, nonce,
                                )
                                for t in batch.values()
                            ],
                        )  # fmt: skip
                        if cur.rowcount != len(batch):  # cannot happen while creators take turns
                            raise ProviderError("a concurrent creator inserted the same keys; run again")
                        deps = [(t.id, dep, pos) for t in batch.values() for pos, dep in enumerate(t.dependencies)]
                        if deps:
                            cur.executemany(
                                "INSERT INTO dependencies (task_id, depends_on, pos) VALUES (%s, %s, %s)", deps
                            )
                    conn.execute("UPDATE meta SET value = %s WHERE key = 'next_task_number'", (plan.next_number,))
                    self._bump_graph(conn)
                result.created = list(batch.values())
                by_id = {t.id: t for t in result.created}
                missing = [tid for tid in plan.existing_ids if tid not in by_id]
                found = {
                    r[0]: _task(r)
                    for r in conn.execute(f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = ANY(%s)", (missing,))
                }
                result.existing = [by_id[tid].copy() if tid in by_id else found[tid] for tid in plan.existing_ids]
            return result

        def recover(conn: Any) -> CreateResult | _Retry:
            if conn.execute("SELECT 1 FROM tasks WHERE write_nonce = %s LIMIT 1", (nonce,)).fetchone() is None:
                return RETRY
            # it committed: rebuild the answer; the batch's own rows carry its nonce
            result = CreateResult()
            seen: set[str] = set()
            cur = conn.execute(
                f"SELECT t.write_nonce = %s, {_COLUMNS} FROM tasks t WHERE t.key = ANY(%s)",
                (nonce, [nt.key for nt in new_tasks]),
            )
            by_key = {row[2]: (row[0], _task(row[1:])) for row in cur}
            for nt in new_tasks:
                mine, task = by_key[nt.key]
                (result.created if mine and nt.key not in seen else result.existing).append(task)
                seen.add(nt.key)
            return result

        result = self._run(work, recover=recover, doing="creating tasks")
        if len(result.created) >= ANALYZE_AFTER:
            # A fresh table has no statistics until autovacuum comes by, and without them the
            # planner sorts every open task for each claim instead of walking the ordered index.
            self._run(lambda c: c.execute("ANALYZE tasks, dependencies"), doing="analyzing new tasks")
        return result

    @staticmethod
    def _bump_graph(conn: Any) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'graph_rev'")

    def update_task(
        self,
        task_id: str,
        *,
        token: int | None = None,
        force: bool = False,
        title: str = _UNSET,
        description: str = _UNSET,
        acceptance_criteria: list[str] = _UNSET,
        test_steps: list[str] = _UNSET,
        status: TaskStatus = _UNSET,
        priority: Priority = _UNSET,
        labels: list[str] = _UNSET,
        dependencies: list[str] = _UNSET,
    ) -> Task:
        """Change the given fields, under the contract's token and ``force`` rules
        (``base.update_ends_claim``), checked and written in one transaction."""
        nonce = uuid.uuid4()
        changes = given(
            title=title, description=description, acceptance_criteria=acceptance_criteria, test_steps=test_steps,
            status=status, priority=priority, labels=labels, dependencies=dependencies,
        )  # fmt: skip

        def work(conn: Any) -> Task:
            with conn.transaction():
                row = conn.execute(
                    f"SELECT id, key, title, status, priority, labels, worker_id, expires_at, fence, "
                    f"worker_id IS NOT NULL AND expires_at > {_NOW}, {_NOW} FROM tasks WHERE id = %(id)s FOR UPDATE",
                    self._params(id=task_id),
                ).fetchone()
                if row is None:
                    raise TaskNotFound(f"no task with id {task_id!r}")
                _, key, old_title, old_status, old_priority, old_labels, worker, expires, fence, live, now = row
                claim = Claim(worker, expires, fence) if worker is not None else None
                check_token(key, task_id, token, claim, fence)
                end_claim = update_ends_claim(
                    key, task_id, claim, live, token=token, force=force, status_given="status" in changes
                )
                current = _sql.Current(
                    task_id, key, old_title, TaskStatus(old_status), Priority(old_priority), list(old_labels), fence
                )
                plan = _sql.plan_update(current, changes, end_claim)
                sets: dict[str, Any] = {"updated_at": now, "write_nonce": nonce, **plan.sets}
                if plan.dependencies is not None:
                    deps = plan.dependencies
                    found = conn.execute("SELECT id FROM tasks WHERE id = ANY(%s)", (deps,))
                    _sql.check_dependencies(task_id, deps, (r[0] for r in found))
                    conn.execute("DELETE FROM dependencies WHERE task_id = %s", (task_id,))
                    if deps:
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO dependencies (task_id, depends_on, pos) VALUES (%s, %s, %s)",
                                [(task_id, dep, pos) for pos, dep in enumerate(deps)],
                            )
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in sets
                )
                conn.execute(
                    sql.SQL("UPDATE tasks SET {} WHERE id = {} AND fence = {}").format(
                        assignments, sql.Placeholder("_id"), sql.Placeholder("_fence")
                    ),
                    {**sets, "_id": task_id, "_fence": fence},  # the token's check, in the writing statement
                )
                if plan.graph_changed:
                    self._bump_graph(conn)
                return _task(conn.execute(f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = %s", (task_id,)).fetchone())

        return self._run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"updating {task_id}")

    def _refused(self, conn: Any, task_id: str, token: int) -> ProviderError:
        """Why a fenced write matched no row: no such task, or a stale token."""
        row = conn.execute("SELECT key, worker_id, fence FROM tasks WHERE id = %s", (task_id,)).fetchone()
        if row is None:
            return TaskNotFound(f"no task with id {task_id!r}")
        key, worker, fence = row
        return stale_claim(key, task_id, token, fence, held=worker is not None)

    def add_note(self, task_id: str, text: str, author: str, *, token: int | None = None) -> Note:
        """Append a note. Without a token a note is always accepted, even on a claimed task:
        it adds to the record and overwrites nothing the holder wrote."""
        nonce = uuid.uuid4()

        def work(conn: Any) -> Note:
            row = conn.execute(
                f"""WITH upd AS (
                        UPDATE tasks t SET updated_at = {_NOW}, write_nonce = %(nonce)s
                        WHERE t.id = %(id)s AND (%(token)s::bigint IS NULL
                                                 OR (t.fence = %(token)s AND t.worker_id IS NOT NULL))
                        RETURNING t.id, t.updated_at)
                    INSERT INTO notes (task_id, at, author, text)
                    SELECT id, updated_at, %(author)s, %(text)s FROM upd RETURNING at""",
                self._params(id=task_id, token=token, nonce=nonce, author=author, text=text),
            ).fetchone()
            if row is None:
                raise (
                    self._refused(conn, task_id, token)
                    if token is not None
                    else TaskNotFound(f"no task with id {task_id!r}")
                )
            return Note(text=text, author=author, at=row[0])

        def recover(conn: Any) -> Note | _Retry:
            task = self._nonce_task(conn, nonce)
            return Note(text=text, author=author, at=task.updated_at) if task else RETRY

        return self._run(work, recover=recover, doing=f"adding a note to {task_id}")

    # -- claims --------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            params = self._params(id=task_id, worker=worker_id, lease=timedelta(seconds=lease_seconds), nonce=nonce)
            row = conn.execute(
                f"UPDATE tasks t SET {_CLAIM_SET} WHERE t.id = %(id)s AND {_TAKEABLE} RETURNING {_COLUMNS}", params
            ).fetchone()
            if row is not None:
                return _task(row)
            row = conn.execute(
                f"SELECT {_COLUMNS}, {_NOW} FROM tasks t WHERE t.id = %(id)s", self._params(id=task_id)
            ).fetchone()
            if row is None:
                raise TaskNotFound(f"no task with id {task_id!r}")
            current = _task(row[:-1])
            check_takeable(current, row[-1])
            raise ClaimConflict(f"{current.key} ({task_id}) cannot be claimed: taken meanwhile")

        return self._run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"claiming {task_id}")

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            row = conn.execute(
                f"UPDATE tasks t SET expires_at = {_NOW} + %(lease)s::interval, updated_at = {_NOW}, "
                f"write_nonce = %(nonce)s WHERE t.id = %(id)s AND t.fence = %(token)s AND t.worker_id IS NOT NULL "
                f"RETURNING {_COLUMNS}",
                self._params(id=task_id, token=token, lease=timedelta(seconds=lease_seconds), nonce=nonce),
            ).fetchone()
            if row is None:
                raise self._refused(conn, task_id, token)
            return _task(row)

        return self._run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"renewing {task_id}")

    def release(
        self,
        task_id: str,
        token: int,
        *,
        status: TaskStatus = TaskStatus.TODO,
        note: str | None = None,
        author: str = "runner",
        cost_usd: float = 0.0,
        turns: int = 0,
    ) -> Task:
        nonce = uuid.uuid4()
        new_status = TaskStatus(status)

        def work(conn: Any) -> Task:
            # One statement: the fenced update, the note, and (if a finished task is
            # reopened, which can close a cycle) the graph revision.
            row = conn.execute(
                f"""WITH old AS (SELECT status FROM tasks WHERE id = %(id)s),
                    upd AS (
                        UPDATE tasks t SET status = %(status)s, worker_id = NULL, expires_at = NULL,
                            cost_usd = t.cost_usd + %(cost)s, turns = t.turns + %(turns)s, updated_at = {_NOW},
                            write_nonce = %(nonce)s
                        FROM old WHERE t.id = %(id)s AND t.fence = %(token)s AND t.worker_id IS NOT NULL
                        RETURNING t.*, old.status AS old_status),
                    noted AS (
                        INSERT INTO notes (task_id, at, author, text)
                        SELECT id, updated_at, %(author)s, %(note)s FROM upd WHERE %(note)s::text IS NOT NULL),
                    bump AS (
                        UPDATE meta SET value = value + 1 WHERE key = 'graph_rev' AND EXISTS (
                            SELECT 1 FROM upd WHERE old_status IN {_SATISFIED} AND status NOT IN {_SATISFIED}))
                    SELECT {_COLUMNS.replace("t.", "u.")} FROM upd u""",
                self._params(
                    id=task_id, token=token, status=new_status.value, cost=cost_usd, turns=turns,
                    nonce=nonce, author=author, note=note,
                ),
            ).fetchone()  # fmt: skip
            if row is None:
                raise self._refused(conn, task_id, token)
            task = _task(row)
            if note is not None:  # written by this statement, so not in its snapshot
                task.notes.append(Note(text=note, author=author, at=task.updated_at))
            return task

        return self._run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"releasing {task_id}")

    def claim_next(
        self,
        worker_id: str,
        lease_seconds: float,
        ordering: scheduler.Ordering = "strict",
        exclude: Iterable[str] = (),
        review_satisfies: bool = False,
    ) -> Task | None:
        """Find the scheduler's next ready task in SQL and claim it, in one statement."""
        _sql.check_ordering(ordering)
        skip = sorted(set(exclude))
        lease = timedelta(seconds=lease_seconds)
        while True:
            rev = self._acyclic.get(ordering)
            if rev is None:
                self._check_cycles(ordering)
                continue
            nonce = uuid.uuid4()
            found_rev, task = self._run(
                lambda c, r=rev, n=nonce: self._claim_next_work(
                    c, _CLAIM_NEXT[ordering][review_satisfies], r, worker_id, lease, skip, n
                ),
                recover=lambda c, r=rev, n=nonce: (r, t) if (t := self._nonce_task(c, n)) else RETRY,
                doing="claiming the next task",
            )
            if found_rev != rev:  # the graph changed since it was checked
                self._acyclic.pop(ordering, None)
                continue
            return task

    def _claim_next_work(
        self, conn: Any, query: str, rev: int, worker_id: str, lease: timedelta, skip: list[str], nonce: uuid.UUID
    ) -> tuple[int, Task | None]:
        row = conn.execute(
            query,
            self._params(rev=rev, worker=worker_id, lease=lease, exclude=skip, nonce=nonce),
        ).fetchone()
        return row[0], (_task(row[1:]) if row[1] is not None else None)

    def _check_cycles(self, ordering: scheduler.Ordering) -> None:
        """Raise DependencyCycle exactly when the scheduler would; remember the graph
        revision found free of cycles."""

        def work(conn: Any) -> tuple[int, list[Any], list[Any]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rev = conn.execute("SELECT value FROM meta WHERE key = 'graph_rev'").fetchone()[0]
                rows = conn.execute(_sql.OPEN_GRAPH_TASKS).fetchall()
                deps = conn.execute(_sql.OPEN_GRAPH_DEPENDENCIES).fetchall()
            return rev, rows, deps

        rev, rows, dep_rows = self._run(work, doing="checking dependencies")
        scheduler.check_cycles(_sql.open_graph(rows, dep_rows, decode_list=list, decode_time=_same), ordering)
        self._acyclic[ordering] = rev

    # -- sessions ------------------------------------------------------------------------
    def record_session(self, session: SessionRecord) -> None:
        params = (
            session.id,
            session.worker_id,
            session.started_at,
            session.ended_at,
            session.state,
            Jsonb(session.summary),
        )
        self._run(
            lambda c: c.execute(
                "INSERT INTO sessions (id, worker_id, started_at, ended_at, state, summary) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET worker_id = excluded.worker_id, started_at = excluded.started_at, "
                "ended_at = excluded.ended_at, state = excluded.state, summary = excluded.summary",
                params,
            ),
            doing="recording a session",
        )  # an upsert of the same values: safe to run again

    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT id, worker_id, started_at, ended_at, state, summary FROM sessions "
                "ORDER BY started_at DESC, seq DESC LIMIT %s",
                (limit,),
            ).fetchall()
        )
        return [
            SessionRecord(id=sid, worker_id=w, started_at=s, ended_at=e, state=state, summary=summary)
            for sid, w, s, e, state, summary in rows
        ]
