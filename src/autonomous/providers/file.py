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

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from autonomous import scheduler
from autonomous.errors import TaskNotFound
from autonomous.providers import _sql
from autonomous.providers._sql import HEAD_MARK
from autonomous.providers._sql import OPEN as _OPEN
from autonomous.providers._sql import ORDER as _ORDER
from autonomous.providers._sql import SATISFIED as _SATISFIED
from autonomous.providers._sqlite import SqliteFile
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
    update_ends_claim,
)
from autonomous.providers.base import iso_time as _ts
from autonomous.tasks import Claim, NewTask, Note, Priority, Task, TaskStatus, utcnow

FILENAME = "tasks.db"
DEFAULT_STATE_DIR = Path(".ai-agents") / "state"

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


def _json(items: list[str]) -> str:
    return json.dumps(items) if items else "[]"


def _list(text: str) -> list[str]:
    return json.loads(text) if text != "[]" else []


_dt = datetime.fromisoformat  # what _ts wrote
_PAGE = 500  # rows per fetch when streaming tasks
PROVE_ACYCLIC_AFTER = 100  # tasks created in one batch that are proven free of cycles at once
_LIST_COLUMNS = ("acceptance_criteria", "test_steps", "labels")


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
        self._file = SqliteFile(self.path, busy_timeout)
        self._file.db()  # open now, so a bad file is reported at once

    def close(self) -> None:
        self._file.close()

    # -- rows -> tasks -----------------------------------------------------------------
    def _tasks(
        self, db: sqlite3.Connection, where: str = "", params: Sequence[Any] = (), limit: int = -1
    ) -> list[Task]:
        rows = db.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks t {where} ORDER BY t.rowid LIMIT {int(limit)}", params
        ).fetchall()
        if not rows:
            return []
        if len(rows) == 1:
            return self._decode(db, rows, "WHERE task_id = ?", (rows[0][0],))
        return self._decode(db, rows)

    @staticmethod
    def _decode(db: sqlite3.Connection, rows: list[Any], where: str = "", params: Sequence[Any] = ()) -> list[Task]:
        """The tasks of ``rows`` (of ``_TASK_COLUMNS``), their dependencies and notes read
        from the links ``where`` selects (all of them, by default)."""
        deps: dict[str, list[str]] = {}
        notes: dict[str, list[Note]] = {}
        for task_id, depends_on in db.execute(
            f"SELECT task_id, depends_on FROM dependencies {where} ORDER BY task_id, pos", params
        ):
            deps.setdefault(task_id, []).append(depends_on)
        for task_id, at, author, text in db.execute(
            f"SELECT task_id, at, author, text FROM notes {where} ORDER BY id", params
        ):
            notes.setdefault(task_id, []).append(Note(text=text, author=author, at=_dt(at)))
        return [
            _sql.row_task(row, deps.get(row[0], []), notes.get(row[0], []), decode_list=_list, decode_time=_dt)
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
        with self._file.read() as db:
            if statuses is None:
                return self._tasks(db)
            wanted = [TaskStatus(s).value for s in statuses]
            return self._tasks(db, "WHERE t.status IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))

    def get_task(self, task_id: str) -> Task:
        with self._file.read() as db:
            return self._one(db, task_id)

    def find_task(self, ref: str) -> Task:
        with self._file.read() as db:
            for where in ("WHERE t.id = ?", "WHERE t.key = ?", "WHERE t.key = ? COLLATE NOCASE"):
                found = self._tasks(db, where, (ref,), limit=1)
                if found:
                    return found[0]
        raise TaskNotFound(f"no task with id or key {ref!r}")

    def meta_task(self) -> Task | None:
        with self._file.read() as db:
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
        with self._file.snapshot() as db:
            cursor = db.execute(query, (*params, -1 if limit is None else limit, max(0, offset)))
            while rows := cursor.fetchmany(_PAGE):
                ids = json.dumps([row[0] for row in rows])
                yield from self._decode(db, rows, "WHERE task_id IN (SELECT value FROM json_each(?))", (ids,))

    def count_by_status(self) -> TaskCounts:
        counts = TaskCounts()
        with self._file.read() as db:
            for status, n, cost in db.execute(
                "SELECT status, count(*), total(cost_usd) FROM tasks WHERE kind >= 1 GROUP BY status"
            ):
                counts.by_status[TaskStatus(status)] = n
                counts.cost_usd += cost
        return counts

    def _next_ready(self, query: ReadyQuery) -> Task | None:
        """``claim_next``'s candidate query, in a read transaction: nothing is claimed."""
        skip = json.dumps(query.exclude)
        while True:
            with self._file.read() as db:
                if self._acyclic(db, query.ordering):
                    task_id = self._candidate(db, query.ordering, _ts(self._now()), skip, query.review_satisfies)
                    return self._one(db, task_id) if task_id is not None else None
            self._check_cycles(query.ordering)

    def _count_ready(self, query: ReadyQuery) -> int:
        while True:
            with self._file.read() as db:
                if self._acyclic(db, query.ordering):
                    return self._ready_count(db, query.ordering, _ts(self._now()), query.review_satisfies)
            self._check_cycles(query.ordering)

    # -- writing -------------------------------------------------------------------------
    def create_tasks(self, new_tasks: Sequence[NewTask]) -> CreateResult:
        result = CreateResult()
        if not new_tasks:
            return result
        with self._file.write() as db:
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

    def _update_task(self, task_id: str, changes: TaskChanges, *, token: int | None, force: bool) -> Task:
        """Change the given fields, under the contract's token and ``force`` rules
        (``base.update_ends_claim``): a forced takeover bumps the fence so the holder's
        token is stale, and returns an ``in_progress`` task to ``todo`` unless a status is given."""
        with self._file.write() as db:
            now = self._now()
            row = self._row(db, task_id)
            claim = self._claim_of(row)
            check_token(row["key"], task_id, token, claim, row["fence"])
            live = claim is not None and row["expires_at"] > _ts(now)
            end_claim = update_ends_claim(row["key"], task_id, claim, live, changes, token=token, force=force)
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
        with self._file.write() as db:
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
        with self._file.write() as db:
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
        with self._file.write() as db:
            now = self._now()
            self._check_token(self._row(db, task_id), token)
            db.execute(
                "UPDATE tasks SET expires_at = ?, updated_at = ? WHERE id = ?",
                (_ts(now + timedelta(seconds=lease_seconds)), _ts(now), task_id),
            )
            return self._one(db, task_id)

    def _release(self, task_id: str, token: int, release: Release) -> Task:
        with self._file.write() as db:
            now = self._now()
            row = self._row(db, task_id)
            self._check_token(row, token)
            db.execute(
                "UPDATE tasks SET status = ?, worker_id = NULL, expires_at = NULL, cost_usd = cost_usd + ?, "
                "turns = turns + ?, updated_at = ? WHERE id = ?",
                (release.status.value, release.cost_usd, release.turns, _ts(now), task_id),
            )
            if release.note is not None:
                db.execute(
                    "INSERT INTO notes (task_id, at, author, text) VALUES (?, ?, ?, ?)",
                    (task_id, _ts(now), release.author, release.note),
                )
            if TaskStatus(row["status"]).satisfied and not release.status.satisfied:
                self._bump_graph(db)
            return self._one(db, task_id)

    def _claim_next(self, worker_id: str, lease_seconds: float, query: ReadyQuery) -> Task | None:
        """Find the scheduler's next ready task in SQL and claim it in the same transaction."""
        skip = json.dumps(query.exclude)
        while True:
            with self._file.write() as db:
                if self._acyclic(db, query.ordering):
                    now = self._now()
                    task_id = self._candidate(db, query.ordering, _ts(now), skip, query.review_satisfies)
                    if task_id is None:
                        return None
                    self._take(db, task_id, worker_id, lease_seconds, now)
                    return self._one(db, task_id)
            self._check_cycles(query.ordering)  # outside the write lock; then look again

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
        with self._file.read() as db:
            rev = db.execute("SELECT value FROM meta WHERE key = 'graph_rev'").fetchone()[0]
            if self._forward_dependency(db):
                graph = _sql.open_graph(
                    db.execute(_sql.OPEN_GRAPH_TASKS),
                    db.execute(_sql.OPEN_GRAPH_DEPENDENCIES).fetchall(),
                    decode_list=_list,
                    decode_time=_dt,
                )
                scheduler.check_cycles(graph, ordering)
        with self._file.write() as db:
            self._record_acyclic(db, [ordering], rev)

    @staticmethod
    def _ready(db: sqlite3.Connection, ordering: str, now: str, exclude: str, what: str) -> Iterator[Any]:
        """``what`` (``t.id`` of the first, or ``count(*)``) of the ready tasks, part by part
        of scheduling order, as ``scheduler.next_ready`` decides readiness: phased tasks
        (kind 1, gated by the ordering policy) before tracker ids and the rest (2, 3);
        META (0) is never handed out. Lazy: the first ready id needs only its part."""
        params = {"now": now, "exclude": exclude}
        tail = f"{_ORDER} LIMIT 1" if what == "t.id" else ""
        parts: list[tuple[str, str, dict[str, Any]]] = [(_OPEN_TASKS, "t.kind >= 1", {})]
        if ordering != "dependencies":
            parts = [(_OPEN_TASKS, "t.kind >= 2", {})]
            head = db.execute(
                f"SELECT t.id, t.phase FROM {_OPEN_TASKS} WHERE t.status IN {_OPEN} {_HEAD_MARK} AND t.kind = 1 "
                f"{_ORDER} LIMIT 1"
            ).fetchone()
            if head is not None and ordering == "strict":  # only the first open phased task may run
                parts.insert(0, ("tasks t", "t.id = :head", {"head": head[0]}))
            elif head is not None:  # phases: only tasks of the first phase with open tasks
                parts.insert(0, ("tasks t", "t.kind = 1 AND t.phase = :phase", {"phase": head[1]}))
        for source, gate, extra in parts:
            row = db.execute(f"SELECT {what} FROM {source} WHERE {gate} AND {_READY} {tail}", params | extra).fetchone()
            yield row[0] if row else None

    @classmethod
    def _candidate(
        cls, db: sqlite3.Connection, ordering: str, now: str, exclude: str, review: bool = False
    ) -> str | None:
        """The id of the first ready task in scheduling order. ``review``: in_review counts as finished."""
        if review:
            db = _ReviewSatisfies(db)  # type: ignore[assignment]
        return next((tid for tid in cls._ready(db, ordering, now, exclude, "t.id") if tid is not None), None)

    @classmethod
    def _ready_count(cls, db: sqlite3.Connection, ordering: str, now: str, review: bool = False) -> int:
        """How many tasks :meth:`_candidate` could return (with nothing excluded)."""
        if review:
            db = _ReviewSatisfies(db)  # type: ignore[assignment]
        return sum(cls._ready(db, ordering, now, "[]", "count(*)"))

    # -- sessions ------------------------------------------------------------------------
    def record_session(self, session: SessionRecord) -> None:
        with self._file.write() as db:
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
        with self._file.read() as db:
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
