"""The project's git checkout as the runner sees it: task-scoped change sets, commits that hold
exactly a task's own change, worktrees and the merge queue for parallel workers."""
