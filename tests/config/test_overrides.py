"""Overrides (the command line's ``--workers``, ``--max-tasks`` ...) go into the one
configuration at load, validated like the file's keys; defaults live only in the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from autonomous.cli import main
from autonomous.config import Config, load_config, override, parse_config
from autonomous.config.models import AutonomousSection, VerificationSection
from autonomous.errors import ConfigError


def write(project: Path, text: str) -> Path:
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_defaults_are_the_models_own() -> None:
    config = parse_config({})
    assert config.autonomous == AutonomousSection() and config.verification == VerificationSection()
    assert config.autonomous.max_turns_per_task == 50 and config.verification.max_attempts == 2


def test_an_override_replaces_the_files_value_and_keeps_its_siblings(tmp_path: Path) -> None:
    path = write(tmp_path, "autonomous:\n  workers: 2\n  model: sonnet\nexecution:\n  git:\n    commit: false\n")
    config = load_config(path, overrides={"autonomous.workers": 4, "execution.git.allow_dirty": True})
    assert config.autonomous.workers == 4 and config.autonomous.model == "sonnet"
    assert config.execution.git.allow_dirty is True and config.execution.git.commit is False
    assert config.source == path.absolute()


def test_an_override_into_an_empty_section_or_no_file(tmp_path: Path) -> None:
    write(tmp_path, "execution:\n")
    config = load_config(project_dir=tmp_path, overrides={"execution.git.allow_dirty": True})
    assert config.execution.git.allow_dirty is True
    (tmp_path / ".ai-agents" / "config.yml").unlink()
    assert load_config(project_dir=tmp_path, overrides={"autonomous.workers": 3}).autonomous.workers == 3


def test_a_bad_override_is_one_line_naming_the_option_not_the_file(tmp_path: Path) -> None:
    write(tmp_path, "autonomous:\n  workers: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(
            project_dir=tmp_path,
            overrides={"autonomous.workers": 0},
            overrides_label={"autonomous.workers": "--workers"},
        )
    assert str(info.value) == "--workers: autonomous.workers: expected a number >= 1, got 0"
    with pytest.raises(ConfigError) as info:
        load_config(project_dir=tmp_path, overrides={"autonomous.backend": "claude"})
    assert str(info.value).startswith("override: autonomous.backend: expected one of claude-code, ")
    with pytest.raises(ConfigError) as info:
        load_config(project_dir=tmp_path, overrides={"autonomous.max_task": 3})
    assert str(info.value) == "override: autonomous.max_task: unknown key (did you mean 'max_tasks_per_session'?)"


def test_a_bad_file_value_is_still_blamed_on_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "autonomous:\n  max_turns_per_tsk: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"autonomous.workers": 2})
    assert str(info.value) == (
        ".ai-agents/config.yml: autonomous.max_turns_per_tsk: unknown key (did you mean 'max_turns_per_task'?)"
    )


def test_override_of_a_loaded_config_is_a_new_config_with_the_same_origin(tmp_path: Path) -> None:
    path = write(tmp_path, "autonomous:\n  model: sonnet\n")
    loaded = load_config(path)
    changed = override(loaded, {"autonomous.backend": "claude-code-sdk"})
    assert type(changed) is Config and changed is not loaded
    assert changed.autonomous.backend == "claude-code-sdk" and loaded.autonomous.backend == "claude-code"
    assert changed.autonomous.model == "sonnet" and changed.source == loaded.source and changed.root == loaded.root


def test_derived_values_are_the_models_properties(tmp_path: Path) -> None:
    config = parse_config({"verification": {"commands": ["make check"]}, "logging": {"dir": "out/logs"}}, root=tmp_path)
    assert config.checks.commands == ("make check",) and config.checks.how == "configured"
    assert config.log_dir == tmp_path.resolve() / "out" / "logs"
    assert "out/logs" in config.git_excludes and ".ai-agents/state" in config.git_excludes
    moved = config.rooted_at(tmp_path / "sub")
    assert moved.log_dir == (tmp_path / "sub").resolve() / "out" / "logs" and config.root == tmp_path.resolve()


def test_start_applies_the_command_lines_overrides_once_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start --dry-run`` prints the limits the session would run with: the overrides are in them."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "autonomous:\n  max_tasks_per_session: 10\nverification:\n  commands: []\n")
    runner = CliRunner()
    added = runner.invoke(main, ["tasks", "add", "--title", "[T-1.1] First", "--json"], catch_exceptions=False)
    assert added.exit_code == 0 and json.loads(added.output)["task"]["key"]
    result = runner.invoke(
        main, ["start", "--dry-run", "--max-tasks", "3", "--backend", "anthropic-sdk"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "backend anthropic-sdk" in result.output and "max_tasks_per_session=3," in result.output
