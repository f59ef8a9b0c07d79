"""The command line. Thin on purpose: parse, call the library, render.

Errors the library raises on purpose (``AutonomousError``) are printed as one line on
stderr with the exit code their class carries; nothing a user can cause prints a
traceback. Heavy modules (runner, backends, rich) are imported inside the commands
that use them so ``autonomous status`` starts fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from autonomous import __version__
from autonomous.backends.registry import BACKEND_NAMES
from autonomous.errors import AutonomousError
from autonomous.jsondoc import JSON_SCHEMA_VERSION, envelope


def emit_json(payload: dict[str, Any], *, pretty: bool = True) -> None:
    """The JSON envelope: ``{"schema_version": 1, ...}``, indented unless ``pretty`` is
    off (the large outputs, ``next`` and ``tasks``, are compact unless ``--pretty``)."""
    document = envelope(payload)
    if pretty:
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        click.echo(json.dumps(document, separators=(",", ":"), default=str))


def emit_json_stream(name: str, items: Iterable[dict[str, Any]], *, pretty: bool = False) -> None:
    """The envelope with one list, ``{"schema_version": 1, "<name>": [...]}``, written item
    by item as they come (a listing of 100,000 tasks is never held whole); ``pretty``
    collects them and indents. An error part way leaves the output cut short and is
    reported on stderr with a non-zero exit, as every error is."""
    if pretty:
        emit_json({name: list(items)}, pretty=True)
        return
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
    write = sys.stdout.write
    write(f'{{"schema_version":{JSON_SCHEMA_VERSION},{encode(name)}:[')
    separator, page = "", []
    for item in items:
        page.append(item)
        if len(page) == 500:  # encoded a page at a time: one encoder call per page, not per item
            write(separator + encode(page)[1:-1])
            separator, page = ",", []
    if page:
        write(separator + encode(page)[1:-1])
    write("]}\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def config_option(func: Callable) -> Callable:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Config file (default: .ai-agents/config.yml in the project).",
    )(func)


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def pretty_option(func: Callable) -> Callable:
    return click.option("--pretty", is_flag=True, help="With --json: indent the output (default: compact).")(func)


def load(config_path: Path | None):
    from autonomous.config import load_config

    return load_config(config_path)


def load_for_reading(config_path: Path | None):
    """What the task and monitoring commands need of the configuration: the validated
    configuration's cached reading part when the file is unchanged (config_view.py)."""
    from autonomous.config_view import load_reading_config

    return load_reading_config(config_path)


def open_provider(config):
    from autonomous.providers import get_provider

    return get_provider(config)


def handle_errors(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AutonomousError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)

    return wrapper


