-- 0 -> 1: the tables, and the partial index over open tasks in scheduling order that claim_next walks.
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
