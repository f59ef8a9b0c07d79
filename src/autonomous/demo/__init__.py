"""``autonomous demo``: the whole tool, offline, in about a minute, for someone who just installed it.

It builds a sample git project from ``examples/todo-api/spec.md``, starts the scripted
model server (:mod:`autonomous.testing.model_server`) with a scenario that implements
every task of that spec through the real Claude Code CLI's tools (``Read``, ``Write``,
``Bash`` to run the tests), then runs ``autonomous init`` and ``autonomous start`` as a
user would: real CLI, real verification commands, a real commit per task.

Nothing is spent and no account is needed. ``init`` and ``start`` run as child processes
whose environment is built from nothing (:func:`runner_env`): the scripted server's URL,
a dummy API key and a throwaway ``HOME``, so a developer's real credentials
(``ANTHROPIC_API_KEY``, ``CLAUDE_CODE_OAUTH_TOKEN``, Bedrock/Vertex switches) can never
reach the Claude Code CLI and send the demo to a paid endpoint.

The parts: :mod:`.scenario` (what the scripted agent does, task by task, with the files
it writes kept as package data under ``sample/``) and :mod:`.run` (the project, the
environment and the two ``autonomous`` runs).
"""

from autonomous.demo.run import DEMO_API_KEY, prepare_project, run_demo, runner_env
from autonomous.demo.scenario import DEMO_TASKS, demo_rules

__all__ = ["DEMO_API_KEY", "DEMO_TASKS", "demo_rules", "prepare_project", "run_demo", "runner_env"]
