"""The Backend contract: one prompt in, a stream of events out, one Outcome at the end.

Backends are registered in ``autonomous.backends.BACKENDS`` by name, the same way a
third party would add one. Optional SDKs are imported inside the backend that needs
them, so the core stays light and a missing extra fails with an install hint.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autonomous.events import Event, Outcome

DEFAULT_ALLOWED_TOOLS = ["Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite"]


@dataclass(slots=True)
class RunOptions:
    """Everything a backend needs for one run. The runner fills it from the config."""

    cwd: Path
    model: str = "opus"
    max_turns: int = 50
    max_tokens: int = 8192
    allowed_tools: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED_TOOLS))
    permission_mode: str = "default"
    append_system_prompt: str | None = None
    session_id: str | None = None  # continue this conversation (``--resume``) when set
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None  # stamped on every event
    inactivity_timeout: float = 600.0
    budget_usd: float | None = None  # what this run may still spend; None = no limit
    rate_limit_rpm: int = 50
    command_deny: list[str] = field(default_factory=list)
    command_allow: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for child processes
    claude_path: str | None = None
    context_window: int = 200_000


class Backend(abc.ABC):
    name: str = "abstract"

    @abc.abstractmethod
    def run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        """Run the prompt to the end. Yields events as they happen; the last item
        yielded is always exactly one Outcome, whatever went wrong."""
