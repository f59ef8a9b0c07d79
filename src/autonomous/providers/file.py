"""The embedded local store (``state_provider.type: file``): one SQLite file, ``<state_dir>/tasks.db``.

Why SQLite: it gives the contract's hard parts for free and in one file: atomic
transactions, a write lock shared by every process on the machine, and a write-ahead
log that survives ``kill -9``. The guarantees and how each is obtained:

* **Crash safety.** WAL mode with ``synchronous=FULL``: a transaction is committed once
  its frames are in the WAL and the WAL is fsynced. A process killed at any instant
  leaves either all of a transaction or none of it, and every commit that returned is
  kept; FULL (rather than NORMAL, which already survives a process crash in WAL mode)
  makes the same hold across a power cut, so a fencing token can never be handed out
  twice. The cost is one fsync per write transaction; claims are rare next to model turns.
* **Several processes.** Every write is one ``BEGIN IMMEDIATE`` transaction that reads,
  checks and writes: the check (is the task takeable, is the token current) and the
  write happen under the database's single write lock, so of N concurrent claimers
  exactly one wins. Other writers wait up to ``busy_timeout`` seconds. Connections are
  opened lazily per process and thread and never cross a ``fork``.
* **Speed.** ``claim_next`` never loads the task list: the scheduling columns the
  scheduler derives from a title (kind, phase, number, letter, priority rank, META) are
  stored at write time, computed by :mod:`autonomous.scheduler` itself, and a partial
  index over open tasks in scheduling order lets SQL find the first ready task. The SQL
  implements the scheduler's readiness rule (see its module docstring); the contract
  suite checks on random task sets that both always pick the same task.
* **Cycles.** The scheduler refuses to plan when open tasks form a dependency cycle, even
  if some task is ready. Only some writes can create one (new tasks; changed
  dependencies, titles or labels; a finished task reopened: finishing a task never can),
  and those bump ``graph_rev`` in the ``meta`` table. ``claim_next`` runs the scheduler's
  own cycle check when ``graph_rev`` has not been checked for its ordering yet, and
  records the checked revision in ``meta``: the answer is exactly the scheduler's, and
  the O(n) check is paid once per change of the graph by one process, not per claim.
* **A file that is not ours is left alone.** A file that is not SQLite, a SQLite file
  without our ``application_id`` (or with another application's), or a schema newer than
  this code knows raises :class:`StoreCorrupt` naming the path; nothing is written to it.

Ids are ``T-1``, ``T-2``, ...: short enough to type, allocated from a counter in the
``meta`` table inside the creating transaction (so never reused, even by concurrent
creators). Tasks created in one batch get ``created_at`` one microsecond apart in batch
order, so the scheduler's "older first" tie-break keeps the spec's order.

Timestamps are stored as fixed-width UTC ISO strings (``2025-01-31T09:00:00.000000+00:00``):
readable with the ``sqlite3`` shell, exact to the microsecond like ``datetime``, and
ordered the same way as strings and as times, which the SQL lease checks rely on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from autonomous import scheduler
from autonomous.errors import ProviderError, StoreCorrupt, TaskNotFound
from autonomous.providers import _sql
from autonomous.providers._sql import HEAD_MARK
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
    update_ends_claim,
)
from autonomous.providers.base import iso_time as _ts
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, utcnow

FILENAME = "tasks.db"
DEFAULT_STATE_DIR = Path(".ai-agents") / "state"
APPLICATION_ID = 0x4155544F  # "AUTO": marks the file as ours (PRAGMA application_id)

# Numbered migrations: MIGRATIONS[i] takes the schema from version i to i + 1. The version
# is ``PRAGMA user_version``; all pending scripts run in one transaction with it.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('next_task_number', 1), ('graph_rev', 0);

    CREATE TABLE tasks (
        id                  TEXT PRIMARY KEY,
        key                 TEXT NOT NULL UNIQUE,
        title               TEXT NOT NULL,
        description         TEXT NOT NULL DEFAULT '',
        acceptance_criteria TEXT NOT NULL DEFAULT '[]',  -- JSON list
        test_steps          TEXT NOT NULL DEFAULT '[]',  -- JSON list
        status              TEXT NOT NULL CHECK (status IN ('todo', 'in_progress', 'blocked', 'done', 'canceled')),
        priority            TEXT NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
        labels              TEXT NOT NULL DEFAULT '[]',  -- JSON list
        -- scheduling columns, derived from title/labels/priority by autonomous.scheduler
        kind                INTEGER NOT NULL,  -- TitleKind; 0 (META) for every META task
        phase               INTEGER NOT NULL,
        number              INTEGER NOT NULL,
        letter              TEXT NOT NULL,
        prio                INTEGER NOT NULL,  -- Priority.rank
        is_meta             INTEGER NOT NULL,
        -- the claim: present iff worker_id is not null; fence only ever grows
        worker_id           TEXT,
        expires_at          TEXT,
        fence               INTEGER NOT NULL DEFAULT 0,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL,
        cost_usd            REAL NOT NULL DEFAULT 0,
        turns               INTEGER NOT NULL DEFAULT 0
    );
    -- open tasks in scheduling order: what claim_next walks
    CREATE INDEX tasks_open_order ON tasks (kind, phase, number, letter, prio, created_at, id)
        WHERE status IN ('todo', 'in_progress', 'blocked');
    CREATE INDEX tasks_meta_order ON tasks (phase, number, letter, prio, created_at, id) WHERE kind = 0;
    CREATE INDEX tasks_key_nocase ON tasks (key COLLATE NOCASE);

    CREATE TABLE dependencies (
        task_id    TEXT NOT NULL,
        depends_on TEXT NOT NULL,
        pos        INTEGER NOT NULL,
        PRIMARY KEY (task_id, depends_on)
    ) WITHOUT ROWID;
    CREATE INDEX dependencies_reverse ON dependencies (depends_on);

    CREATE TABLE notes (
        id      INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL,
        at      TEXT NOT NULL,
        author  TEXT NOT NULL,
        text    TEXT NOT NULL
    );
    CREATE INDEX notes_task ON notes (task_id, id);

    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        worker_id  TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at   TEXT,
        state      TEXT NOT NULL,
        summary    TEXT NOT NULL DEFAULT '{}'  -- JSON object
    );
    CREATE INDEX sessions_started ON sessions (started_at);
    """,
    # 1 -> 2: `status` and `next` count tasks by status from this index alone
    """
    CREATE INDEX tasks_status_counts ON tasks (status, kind, cost_usd);
    """,
    # 2 -> 3: the in_review status (execution.handoff: review). SQLite cannot change a CHECK
    # constraint in place: the table is rebuilt, rows copied as they are.
    """
    CREATE TABLE tasks_v2 (
        id                  TEXT PRIMARY KEY,
        key                 TEXT NOT NULL UNIQUE,
        title               TEXT NOT NULL,
        description         TEXT NOT NULL DEFAULT '',
        acceptance_criteria TEXT NOT NULL DEFAULT '[]',  -- JSON list
        test_steps          TEXT NOT NULL DEFAULT '[]',  -- JSON list
        status              TEXT NOT NULL
                            CHECK (status IN ('todo', 'in_progress', 'blocked', 'in_review', 'done', 'canceled')),
        priority            TEXT NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
        labels              TEXT NOT NULL DEFAULT '[]',  -- JSON list
        -- scheduling columns, derived from title/labels/priority by autonomous.scheduler
        kind                INTEGER NOT NULL,  -- TitleKind; 0 (META) for every META task
        phase               INTEGER NOT NULL,
        number              INTEGER NOT NULL,
        letter              TEXT NOT NULL,
        prio                INTEGER NOT NULL,  -- Priority.rank
        is_meta             INTEGER NOT NULL,
        -- the claim: present iff worker_id is not null; fence only ever grows
        worker_id           TEXT,
        expires_at          TEXT,
        fence               INTEGER NOT NULL DEFAULT 0,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL,
        cost_usd            REAL NOT NULL DEFAULT 0,
        turns               INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO tasks_v2 SELECT * FROM tasks;
    DROP TABLE tasks;
    ALTER TABLE tasks_v2 RENAME TO tasks;
    CREATE INDEX tasks_open_order ON tasks (kind, phase, number, letter, prio, created_at, id)
        WHERE status IN ('todo', 'in_progress', 'blocked', 'in_review');
    CREATE INDEX tasks_meta_order ON tasks (phase, number, letter, prio, created_at, id) WHERE kind = 0;
    CREATE INDEX tasks_key_nocase ON tasks (key COLLATE NOCASE);
    CREATE INDEX tasks_status_counts ON tasks (status, kind, cost_usd);
    """,
]

