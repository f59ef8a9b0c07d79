"""The reading commands: ``next``, ``status``, ``logs``, ``resume`` and the ``dashboard``."""

from __future__ import annotations

import json
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
from autonomous.cli.render import emit_json, fail


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
    from autonomous.config_view import ordering_of, review_satisfies_of

    config = load_for_reading(config_path)
    ordering, review = ordering_of(config), review_satisfies_of(config)
    with open_provider(config) as provider:
        ready = provider.next_ready(ordering, review_satisfies=review)
        waiting_count = max(0, provider.count_by_status().open - provider.count_ready(ordering, review))
        waiting = _waiting(provider, ordering, review, limit) if explain else []
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


def _waiting(provider: Any, ordering: Any, review_satisfies: bool, limit: int) -> list:
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
        for decision in scheduler.iter_plan(stream, lookup, utcnow(), ordering, review_satisfies):
            if not decision.ready:
                found.append(decision)
                if len(found) >= limit:
                    break
    finally:
        stream.close()
    return found


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
