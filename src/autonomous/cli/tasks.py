"""``autonomous tasks``: list, add, show, update and edit tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autonomous.cli.app import (
    config_option,
    handle_errors,
    json_option,
    load,
    load_for_reading,
    main,
    open_provider,
    pretty_option,
)
from autonomous.cli.render import emit_json, emit_json_stream, fail

# -- tasks ---------------------------------------------------------------------------------


def _task_table(tasks: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("KEY", "STATUS", "PRIORITY", "TITLE", "ID"):
        table.add_column(column, overflow="fold" if column == "TITLE" else "ellipsis")
    for t in tasks:
        table.add_row(t.key, t.status.value, t.priority.value, t.title, t.id)
    Console(soft_wrap=False).print(table)


def _task_detail(task, by_id: dict, decision) -> str:
    lines = [
        f"{task.key}  {task.title}",
        f"  id:        {task.id}",
        f"  status:    {task.status.value}",
        f"  priority:  {task.priority.value}",
    ]
    if task.labels:
        lines.append(f"  labels:    {', '.join(task.labels)}")
    if task.dependencies:
        deps = [
            f"{by_id[d].key} ({by_id[d].status.value})" if d in by_id else f"{d} (missing)" for d in task.dependencies
        ]
        lines.append(f"  depends:   {', '.join(deps)}")
    if task.claim:
        lines.append(
            f"  claim:     {task.claim.worker_id} until {task.claim.expires_at.isoformat()} (token {task.claim.token})"
        )
    if task.turns or task.cost_usd:
        lines.append(f"  spent:     {task.turns} turns, ${task.cost_usd:.4f}")
    if decision is not None:
        lines.append(f"  next:      {'ready' if decision.ready else decision.explain()}")
    if task.description:
        lines += ["", task.description.rstrip()]
    for heading, items in (("Acceptance criteria", task.acceptance_criteria), ("Test steps", task.test_steps)):
        if items:
            lines += ["", f"{heading}:"] + [f"  - {item}" for item in items]
    if task.notes:
        lines += ["", "Notes:"]
        for note in task.notes:
            lines.append(f"  [{note.at:%Y-%m-%d %H:%M:%S}] {note.author}: {note.text}")
    lines += _history_lines(task)
    return "\n".join(lines) + "\n"


def _history_lines(task) -> list[str]:
    """The attempts and the verification evidence of ``tasks show``."""
    from autonomous import history

    lines: list[str] = []
    tried = history.attempts(task.notes)
    if tried:
        lines += ["", "Attempts:"]
        for n, a in enumerate(tried, 1):
            commit = f", commit {a.commit[:12]}" if a.commit else ""
            before = "" if a.after_retry else " (before the latest retry)"
            spent = f"{a.turns} turns, ${a.cost_usd:.4f}, {a.duration_s:.0f}s{commit}"
            lines.append(f"  {n}. {a.at[:19]} {a.outcome} - {spent}{before}")
    checks = history.evidence(task.notes)
    if checks:
        lines += ["", "Verification evidence:"]
        for e in checks:
            attempt = f" (attempt {e.attempt})" if e.attempt else ""
            reason = f": {e.reason}" if e.reason else ""
            lines.append(f"  {e.at[:19]} {'passed' if e.passed else 'FAILED'}{attempt}{reason}")
            lines += [f"    {line}" for line in e.lines]
            for c in e.commands:
                code = "timed out" if c.exit_code is None else f"exit {c.exit_code}"
                lines.append(f"    $ {c.command} -> {code} ({c.duration_s:.1f}s)")
                lines += [f"      {line}" for line in c.tail[-10:]]
    return lines


TABLE_ROWS = 100  # rows the `tasks` table shows unless --limit says otherwise


@main.group("tasks", invoke_without_command=True)
@click.option("--status", "statuses", multiple=True, help="Only tasks with this status (repeatable).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most N tasks; 0: all (default: all with --json, {TABLE_ROWS} in the table).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip the first N tasks (paging).")
@config_option
@json_option
@pretty_option
@click.pass_context
@handle_errors
def tasks_cmd(
    ctx: click.Context,
    statuses: tuple[str, ...],
    limit: int | None,
    offset: int,
    config_path: Path | None,
    as_json: bool,
    pretty: bool,
) -> None:
    """List tasks in scheduling order (subcommands: add, show, update, edit)."""
    if ctx.invoked_subcommand is not None:
        return
    from autonomous.tasks import TaskStatus

    try:
        wanted = [TaskStatus(s) for s in statuses] or None
    except ValueError as exc:
        fail(f"--status: {exc}; expected one of {', '.join(s.value for s in TaskStatus)}")
    shown = (None if as_json else TABLE_ROWS) if limit is None else (limit or None)
    with open_provider(load_for_reading(config_path)) as provider:
        if as_json:
            emit_json_stream("tasks", (t.to_dict() for t in provider.iter_tasks(wanted, limit=shown, offset=offset)),
                             pretty=pretty)  # fmt: skip
            return
        tasks = list(provider.iter_tasks(wanted, limit=None if shown is None else shown + 1, offset=offset))
    more = shown is not None and len(tasks) > shown
    tasks = tasks[:shown]
    if not tasks:
        click.echo(
            "No tasks here (see --offset)." if offset
            else "No tasks. Create them with `autonomous init --spec FILE` or `autonomous tasks add`."
        )  # fmt: skip
        return
    _task_table(tasks)
    if more:
        click.echo(f"Showing tasks {offset + 1}-{offset + len(tasks)}; more with --offset {offset + len(tasks)} "
                   "(--limit 0 shows all).")  # fmt: skip


PRIORITIES = ["urgent", "high", "normal", "low"]
STATUSES = ["todo", "in_progress", "in_review", "blocked", "done", "canceled"]


@tasks_cmd.command("add")
@click.option("--title", required=True)
@click.option("--description", default="")
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal")
@click.option("--depends-on", "depends_on", multiple=True, help="Id or key of a task this one waits for.")
@click.option("--criterion", "criteria", multiple=True, help="An acceptance criterion (repeatable).")
@config_option
@json_option
@handle_errors
def tasks_add(
    title: str,
    description: str,
    priority: str,
    depends_on: tuple[str, ...],
    criteria: tuple[str, ...],
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Add a task."""
    from autonomous import actions
    from autonomous.tasks import NewTask, Priority, check_title_numbers, derive_key

    problem = check_title_numbers(title)
    if problem:
        fail(f"--title: {problem}")
    with open_provider(load_for_reading(config_path)) as provider:
        dep_keys = [provider.find_task(ref).key for ref in depends_on]
        key, n = derive_key(title), 1
        base = key
        while _exists(provider, key):
            n += 1
            key = f"{base}-{n}"
        result = provider.create_tasks(
            [
                NewTask(
                    title=title,
                    key=key,
                    description=description,
                    acceptance_criteria=list(criteria),
                    priority=Priority(priority),
                    dependencies=dep_keys,
                )
            ]
        )
        task = result.tasks[0]
        actions.reopen_meta(provider)
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"Created {task.id} ({task.key}): {task.title}")