class OneLineErrors(click.Group):
    """Click's usage errors as one line on stderr too (``error: ... (see 'autonomous X --help')``),
    like every other error of the command line, instead of the usage block."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(f"{exc.format_message()}{hint}", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autonomous")
def main() -> None:
    """Hand a spec to Claude and get working software back, task by task.

    \b
    autonomous init --spec requirements.md   # phase 1: spec -> tasks
    autonomous start                         # phase 2: coding agents, one task per fresh context
    autonomous status                        # what is happening
    """


# -- configuration -----------------------------------------------------------------------


@main.command("config")
@config_option
@json_option
@handle_errors
def config_cmd(config_path: Path | None, as_json: bool) -> None:
    """Validate and print the effective configuration (secrets shown as ***)."""
    from autonomous.checks import detect
    from autonomous.config import render_config

    config = load(config_path)
    commands, how = detect.plan(config.verification.commands, config.project_dir)
    if as_json:
        emit_json(
            {
                "source": str(config.source) if config.source else None,
                "config": config.redacted(),
                "verification_commands": {"commands": commands, "how": how},
            }
        )
        return
    source = config.source if config.source and config.source.exists() else None
    click.echo(f"# {source or 'no config file: all defaults'}")
    click.echo(render_config(config), nl=False)
    click.echo(f"# verification commands run after each task: {', '.join(commands) or '(none)'} [{how}]")


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
    from autonomous.config_view import ordering_of

    config = load_for_reading(config_path)
    with open_provider(config) as provider:
        task = provider.find_task(ref)
        all_tasks = provider.list_tasks()
    by_id = {t.id: t for t in all_tasks}
    decision = next((d for d in scheduler.plan(all_tasks, ordering=ordering_of(config)) if d.task.id == task.id), None)
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


@main.command("retry")
@click.argument("ref")
@config_option
@json_option
@handle_errors
def retry_cmd(ref: str, config_path: Path | None, as_json: bool) -> None:
    """Send a blocked or failed task back to todo, its attempts reset."""
    from autonomous import actions

    with open_provider(load(config_path)) as provider:
        task = actions.retry(provider, ref, actions.person())
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"{task.key} is back to todo; the next `autonomous start` picks it up when it is ready.")


@main.command("approve")
@click.argument("ref")
@config_option
@json_option
@handle_errors
def approve_cmd(ref: str, config_path: Path | None, as_json: bool) -> None:
    """Accept a task waiting in review (execution.handoff: review): the runner merges it."""
    from autonomous import actions

    with open_provider(load(config_path)) as provider:
        task = actions.approve(provider, ref, actions.person())
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"{task.key} approved; the next `autonomous start` merges it without running the agent again.")


@main.command("reject")
@click.argument("ref")
@click.option("--note", required=True, help="What to change: the agent reads it on its next attempt.")
@config_option
@json_option
@handle_errors
def reject_cmd(ref: str, note: str, config_path: Path | None, as_json: bool) -> None:
    """Send a task waiting in review back to the agent with a note."""
    from autonomous import actions

    with open_provider(load(config_path)) as provider:
        task = actions.reject(provider, ref, actions.person(), note)
    if as_json:
        emit_json({"task": task.to_dict()})
    else:
        click.echo(f"{task.key} rejected; back to todo, the agent gets your note on its next attempt.")


@main.command("diff")
@click.argument("ref")
@click.option("--stat", is_flag=True, help="Only which files changed, and how much.")
@config_option
@handle_errors
def diff_cmd(ref: str, stat: bool, config_path: Path | None) -> None:
    """The task's commits as a patch (what the agent changed for it)."""
    from autonomous import actions

    config = load(config_path)
    with open_provider(config) as provider:
        task = provider.find_task(ref)
    click.echo(actions.diff(config.project_dir, task, stat=stat), nl=False)


@main.command("next")
@click.option("--explain", is_flag=True, help="Also say why open tasks wait (the first --limit, in scheduling order).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="With --explain: how many waiting tasks."
)
@config_option
@json_option
@pretty_option
@handle_errors
def next_cmd(explain: bool, limit: int, config_path: Path | None, as_json: bool, pretty: bool) -> None:
    """The task a coding agent would take now.

    Answered by the store's own candidate query (the one a claim uses) and two counts:
    no pass over every task unless --explain asks why tasks wait."""
    from autonomous.config_view import ordering_of

    config = load_for_reading(config_path)
    ordering = ordering_of(config)
    with open_provider(config) as provider:
        ready = provider.next_ready(ordering)
        waiting_count = max(0, provider.count_by_status().open - provider.count_ready(ordering))
        waiting = _waiting(provider, ordering, limit) if explain else []
    if as_json:
        payload: dict[str, Any] = {
            "task": ready.to_dict() if ready else None,
            "ordering": ordering,
            "waiting_count": waiting_count,
        }
        if explain:
            payload["waiting"] = [
                {
                    "id": d.task.id,
                    "key": d.task.key,
                    "blocked_by": [{"id": t.id, "key": t.key, "status": t.status.value} for t in d.waits_on],
                    "blocked_by_count": d.waits_on_count,
                    "missing": d.missing,
                    "reason": d.explain(),
                }
                for d in waiting
            ]
        emit_json(payload, pretty=pretty)
        return
    if ready:
        click.echo(f"Next: {ready.key} ({ready.id}) {ready.title}  [{ready.priority.value}]")
    elif waiting_count:
        click.echo(f"Nothing is ready: {waiting_count} open task(s) wait (see --explain).")
    else:
        click.echo("Nothing to do: no open tasks.")
    for d in waiting:
        click.echo(d.explain())
    if explain and waiting_count > len(waiting):
        click.echo(f"... and {waiting_count - len(waiting)} more waiting (--limit shows more).")


