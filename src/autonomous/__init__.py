"""autonomous: hand a spec to Claude and get working software back, task by task.

The public names are imported lazily, so ``autonomous status`` does not pay for the
initializer, the runner or any model SDK it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "ProjectInitializer": "autonomous.init.apply",
    "InitializerConfig": "autonomous.config",
    "AutonomousRunner": "autonomous.runner",
    "RunnerConfig": "autonomous.config",
    "Task": "autonomous.tasks",
    "TaskStatus": "autonomous.tasks",
    "Priority": "autonomous.tasks",
    "get_provider": "autonomous.providers",
}

__all__ = [  # noqa: RUF022 - grouped as in DESIGN.md
    "ProjectInitializer",
    "InitializerConfig",
    "AutonomousRunner",
    "RunnerConfig",
    "Task",
    "TaskStatus",
    "Priority",
    "get_provider",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config import InitializerConfig, RunnerConfig
    from autonomous.init.apply import ProjectInitializer
    from autonomous.providers import get_provider
    from autonomous.runner import AutonomousRunner
    from autonomous.tasks import Priority, Task, TaskStatus


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'autonomous' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