# The scheduler's readiness of one open task, minus the policy's gate (added per query).
# ``t.status IN _OPEN`` repeats the partial index's condition so SQLite can use it.
_READY = f"""
    t.status IN {_OPEN}
    AND ((t.status = 'todo' AND (t.worker_id IS NULL OR t.expires_at <= :now))
         OR (t.status = 'in_progress' AND t.worker_id IS NOT NULL AND t.expires_at <= :now))
    AND NOT EXISTS (
        SELECT 1 FROM dependencies d LEFT JOIN tasks x ON x.id = d.depends_on
        WHERE d.task_id = t.id AND (x.id IS NULL OR x.status NOT IN {_SATISFIED}))
    AND t.id NOT IN (SELECT value FROM json_each(:exclude))
"""
_HEAD_MARK = HEAD_MARK.format("t")
# Open tasks, walked in scheduling order through their partial index: named, so that no
# other index (the status counts') can make a claim sort every open task instead.
_OPEN_TASKS = "tasks t INDEXED BY tasks_open_order"
_TASK_COLUMNS = (
    "t.id, t.key, t.title, t.description, t.acceptance_criteria, t.test_steps, t.status, t.priority, "
    "t.labels, t.worker_id, t.expires_at, t.fence, t.created_at, t.updated_at, t.cost_usd, t.turns"
)

