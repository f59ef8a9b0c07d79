-- 1 -> 2: `status` and `next` count tasks by status from this index alone.
CREATE INDEX tasks_status_counts ON tasks (status, kind, cost_usd);
