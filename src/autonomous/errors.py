"""Every exception the library raises on purpose, as one tree.

    AutonomousError                 base; the CLI prints ``str(exc)`` as one line, never a traceback
    ├── ConfigError                 bad config file, key or value (names the file and key path)
    ├── SpecError                   unreadable, empty or binary spec file
    ├── AlreadyInitialized          ``init`` of a project that has a marker, without ``--force``
    ├── DecompositionError          the model gave no valid task list within the allowed attempts, or could not run
    ├── ActionRefused               a person's action makes no sense for the task as it is (retrying a done task)
    ├── ProviderError               a state store failed or refused
    │   ├── StoreCorrupt            the store's file or schema is not ours or is damaged (left untouched)
    │   ├── TaskNotFound            no task with that id or key
    │   ├── ClaimConflict           someone else holds a live claim on the task
    │   ├── StaleClaim              the fencing token presented is not the current one
    │   ├── DependencyCycle         explicit dependencies form a cycle (names the cycle)
    │   └── ProviderAuthError       a token is missing or refused (names the environment variable)
    └── BackendError                a model backend could not run (missing binary, missing extra)

Exit codes for the CLI live on the class (``exit_code``) so the mapping is in one place.
"""

from __future__ import annotations


class AutonomousError(Exception):
    exit_code = 1


class ConfigError(AutonomousError):
    exit_code = 2


class SpecError(AutonomousError):
    exit_code = 2


class AlreadyInitialized(AutonomousError):
    exit_code = 2


class DecompositionError(AutonomousError):
    exit_code = 1


class ActionRefused(AutonomousError):
    exit_code = 1


class ProviderError(AutonomousError):
    exit_code = 1


class StoreCorrupt(ProviderError):
    exit_code = 2


class TaskNotFound(ProviderError):
    exit_code = 2


class ClaimConflict(ProviderError):
    pass


class StaleClaim(ProviderError):
    pass


class DependencyCycle(ProviderError):
    exit_code = 2

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class ProviderAuthError(ProviderError):
    exit_code = 2


class BackendError(AutonomousError):
    exit_code = 2
