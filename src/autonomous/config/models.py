"""Every section of ``.ai-agents/config.yml`` as a pydantic model: the only place defaults live.

Every section is a model with ``extra="forbid"``, so a typo is an error that names the
key and suggests the nearest valid one instead of a setting silently ignored. The key
table with defaults in ``docs/configuration.md`` is written from this module. The runner,
the initializer and the commands read these models directly (``config.execution.git.commit``):
there is no second, flattened copy whose defaults or overrides could drift. Values derived
from several keys (paths resolved against the project root, the tool's folders to keep out
of commits, the verification commands) are properties and methods of :class:`Config`.

Only pydantic is imported at module level: ``autonomous status`` must start fast.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from autonomous.backends.registry import BACKEND_NAMES
from autonomous.config.messages import Loc, is_model
from autonomous.config.messages import fail as _fail
from autonomous.config_view import find_project_root, lazy_regex
from autonomous.providers.registry import PROVIDER_NAMES

DEFAULT_ALLOWED_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite")
# The largest integer any setting takes (a 64-bit signed integer): beyond it a value is a
# typo or an attack, and it would fail later, far from the key that holds it.
MAX_INT = 2**63 - 1

_ENV_NAME = lazy_regex(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPO = lazy_regex(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")


def _env_name(value: str | None) -> str | None:
    # Never echo the value: the usual mistake here is pasting the token itself.
    if value is not None and not _ENV_NAME().match(value):
        raise _fail("expected the name of an environment variable (like LINEAR_API_KEY), not a value")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _empty_subsections(cls, data: Any) -> Any:
        """``checkpoints:`` with nothing under it (YAML null) means the defaults."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if data.get(name, 0) is None and is_model(field.annotation):
                    data = {**data, name: {}}
        return data


# -- the sections ------------------------------------------------------------------------------


with warnings.catch_warnings():
    # ``schema`` is the documented key name; as a field it shadows pydantic's deprecated
    # ``BaseModel.schema()``, which nothing here uses (and which get_provider must not see).
    warnings.filterwarnings("ignore", message=".*shadows an attribute in parent.*")

    class StateProviderSection(_Section):
        """Where tasks live."""

        type: Literal[PROVIDER_NAMES] = "file"  # type: ignore[valid-type]  # the registry's names
        state_dir: str = ".ai-agents/state"
        api_key_env: str | None = None  # None: the provider's own default (LINEAR_API_KEY, GITHUB_TOKEN)
        team_id: str | None = None
        project_name: str | None = None
        repo: str | None = None  # github: owner/name
        write_interval: float | None = Field(None, ge=0)  # github: seconds between writes; None: 1 s
        dsn: str | None = None  # postgres; None: ${DATABASE_URL}
        schema: str = "autonomous"  # postgres: the schema holding every table

        @field_validator("api_key_env")
        @classmethod
        def _api_key_env(cls, value: str | None) -> str | None:
            return _env_name(value)

        @field_validator("repo")
        @classmethod
        def _repo_shape(cls, value: str | None, info: Any) -> str | None:
            if value is not None and info.data.get("type") == "github" and not _REPO().match(value):
                raise _fail(f"expected owner/name (like octocat/hello-world), got {value!r}")
            return value


class CommandPolicySection(_Section):
    """Extra rules for the shell commands an agent may run (``autonomous.backends.policy``).

    The built-in deny rules (sudo, recursive rm of / or ~, git force-push, curl|sh,
    mkfs, dd onto devices, shutdown/reboot, fork bombs) always apply; they live in
    ``autonomous.backends.policy.DEFAULT_DENY`` and are not repeated here, so writing your own
    ``deny`` list adds to them and can never drop them by accident.
    """

    allow: list[str] = []  # regexes matched at the start of each command
    deny: list[str] = []  # regexes searched anywhere, on top of the defaults

    @field_validator("allow", "deny")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(f"expected a regular expression, got {pattern!r} ({exc})", i) from None
        return patterns


