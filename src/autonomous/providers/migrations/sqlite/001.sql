-- 0 -> 1: the tables, and the partial index over open tasks in scheduling order that claim_next walks.
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
