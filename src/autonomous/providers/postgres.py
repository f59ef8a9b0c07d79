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

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from autonomous import scheduler
from autonomous.errors import ClaimConflict, ProviderError, TaskNotFound
from autonomous.providers import _sql
from autonomous.providers._pg import DEFAULT_SCHEMA, RETRY, Jsonb, PgDatabase, Retry, sql
from autonomous.providers._pg_sql import (
    CLAIM_NEXT,
    CLAIM_SET,
    COLUMNS,
    COUNT_READY,
    NEXT_READY,
    NOW,
    TAKEABLE,
    same_time,
    task_of,
)
from autonomous.providers._sql import ID_PREFIX
from autonomous.providers._sql import ORDER as _ORDER
from autonomous.providers._sql import SATISFIED as _SATISFIED
from autonomous.providers.base import (
    CreateResult,
    ReadyQuery,
    Release,
    SessionRecord,
    StateProvider,
    TaskChanges,
    TaskCounts,
    check_takeable,
    check_token,
    stale_claim,
    update_ends_claim,
)
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus

ANALYZE_AFTER = 100  # tasks created in one batch that call for fresh planner statistics


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
        self._db = PgDatabase(
            dsn,
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
            drop_schema_on_close=drop_schema_on_close,
        )
        self.schema = schema
        self.where = self._db.where
        self._now = now
        self._acyclic: dict[str, int] = {}  # ordering -> graph_rev found free of cycles

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        return self._db.schema_version()

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self._now() if self._now is not None else None
        return params

    def _nonce_task(self, conn: Any, nonce: uuid.UUID) -> Task | None:
        row = conn.execute(f"SELECT {COLUMNS} FROM tasks t WHERE t.write_nonce = %s", (nonce,)).fetchone()
        return task_of(row) if row else None

    def _sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in the store's schema (tests, maintenance); its rows, if any."""

        def work(conn: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

        return self._db.run(work, idempotent=False)

    # -- reading -------------------------------------------------------------------------
    def list_tasks(self, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        if statuses is None:
            query, params = f"SELECT {COLUMNS} FROM tasks t ORDER BY t.num", None
        else:
            wanted = [TaskStatus(s).value for s in statuses]
            query, params = f"SELECT {COLUMNS} FROM tasks t WHERE t.status = ANY(%s) ORDER BY t.num", (wanted,)
        return self._db.run(lambda c: [task_of(r) for r in c.execute(query, params)], doing="listing tasks")

    def get_task(self, task_id: str) -> Task:
        row = self._db.run(lambda c: c.execute(f"SELECT {COLUMNS} FROM tasks t WHERE t.id = %s", (task_id,)).fetchone())
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task_of(row)

    def find_task(self, ref: str) -> Task:
        row = self._db.run(
            lambda c: c.execute(
                f"SELECT {COLUMNS} FROM tasks t WHERE t.id = %(ref)s OR lower(t.key) = lower(%(ref)s) "
                "ORDER BY t.id = %(ref)s DESC, t.key = %(ref)s DESC, t.num LIMIT 1",
                {"ref": ref},
            ).fetchone()
        )
        if row is None:
            raise TaskNotFound(f"no task with id or key {ref!r}")
        return task_of(row)

    def meta_task(self) -> Task | None:
        query = f"SELECT {COLUMNS} FROM tasks t WHERE t.kind = 0 {_ORDER} LIMIT 1"
        row = self._db.run(lambda c: c.execute(query).fetchone())
        return task_of(row) if row else None

    def iter_tasks(
        self, statuses: Iterable[TaskStatus] | None = None, *, limit: int | None = None, offset: int = 0
    ) -> Iterator[Task]:
        """Stream tasks in scheduling order through a server-side cursor, in one
        read-only snapshot on a pooled connection of its own (the store stays usable
        while iterating). A dropped connection ends the stream with a ProviderError."""
        wanted = None if statuses is None else [TaskStatus(s).value for s in statuses]
        query = (
            f"SELECT {COLUMNS} FROM tasks t WHERE (%(wanted)s::text[] IS NULL OR t.status = ANY(%(wanted)s)) "
            f"{_ORDER} LIMIT %(limit)s OFFSET %(offset)s"
        )
        params = {"wanted": wanted, "limit": limit, "offset": max(0, offset)}
        for row in self._db.stream(query, params, "listing tasks"):
            yield task_of(row)

    def count_by_status(self) -> TaskCounts:
        rows = self._db.run(
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

    def _next_ready(self, query: ReadyQuery) -> Task | None:
        """``claim_next``'s candidate query, without the claim."""
        row = self._ready(NEXT_READY, query)
        return task_of(row[1:]) if row[1] is not None else None

    def _count_ready(self, query: ReadyQuery) -> int:
        return int(self._ready(COUNT_READY, query)[1])

    def _ready(self, statements: dict[str, dict[bool, str]], query: ReadyQuery) -> Any:
        """The row of a readiness query, on a graph revision checked free of cycles."""
        ordering = query.ordering
        while True:
            rev = self._acyclic.get(ordering)
            if rev is None:
                self._check_cycles(ordering)
                continue
            params = self._params(exclude=query.exclude)
            statement = statements[ordering][query.review_satisfies]
            row = self._db.run(lambda c, p=params, q=statement: c.execute(q, p).fetchone(), doing="finding ready tasks")
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
                    f"SELECT value, {NOW} FROM meta WHERE key = 'next_task_number' FOR UPDATE", self._params()
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
                    r[0]: task_of(r)
                    for r in conn.execute(f"SELECT {COLUMNS} FROM tasks t WHERE t.id = ANY(%s)", (missing,))
                }
                result.existing = [by_id[tid].copy() if tid in by_id else found[tid] for tid in plan.existing_ids]
            return result

        def recover(conn: Any) -> CreateResult | Retry:
            if conn.execute("SELECT 1 FROM tasks WHERE write_nonce = %s LIMIT 1", (nonce,)).fetchone() is None:
                return RETRY
            # it committed: rebuild the answer; the batch's own rows carry its nonce
            result = CreateResult()
            seen: set[str] = set()
            cur = conn.execute(
                f"SELECT t.write_nonce = %s, {COLUMNS} FROM tasks t WHERE t.key = ANY(%s)",
                (nonce, [nt.key for nt in new_tasks]),
            )
            by_key = {row[2]: (row[0], task_of(row[1:])) for row in cur}
            for nt in new_tasks:
                mine, task = by_key[nt.key]
                (result.created if mine and nt.key not in seen else result.existing).append(task)
                seen.add(nt.key)
            return result

        result = self._db.run(work, recover=recover, doing="creating tasks")
        if len(result.created) >= ANALYZE_AFTER:
            # A fresh table has no statistics until autovacuum comes by, and without them the
            # planner sorts every open task for each claim instead of walking the ordered index.
            self._db.run(lambda c: c.execute("ANALYZE tasks, dependencies"), doing="analyzing new tasks")
        return result

    @staticmethod
    def _bump_graph(conn: Any) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'graph_rev'")

    def _update_task(self, task_id: str, changes: TaskChanges, *, token: int | None, force: bool) -> Task:
        """Change the given fields, under the contract's token and ``force`` rules
        (``base.update_ends_claim``), checked and written in one transaction."""
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            with conn.transaction():
                row = conn.execute(
                    f"SELECT id, key, title, status, priority, labels, worker_id, expires_at, fence, "
                    f"worker_id IS NOT NULL AND expires_at > {NOW}, {NOW} FROM tasks WHERE id = %(id)s FOR UPDATE",
                    self._params(id=task_id),
                ).fetchone()
                if row is None:
                    raise TaskNotFound(f"no task with id {task_id!r}")
                _, key, old_title, old_status, old_priority, old_labels, worker, expires, fence, live, now = row
                claim = Claim(worker, expires, fence) if worker is not None else None
                check_token(key, task_id, token, claim, fence)
                end_claim = update_ends_claim(key, task_id, claim, live, changes, token=token, force=force)
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
                return task_of(conn.execute(f"SELECT {COLUMNS} FROM tasks t WHERE t.id = %s", (task_id,)).fetchone())

        return self._db.run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"updating {task_id}")

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
                        UPDATE tasks t SET updated_at = {NOW}, write_nonce = %(nonce)s
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

        def recover(conn: Any) -> Note | Retry:
            task = self._nonce_task(conn, nonce)
            return Note(text=text, author=author, at=task.updated_at) if task else RETRY

        return self._db.run(work, recover=recover, doing=f"adding a note to {task_id}")

    # -- claims --------------------------------------------------------------------------
    def claim(self, task_id: str, worker_id: str, lease_seconds: float) -> Task:
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            params = self._params(id=task_id, worker=worker_id, lease=timedelta(seconds=lease_seconds), nonce=nonce)
            row = conn.execute(
                f"UPDATE tasks t SET {CLAIM_SET} WHERE t.id = %(id)s AND {TAKEABLE} RETURNING {COLUMNS}", params
            ).fetchone()
            if row is not None:
                return task_of(row)
            row = conn.execute(
                f"SELECT {COLUMNS}, {NOW} FROM tasks t WHERE t.id = %(id)s", self._params(id=task_id)
            ).fetchone()
            if row is None:
                raise TaskNotFound(f"no task with id {task_id!r}")
            current = task_of(row[:-1])
            check_takeable(current, row[-1])
            raise ClaimConflict(f"{current.key} ({task_id}) cannot be claimed: taken meanwhile")

        return self._db.run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"claiming {task_id}")

    def renew(self, task_id: str, token: int, lease_seconds: float) -> Task:
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            row = conn.execute(
                f"UPDATE tasks t SET expires_at = {NOW} + %(lease)s::interval, updated_at = {NOW}, "
                f"write_nonce = %(nonce)s WHERE t.id = %(id)s AND t.fence = %(token)s AND t.worker_id IS NOT NULL "
                f"RETURNING {COLUMNS}",
                self._params(id=task_id, token=token, lease=timedelta(seconds=lease_seconds), nonce=nonce),
            ).fetchone()
            if row is None:
                raise self._refused(conn, task_id, token)
            return task_of(row)

        return self._db.run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"renewing {task_id}")

    def _release(self, task_id: str, token: int, release: Release) -> Task:
        nonce = uuid.uuid4()

        def work(conn: Any) -> Task:
            # One statement: the fenced update, the note, and (if a finished task is
            # reopened, which can close a cycle) the graph revision.
            row = conn.execute(
                f"""WITH old AS (SELECT status FROM tasks WHERE id = %(id)s),
                    upd AS (
                        UPDATE tasks t SET status = %(status)s, worker_id = NULL, expires_at = NULL,
                            cost_usd = t.cost_usd + %(cost)s, turns = t.turns + %(turns)s, updated_at = {NOW},
                            write_nonce = %(nonce)s
                        FROM old WHERE t.id = %(id)s AND t.fence = %(token)s AND t.worker_id IS NOT NULL
                        RETURNING t.*, old.status AS old_status),
                    noted AS (
                        INSERT INTO notes (task_id, at, author, text)
                        SELECT id, updated_at, %(author)s, %(note)s FROM upd WHERE %(note)s::text IS NOT NULL),
                    bump AS (
                        UPDATE meta SET value = value + 1 WHERE key = 'graph_rev' AND EXISTS (
                            SELECT 1 FROM upd WHERE old_status IN {_SATISFIED} AND status NOT IN {_SATISFIED}))
                    SELECT {COLUMNS.replace("t.", "u.")} FROM upd u""",
                self._params(
                    id=task_id, token=token, status=release.status.value, cost=release.cost_usd, turns=release.turns,
                    nonce=nonce, author=release.author, note=release.note,
                ),
            ).fetchone()  # fmt: skip
            if row is None:
                raise self._refused(conn, task_id, token)
            task = task_of(row)
            if release.note is not None:  # written by this statement, so not in its snapshot
                task.notes.append(Note(text=release.note, author=release.author, at=task.updated_at))
            return task

        return self._db.run(work, recover=lambda c: self._nonce_task(c, nonce) or RETRY, doing=f"releasing {task_id}")

    def _claim_next(self, worker_id: str, lease_seconds: float, query: ReadyQuery) -> Task | None:
        """Find the scheduler's next ready task in SQL and claim it, in one statement."""
        ordering, lease = query.ordering, timedelta(seconds=lease_seconds)
        while True:
            rev = self._acyclic.get(ordering)
            if rev is None:
                self._check_cycles(ordering)
                continue
            nonce = uuid.uuid4()
            found_rev, task = self._db.run(
                lambda c, r=rev, n=nonce: self._claim_next_work(
                    c, CLAIM_NEXT[ordering][query.review_satisfies], r, worker_id, lease, query.exclude, n
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
        return row[0], (task_of(row[1:]) if row[1] is not None else None)

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

        rev, rows, dep_rows = self._db.run(work, doing="checking dependencies")
        scheduler.check_cycles(_sql.open_graph(rows, dep_rows, decode_list=list, decode_time=same_time), ordering)
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
        self._db.run(
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
        rows = self._db.run(
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
