-- 2 -> 3: the in_review status (execution.handoff: review). SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt, rows copied as they are.
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
