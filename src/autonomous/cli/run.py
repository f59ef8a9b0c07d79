"""Phase 2 and trying it out: ``start``, ``stop``, ``demo`` and the scripted ``model-server``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autonomous.backends.registry import BACKEND_NAMES
from autonomous.cli.app import (
    config_option,
    handle_errors,
    load,
    main,
)


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

    given = {
        "autonomous.max_tasks_per_session": ("--max-tasks", max_tasks),
        "autonomous.backend": ("--backend", backend),
        "autonomous.workers": ("--workers", workers),
        "execution.git.allow_dirty": ("--allow-dirty", allow_dirty or None),
    }
    config = load(config_path, {key: (option, value) for key, (option, value) in given.items() if value is not None})
    if dry_run:
        runner = AutonomousRunner(config)
        try:
            result = runner.start(dry_run=True)
        finally:
            runner.provider.close()
        sys.exit(result.exit_code)
    with build_bus(config) as bus:
        runner = AutonomousRunner(config, bus=bus)
        try:
            result = runner.start(resume=resume)
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
