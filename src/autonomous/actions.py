"""What a person does to a task, from the command line or the dashboard.

One function per action, each going through the provider interface only, so ``autonomous
retry`` and the dashboard's Retry button do exactly the same thing on every store, and
each leaves a note saying who did it and when (the note's time).

:func:`sync_meta` is the runner's: the META task reads ``in_progress`` while a session
runs and ``done`` once every task is.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from autonomous import history, scheduler
from autonomous.errors import ActionRefused, ClaimConflict, TaskNotFound
from autonomous.providers.base import StateProvider
from autonomous.tasks import Priority, Task, TaskStatus
from autonomous.workspace import git


def person(via: str = "") -> str:
    """Who is acting, for notes: the login name (and where from, e.g. ``via dashboard``)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        name = "unknown"
    return f"{name} via {via}" if via else name


def _refuse_live_claim(task: Task, what: str) -> None:
    if task.claim is not None and task.claim.live():
        raise ClaimConflict(
            f"{task.key} is being worked on by {task.claim.worker_id}; stop the runner first, "
            f"or use `autonomous tasks update {task.key} --status ... --force`, to {what} it"
        )


def retry(provider: StateProvider, ref: str, who: str) -> Task:
    """A blocked, failed or interrupted task goes back to ``todo`` with its attempts reset
    (limits count attempts after this note)."""
    task = provider.find_task(ref)
    if task.status in (TaskStatus.DONE, TaskStatus.CANCELED):
        raise ActionRefused(
            f"{task.key} is {task.status.value}: nothing to retry "
            f"(to run it again anyway: autonomous tasks update {task.key} --status todo)"
        )
    _refuse_live_claim(task, "retry")
    was = task.status.value
    if task.status is not TaskStatus.TODO or task.claim is not None:
        provider.update_task(task.id, status=TaskStatus.TODO)
    provider.add_note(task.id, f"{history.RETRY_NOTE} by {who} (was {was}): back to todo, attempts reset", who)
    return provider.get_task(task.id)


def _review_answer(provider: StateProvider, ref: str, who: str, note: str) -> Task:
    task = provider.find_task(ref)
    if task.status is not TaskStatus.IN_REVIEW:
        raise ActionRefused(f"{task.key} is {task.status.value}, not in_review: there is nothing to review")
    _refuse_live_claim(task, "review")
    provider.update_task(task.id, status=TaskStatus.TODO)
    provider.add_note(task.id, note, who)
    return provider.get_task(task.id)


def approve(provider: StateProvider, ref: str, who: str) -> Task:
    """A task in review is accepted: back to ``todo`` with an approval note, so the next
    runner to claim it merges (and pushes) its branch without running the agent again.
    A task waiting on a pull request (``handoff: pr``) is approved where it lives: merging
    the pull request is what makes it done."""
    pull = history.pull_request(provider.find_task(ref).notes)
    if pull is not None:
        raise ActionRefused(
            f"{ref} waits on pull request #{pull[0]} ({pull[1]}): approve and merge it there; "
            "the runner marks the task done when it sees the merge"
        )
    return _review_answer(provider, ref, who, f"{history.APPROVED_NOTE} by {who}: to be merged as it is")


def reject(provider: StateProvider, ref: str, who: str, note: str) -> Task:
    """A task in review goes back to the agent, with the reviewer's note in its prompt."""
    if not note.strip():
        raise ActionRefused("reject needs a note (--note): say what to change")
    return _review_answer(provider, ref, who, f"{history.REJECTED_NOTE} by {who}: {note.strip()}")


def reopen_meta(provider: StateProvider) -> None:
    """New open work in a project whose META said everything was done: META goes back to
    ``todo``, so the tracker does not read "done" while work is open (a session's end sets
    it done again once it is)."""
    meta = provider.meta_task()
    if meta is not None and meta.status is TaskStatus.DONE:
        try:
            provider.update_task(meta.id, status=TaskStatus.TODO)
        except ClaimConflict:  # pragma: no cover - nobody claims META
            pass


def cancel(provider: StateProvider, ref: str, who: str) -> Task:
    """The task is not to be done; tasks waiting on it go ahead (canceled counts as satisfied)."""
    task = provider.find_task(ref)
    if task.status is TaskStatus.CANCELED:
        return task
    _refuse_live_claim(task, "cancel")
    provider.update_task(task.id, status=TaskStatus.CANCELED)
    provider.add_note(task.id, f"Canceled by {who} (was {task.status.value})", who)
    return provider.get_task(task.id)


