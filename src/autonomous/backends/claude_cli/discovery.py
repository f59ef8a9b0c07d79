"""Where the Claude Code CLI is: ``autonomous.claude_path``, else ``claude`` on PATH, else the
CLI bundled in the ``claude-agent-sdk`` wheel (found without importing the SDK)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from autonomous.errors import BackendError

INSTALL_HINT = (
    "Claude Code CLI not found: install it with `npm install -g @anthropic-ai/claude-code`, "
    "or `pip install 'autonomous-runner[sdk]'` (the Agent SDK bundles the CLI), "
    "or set autonomous.claude_path"
)


def bundled_claude() -> str | None:
    """The CLI bundled in the ``claude-agent-sdk`` wheel, found without importing the SDK."""
    try:
        spec = importlib.util.find_spec("claude_agent_sdk")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    exe = "claude.exe" if os.name == "nt" else "claude"
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_bundled" / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_claude(explicit: str | None = None) -> str:
    """``explicit`` (config ``claude_path``), else ``claude`` on PATH, else the SDK's bundled CLI."""
    if explicit:
        found = shutil.which(explicit)
        if found:
            return found
        raise BackendError(f"claude_path {explicit!r} is not an executable file. {INSTALL_HINT}")
    found = shutil.which("claude") or bundled_claude()
    if found:
        return found
    raise BackendError(INSTALL_HINT)
