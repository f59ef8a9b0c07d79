"""A person's decisions on a task: ``retry``, ``approve``, ``reject`` and the ``diff`` to decide on."""

from __future__ import annotations

from pathlib import Path

import click

from autonomous.cli.app import (
    config_option,
    handle_errors,
    json_option,
    load,
    main,
    open_provider,
)
from autonomous.cli.render import emit_json


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
