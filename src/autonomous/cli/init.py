"""Phase 1: ``autonomous init`` (spec -> tasks) and ``export`` (tasks -> another tool's format)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from autonomous.cli.app import (
    config_option,
    handle_errors,
    json_option,
    load,
    main,
    open_provider,
)
from autonomous.cli.render import fail

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config
    from autonomous.init.apply import InitResult

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
    from autonomous.init.apply import read_marker
    from autonomous.init.export import export
    from autonomous.init.ledger import read_ledger

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


# -- rendering init ------------------------------------------------------------------------------


TABLE_ROWS = 200  # rows of init's table; a 100,000-task spec is summed up, not printed


def render_table(result: InitResult, out: TextIO) -> None:
    """The human summary of an init run (or dry run)."""
    verb = "Would create" if result.dry_run else "Created"
    if result.dry_run:
        groups = [("create", [st.task for st in result.to_create]), ("update", [st.task for st in result.to_update])]
    else:
        groups = [("created", result.created), ("updated", result.updated)]
    groups.append(("cancel" if result.dry_run else "canceled", result.canceled))
    total = sum(len(tasks) for _, tasks in groups)
    rows = [
        (action, t.key, t.priority.value, t.title)
        for action, t in itertools.islice(((a, t) for a, tasks in groups for t in tasks), TABLE_ROWS)
    ]
    if rows:
        widths = [max(len(r[i]) for r in [*rows, ("ACTION", "KEY", "PRIORITY", "TITLE")]) for i in range(3)]
        header = ("ACTION", "KEY", "PRIORITY", "TITLE")
        for row in [header, *rows]:
            out.write(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}\n")
        if total > len(rows):
            out.write(f"... and {total - len(rows)} more (`autonomous tasks` lists them; --json prints every one)\n")
        out.write("\n")
    how = "parsed from the structured spec" if result.method == "structured" else "decomposed by the model"
    if result.format != "autonomous":
        how = f"imported from the {result.format} task list"
    summary = (
        f"{verb} {result.tasks_created} task(s) for {result.project_name!r} ({how}, {len(result.planned)} in spec)"
    )
    if result.dry_run:
        updates = len(result.to_update)
        summary += f"; would update {updates}" if updates else ""
        summary += ". Dry run: nothing was written."
    else:
        extra = [f"{len(result.updated)} updated", f"{len(result.unchanged)} unchanged"]
        if result.canceled:
            extra.append(f"{len(result.canceled)} canceled")
        summary += "; " + ", ".join(extra) + "."
    out.write(summary + "\n")
    if result.not_in_spec and not result.canceled:
        keys = ", ".join(t.key for t in result.not_in_spec[:20])
        more = len(result.not_in_spec) - 20
        out.write(
            f"Not in the spec any more (kept; --prune cancels them): {keys}{f' and {more} more' if more > 0 else ''}\n"
        )
    if result.cost_usd:
        out.write(f"Model cost: ${result.cost_usd:.4f} in {result.model_calls} call(s).\n")
    if result.marker_path:
        out.write(f"Wrote {result.marker_path}. Next: `autonomous next --explain`, then `autonomous start`.\n")


def run_init(
    spec: str | Path,
    *,
    project_name: str | None = None,
    force: bool = False,
    prune: bool = False,
    dry_run: bool = False,
    as_json: bool = False,
    no_model: bool = False,
    model_only: bool = False,
    format: str | None = None,
    tag: str | None = None,
    include_optional: bool | None = None,
    config_path: str | Path | None = None,
    project_dir: str | Path | None = None,
    config: Config | None = None,
    provider: Any = None,
    backend: Any = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``autonomous init``: run it and render the result; return the exit code.

    0 done (or dry run printed); 1 the model could not produce a valid plan or the store
    failed; 2 usage error, bad spec, bad config, or already initialized without --force.
    Errors are one line on ``err``: ``error: <message>``.
    """
    from autonomous.config import load_config, override
    from autonomous.errors import AutonomousError, ConfigError
    from autonomous.init.apply import ProjectInitializer
    from autonomous.init.plan import ModelUse

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if no_model and model_only:
            raise ConfigError("--no-model and --model-only exclude each other")
        # --include-optional/--skip-optional is initializer.include_optional, set once, here
        given = {} if include_optional is None else {"initializer.include_optional": include_optional}
        named = "--include-optional" if include_optional else "--skip-optional"
        if config is None:
            path = Path(config_path) if config_path else None
            config = load_config(path, project_dir=project_dir, overrides=given, overrides_label=named)
        elif given:
            config = override(config, given, label=named)
        use_model: ModelUse = "never" if no_model else "always" if model_only else "auto"
        progress = None if as_json else (lambda message: print(message, file=err, flush=True))
        initializer = ProjectInitializer(
            config, provider=provider, backend=backend, project_dir=project_dir, progress=progress
        )
        result = initializer.initialize(
            spec, project_name, force=force, prune=prune, dry_run=dry_run, use_model=use_model,
            format=format, tag=tag,
        )  # fmt: skip
    except AutonomousError as exc:
        print(f"error: {exc}", file=err)
        return exc.exit_code
    if as_json:
        json.dump({"schema_version": 1, **result.to_dict()}, out, indent=2, default=str)
        out.write("\n")
    else:
        for warning in result.warnings:
            print(f"warning: {warning}", file=err)
        render_table(result, out)
    return 0