def _waiting(provider: Any, ordering: Any, limit: int) -> list:
    """The first ``limit`` waiting tasks' decisions, in scheduling order: the scheduler's
    plan over the open tasks as the store streams them, stopped as soon as enough wait."""
    from autonomous import scheduler
    from autonomous.errors import TaskNotFound
    from autonomous.tasks import TaskStatus, utcnow

    known: dict[str, Any] = {}

    def lookup(task_id: str) -> Any:
        if task_id not in known:
            try:
                known[task_id] = provider.get_task(task_id)
            except TaskNotFound:
                known[task_id] = None
        return known[task_id]

    def open_tasks() -> Any:
        open_statuses = [TaskStatus.TODO, TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED, TaskStatus.IN_REVIEW]
        for task in provider.iter_tasks(open_statuses):
            if not scheduler.is_meta(task):
                known[task.id] = task
                yield task

    found = []
    stream = open_tasks()
    try:
        for decision in scheduler.iter_plan(stream, lookup, utcnow(), ordering):
            if not decision.ready:
                found.append(decision)
                if len(found) >= limit:
                    break
    finally:
        stream.close()
    return found


# -- phase 1: the initializer --------------------------------------------------------------


@main.command("init")
@click.option("--spec", "spec", required=True, type=click.Path(path_type=Path), help="The requirements/spec file.")
@click.option("--project-name", default=None, help="Default: the spec's first heading, else the folder name.")
@click.option("--force", is_flag=True, help="Apply the spec again: update tasks by key, add new ones, never duplicate.")
@click.option("--prune", is_flag=True, help="With --force: cancel tasks no longer in the spec.")
@click.option("--dry-run", is_flag=True, help="Print the tasks that would be created; touch nothing.")
@click.option("--no-model", is_flag=True, help="Never call a model (free-form specs are refused).")
@click.option("--model-only", is_flag=True, help="Use the model even for a structured spec.")
@click.option(
    "--format",
    "spec_format",
    type=click.Choice(["speckit", "kiro", "taskmaster", "beads", "autonomous"]),
    default=None,
    help="The spec's format (default: recognised from the content).",
)
@click.option("--tag", default=None, help="Task Master: the tag to import (default: master).")
@click.option(
    "--include-optional/--skip-optional",
    "include_optional",
    default=None,
    help="Kiro optional '- [ ]*' tasks: work to do, or imported canceled (default: initializer.include_optional).",
)
@config_option
@json_option
def init_cmd(
    spec: Path,
    project_name: str | None,
    force: bool,
    prune: bool,
    dry_run: bool,
    no_model: bool,
    model_only: bool,
    spec_format: str | None,
    tag: str | None,
    include_optional: bool | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Turn a spec into tasks, a META tracking task and a .project_state.json marker."""
    from autonomous.initializer import run_init

    sys.exit(
        run_init(
            spec,
            project_name=project_name,
            force=force,
            prune=prune,
            dry_run=dry_run,
            as_json=as_json,
            no_model=no_model,
            model_only=model_only,
            format=spec_format,
            tag=tag,
            include_optional=include_optional,
            config_path=config_path,
        )
    )


# -- the coding loop -------------------------------------------------------------------------


@main.command("export")
@click.option(
    "--format", "export_format", required=True, type=click.Choice(["taskmaster", "beads", "speckit"]),
    help="The tool to write for.",
)  # fmt: skip
@click.option("--output", "output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file (default: standard output).")  # fmt: skip
@config_option
@handle_errors
def export_cmd(export_format: str, output: Path | None, config_path: Path | None) -> None:
    """Write the project's tasks as a Task Master tasks.json, beads issues.jsonl or Spec Kit tasks.md."""
    from autonomous import scheduler
    from autonomous.init.export import export
    from autonomous.init.ledger import read_ledger
    from autonomous.initializer import read_marker

    config = load(config_path)
    with open_provider(config) as provider:
        tasks = [t for t in scheduler.order(provider.list_tasks()) if not scheduler.is_meta(t)]
    name = str((read_marker(config.project_dir) or {}).get("project_name") or config.project_dir.name)
    text = export(tasks, export_format, project_name=name, ledger=read_ledger(config.state_dir))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"Wrote {len(tasks)} task(s) to {output} ({export_format}).", err=True)


