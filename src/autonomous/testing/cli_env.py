"""Run the real Claude Code CLI against a local server, without touching the real user.

The environment is built from nothing rather than copied from ``os.environ``: a
developer's ``ANTHROPIC_AUTH_TOKEN``, OAuth token or Bedrock/Vertex switches must never
redirect a rehearsal to a paid endpoint, and a throwaway ``HOME`` keeps the CLI's
settings, sessions and memory files out of the real one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ClaudeRun", "bundled_claude_path", "claude_cli_env", "run_bundled_claude"]


def bundled_claude_path() -> Path | None:
    """The CLI binary shipped inside the ``claude-agent-sdk`` wheel, or None without the extra.

    Found without importing the SDK, so asking is cheap and has no side effects.
    """
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for name in ("claude", "claude.exe"):
            candidate = Path(location) / "_bundled" / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def claude_cli_env(
    server_url: str,
    home: str | os.PathLike[str],
    *,
    api_key: str = "sk-test",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for one CLI run against ``server_url`` with ``home`` as a throwaway HOME."""
    home = Path(home)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),  # the Bash tool needs a usable shell
        "HOME": str(home),
        "USERPROFILE": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "ANTHROPIC_BASE_URL": server_url,
        "ANTHROPIC_API_KEY": api_key,
        # No telemetry, update checks or other calls that would leave 127.0.0.1.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    if os.name == "nt":  # pragma: no cover - the CLI needs these to start on Windows
        for key in ("SYSTEMROOT", "COMSPEC", "PATHEXT", "TEMP", "TMP"):
            if key in os.environ:
                env[key] = os.environ[key]
    env.update(extra or {})
    return env


@dataclass
class ClaudeRun:
    """One finished CLI run: exit code, the stream-json lines it printed, and stderr."""

    returncode: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def result(self) -> dict[str, Any] | None:
        """The final ``result`` line, which carries the outcome (subtype, is_error, usage)."""
        return next((line for line in reversed(self.lines) if line.get("type") == "result"), None)


def run_bundled_claude(
    prompt: str,
    *,
    server_url: str,
    cwd: str | os.PathLike[str],
    home: str | os.PathLike[str],
    args: Sequence[str] = ("--allowedTools", "Write", "Bash", "--max-turns", "5"),
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> ClaudeRun:
    """Run ``claude -p`` (stream-json) once with the prompt on stdin; for tests and rehearsals.

    ``env`` adds to (or overrides) :func:`claude_cli_env`, e.g. the CLI's stream watchdog
    settings. A run that outlives ``timeout`` is killed and raises ``subprocess.TimeoutExpired``.
    """
    binary = bundled_claude_path()
    if binary is None:
        raise FileNotFoundError("the bundled Claude Code CLI is missing; install autonomous-runner[sdk]")
    Path(home).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(binary), "-p", "--output-format", "stream-json", "--verbose", *args],
        input=prompt,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=claude_cli_env(server_url, home, extra=env),
        timeout=timeout,
        check=False,
    )
    lines = []
    for raw in proc.stdout.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return ClaudeRun(proc.returncode, lines, proc.stderr)
