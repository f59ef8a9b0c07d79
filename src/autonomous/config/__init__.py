"""The configuration: ``.ai-agents/config.yml`` as one validated :class:`Config`.

``models.py`` holds every section and the only defaults; ``load.py`` reads the file
(YAML, ``${VAR}``, the project root) and applies overrides once, at load;
``messages.py`` turns validation problems into one line naming the key path and the
file; ``secrets.py`` knows which values are secrets and builds the one Redactor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autonomous.config.load import flat_overrides, load_config, override, parse_config, render_config
from autonomous.config.models import (
    DEFAULT_ALLOWED_TOOLS,
    AutonomousSection,
    CheckpointsSection,
    CommandPolicySection,
    Config,
    ExecutionSection,
    GitSection,
    InitializerSection,
    LoggingSection,
    ProgressSection,
    PullRequestsSection,
    SandboxSection,
    StateProviderSection,
    VerificationSection,
)
from autonomous.config.secrets import build_redactor, secret_values
from autonomous.config_view import CONFIG_DIR, CONFIG_NAME, find_project_root

__all__ = [
    "CONFIG_DIR",
    "CONFIG_NAME",
    "DEFAULT_ALLOWED_TOOLS",
    "AutonomousSection",
    "CheckpointsSection",
    "CommandPolicySection",
    "Config",
    "ExecutionSection",
    "GitSection",
    "InitializerConfig",
    "InitializerSection",
    "LoggingSection",
    "ProgressSection",
    "PullRequestsSection",
    "RunnerConfig",
    "SandboxSection",
    "StateProviderSection",
    "VerificationSection",
    "build_redactor",
    "find_project_root",
    "flat_overrides",
    "load_config",
    "override",
    "parse_config",
    "render_config",
    "secret_values",
]


class RunnerConfig:
    """The Python API's spelling of a :class:`Config` built from keyword arguments:
    ``RunnerConfig(model="sonnet", max_tasks_per_session=5)`` (keys of the ``autonomous``
    section flat, whole sections by name: ``execution={"mode": "supervised"}``),
    ``RunnerConfig.from_yaml(".ai-agents/config.yml", max_turns_per_task=80)``,
    ``RunnerConfig(config=load_config(), project_dir=...)``.

    What it returns is a plain :class:`Config`: the keywords are overrides, validated
    like the same keys in the file (errors are labelled with this class's name).
    """

    def __new__(cls, *, config: Config | None = None, project_dir: str | Path | None = None, **keys: Any) -> Config:  # type: ignore[misc]
        if config is None:
            config = parse_config({}, root=project_dir)
        elif project_dir is not None:
            config = config.rooted_at(project_dir)
        return override(config, flat_overrides(keys), label=cls.__name__) if keys else config

    @classmethod
    def from_yaml(cls, path: str | Path, *, project_dir: str | Path | None = None, **keys: Any) -> Config:
        """Load ``path`` (see :func:`load_config`) with ``keys`` as overrides."""
        return load_config(path, project_dir=project_dir, overrides=flat_overrides(keys), overrides_label=cls.__name__)

    @classmethod
    def from_config(cls, config: Config, **keys: Any) -> Config:
        """``config`` with ``keys`` applied."""
        return cls(config=config, **keys)


class InitializerConfig(RunnerConfig):
    """The same as :class:`RunnerConfig`, under the name the initializer's examples use."""