@main.command("start")
@click.option("--resume", is_flag=True, help="Continue the last session, its own in-progress task first.")
@click.option("--max-tasks", type=click.IntRange(min=1), default=None, help="Override max_tasks_per_session.")
@click.option(
    "--backend",
    type=click.Choice(BACKEND_NAMES),
    default=None,
    help="Override autonomous.backend.",
)
@click.option("--dry-run", is_flag=True, help="Print the execution plan and the first prompt; spend nothing.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Override autonomous.workers: parallel agents, each task in its own git worktree.",
)
@click.option(
    "--allow-dirty",
    is_flag=True,
    help="Start although tracked files have uncommitted changes (they stay out of every task commit).",
)
@config_option
@handle_errors
def start_cmd(
    resume: bool,
    max_tasks: int | None,
    backend: str | None,
    dry_run: bool,
    workers: int | None,
    allow_dirty: bool,
    config_path: Path | None,
) -> None:
    """Run coding agents on the ready tasks until the work is done or a limit is reached."""
    from autonomous.events.bus import build_bus
    from autonomous.runner import AutonomousRunner

    config = load(config_path)
    if workers is not None:
        config.autonomous.workers = workers
    if allow_dirty:
        config.execution.git.allow_dirty = True
    if dry_run:
        runner = AutonomousRunner(config)
        try:
            result = runner.start(dry_run=True, backend=backend, max_tasks=max_tasks)
        finally:
            runner.provider.close()
        sys.exit(result.exit_code)
    with build_bus(config) as bus:
        runner = AutonomousRunner(config, bus=bus)
        try:
            result = runner.start(resume=resume, max_tasks=max_tasks, backend=backend)
        finally:
            runner.provider.close()
    if result.reason:
        click.echo(f"autonomous: {result.reason} (exit {result.exit_code})", err=True)
    sys.exit(result.exit_code)


@main.command("stop")
@config_option
@handle_errors
def stop_cmd(config_path: Path | None) -> None:
    """Ask the running runner to stop gracefully (finish the step, save, release)."""
    from autonomous.runner import request_stop

    stopped, message = request_stop(load(config_path).state_dir)
    click.echo(message)
    sys.exit(0 if stopped else 1)


@main.command("resume")
@config_option
@json_option
@handle_errors
def resume_cmd(config_path: Path | None, as_json: bool) -> None:
    """Print the recovery context: what was running, last events, what --resume would do."""
    from autonomous.progress import render_event
    from autonomous.runner import recovery_context

    info = recovery_context(load(config_path))
    if as_json:
        emit_json(info)
        return
    click.echo(f"State: {info.get('state')}")
    for current in info.get("current") or []:
        click.echo(f"Was working on: {current['key']} {current['title']} ({current['turns']} turns)")
    for key, notes in (info.get("task_notes") or {}).items():
        for note in notes:
            click.echo(f"  note on {key}: {note}")
    events = info.get("recent_events") or []
    if events:
        click.echo("Last events:")
        for event in events:
            click.echo(f"  {render_event(event)}")
    click.echo(f"`autonomous start --resume` would: {info['would']}")


