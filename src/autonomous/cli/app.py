"""The ``autonomous`` command group and what every command shares: the options, loading
the configuration, and errors as one line.

Errors the library raises on purpose (``AutonomousError``) are printed as one line on
stderr with the exit code their class carries; nothing a user can cause prints a
traceback. Heavy modules (runner, backends, rich) are imported inside the commands
that use them so ``autonomous status`` starts fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from autonomous import __version__
from autonomous.cli.render import emit_json, fail
from autonomous.errors import AutonomousError


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


def load(config_path: Path | None, overrides: Mapping[str, tuple[str, Any]] | None = None):
    """The configuration, with the command line's overrides in it (``{key path: (option,
    value)}``): validated with the file, so ``--workers 0`` fails as ``workers: 0`` would,
    naming the option; nothing changes the configuration after this."""
    from autonomous.config import load_config

    given = overrides or {}
    return load_config(
        config_path,
        overrides={key: value for key, (_option, value) in given.items()},
        overrides_label={key: option for key, (option, _value) in given.items()},
    )


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


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script: eval "$(autonomous completion bash)" in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # click ships all three
    click.echo(complete(main, {}, "autonomous", "_AUTONOMOUS_COMPLETE").source())
