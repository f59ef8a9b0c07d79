"""The names of the state providers, and how to open the configured one.

Provider modules are imported only when chosen, so a command that never touches
Linear does not import its client, and a missing optional extra fails with an
install hint from the module that needs it. :data:`PROVIDER_NAMES` is the one list of
names (the backends' registry is :mod:`autonomous.backends.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomous.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.providers.base import StateProvider

PROVIDER_NAMES = ("file", "postgres", "linear", "github")
DEFAULT_STATE_DIR = ".ai-agents/state"


def get_provider(config: Any = "file", /, **options: Any) -> StateProvider:
    """Open the configured store.

    ``config`` is the loaded configuration (``config.state_provider.type``; the store's
    directory is ``config.state_dir``, or ``config.state_provider.state_dir`` resolved
    against the project root for a plain object or dict), or
    a provider type name with its options as keywords: ``get_provider("file",
    state_dir=path)``. Keywords given alongside a configuration override it.
    """
    if isinstance(config, str):
        kind = config
    else:
        section = _get(config, "state_provider")
        kind = str(_get(section, "type") or "file")
        state_dir = _get(config, "state_dir")  # the configuration's own resolution, when it has one
        if state_dir is None:
            state_dir = Path(_get(section, "state_dir") or DEFAULT_STATE_DIR).expanduser()
            if not state_dir.is_absolute():
                state_dir = _project_root(config) / state_dir
        options = {"state_dir": Path(state_dir), **options}
    if kind == "postgres":
        from autonomous.providers.postgres import PostgresProvider

        options.pop("state_dir", None)
        if not isinstance(config, str):  # dsn None: $DATABASE_URL
            section = _get(config, "state_provider")
            options = {"dsn": _get(section, "dsn"), "schema": _get(section, "schema") or "autonomous", **options}
        return PostgresProvider(**options)
    if kind == "linear":
        from autonomous.providers.linear import LinearProvider

        if not isinstance(config, str):
            section = _get(config, "state_provider")
            keys = ("api_key_env", "team_id", "project_name")
            options = {**{k: _get(section, k) for k in keys}, **options}
        return LinearProvider(**options)
    if kind == "github":
        from autonomous.providers.github import GitHubProvider

        options.pop("state_dir", None)
        if not isinstance(config, str):
            section = _get(config, "state_provider")
            options = {"repo": _get(section, "repo"), "api_key_env": _get(section, "api_key_env"), **options}
            if _get(section, "write_interval") is not None:  # None: the provider's own default
                options.setdefault("write_interval", float(_get(section, "write_interval")))
        return GitHubProvider(**options)
    if kind == "file":
        from autonomous.providers.file import FileProvider

        return FileProvider(**options)
    raise ConfigError(f"state_provider.type: unknown provider {kind!r}; expected one of {', '.join(PROVIDER_NAMES)}")


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _project_root(config: Any) -> Path:
    """The project root (the directory holding ``.ai-agents/``): given by the config, else
    found from the config file's path, else the current directory."""
    for name in ("root", "project_root"):
        value = _get(config, name)
        if value:
            return Path(value)
    source = _get(config, "source") or _get(config, "path")
    if source:
        source = Path(source).resolve()
        return source.parent.parent if source.parent.name == ".ai-agents" else source.parent
    value = _get(config, "project_dir")
    return Path(value) if value else Path.cwd()