# -- monitoring --------------------------------------------------------------------------------


@main.command("status")
@config_option
@json_option
@handle_errors
def status_cmd(config_path: Path | None, as_json: bool) -> None:
    """Runner state, current task, progress, cost and recent events."""
    from autonomous.progress import build_status, render_status

    config = load_for_reading(config_path)
    with open_provider(config) as provider:
        status = build_status(config, provider)
    if as_json:
        emit_json(status)
    else:
        click.echo(render_status(status), nl=False)


@main.command("logs")
@click.option("--tail", "tail", type=click.IntRange(min=0), default=50, show_default=True, help="Last N events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they arrive.")
@click.option("--task", "task_ref", default=None, help="Only events of this task (id or key).")
@config_option
@json_option
@handle_errors
def logs_cmd(tail: int, follow: bool, task_ref: str | None, config_path: Path | None, as_json: bool) -> None:
    """Read the event log (.ai-agents/logs/events.jsonl)."""
    from autonomous.progress import read_events, render_event, task_refs, with_task_keys

    config = load_for_reading(config_path)
    with open_provider(config) as provider:
        refs = task_refs(provider, task_ref) if task_ref else None
        for event in with_task_keys(read_events(config.log_dir, tail=tail, task=refs, follow=follow), provider):
            click.echo(json.dumps(event) if as_json else render_event(event))


@main.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Any address but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="0 picks a free port.")
@click.option("--open", "open_browser", is_flag=True, help="Open the board in the default browser.")
@click.option("--read-only", is_flag=True, help="Show everything, change nothing (no retry, cancel, priority).")
@click.option("--token", default=None, help="Required on every request (default: generated when not on loopback).")
@config_option
@handle_errors
def dashboard_cmd(
    host: str, port: int, open_browser: bool, read_only: bool, token: str | None, config_path: Path | None
) -> None:
    """Serve a web board of the tasks, live events and the workers (Ctrl-C stops it)."""
    try:
        from autonomous.dashboard import serve
    except ImportError as exc:
        fail(f"the dashboard needs its extra ({exc.name} is missing): pip install 'autonomous-runner[dashboard]'")
    serve(load(config_path), host=host, port=port, open_browser=open_browser, read_only=read_only, token=token)


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script: eval "$(autonomous completion bash)" in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # click ships all three
    click.echo(complete(main, {}, "autonomous", "_AUTONOMOUS_COMPLETE").source())


# -- trying it out -------------------------------------------------------------------------------


@main.command("demo")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@handle_errors
def demo_cmd(directory: Path | None) -> None:
    """Run the whole tool offline on a sample project: no account, no cost.

    Creates a git project in DIRECTORY (default: a new temporary directory; an existing
    one must be empty) from the todo-api example spec, then runs `init` and `start`
    through the real Claude Code CLI against the scripted model server.
    """
    from autonomous.demo import run_demo

    sys.exit(run_demo(directory))


@main.command("model-server")
@click.option(
    "--scenario", type=click.Path(path_type=Path, dir_okay=False), default=None, help="YAML or JSON scenario file."
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--check", is_flag=True, help="Validate the scenario file and exit.")
@click.option("--quiet", is_flag=True, help="Do not log each request to stderr.")
def model_server_cmd(scenario: Path | None, port: int, host: str, check: bool, quiet: bool) -> None:
    """Serve a scripted Anthropic Messages API for offline rehearsals (docs/testing.md).

    Prints the base URL, then serves until Ctrl-C: run anything with
    ANTHROPIC_BASE_URL=<that URL> and any ANTHROPIC_API_KEY.
    """
    from autonomous.testing.model_server import main as serve

    argv = ["--port", str(port), "--host", host]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    argv += ["--check"] * check + ["--quiet"] * quiet
    sys.exit(serve(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
