-- 1 -> 2: the in_review status (execution.handoff: review); it gates what follows like the other open ones.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('todo', 'in_progress', 'blocked', 'in_review', 'done', 'canceled'));
DROP INDEX tasks_open_order;
CREATE INDEX tasks_open_order ON tasks (kind, phase, number, letter, prio, created_at, id)
    WHERE status IN ('todo', 'in_progress', 'blocked', 'in_review');
