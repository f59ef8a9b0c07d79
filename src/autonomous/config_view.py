"""What the reading commands need from the configuration, without validating it on every call.

``next``, ``status``, ``tasks`` and ``logs`` are called in loops by agents and dashboards.
Of the configuration they need four things: the provider type, the state directory, the
log directory and the ordering policy. Validating the whole file costs about 250 ms of
imports (pydantic and PyYAML) on every call; reading a small JSON file costs well under
a millisecond. So :func:`load_reading_config` keeps, per config file, the *result* of the
full validation (:func:`autonomous.config.load_config`, the one place the configuration's
shape, defaults and rules are decided) in a cache file, keyed by everything that result
depends on:

* the config file's bytes (sha256), its path and the project root;
* the values of the environment variables the file references (``${NAME}``): the value
  itself for ordinary names, and only whether it is set and non-empty for names that
  look like credentials (a secret's value, or a hash of it, is never written anywhere);
* ``$HOME`` (``~`` in paths), this package's version and the size and modification time
  of the ``config`` package's modules (a changed model is a changed validation).

A miss (or a damaged cache) runs the full validation, which reports every problem of
the file exactly as ``autonomous start`` would, and then writes the cache. Only the file
provider is served from the cache: the other stores need credentials to connect, and the
network or the PostgreSQL driver costs more than the validation anyway.

The cache lives in ``$XDG_CACHE_HOME/autonomous`` (default ``~/.cache/autonomous``), one
small file per config file, so nothing is added to the project (nor to a task's commit).
When it cannot be written the commands work the same, only slower.

This module also holds the few loading rules the fast path must share with
``autonomous.config`` (where the file is, what a ``${VAR}`` reference and a credential's name
look like), so that they are decided in one place. It imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autonomous import __version__

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import Config

CONFIG_DIR = ".ai-agents"
CONFIG_NAME = "config.yml"
CACHE_VERSION = 1
# The modules whose change changes what a validation returns (the cache key holds their size and time).
_VALIDATION_MODULES = ("models.py", "load.py", "messages.py")


def lazy_regex(pattern: str, flags: int = 0) -> Callable[[], re.Pattern[str]]:
    """A regex compiled on first use: compiling them all at import is measurable in a
    reading command's start-up, and most are needed only for secrets or errors."""
    return functools.cache(lambda: re.compile(pattern, flags))


# Names of environment variables whose values are credentials. ``AUTH`` but not AUTHOR
# (GIT_AUTHOR_NAME is not a secret); over-matching only costs a masked value.
SECRET_NAME_PATTERN = r"TOKEN|KEY|SECRET|PASSW|WEBHOOK|CREDENTIAL|AUTH(?!OR)|DSN|DATABASE_URL|COOKIE"
SECRET_NAME = lazy_regex(SECRET_NAME_PATTERN, re.I)  # the sandbox keeps the same names from the agent
# ``${VAR}``, ``${VAR:-default}``; ``$${`` is a literal ``${``.
ENV_REF = lazy_regex(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the cwd) that holds
    ``.ai-agents/`` or ``.git``; ``start`` itself when there is none."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / CONFIG_DIR).is_dir() or (directory / ".git").exists():
            return directory
    return here


