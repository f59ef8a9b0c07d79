"""The offline test kit, shipped to users: rehearse a configuration without spending money.

:class:`ScriptedBackend` answers the runner from a script (a real backend subclass);
:class:`ScriptedModelServer` speaks the Anthropic Messages API from a scripted scenario,
well enough for the real Claude Code CLI and the real ``anthropic`` client;
:mod:`autonomous.testing.cli_env` builds a throwaway environment to run the bundled CLI
against it. The scenario format is documented in :mod:`autonomous.testing.model_server`
and docs/testing.md.

Names are imported lazily so ``python -m autonomous.testing.model_server`` does not find
its own module already imported by the package (runpy warns about that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Conversation": "autonomous.testing.scenario",
    "ErrorSpec": "autonomous.testing.scenario",
    "Match": "autonomous.testing.scenario",
    "RecordedRequest": "autonomous.testing.scenario",
    "Response": "autonomous.testing.scenario",
    "Rule": "autonomous.testing.scenario",
    "Scenario": "autonomous.testing.scenario",
    "ScenarioError": "autonomous.testing.model_server",
    "ScriptedModelServer": "autonomous.testing.model_server",
    "ToolCall": "autonomous.testing.scenario",
    "blocked_rules": "autonomous.testing.scenario",
    "complete_task_rules": "autonomous.testing.scenario",
    "load_scenario": "autonomous.testing.scenario",
    "bundled_claude_path": "autonomous.testing.cli_env",
    "claude_cli_env": "autonomous.testing.cli_env",
    "run_bundled_claude": "autonomous.testing.cli_env",
    "ScriptedBackend": "autonomous.testing.scripted_backend",
}

__all__ = [
    "Conversation",
    "ErrorSpec",
    "Match",
    "RecordedRequest",
    "Response",
    "Rule",
    "Scenario",
    "ScenarioError",
    "ScriptedBackend",
    "ScriptedModelServer",
    "ToolCall",
    "blocked_rules",
    "bundled_claude_path",
    "claude_cli_env",
    "complete_task_rules",
    "load_scenario",
    "run_bundled_claude",
]

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env, run_bundled_claude
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
    from autonomous.testing.scripted_backend import ScriptedBackend


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
