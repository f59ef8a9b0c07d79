"""Model backends: how the runner talks to Claude.

Built-in backends are registered by name in :data:`BACKENDS` as ``"module:Class"`` strings,
the way a third party would add one, and imported only when asked for, so the core
starts fast and a missing optional SDK fails with an install hint, not at import time.
"""

from __future__ import annotations

import importlib

from autonomous.backends.base import Backend, RunOptions
from autonomous.errors import BackendError, ConfigError

BACKENDS: dict[str, str] = {
    "claude-code": "autonomous.backends.claude_cli:ClaudeCodeBackend",
    "claude-code-sdk": "autonomous.backends.agent_sdk:AgentSDKBackend",
    "anthropic-sdk": "autonomous.backends.anthropic_api:AnthropicBackend",
}

# The extra that provides a backend's third-party package, for the install hint.
_EXTRAS: dict[str, str] = {"claude_agent_sdk": "sdk", "anthropic": "api"}

__all__ = ["BACKENDS", "Backend", "RunOptions", "get_backend"]


def get_backend(name: str) -> Backend:
    """A new instance of the backend registered as ``name``."""
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"autonomous.backend: unknown backend {name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        extra = _EXTRAS.get(missing)
        if extra is None:
            raise
        raise BackendError(
            f"backend {name!r} needs the {missing!r} package: pip install 'autonomous-runner[{extra}]'"
        ) from exc
    return getattr(module, attr)()
