"""The offline test kit, shipped to users: rehearse a configuration without spending money.

:class:`ScriptedModelServer` speaks the Anthropic Messages API from a scripted scenario,
well enough for the real Claude Code CLI and the real ``anthropic`` client;
:mod:`autonomous.testing.cli_env` builds a throwaway environment to run the bundled CLI
against it. The scenario format is documented in :mod:`autonomous.testing.model_server`
and docs/testing.md.
"""

from __future__ import annotations

from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import (
    Conversation,
    ErrorSpec,
    Match,
    RecordedRequest,
    Response,
    Rule,
    Scenario,
    ScenarioError,
    ScriptedModelServer,
    ToolCall,
    blocked_rules,
    complete_task_rules,
    load_scenario,
)

__all__ = [
    "Conversation",
    "ErrorSpec",
    "Match",
    "RecordedRequest",
    "Response",
    "Rule",
    "Scenario",
    "ScenarioError",
    "ScriptedModelServer",
    "ToolCall",
    "blocked_rules",
    "bundled_claude_path",
    "claude_cli_env",
    "complete_task_rules",
    "load_scenario",
]