def set_priority(provider: StateProvider, ref: str, priority: Priority | str, who: str) -> Task:
    """Change the task's priority (the order among ready tasks)."""
    task = provider.find_task(ref)
    new = Priority(priority)
    if new is task.priority:
        return task
    _refuse_live_claim(task, "reprioritise")
    provider.update_task(task.id, priority=new)
    provider.add_note(task.id, f"Priority changed by {who}: {task.priority.value} -> {new.value}", who)
    return provider.get_task(task.id)


def edit(
    provider: StateProvider,
    ref: str,
    who: str,
    *,
    title: str | None = None,
    description: str | None = None,
    criteria: Sequence[str] | None = None,
    test_steps: Sequence[str] | None = None,
    add_dependencies: Iterable[str] = (),
    remove_dependencies: Iterable[str] = (),
    ordering: scheduler.Ordering = "strict",
) -> Task:
    """Change what a task says (given fields only; criteria and test steps are replaced
    whole). Dependencies are named by id or key; one that would close a cycle is refused
    before anything is written."""
    task = provider.find_task(ref)
    changes: dict[str, Any] = {}
    if title is not None:
        if not title.strip():
            raise ActionRefused("--title: a task needs a title")
        changes["title"] = title
    if description is not None:
        changes["description"] = description
    if criteria is not None:
        changes["acceptance_criteria"] = list(criteria)
    if test_steps is not None:
        changes["test_steps"] = list(test_steps)
    adding, removing = list(add_dependencies), list(remove_dependencies)
    if adding or removing:
        deps = list(task.dependencies)
        for dep_ref in removing:
            dep_id = _dependency_id(provider, dep_ref, deps)
            if dep_id not in deps:
                raise TaskNotFound(f"{task.key} does not depend on {dep_ref!r}")
            deps.remove(dep_id)
        for dep_ref in adding:
            dep = provider.find_task(dep_ref)
            if dep.id == task.id:
                raise ActionRefused(f"{task.key} cannot depend on itself")
            if dep.id not in deps:
                deps.append(dep.id)
        everything = [t if t.id != task.id else t.copy(dependencies=deps) for t in provider.list_tasks()]
        scheduler.check_cycles(everything, ordering)
        changes["dependencies"] = deps
    if not changes:
        raise ActionRefused("nothing to edit: give --title, --description, --criterion, --test-step or a dependency")
    _refuse_live_claim(task, "edit")
    provider.update_task(task.id, **changes)
    provider.add_note(task.id, f"Edited by {who}: {', '.join(sorted(changes))}", who)
    return provider.get_task(task.id)


def _dependency_id(provider: StateProvider, ref: str, current: list[str]) -> str:
    if ref in current:
        return ref
    try:
        return provider.find_task(ref).id
    except TaskNotFound:
        return ref  # a dependency on a task that no longer exists can still be removed by its id


def diff(repo: Path, task: Task, *, stat: bool = False) -> str:
    """The task's commits (recorded in its notes) as one patch, oldest first. A merge
    commit (the runner's worktree merges) shows what it brought in: its diff against its
    first parent."""
    shas = history.commits(task.notes)
    if not shas:
        raise ActionRefused(f"{task.key} has no recorded commit (it has not been committed by the runner yet)")
    if not git.is_repo(repo):
        raise ActionRefused(f"{repo} is not a git repository: cannot show the commits of {task.key}")
    parts = []
    for sha in shas:
        try:
            parts.append(git.show(repo, sha, stat=stat))
        except git.GitError:
            raise ActionRefused(
                f"commit {sha[:12]} of {task.key} is not in {repo} (was the history rewritten?)"
            ) from None
    return "".join(parts)


def sync_meta(provider: StateProvider, *, running: bool) -> tuple[int, int] | None:
    """Set the META task's status: ``in_progress`` while a session runs, ``done`` once every
    other task is done or canceled, else ``todo``. Returns (done, total) of the other tasks,
    or None when there is no META task."""
    everything = provider.list_tasks()
    meta = next((t for t in scheduler.order(everything) if scheduler.is_meta(t)), None)
    if meta is None:
        return None
    work = [t for t in everything if not scheduler.is_meta(t)]
    done = sum(1 for t in work if t.status.satisfied)
    if running and done < len(work):
        wanted = TaskStatus.IN_PROGRESS
    else:
        wanted = TaskStatus.DONE if done == len(work) else TaskStatus.TODO
    if meta.status is not wanted:
        provider.update_task(meta.id, status=wanted)
    return done, len(work)
