"""The names of the backends, and how to make one.

The one list the config's allowed values (``autonomous.backend``) and the CLI's
``--backend`` choices derive from. A built-in backend registers here exactly as a third
party's would: a name, a ``"module:Class"`` target imported only when asked for (so the
core starts fast), and the extra that provides its SDK for the install hint.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autonomous.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from autonomous.backends.base import Backend


@dataclass(frozen=True, slots=True)
class BackendEntry:
    target: str  # "module:Class"
    extras: dict[str, str]  # third-party top-level package -> the pip extra that installs it


BACKENDS: dict[str, BackendEntry] = {
    "claude-code": BackendEntry("autonomous.backends.claude_cli:ClaudeCodeBackend", {}),
    "anthropic-sdk": BackendEntry("autonomous.backends.anthropic_api:AnthropicBackend", {"anthropic": "api"}),
    "claude-code-sdk": BackendEntry("autonomous.backends.agent_sdk:AgentSDKBackend", {"claude_agent_sdk": "sdk"}),
}

BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)


def install_hint(package: str, extra: str) -> str:
    return f"needs the {package!r} package: pip install 'autonomous-runner[{extra}]'"


def import_extra(package: str, extra: str, backend: str) -> object:
    """``package`` imported, or :class:`BackendError` with the install hint."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise BackendError(f"the {backend} backend {install_hint(package, extra)}") from None


def get_backend(name: str) -> Backend:
    """A new instance of the backend registered as ``name``."""
    entry = BACKENDS.get(name)
    if entry is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"autonomous.backend: unknown backend {name!r} (known: {known})")
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        extra = entry.extras.get(missing)
        if extra is None:
            raise
        raise BackendError(f"backend {name!r} {install_hint(missing, extra)}") from exc
    return getattr(module, attr)()