class SandboxSection(_Section):
    """``autonomous.sandbox``: the OS sandbox around everything the agent runs (``autonomous.sandbox``
    package, docs/security.md). ``sandbox: off`` turns it off, and nothing else does: without
    bubblewrap ``start`` refuses to run rather than run unconfined."""

    enabled: bool = True
    network: Literal["off", "on", "allow"] = "off"  # the agent's commands; the model API is never affected
    allow_hosts: list[str] = []  # with network: allow (e.g. pypi.org, files.pythonhosted.org)
    read_paths: list[str] = []  # more folders the agent may read outside the project (home folders are hidden)

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, data: Any) -> Any:
        """``sandbox: off`` / ``on`` (YAML booleans) is the whole section; ``network: off`` / ``on`` too."""
        if isinstance(data, bool):
            return {"enabled": data}
        if isinstance(data, dict) and isinstance(data.get("network"), bool):
            return {**data, "network": "on" if data["network"] else "off"}
        return data

    @model_validator(mode="after")
    def _hosts(self) -> Self:
        if self.network == "allow" and not self.allow_hosts:
            raise _fail("network: allow needs the hosts in allow_hosts (or network: on for every host)", "allow_hosts")
        return self


class AutonomousSection(_Section):
    """The coding agent: backend, model, limits, tools."""

    backend: Literal[BACKEND_NAMES] = "claude-code"  # type: ignore[valid-type]  # the registry's names
    model: str = Field("opus", min_length=1)
    max_tokens: int = Field(8192, gt=0)
    max_turns_per_task: int = Field(50, gt=0)
    max_tasks_per_session: int | None = Field(10, gt=0)  # None: no limit
    cost_limit_per_session: float | None = Field(10.0, gt=0)  # USD; None: no limit
    first_task_cost: float = Field(0.0, ge=0)  # USD reserved for a task before any finished (runner budget)
    rate_limit_rpm: int = Field(50, gt=0)
    oauth_token_env: str | None = None
    linear_api_key_env: str | None = None
    project_dir: str = "."
    allowed_tools: list[str] = list(DEFAULT_ALLOWED_TOOLS)
    workers: int = Field(1, ge=1)
    claude_path: str | None = None
    # "default" + the allowedTools list: listed tools run without prompts and nothing
    # else can ask (there is nobody to answer in a headless run). "manual" is the CLI's
    # newer name for "default"; bypassPermissions ignores allowed_tools entirely.
    permission_mode: Literal["default", "manual", "acceptEdits", "auto", "dontAsk", "plan", "bypassPermissions"] = (
        "default"
    )
    inactivity_timeout: float = Field(600.0, gt=0)
    max_session_minutes: float | None = Field(None, gt=0)
    lease_seconds: float = Field(900.0, gt=0)
    max_rate_limit_wait: float = Field(21600.0, ge=0)
    mcp_servers: dict[str, dict[str, Any]] = {}
    command_policy: CommandPolicySection = CommandPolicySection()
    context_window: int = Field(200_000, gt=0)
    sandbox: SandboxSection = SandboxSection()

    @model_validator(mode="after")
    def _sandboxed_permissions(self) -> Self:
        if self.sandbox.enabled and self.permission_mode == "bypassPermissions":
            raise _fail(
                "bypassPermissions skips every permission check, which the sandbox relies on: "
                "choose another mode, or set autonomous.sandbox: off",
                "permission_mode",
            )
        return self

    @field_validator("oauth_token_env", "linear_api_key_env")
    @classmethod
    def _token_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("mcp_servers")
    @classmethod
    def _mcp(cls, servers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Passed to Claude Code as ``--mcp-config``, whose schema is Claude Code's: only
        the keys it cannot work without are checked here, the rest passes through."""
        for name, server in servers.items():
            kind = server.get("type", "stdio")
            if kind not in ("stdio", "sse", "http"):
                raise _fail(f"expected one of stdio, sse, http, got {kind!r}", name, "type")
            needed = "command" if kind == "stdio" else "url"
            if not isinstance(server.get(needed), str) or not server[needed]:
                raise _fail(f"expected a string (required for a {kind} server)", name, needed)
            for key in ("env", "headers"):
                value = server.get(key)
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise _fail("expected a mapping of names to strings", name, key)
                for var, text in value.items():
                    if not isinstance(text, str | int | float) or isinstance(text, bool):
                        raise _fail("expected a string", name, key, var)
                server[key] = {str(k): str(v) for k, v in value.items()}
            args = server.get("args")
            if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
                raise _fail("expected a list of strings", name, "args")
        return servers


class CheckpointsSection(_Section):
    turn_interval: int = Field(25, ge=0)  # 0: off
    context_threshold: float = Field(0.8, gt=0, le=1)  # fraction of autonomous.context_window


class GitSection(_Section):
    commit: bool = True
    allow_dirty: bool = False  # start with tracked files already modified (left out of task commits)
    allow_files: list[str] = []  # credential-file patterns (.env, *.pem ...) a task may commit anyway
    branch_per_task: bool = False
    merge_strategy: Literal["rebase", "merge"] = "merge"
    max_merge_attempts: int = Field(2, ge=1)  # merge conflicts / failing post-merge checks before blocked
    remote: str | None = None  # a git remote shared by runners on several machines (docs/runner.md "Many machines")
    branch: str | None = None  # the integration branch on the remote; None: the branch checked out
    max_push_attempts: int = Field(3, ge=1)  # rejected pushes (fetch, rebase, verify, push again) before blocked
    # The runner's own git commands ignore the repository's hooks and the config that runs
    # programs (fsmonitor, hooksPath, filters, aliases ...) unless this is on: workspace/git.py.
    run_hooks: bool = False


class PullRequestsSection(_Section):
    """``execution.handoff: pr``: where pull requests are opened. Unset ``repo`` with the
    github state provider: its repository, token and API URL are used."""

    repo: str | None = None  # owner/name on GitHub
    token_env: str = "GITHUB_TOKEN"  # the variable holding a token with pull requests: write
    api_url: str | None = None  # GitHub Enterprise; None: $GITHUB_API_URL, else api.github.com

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        return _env_name(value) or value

    @field_validator("repo")
    @classmethod
    def _repo_shape(cls, value: str | None) -> str | None:
        if value is not None and not _REPO().match(value):
            raise _fail(f"expected owner/name (like octocat/hello-world), got {value!r}")
        return value


class ExecutionSection(_Section):
    mode: Literal["autonomous", "interactive", "supervised"] = "autonomous"
    on_failure: Literal["stop", "continue"] = "stop"
    ordering: Literal["strict", "phases", "dependencies"] = "strict"
    checkpoints: CheckpointsSection = CheckpointsSection()
    git: GitSection = GitSection()
    # review: a person approves each task before it merges; pr: a pull request per task (docs/runner.md)
    handoff: Literal["merge", "review", "pr"] = "merge"
    review_unblocks_dependents: bool = False  # true: a task in in_review counts as finished for readiness
    pull_requests: PullRequestsSection = PullRequestsSection()
    pr_poll_seconds: float = Field(60.0, gt=0)  # at most one look at the open pull requests this often
    pr_wait: float = Field(0.0, ge=0)  # seconds `start` keeps polling when only pull requests remain; 0: exit 3

    @model_validator(mode="after")
    def _pr_needs_remote(self) -> Self:
        if self.handoff == "pr" and not self.git.remote:
            raise _fail("pr needs execution.git.remote: the task's branch is pushed there", "handoff")
        return self


class ProgressSection(_Section):
    slack_webhook: str | None = None
    notification_interval: float = Field(300, ge=0)
    notify_on_complete: bool = True
    notify_on_blocked: bool = True


class VerificationSection(_Section):
    """How the runner checks a task before it is done (:mod:`autonomous.verify`).

    ``commands: auto`` detects the project's test command (:mod:`autonomous.checks.detect`);
    a list runs exactly those commands (``[]``: none). ``require_changes``: a task must
    change a file unless it is labelled ``no-changes``. ``baseline``: the checks run once
    before the first task, so a check that already failed is not blamed on the tasks.
    ``review``: a fresh read-only session of the backend reviews the diff before done.
    """

    commands: Literal["auto"] | list[str] = "auto"
    require_changes: bool = True
    baseline: bool = True
    review: bool = False
    max_attempts: int = Field(2, ge=1)
    timeout: float = Field(600.0, gt=0)


class LoggingSection(_Section):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    dir: str = ".ai-agents/logs"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class InitializerSection(_Section):
    """``autonomous init``: how the model decomposes a free-form spec (a structured spec
    is parsed exactly and uses none of these)."""

    max_turns: int = Field(3, gt=0)  # turns per model answer
    max_attempts: int = Field(3, ge=1)  # answers per spec section before init gives up
    section_chars: int = Field(12_000, gt=0)  # a long spec is decomposed in sections of about this size
    # Imported task lists (Spec Kit, Kiro, Task Master, beads; autonomous.init):
    include_optional: bool = False  # Kiro's optional "- [ ]*" tasks are work to do (else imported canceled)
    tick_source: bool = True  # tick a finished task's box in its source tasks.md, in the task's commit


class Checks(NamedTuple):
    """The verification commands in force, and how they were chosen (``autonomous config`` shows it)."""

    commands: tuple[str, ...]
    how: str


# -- the whole file ------------------------------------------------------------------------------


class Config(_Section):
    """The whole ``.ai-agents/config.yml``.

    Build one with :func:`load_config` (a file) or :func:`parse_config` (a mapping):
    they turn validation problems into one-line :class:`ConfigError` s and record
    ``source`` (the file read, or None) and ``root`` (the project root).
    """

    state_provider: StateProviderSection = StateProviderSection()
    autonomous: AutonomousSection = AutonomousSection()
    execution: ExecutionSection = ExecutionSection()
    progress: ProgressSection = ProgressSection()
    verification: VerificationSection = VerificationSection()
    logging: LoggingSection = LoggingSection()
    initializer: InitializerSection = InitializerSection()

    @model_validator(mode="after")
    def _pr_repository(self) -> Self:
        pulls = self.execution.pull_requests
        github = self.state_provider.type == "github" and self.state_provider.repo
        if self.execution.handoff == "pr" and not pulls.repo and not github:
            raise _fail(
                "handoff: pr needs the GitHub repository: set execution.pull_requests.repo (owner/name) "
                "or use the github state provider",
                "execution",
                "pull_requests",
                "repo",
            )
        return self

    _source: Path | None = PrivateAttr(default=None)
    _root: Path | None = PrivateAttr(default=None)
    _secret_paths: frozenset[Loc] = PrivateAttr(default=frozenset())
    _secret_strings: frozenset[str] = PrivateAttr(default=frozenset())
    _checks: Checks | None = PrivateAttr(default=None)  # the checks property, worked out once

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from; None when built without one."""
        return self._source

    @property
    def root(self) -> Path:
        """The project root: the directory holding ``.ai-agents/``."""
        if self._root is None:
            self._root = find_project_root()
        return self._root

    @property
    def project_dir(self) -> Path:
        """``autonomous.project_dir`` resolved against the project root: where the agent works."""
        return (self.root / Path(self.autonomous.project_dir).expanduser()).resolve()

    def resolve_path(self, value: str | Path) -> Path:
        """A path setting (``state_provider.state_dir``, ``logging.dir``), relative ones
        against :attr:`root`: the tool's own files stay beside ``.ai-agents/`` even when
        the agent works in a sub-folder (``autonomous.project_dir``)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def state_dir(self) -> Path:
        """Where the local store and ``runner_state.json`` live."""
        return self.resolve_path(self.state_provider.state_dir)

    @property
    def log_dir(self) -> Path:
        """Where ``autonomous.log`` and ``events.jsonl`` are written."""
        return self.resolve_path(self.logging.dir)

    @property
    def git_excludes(self) -> tuple[str, ...]:
        """The tool's runtime folders inside the project (beyond ``.ai-agents``), relative
        to it: never part of a task's change set."""
        from autonomous.workspace import git

        excludes = list(git.RUNTIME_EXCLUDES)
        for folder in (self.state_dir, self.log_dir):
            with contextlib.suppress(ValueError):
                excludes.append(folder.resolve().relative_to(self.project_dir).as_posix())
        return tuple(dict.fromkeys(excludes))

    @property
    def checks(self) -> Checks:
        """The commands that check each task and how they were chosen (``configured``,
        ``auto: detected ...``). ``commands: auto`` looks at the project once per
        configuration: a session keeps the checks it started with even when a task adds
        a test runner's files."""
        if self._checks is None:
            from autonomous.checks import detect

            commands, how = detect.plan(self.verification.commands, self.project_dir)
            self._checks = Checks(tuple(commands), how)
        return self._checks

    def rooted_at(self, root: str | Path) -> Self:
        """This configuration for the project at ``root`` (relative paths resolve there)."""
        moved = self.model_copy()
        moved._root = Path(root).resolve()
        moved._checks = None
        return moved

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data with every secret shown as ``***``."""
        from autonomous.config.secrets import redact_data

        return redact_data(self, self.model_dump(mode="json"), self._secret_paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted()!r})"

    __str__ = __repr__
