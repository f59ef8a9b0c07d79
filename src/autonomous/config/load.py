"""Loading ``.ai-agents/config.yml``: the file, its YAML, ``${VAR}`` references, the
project root, and overrides (the command line's ``--workers``, ``--backend`` ...).

* the file is ``<project>/.ai-agents/config.yml``; the project root is the nearest
  directory at or above the current one holding ``.ai-agents/`` or ``.git``
  (:func:`find_project_root`). A missing default file means all defaults; a missing
  file given explicitly is an error (a typo in ``--config`` should not run on defaults).
* ``${VAR}`` and ``${VAR:-default}`` anywhere inside a string value are replaced from the
  environment (``:-`` as in the shell: the default also applies when VAR is empty).
  A reference to an unset variable without a default is an error at load time, naming
  the variable, the key path and the file: failing before a long run starts beats
  failing an hour into it. Write ``${VAR:-}`` for an optional value. Only the braced
  form is substituted (``$VAR`` is left alone) and ``$${`` is a literal ``${``, so
  shell commands in ``verification.commands`` keep their own variables.
* ``overrides`` (``{"autonomous.workers": 4}``) are put into the file's data before it
  is validated, so an override is checked exactly as the same key in the file would be
  and is applied once: nothing downstream patches the configuration again. An error in
  one is labelled with where it came from (``--workers: ...``) instead of the file.
* Every problem is one :class:`~autonomous.errors.ConfigError` line,
  ``<file>: <key.path>: <what was expected>``, never a traceback (messages.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from autonomous import safe_yaml
from autonomous.config.messages import Loc, describe, dotted, error_loc, kind_of
from autonomous.config.models import MAX_INT, Config
from autonomous.config_view import ENV_REF, SECRET_NAME, find_project_root, locate_config
from autonomous.errors import ConfigError

# A key path (``"execution.git.allow_dirty"``) and its value, as the command line gives it.
Overrides = Mapping[str, Any]


def load_config(
    path: str | Path | None = None,
    *,
    project_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
    overrides_label: str | Mapping[str, str] = "override",
) -> Config:
    """Read, substitute, override and validate a config file.

    ``path`` None: ``<project>/.ai-agents/config.yml``, where the project is
    ``project_dir`` or :func:`find_project_root`; a missing file means all defaults.
    An explicit ``path`` must exist; its project root is ``project_dir`` if given, else
    the directory holding its ``.ai-agents/`` folder (or the file's own directory).
    ``environ`` (default ``os.environ``) answers ``${VAR}`` references. ``overrides``
    replace keys of the file (see the module docstring); ``overrides_label`` names them in
    errors, one name for all or one per key path (``{"autonomous.workers": "--workers"}``).
    """
    file, root = locate_config(path, project_dir)
    given = {"overrides": overrides, "overrides_label": overrides_label}
    if path is None and not file.exists():
        return parse_config({}, root=root, environ=environ, **given)
    label = _label(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror or exc})") from None
    data = _parse_yaml(text, label)
    return parse_config(data, source=file.absolute(), root=root, environ=environ, label=label, **given)


def parse_config(
    data: Any,
    *,
    source: Path | None = None,
    root: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    label: str | None = None,
    overrides: Overrides | None = None,
    overrides_label: str | Mapping[str, str] = "override",
) -> Config:
    """Validate already-parsed data (the file's mapping) into a :class:`Config`,
    substituting ``${VAR}`` references and applying ``overrides``. Errors name ``label``
    (default: the source)."""
    label = label or (_label(source) if source is not None else "config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: expected a mapping of sections (state_provider, autonomous, execution, ...) "
            f"at the top level, got {kind_of(data)}"
        )
    secret_paths: set[Loc] = set()
    secret_strings: set[str] = set()
    env = os.environ if environ is None else environ
    data = _substitute(data, (), env, label, secret_paths, secret_strings)
    config = _validate(data, label, overrides or {}, overrides_label, frozenset(secret_paths))
    _attach(config, source, root, secret_paths, secret_strings)
    return config


def override(config: Config, overrides: Overrides, *, label: str | Mapping[str, str] = "override") -> Config:
    """A new :class:`Config`: ``config`` with ``overrides`` applied and validated as at
    load (for callers holding a loaded configuration, such as the Python API). Keeps its
    file, root and secrets; ``${VAR}`` references are not read again."""
    paths = getattr(config, "_secret_paths", frozenset())
    made = _validate(config.model_dump(), "config", overrides, label, paths)
    _attach(made, config.source, config.root, paths, getattr(config, "_secret_strings", frozenset()))
    return made


def flat_overrides(keys: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the Python API as key paths: a key of the ``autonomous``
    section given flat (``model="sonnet"``), or a whole section by name as a mapping or
    model, merged key by key over the configuration (``execution={"mode": "supervised"}``)."""
    out: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, dict) and value and not path.endswith(".mcp_servers"):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        else:
            out[path] = value

    for key, value in keys.items():
        walk(value, key if key in Config.model_fields else f"autonomous.{key}")
    return out


# -- overrides -----------------------------------------------------------------------------------


def _validate(
    data: dict[str, Any],
    label: str,
    overrides: Overrides,
    overrides_label: str | Mapping[str, str],
    secret_paths: frozenset[Loc],
) -> Config:
    paths = {key: tuple(key.split(".")) for key in overrides}
    for key, value in overrides.items():
        data = _put(data, paths[key], value, _override_label(overrides_label, key))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        loc = error_loc(exc)
        by = next((key for key, path in paths.items() if loc[: len(path)] == path), None)
        where = label if by is None else _override_label(overrides_label, by)
        raise ConfigError(describe(exc, where, secret_paths, Config)) from None


def _override_label(labels: str | Mapping[str, str], key: str) -> str:
    return labels if isinstance(labels, str) else labels.get(key, "override")


def _put(data: dict[str, Any], path: Loc, value: Any, label: str) -> dict[str, Any]:
    """``data`` with ``value`` at ``path``; the sections on the way are copied, not changed."""
    head, rest = path[0], path[1:]
    out = dict(data)
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    if inner is None:
        inner = {}
    if not isinstance(inner, dict):
        raise ConfigError(f"{label}: {dotted(path)}: {dotted((head,))} is {kind_of(inner)} here, not a mapping")
    out[head] = _put(inner, rest, value, label)
    return out


def _attach(
    config: Config, source: Path | None, root: str | Path | None, paths: set[Loc] | frozenset[Loc], strings: Any
) -> None:
    config._source = source
    config._root = Path(root).resolve() if root is not None else find_project_root()
    config._secret_paths = frozenset(paths)
    config._secret_strings = frozenset(strings)


def _label(path: Path) -> str:
    """The file as the user would name it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- YAML ----------------------------------------------------------------------------------------


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return safe_yaml.load(text)  # safe, no tags, aliases and size bounded
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = str(exc.problem or exc.context or "syntax error")
        if exc.context and exc.problem:
            started = exc.context_mark
            at = f" at line {started.line + 1}" if started is not None and started is not mark else ""
            problem += f" ({exc.context}{at})"
        raise ConfigError(f"{label}: {where}invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {' '.join(str(exc).split())}") from None


# -- ${VAR} --------------------------------------------------------------------------------------


def _substitute(
    node: Any, loc: Loc, env: Mapping[str, str], label: str, secret_paths: set[Loc], secret_strings: set[str]
) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, (*loc, k), env, label, secret_paths, secret_strings) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, (*loc, i), env, label, secret_paths, secret_strings) for i, v in enumerate(node)]
    if isinstance(node, safe_yaml.OutOfRangeInt) or (isinstance(node, int) and abs(node) > MAX_INT):
        digits = node.digits if isinstance(node, safe_yaml.OutOfRangeInt) else len(str(abs(node)))
        raise ConfigError(f"{label}: {dotted(loc)}: number out of range ({digits} digits; at most {MAX_INT:,})")
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        value = env.get(name)
        if not value and default is not None:
            value = default
        if value is None:
            raise ConfigError(
                f"{label}: {dotted(loc)}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}} for a fallback)"
            )
        if SECRET_NAME().search(name):
            secret_paths.add(loc)
            if value:
                secret_strings.add(value)
        return value

    return ENV_REF().sub(replace, node)


# -- display -------------------------------------------------------------------------------------

_Dumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render_config(config: Config) -> str:
    """The effective configuration as YAML, secrets ``***`` (``autonomous config``).
    :meth:`Config.redacted` is the same as JSON-able data (``autonomous config --json``)."""
    return yaml.dump(config.redacted(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