# Connections a forked child inherited: never used nor closed there (closing would run
# SQLite's cleanup on the parent's files); kept referenced so no finaliser closes them.
_ABANDONED: list[sqlite3.Connection] = []


def _json(items: list[str]) -> str:
    return json.dumps(items) if items else "[]"


def _list(text: str) -> list[str]:
    return json.loads(text) if text != "[]" else []


_dt = datetime.fromisoformat  # what _ts wrote
_PAGE = 500  # rows per fetch when streaming tasks
PROVE_ACYCLIC_AFTER = 100  # tasks created in one batch that are proven free of cycles at once
_LIST_COLUMNS = ("acceptance_criteria", "test_steps", "labels")


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    leftover = [line for line in buf.splitlines() if line.strip() and not line.strip().startswith("--")]
    if leftover:
        raise ValueError(f"incomplete SQL statement in a migration: {leftover[0]!r}")


class FileProvider(StateProvider):
    """Tasks in ``<state_dir>/tasks.db`` (see the module docstring for the guarantees).

    ``now`` is the clock every lease and timestamp is read from (tests pass a fake one);
    ``busy_timeout`` is how long a write waits for another process's write lock.
    """

    kind = "file"

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        now: Callable[[], datetime] = utcnow,
        busy_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILENAME
        self._now = now
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._db()  # open now, so a bad file is reported at once

    # -- connections -------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        with self._lock:
            if any(p != pid for p, _ in self._connections):  # we are a forked child
                _ABANDONED.extend(c for p, c in self._connections if p != pid)
                self._connections = [(p, c) for p, c in self._connections if p == pid]
            conn = self._connect()
            self._connections.append((pid, conn))
        self._local.conn, self._local.pid = conn, pid
        return conn

    def _open(self) -> sqlite3.Connection:
        """A plain connection to the store (checked and migrated by :meth:`_connect`)."""
        try:
            return sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProviderError(f"{self.path}: cannot open the task store: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        conn = self._open()
        try:
            self._check_and_migrate(conn)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA cache_size = -32768")  # up to 32 MiB, used only by big stores
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise
        return conn

    def _inspect(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects), read-only."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(f"not a SQLite database ({exc})") from exc
        return app_id, version, objects

    def _verdict(self, app_id: int, version: int, objects: int) -> bool:
        """True when the file is empty (a new store); raises when it is not ours."""
        if app_id == 0 and objects == 0 and version == 0:
            return True
        if app_id != APPLICATION_ID:
            if app_id == 0:
                raise self._corrupt("a SQLite database without the autonomous marker: not an autonomous task store")
            raise self._corrupt(f"a SQLite database of another application (application_id 0x{app_id:08x})")
        if version > len(MIGRATIONS):
            raise self._corrupt(
                f"schema version {version} is newer than this version of autonomous supports "
                f"({len(MIGRATIONS)}); upgrade autonomous"
            )
        return False

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        fresh = self._verdict(*self._inspect(conn))
        if not fresh and conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return
        # Ours (or empty) and behind: only now may anything be written.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id, version, objects = self._inspect(conn)  # again, under the write lock
            if self._verdict(app_id, version, objects):
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                try:
                    for statement in _statements(script):
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    raise ProviderError(
                        f"{self.path}: schema migration to version {number} failed ({exc}); nothing was changed"
                    ) from exc
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _corrupt(self, what: str) -> StoreCorrupt:
        return StoreCorrupt(f"{self.path}: {what}; the file was left untouched")

    def _translate(self, exc: sqlite3.Error) -> ProviderError:
        message = str(exc)
        if "malformed" in message or "not a database" in message:
            return StoreCorrupt(f"{self.path}: the task store is damaged ({message})")
        if "locked" in message or "busy" in message:
            return ProviderError(
                f"{self.path}: the task store stayed locked by another process for {self._busy_timeout:g}s"
            )
        return ProviderError(f"{self.path}: {message}")

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute(begin)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction, holding the store's write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One consistent snapshot (WAL readers never block writers nor wait for them)."""
        return self._transaction("BEGIN")

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            mine = [c for p, c in self._connections if p == pid]
            _ABANDONED.extend(c for p, c in self._connections if p != pid)
            self._connections = []
        for conn in mine:
            conn.close()
        self._local = threading.local()

    # -- rows -> tasks -----------------------------------------------------------------
    def _tasks(
        self, db: sqlite3.Connection, where: str = "", params: Sequence[Any] = (), limit: int = -1
    ) -> list[Task]:
        rows = db.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks t {where} ORDER BY t.rowid LIMIT {int(limit)}", params
        ).fetchall()
        if not rows:
            return []
        deps: dict[str, list[str]] = {}
        notes: dict[str, list[Note]] = {}
        if len(rows) == 1:
            tid = rows[0][0]
            dep_rows = db.execute("SELECT task_id, depends_on FROM dependencies WHERE task_id = ? ORDER BY pos", (tid,))
            note_rows = db.execute("SELECT task_id, at, author, text FROM notes WHERE task_id = ? ORDER BY id", (tid,))
        else:
            dep_rows = db.execute("SELECT task_id, depends_on FROM dependencies ORDER BY task_id, pos")
            note_rows = db.execute("SELECT task_id, at, author, text FROM notes ORDER BY id")
        for task_id, depends_on in dep_rows:
            deps.setdefault(task_id, []).append(depends_on)
        for task_id, at, author, text in note_rows:
            notes.setdefault(task_id, []).append(Note(text=text, author=author, at=_dt(at)))
        return [
            _sql.row_task(row, deps.get(row[0], []), notes.get(row[0], []), decode_list=json.loads, decode_time=_dt)
            for row in rows
        ]

    def _one(self, db: sqlite3.Connection, task_id: str) -> Task:
        tasks = self._tasks(db, "WHERE t.id = ?", (task_id,))
        if not tasks:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return tasks[0]

    @staticmethod
    def _row(db: sqlite3.Connection, task_id: str) -> dict[str, Any]:
        """The columns the write paths check, by name."""
        cursor = db.execute(
            "SELECT id, key, title, status, priority, labels, worker_id, expires_at, fence FROM tasks WHERE id = ?",
            (task_id,),
        )
        row = cursor.fetchone()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return dict(zip((d[0] for d in cursor.description), row, strict=True))

    @staticmethod
    def _bump_graph(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'graph_rev'")

    # -- reading -------------------------------------------------------------------------
    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        with self._read() as db:
            if statuses is None:
                return self._tasks(db)
            wanted = [TaskStatus(s).value for s in statuses]
            return self._tasks(db, "WHERE t.status IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))

    def get_task(self, task_id: str) -> Task:
        with self._read() as db:
            return self._one(db, task_id)

    def find_task(self, ref: str) -> Task:
        with self._read() as db:
            for where in ("WHERE t.id = ?", "WHERE t.key = ?", "WHERE t.key = ? COLLATE NOCASE"):
                found = self._tasks(db, where, (ref,), limit=1)
                if found:
                    return found[0]
        raise TaskNotFound(f"no task with id or key {ref!r}")

    def meta_task(self) -> Task | None:
        with self._read() as db:
            row = db.execute(f"SELECT t.id FROM tasks t WHERE t.kind = 0 {_ORDER} LIMIT 1").fetchone()
            return self._one(db, row[0]) if row else None

    def iter_tasks(
        self, statuses: Iterable[TaskStatus] | None = None, *, limit: int | None = None, offset: int = 0
    ) -> Iterator[Task]:
        """Stream tasks in scheduling order from one snapshot, a page of rows at a time.

        The snapshot is a connection of its own, so the caller may use the store (look up
        a dependency, add a note) while iterating; it closes when the iteration ends."""
        where, params = "", []
        if statuses is not None:
            where = "WHERE t.status IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([TaskStatus(s).value for s in statuses]))
        query = f"SELECT {_TASK_COLUMNS} FROM tasks t {where} {_ORDER} LIMIT ? OFFSET ?"
        db = self._open()
        try:
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")
            cursor = db.execute(query, (*params, -1 if limit is None else limit, max(0, offset)))
            while rows := cursor.fetchmany(_PAGE):
                ids = json.dumps([row[0] for row in rows])
                deps: dict[str, list[str]] = {}
                notes: dict[str, list[Note]] = {}
                for task_id, depends_on in db.execute(
                    "SELECT task_id, depends_on FROM dependencies WHERE task_id IN (SELECT value FROM json_each(?)) "
                    "ORDER BY task_id, pos",
                    (ids,),
                ):
                    deps.setdefault(task_id, []).append(depends_on)
                for task_id, at, author, text in db.execute(
                    "SELECT task_id, at, author, text FROM notes WHERE task_id IN (SELECT value FROM json_each(?)) "
                    "ORDER BY id",
                    (ids,),
                ):
                    notes.setdefault(task_id, []).append(Note(text=text, author=author, at=_dt(at)))
                for row in rows:
                    yield _sql.row_task(
                        row, deps.get(row[0], []), notes.get(row[0], []), decode_list=_list, decode_time=_dt
                    )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        finally:
            db.close()

    def count_by_status(self) -> TaskCounts:
        counts = TaskCounts()
        with self._read() as db:
            for status, n, cost in db.execute(
                "SELECT status, count(*), total(cost_usd) FROM tasks WHERE kind >= 1 GROUP BY status"
            ):
                counts.by_status[TaskStatus(status)] = n
                counts.cost_usd += cost
        return counts

    def next_ready(
        self, ordering: scheduler.Ordering = "strict", exclude: Iterable[str] = (), review_satisfies: bool = False
    ) -> Task | None:
        """``claim_next``'s candidate query, in a read transaction: nothing is claimed."""
        _sql.check_ordering(ordering)
        skip = json.dumps(sorted(set(exclude)))
        while True:
            with self._read() as db:
                if self._acyclic(db, ordering):
                    task_id = self._candidate(db, ordering, _ts(self._now()), skip, review_satisfies)
                    return self._one(db, task_id) if task_id is not None else None
            self._check_cycles(ordering)

    def count_ready(self, ordering: scheduler.Ordering = "strict") -> int:
        _sql.check_ordering(ordering)
        while True:
            with self._read() as db:
                if self._acyclic(db, ordering):
                    return self._ready_count(db, ordering, _ts(self._now()))
            self._check_cycles(ordering)

    # -- writing -------------------------------------------------------------------------
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        result = CreateResult()
        if not new_tasks:
            return result
        with self._write() as db:
            known: dict[str, str] = dict(
                db.execute(
                    "SELECT key, id FROM tasks WHERE key IN (SELECT value FROM json_each(?))",
                    (json.dumps(_sql.keys_of(new_tasks)),),
                )
            )
            number = db.execute("SELECT value FROM meta WHERE key = 'next_task_number'").fetchone()[0]
            plan = _sql.plan_batch(new_tasks, known, number, self._now())
            batch = plan.created
            if batch:
                db.executemany(
                    "INSERT INTO tasks (id, key, title, description, acceptance_criteria, test_steps, status, "
                    "priority, labels, kind, phase, number, letter, prio, is_meta, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            t.id, t.key, t.title, t.description, _json(t.acceptance_criteria),
                            _json(t.test_steps), t.status.value, t.priority.value, _json(t.labels),
                            *_sql.schedule_columns(t), *[_ts(t.created_at)] * 2,  # a new task: updated = created
                        )
                        for t in batch.values()
                    ),
                )  # fmt: skip
                db.executemany(
                    "INSERT INTO dependencies (task_id, depends_on, pos) VALUES (?, ?, ?)",
                    ((t.id, dep, pos) for t in batch.values() for pos, dep in enumerate(t.dependencies)),
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_task_number'", (plan.next_number,))
                self._bump_graph(db)
                if len(batch) >= PROVE_ACYCLIC_AFTER and not self._forward_dependency(db):
                    # an init-sized batch: prove the new graph free of cycles now, in its own
                    # transaction, so the first `next` or claim after it does not pay for it
                    rev = db.execute("SELECT value FROM meta WHERE key = 'graph_rev'").fetchone()[0]
                    self._record_acyclic(db, scheduler.ORDERINGS, rev)
            result.created = list(batch.values())
            by_id = {t.id: t for t in result.created}
            for tid in plan.existing_ids:
                result.existing.append(by_id[tid].copy() if tid in by_id else self._one(db, tid))
        return result

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
        (``base.update_ends_claim``): a forced takeover bumps the fence so the holder's
        token is stale, and returns an ``in_progress`` task to ``todo`` unless a status is given."""
        changes = given(
            title=title, description=description, acceptance_criteria=acceptance_criteria, test_steps=test_steps,
            status=status, priority=priority, labels=labels, dependencies=dependencies,
        )  # fmt: skip
        with self._write() as db:
            now = self._now()
            row = self._row(db, task_id)
            claim = self._claim_of(row)
            check_token(row["key"], task_id, token, claim, row["fence"])
            live = claim is not None and row["expires_at"] > _ts(now)
            end_claim = update_ends_claim(
                row["key"], task_id, claim, live, token=token, force=force, status_given="status" in changes
            )
            current = _sql.Current(
                task_id, row["key"], row["title"], TaskStatus(row["status"]), Priority(row["priority"]),
                json.loads(row["labels"]), row["fence"],
            )  # fmt: skip
            plan = _sql.plan_update(current, changes, end_claim)
            sets: dict[str, Any] = {"updated_at": _ts(now)}
            for column, value in plan.sets.items():
                sets[column] = json.dumps(value) if column in _LIST_COLUMNS else value
            if plan.dependencies is not None:
                deps = plan.dependencies
                found = db.execute(
                    "SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(deps),)
                )
                _sql.check_dependencies(task_id, deps, (r[0] for r in found))
                db.execute("DELETE FROM dependencies WHERE task_id = ?", (task_id,))
                db.executemany(
                    "INSERT INTO dependencies (task_id, depends_on, pos) VALUES (?, ?, ?)",
                    ((task_id, dep, pos) for pos, dep in enumerate(deps)),
                )
            assignments = ", ".join(f"{column} = ?" for column in sets)
            db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*sets.values(), task_id))
            if plan.graph_changed:
                self._bump_graph(db)
            return self._one(db, task_id)

    @staticmethod
    def _claim_of(row: dict[str, Any]) -> Claim | None:
        return Claim(row["worker_id"], _dt(row["expires_at"]), row["fence"]) if row["worker_id"] is not None else None

    @classmethod
    def _check_token(cls, row: dict[str, Any], token: int | None) -> None:
        check_token(row["key"], row["id"], token, cls._claim_of(row), row["fence"])

    def add_note(self, task_id: str, text: str, author: str, *, token: int | None = None) -> Note:
        """Append a note. Without a token a note is always accepted, even on a claimed task:
        it adds to the record and overwrites nothing the holder wrote."""
        with self._write() as db:
            now = self._now()
            self._check_token(self._row(db, task_id), token)
            note = Note(text=text, author=author, at=now)
            db.execute(
                "INSERT INTO notes (task_id, at, author, text) VALUES (?, ?, ?, ?)", (task_id, _ts(now), author, text)
            )
            db.execute("UPDATE tasks SET updated_at = ? WHERE id = ?", (_ts(now), task_id))
            return note

    # -- claims --------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        with self._write() as db:
            now = self._now()
            row = self._row(db, task_id)
            probe = Task(
                id=task_id, key=row["key"], title=row["title"], status=TaskStatus(row["status"]),
                claim=self._claim_of(row),
            )  # fmt: skip
            check_takeable(probe, now)
            self._take(db, task_id, worker_id, lease_seconds, now)
            return self._one(db, task_id)

    @staticmethod
    def _take(db: sqlite3.Connection, task_id: str, worker_id: str, lease_seconds: float, now: datetime) -> None:
        db.execute(
            "UPDATE tasks SET status = 'in_progress', worker_id = ?, expires_at = ?, fence = fence + 1, "
            "updated_at = ? WHERE id = ?",
            (worker_id, _ts(now + timedelta(seconds=lease_seconds)), _ts(now), task_id),
        )

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        with self._write() as db:
            now = self._now()
            self._check_token(self._row(db, task_id), token)
            db.execute(
                "UPDATE tasks SET expires_at = ?, updated_at = ? WHERE id = ?",
                (_ts(now + timedelta(seconds=lease_seconds)), _ts(now), task_id),
            )
            return self._one(db, task_id)

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
        with self._write() as db:
            now = self._now()
            row = self._row(db, task_id)
            self._check_token(row, token)
            new_status = TaskStatus(status)
            db.execute(
                "UPDATE tasks SET status = ?, worker_id = NULL, expires_at = NULL, cost_usd = cost_usd + ?, "
                "turns = turns + ?, updated_at = ? WHERE id = ?",
                (new_status.value, cost_usd, turns, _ts(now), task_id),
            )
            if note is not None:
                db.execute(
                    "INSERT INTO notes (task_id, at, author, text) VALUES (?, ?, ?, ?)",
                    (task_id, _ts(now), author, note),
                )
            if TaskStatus(row["status"]).satisfied and not new_status.satisfied:
                self._bump_graph(db)
            return self._one(db, task_id)

    def claim_next(
        self,
        worker_id: str,
        lease_seconds: float,
        ordering: scheduler.Ordering = "strict",
        exclude: Iterable[str] = (),
        review_satisfies: bool = False,
    ) -> Task | None:
        """Find the scheduler's next ready task in SQL and claim it in the same transaction."""
        _sql.check_ordering(ordering)
        skip = json.dumps(sorted(set(exclude)))
        while True:
            with self._write() as db:
                if self._acyclic(db, ordering):
                    now = self._now()
                    task_id = self._candidate(db, ordering, _ts(now), skip, review_satisfies)
                    if task_id is None:
                        return None
                    self._take(db, task_id, worker_id, lease_seconds, now)
                    return self._one(db, task_id)
            self._check_cycles(ordering)  # outside the write lock; then look again

    @staticmethod
    def _acyclic(db: sqlite3.Connection, ordering: str) -> bool:
        """Whether the graph's current revision was proven free of cycles for ``ordering``."""
        rev, verified = db.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'graph_rev'), (SELECT value FROM meta WHERE key = ?)",
            (f"acyclic_{ordering}",),
        ).fetchone()
        return rev == verified

    @staticmethod
    def _forward_dependency(db: sqlite3.Connection) -> bool:
        """Whether an explicit dependency among open tasks points at a task later in
        scheduling order. The policies' implicit edges all point to earlier tasks, so
        without one, scheduling order is a topological order and there is no cycle under
        any policy; with one, the scheduler's own check decides."""
        return (
            db.execute(
                # CROSS JOIN fixes the loop order: every dependency once, both ends by primary key
                f"SELECT 1 FROM dependencies d CROSS JOIN tasks t CROSS JOIN tasks x "
                f"WHERE t.id = d.task_id AND x.id = d.depends_on "
                f"AND t.status IN {_OPEN} AND t.kind >= 1 AND x.status IN {_OPEN} AND x.kind >= 1 "
                f"AND (x.kind, x.phase, x.number, x.letter, x.prio, x.created_at, x.id) "
                f">= (t.kind, t.phase, t.number, t.letter, t.prio, t.created_at, t.id) LIMIT 1"
            ).fetchone()
            is not None
        )

    @staticmethod
    def _record_acyclic(db: sqlite3.Connection, orderings: Iterable[str], rev: int) -> None:
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [(f"acyclic_{ordering}", rev) for ordering in orderings],
        )

    def _check_cycles(self, ordering: scheduler.Ordering) -> None:
        """Raise DependencyCycle exactly when the scheduler would; otherwise record in
        ``meta`` that this graph revision is free of cycles, so that no process checks
        it again (only writes that can close a cycle bump ``graph_rev``)."""
        with self._read() as db:
            rev = db.execute("SELECT value FROM meta WHERE key = 'graph_rev'").fetchone()[0]
            if self._forward_dependency(db):
                graph = _sql.open_graph(
                    db.execute(_sql.OPEN_GRAPH_TASKS),
                    db.execute(_sql.OPEN_GRAPH_DEPENDENCIES).fetchall(),
                    decode_list=_list,
                    decode_time=_dt,
                )
                scheduler.check_cycles(graph, ordering)
        with self._write() as db:
            self._record_acyclic(db, [ordering], rev)

    @staticmethod
    def _candidate(db: sqlite3.Connection, ordering: str, now: str, exclude: str, review: bool = False) -> str | None:
        """The id of the first ready task in scheduling order, as ``scheduler.next_ready``
        decides it. Phased tasks (kind 1) come before tracker ids and the rest (2, 3);
        META (0) is never handed out. ``review``: in_review counts as finished."""
        if review:
            db = _ReviewSatisfies(db)  # type: ignore[assignment]
        params = {"now": now, "exclude": exclude}
        if ordering == "dependencies":
            row = db.execute(f"SELECT t.id FROM {_OPEN_TASKS} WHERE t.kind >= 1 AND {_READY} {_ORDER} LIMIT 1", params)
            found = row.fetchone()
            return found[0] if found else None
        head = db.execute(
            f"SELECT t.id, t.phase FROM {_OPEN_TASKS} WHERE t.status IN {_OPEN} {_HEAD_MARK} AND t.kind = 1 {_ORDER} "
            "LIMIT 1"
        ).fetchone()
        if head is not None:
            if ordering == "strict":  # only the first open phased task may run
                gate, extra = "t.id = :head", {"head": head[0]}
            else:  # phases: only tasks of the first phase with open tasks
                gate, extra = "t.kind = 1 AND t.phase = :phase", {"phase": head[1]}
            found = db.execute(f"SELECT t.id FROM tasks t WHERE {gate} AND {_READY} {_ORDER} LIMIT 1", params | extra)
            row = found.fetchone()
            if row:
                return row[0]
        found = db.execute(f"SELECT t.id FROM {_OPEN_TASKS} WHERE t.kind >= 2 AND {_READY} {_ORDER} LIMIT 1", params)
        row = found.fetchone()
        return row[0] if row else None

    @staticmethod
    def _ready_count(db: sqlite3.Connection, ordering: str, now: str) -> int:
        """How many tasks :meth:`_candidate` could return (with nothing excluded)."""
        params: dict[str, Any] = {"now": now, "exclude": "[]"}
        if ordering == "dependencies":
            query = f"SELECT count(*) FROM {_OPEN_TASKS} WHERE t.kind >= 1 AND {_READY}"
            return db.execute(query, params).fetchone()[0]
        count = db.execute(f"SELECT count(*) FROM {_OPEN_TASKS} WHERE t.kind >= 2 AND {_READY}", params).fetchone()[0]
        head = db.execute(
            f"SELECT t.id, t.phase FROM {_OPEN_TASKS} WHERE t.status IN {_OPEN} {_HEAD_MARK} AND t.kind = 1 {_ORDER} "
            "LIMIT 1"
        ).fetchone()
        if head is not None:
            if ordering == "strict":
                gate, extra = "t.id = :head", {"head": head[0]}
            else:
                gate, extra = "t.kind = 1 AND t.phase = :phase", {"phase": head[1]}
            count += db.execute(f"SELECT count(*) FROM tasks t WHERE {gate} AND {_READY}", params | extra).fetchone()[0]
        return count

    # -- sessions ------------------------------------------------------------------------
    def record_session(self, session: SessionRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions (id, worker_id, started_at, ended_at, state, summary) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET worker_id = excluded.worker_id, started_at = excluded.started_at, "
                "ended_at = excluded.ended_at, state = excluded.state, summary = excluded.summary",
                (
                    session.id,
                    session.worker_id,
                    _ts(session.started_at),
                    _ts(session.ended_at) if session.ended_at else None,
                    session.state,
                    json.dumps(session.summary),
                ),
            )

    def list_sessions(self, limit: int = 20) -> list[SessionRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, worker_id, started_at, ended_at, state, summary FROM sessions "
                "ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            SessionRecord(
                id=sid,
                worker_id=worker,
                started_at=_dt(started),
                ended_at=_dt(ended) if ended else None,
                state=state,
                summary=json.loads(summary),
            )
            for sid, worker, started, ended, state, summary in rows
        ]


class _ReviewSatisfies:
    """A connection whose readiness queries count ``in_review`` as finished (the queries
    exist once, for the default; ``_sql.review_satisfies`` rewrites them)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._db.execute(_sql.review_satisfies(sql), params)