def locate_config(path: str | Path | None, project_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(config file, project root): ``path`` if given (its root is ``project_dir``, else
    the folder holding its ``.ai-agents/``, else its own folder), otherwise
    ``<root>/.ai-agents/config.yml`` of ``project_dir`` or :func:`find_project_root`."""
    if path is None:
        root = Path(project_dir).resolve() if project_dir is not None else find_project_root()
        return root / CONFIG_DIR / CONFIG_NAME, root
    file = Path(path).expanduser()
    if project_dir is not None:
        return file, Path(project_dir).resolve()
    parent = file.resolve().parent
    return file, parent.parent if parent.name == CONFIG_DIR else parent


@dataclass(frozen=True, slots=True)
class ReadingConfig:
    """The part of a validated :class:`~autonomous.config.Config` the reading commands
    use, with the same attribute names where they overlap (``get_provider`` takes either)."""

    source: Path | None
    root: Path
    state_dir: Path
    log_dir: Path
    ordering: str
    provider_type: str = "file"
    review_unblocks_dependents: bool = False

    @property
    def state_provider(self) -> dict[str, Any]:
        return {"type": self.provider_type, "state_dir": str(self.state_dir)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source) if self.source else None,
            "root": str(self.root),
            "state_dir": str(self.state_dir),
            "log_dir": str(self.log_dir),
            "ordering": self.ordering,
            "provider_type": self.provider_type,
            "review_unblocks_dependents": self.review_unblocks_dependents,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadingConfig:
        return cls(
            source=Path(data["source"]) if data["source"] else None,
            root=Path(data["root"]),
            state_dir=Path(data["state_dir"]),
            log_dir=Path(data["log_dir"]),
            ordering=str(data["ordering"]),
            provider_type=str(data["provider_type"]),
            review_unblocks_dependents=bool(data.get("review_unblocks_dependents", False)),
        )


# The settings a ReadingConfig holds, as key paths of the file: none may carry a secret.
_READ_PATHS = (
    ("state_provider", "type"), ("state_provider", "state_dir"), ("logging", "dir"), ("execution", "ordering"),
    ("execution", "review_unblocks_dependents"),
)  # fmt: skip


def ordering_of(config: ReadingConfig | Config) -> str:
    """``execution.ordering`` of either form."""
    return config.ordering if isinstance(config, ReadingConfig) else config.execution.ordering


def review_satisfies_of(config: ReadingConfig | Config) -> bool:
    """``execution.review_unblocks_dependents`` of either form: does an ``in_review`` task
    let the tasks that wait on it go ahead?"""
    if isinstance(config, ReadingConfig):
        return config.review_unblocks_dependents
    return config.execution.review_unblocks_dependents


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "autonomous"


def _cache_key(file: Path, root: Path, data: bytes | None, env: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    package = Path(__file__).with_name("config")
    stats = [(package / name).stat() for name in _VALIDATION_MODULES]
    parts: list[str] = [
        str(CACHE_VERSION), __version__, *(f"{st.st_size}:{st.st_mtime_ns}" for st in stats),
        str(file.absolute()), str(root), env.get("HOME", ""),
    ]  # fmt: skip
    if data is not None:
        parts.append(hashlib.sha256(data).hexdigest())
        names = sorted({m.group(2) for m in ENV_REF().finditer(data.decode("utf-8", "replace"))})
        for name in names:
            value = env.get(name)
            if SECRET_NAME().search(name):
                parts.append(f"{name}:{'unset' if value is None else 'set' if value else 'empty'}")
            else:
                parts.append(f"{name}={value!r}")
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _cache_file(file: Path, environ: Mapping[str, str]) -> Path:
    name = hashlib.sha256(str(file.absolute()).encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return cache_dir(environ) / f"config-{name}.json"


def load_reading_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> ReadingConfig | Config:
    """What a reading command needs: a :class:`ReadingConfig` from the cache when the
    configuration is unchanged, else the full :func:`~autonomous.config.load_config`
    (which raises ConfigError for any problem) whose result is cached for next time.
    A configuration whose provider is not the file store is returned whole."""
    env = os.environ if environ is None else environ
    file, root = locate_config(path)
    try:
        data: bytes | None = file.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError:  # a directory, unreadable: the full loader says what is wrong
        data = b""
    key = _cache_key(file, root, data, env)
    cached = _cache_file(file, env)
    try:
        entry = json.loads(cached.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and entry.get("key") == key:
            return ReadingConfig.from_dict(entry["config"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from autonomous.config import load_config

    config = load_config(path, environ=env)
    view = reading_view(config)
    if view is not None:
        _write_cache(cached, {"key": key, "config": view.to_dict()})
        return view
    return config


def reading_view(config: Config) -> ReadingConfig | None:
    """The cacheable part of ``config``; None when it cannot be cached (another provider
    than the file store, or a setting substituted from a credential's variable)."""
    if config.state_provider.type != "file" or any(p in config._secret_paths for p in _READ_PATHS):
        return None
    return ReadingConfig(
        source=config.source.absolute() if config.source else None,
        root=config.root,
        state_dir=config.state_dir,
        log_dir=config.log_dir,
        ordering=config.execution.ordering,
        review_unblocks_dependents=config.execution.review_unblocks_dependents,
    )


def _write_cache(path: Path, entry: dict[str, Any]) -> None:
    """Write the cache atomically (a reader sees the old or the new file); failures are
    ignored: the cache only saves time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(entry, fh)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