def _exists(provider, key: str) -> bool:
    from autonomous.errors import TaskNotFound

    try:
        return provider.find_task(key).key == key
    except TaskNotFound:
        return False


@tasks_cmd.command("show")
@click.argument("ref")
@config_option
@json_option
@handle_errors
def tasks_show(ref: str, config_path: Path | None, as_json: bool) -> None:
    """Show one task (by id or key) with its notes and why it waits."""
    from autonomous import scheduler
    from autonomous.config_view import ordering_of, review_satisfies_of

    config = load_for_reading(config_path)
    with open_provider(config) as provider:
        task = provider.find_task(ref)
        all_tasks = provider.list_tasks()
    by_id = {t.id: t for t in all_tasks}
    plan = scheduler.plan(all_tasks, None, ordering_of(config), review_satisfies_of(config))
    decision = next((d for d in plan if d.task.id == task.id), None)
    if as_json:
        from autonomous import history

        emit_json(
            {
                "task": task.to_dict(),
                "ready": bool(decision and decision.ready),
                "waiting": decision.explain() if decision and not decision.ready else None,
                "attempts": [a.to_dict() for a in history.attempts(task.notes)],
                "evidence": [e.to_dict() for e in history.evidence(task.notes)],
            }
        )
        return
    click.echo(_task_detail(task, by_id, decision), nl=False)


@tasks_cmd.command("update")
@click.argument("ref")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--priority", type=click.Choice(PRIORITIES))
@click.option("--note", help="Append a note to the task.")
@click.option("--force", is_flag=True, help="Also change a task a worker holds a live claim on (ends the claim).")
@config_option
@json_option
@handle_errors
def tasks_update(
    ref: str,
    status: str | None,
    priority: str | None,
    note: str | None,
    force: bool,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Change a task's status or priority, or add a note."""
    import getpass

    from autonomous.tasks import Priority, TaskStatus

    if not (status or priority or note):
        fail("nothing to update: give --status, --priority or --note")
    with open_provider(load_for_reading(config_path)) as provider:
        task = provider.find_task(ref)
        changes: dict[str, Any] = {}
        if status:
            changes["status"] = TaskStatus(status)
        if priority:
            changes["priority"] = Priority(priority)
        if changes:
            task = provider.update_task(task.id, force=force, **changes)
        if note:
            provider.add_note(task.id, note, author=getpass.getuser())
            task = provider.get_task(task.id)
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"Updated {task.id} ({task.key}): status {task.status.value}, priority {task.priority.value}")


@tasks_cmd.command("edit")
@click.argument("ref")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--criterion", "criteria", multiple=True, help="An acceptance criterion (repeatable; replaces them all).")
@click.option("--test-step", "test_steps", multiple=True, help="A test step (repeatable; replaces them all).")
@click.option("--add-dependency", "add_deps", multiple=True, help="Id or key of a task this one must wait for.")
@click.option("--remove-dependency", "remove_deps", multiple=True, help="Id or key of a task to stop waiting for.")
@config_option
@json_option
@handle_errors
def tasks_edit(
    ref: str,
    title: str | None,
    description: str | None,
    criteria: tuple[str, ...],
    test_steps: tuple[str, ...],
    add_deps: tuple[str, ...],
    remove_deps: tuple[str, ...],
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Change a task's title, description, criteria, test steps or dependencies."""
    from autonomous import actions

    config = load(config_path)
    with open_provider(config) as provider:
        task = actions.edit(
            provider,
            ref,
            actions.person(),
            title=title,
            description=description,
            criteria=criteria or None,
            test_steps=test_steps or None,
            add_dependencies=add_deps,
            remove_dependencies=remove_deps,
            ordering=config.execution.ordering,
        )
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"Edited {task.id} ({task.key}): {task.title}")
