"""Every exception the library raises on purpose, as one tree, and the CLI's exit codes.

    AutonomousError                 base; the CLI prints ``str(exc)`` as one line, never a traceback
    ├── ConfigError                 bad config file, key or value (names the file and key path)
    │   └── ScenarioError           a scripted model server scenario is malformed (names the key path)
    ├── SpecError                   unreadable, empty or binary spec file
    ├── AlreadyInitialized          ``init`` of a project that has a marker, without ``--force``
    ├── DecompositionError          the model gave no valid task list within the allowed attempts, or could not run
    ├── ActionRefused               a person's action makes no sense for the task as it is (retrying a done task)
    ├── PreflightError              ``start`` cannot run as things are (names the fix); nothing was claimed
    │   └── RunnerBusy              another runner holds the project's lock
    ├── GitError                    a git command failed (the message carries its stderr)
    ├── ProviderError               a state store failed or refused
    │   ├── StoreCorrupt            the store's file or schema is not ours or is damaged (left untouched)
    │   ├── TaskNotFound            no task with that id or key
    │   ├── ClaimConflict           someone else holds a live claim on the task
    │   ├── StaleClaim              the fencing token presented is not the current one
    │   ├── DependencyCycle         explicit dependencies form a cycle (names the cycle)
    │   ├── ProviderAuthError       a token is missing or refused (names the environment variable)
    │   ├── GitHubAPIError          GitHub answered an error status the provider does not handle (``status``)
    │   └── LinearGraphQLError      Linear answered GraphQL errors (``code``, ``errors``)
    └── BackendError                a model backend could not run (missing binary, missing extra, missing key)
        └── IncompleteStream        a model stream ended without its terminal event, or carried a malformed
                                    event or a body that is not the API's (retried like a 5xx, then ``error``)

Not in the tree, on purpose: exceptions that never leave the module that raises them
(a tool's refusal that goes back to the model as a tool result, a provider's internal
retry signal, the fake servers' resolver faults).

Exit codes for the CLI live on the class (``exit_code``) so the mapping is in one place;
:class:`ExitCode` names the codes of ``autonomous start`` (DESIGN.md, "Exit codes").
"""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    """What ``autonomous start`` (and every command) exits with."""

    OK = 0  # no work left, or a session limit reached cleanly
    FAILED = 1  # a task failed or was blocked and the runner stopped (stop-on-failure)
    USAGE = 2  # usage or configuration error (also: refused credentials)
    PAUSED = 3  # paused at a checkpoint awaiting review
    BUDGET = 4  # budget or rate limit exhausted
    INTERRUPTED = 130  # interrupted (SIGINT / SIGTERM / stop)


class AutonomousError(Exception):
    exit_code: int = ExitCode.FAILED


class ConfigError(AutonomousError):
    exit_code = ExitCode.USAGE


class ScenarioError(ConfigError):
    """A scenario file or object is malformed; the message names the key path."""


class SpecError(AutonomousError):
    exit_code = ExitCode.USAGE


class AlreadyInitialized(AutonomousError):
    exit_code = ExitCode.USAGE


class DecompositionError(AutonomousError):
    exit_code = ExitCode.FAILED


class PreflightError(AutonomousError):
    """A check before the first claim failed; the message says what to do."""

    exit_code = ExitCode.USAGE


class RunnerBusy(PreflightError):
    """Another runner is running on this project (its lock is held by a live process)."""


class GitError(AutonomousError):
    """A git command failed; the message carries its stderr."""


class ActionRefused(AutonomousError):
    exit_code = 1


class ProviderError(AutonomousError):
    exit_code = ExitCode.FAILED


class StoreCorrupt(ProviderError):
    exit_code = ExitCode.USAGE


class TaskNotFound(ProviderError):
    exit_code = ExitCode.USAGE


class ClaimConflict(ProviderError):
    pass


class StaleClaim(ProviderError):
    pass


class DependencyCycle(ProviderError):
    exit_code = ExitCode.USAGE

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class ProviderAuthError(ProviderError):
    exit_code = ExitCode.USAGE


class GitHubAPIError(ProviderError):
    """GitHub answered with an error status (``status``) the provider does not handle itself."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class LinearGraphQLError(ProviderError):
    """Linear answered with GraphQL errors; ``code`` is the first one's extension code."""

    def __init__(self, message: str, code: str = "", errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.errors = errors or []


class BackendError(AutonomousError):
    exit_code = ExitCode.USAGE


class IncompleteStream(BackendError):
    """A model stream that cannot be trusted: cut before its terminal event, malformed, or not the API's."""
