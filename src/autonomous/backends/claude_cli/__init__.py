"""The ``claude-code`` backend: the Claude Code CLI (``claude -p``), the user's own subscription.

One run is one or more CLI processes on the same conversation::

    claude -p --output-format stream-json --verbose --max-turns N --model M
           --permission-mode P --allowedTools ... --disallowedTools ... --settings {hook}
           [--append-system-prompt S] [--mcp-config {...}] [--max-budget-usd B]
           (--session-id <new uuid> | --resume <session id>)          prompt on stdin

Parts: :mod:`.discovery` finds the binary, :mod:`.parser` turns stdout lines into events and
one outcome, :mod:`.process` starts and reaps the child, :mod:`.backend` ties them to the
:class:`~autonomous.backends.base.Backend` contract (a nudge is a new process resuming the
same session; ``--max-turns`` and ``--max-budget-usd`` carry what the task allowance has left).
"""

from __future__ import annotations

from autonomous.backends.claude_cli.backend import ClaudeCodeBackend
from autonomous.backends.claude_cli.discovery import INSTALL_HINT, bundled_claude, find_claude
from autonomous.backends.claude_cli.parser import StreamParser, parse_stream

__all__ = ["INSTALL_HINT", "ClaudeCodeBackend", "StreamParser", "bundled_claude", "find_claude", "parse_stream"]
