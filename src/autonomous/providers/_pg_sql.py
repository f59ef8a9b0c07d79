"""The postgres store's statements that are text built once, at import: the task columns
(with dependencies and notes aggregated in), and for each ordering policy the readiness
query and the one statement that finds and claims the next ready task. They are the
scheduler's readiness rule in SQL (see :mod:`autonomous.scheduler`); the contract suite
checks on random task sets that they pick the task the scheduler picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from autonomous import scheduler
from autonomous.providers import _sql
from autonomous.providers._sql import OPEN as _OPEN
from autonomous.providers._sql import ORDER as _ORDER
from autonomous.providers._sql import SATISFIED as _SATISFIED
from autonomous.tasks import Note, Task

NOW = "coalesce(%(now)s::timestamptz, now())"
TAKEABLE = f"""
    ((t.status = 'todo' AND (t.worker_id IS NULL OR t.expires_at <= {NOW}))
     OR (t.status = 'in_progress' AND t.worker_id IS NOT NULL AND t.expires_at <= {NOW}))
"""
# The scheduler's readiness of one open task, minus the policy's gate.
_READY = f"""
    t.status IN {_OPEN}
    AND {TAKEABLE}
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
    f"SELECT h.id, h.phase FROM tasks h WHERE h.status IN {_OPEN} {_sql.HEAD_MARK.format('h')} AND h.kind = 1 "
    f"{_ORDER.replace('t.', 'h.')} LIMIT 1"
)
COLUMNS = (
    "t.id, t.key, t.title, t.description, t.acceptance_criteria, t.test_steps, t.status, t.priority, t.labels, "
    "t.worker_id, t.expires_at, t.fence, t.created_at, t.updated_at, t.cost_usd, t.turns, "
    "coalesce((SELECT array_agg(d.depends_on ORDER BY d.pos) FROM dependencies d WHERE d.task_id = t.id), "
    "'{}'::text[]), "
    "coalesce((SELECT json_agg(json_build_array(n.at, n.author, n.text) ORDER BY n.id) FROM notes n "
    "WHERE n.task_id = t.id), '[]'::json)"
)
CLAIM_SET = (
    f"status = 'in_progress', worker_id = %(worker)s, expires_at = {NOW} + %(lease)s::interval, "
    f"fence = t.fence + 1, updated_at = {NOW}, write_nonce = %(nonce)s"
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
            UPDATE tasks t SET {CLAIM_SET} FROM cand WHERE t.id = cand.id RETURNING t.*
        )
        SELECT (SELECT value FROM rev), {COLUMNS.replace("t.", "c.")}
        FROM (SELECT 1) AS one LEFT JOIN claimed c ON true
    """


def _both(sql: str) -> dict[bool, str]:
    """A readiness query without and with execution.review_unblocks_dependents."""
    return {False: sql, True: _sql.review_satisfies(sql)}


CLAIM_NEXT = {ordering: _both(_claim_next_sql(ordering)) for ordering in scheduler.ORDERINGS}


def _ready_sql(ordering: str, what: str) -> str:
    """``claim_next``'s candidate query without the claim: ``what`` of the ready tasks
    (their columns, first in scheduling order; or their count), with the graph revision."""
    tail = f"{_ORDER} LIMIT 1" if what == "first" else ""
    select = COLUMNS if what == "first" else "count(*)"
    return f"""
        WITH rev AS (SELECT value FROM meta WHERE key = 'graph_rev'),
        head AS ({_HEAD}),
        ready AS (SELECT {select} FROM tasks t WHERE {_GATES[ordering]} AND {_READY} {tail})
        SELECT (SELECT value FROM rev), ready.* FROM (SELECT 1) AS one LEFT JOIN ready ON true
    """


NEXT_READY = {ordering: _both(_ready_sql(ordering, "first")) for ordering in scheduler.ORDERINGS}
COUNT_READY = {ordering: _both(_ready_sql(ordering, "count")) for ordering in scheduler.ORDERINGS}


def same_time(value: datetime) -> datetime:
    """psycopg reads timestamptz as datetime already."""
    return value


def task_of(row: Sequence[Any]) -> Task:
    """The task of a row of ``COLUMNS``: the shared task columns, then dependencies and notes."""
    notes = [Note(text=text, author=author, at=datetime.fromisoformat(at)) for at, author, text in row[-1]]
    return _sql.row_task(row[:-2], list(row[-2]), notes, decode_list=list, decode_time=same_time)
