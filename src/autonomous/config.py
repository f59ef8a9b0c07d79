"""The configuration in ``.ai-agents/config.yml``: pydantic models of the whole file.

Every section is a model with ``extra="forbid"``, so a typo is an error that names the
key and suggests the nearest valid one instead of a setting silently ignored. The key
table with defaults lives in ``docs/configuration.md``; this module is its source.

Loading (:func:`load_config`):

* the file is ``<project>/.ai-agents/config.yml``; the project root is the nearest
  directory at or above the current one holding ``.ai-agents/`` or ``.git``
  (:func:`find_project_root`). A missing default file means all defaults; a missing
  file given explicitly is an error (a typo in ``--config`` should not run on defaults).
* ``${VAR}`` and ``${VAR:-default}`` anywhere inside a string value are replaced from the
  environment (``:-`` as in the shell: the default also applies when VAR is empty).
  A reference to an unset variable without a default is an error at load time, naming
  the variable, the key path and the file: failing before a long run starts beats
  failing an hour into it. Write ``${VAR:-}`` for an optional value. Only the braced
  form is substituted (``$VAR`` is left alone) and ``$${`` is a literal ``${``, so
  shell commands in ``verification.commands`` keep their own variables.
* Relative paths: ``autonomous.project_dir`` resolves against the project root (never
  the cwd); so do ``state_provider.state_dir`` and ``logging.dir``
  (:attr:`Config.state_dir`, :attr:`Config.log_dir`), so the tool's own files stay
  beside ``.ai-agents/`` even when the agent works in a sub-folder.
* Every problem is one :class:`~autonomous.errors.ConfigError` line,
  ``<file>: <key.path>: <what was expected>``, never a traceback.

Secrets: values substituted from variables whose names look like credentials
(``*TOKEN*``, ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``, ``*WEBHOOK*`` ...), the Slack
webhook, DSN passwords and the ``env`` / ``headers`` values of MCP servers are shown as
``***`` by :meth:`Config.redacted` and :func:`render_config`; :func:`secret_values`
lists the secret strings in use so events and logs can scrub them from any text.

Only pydantic and PyYAML are imported at module level: ``autonomous status`` must start fast.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from autonomous import safe_yaml
from autonomous.backends.registry import BACKEND_NAMES
from autonomous.config_view import (
    CONFIG_DIR,
    CONFIG_NAME,
    ENV_REF,
    SECRET_NAME,
    find_project_root,
    lazy_regex,
    locate_config,
)
from autonomous.errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "CONFIG_NAME",
    "DEFAULT_ALLOWED_TOOLS",
    "AutonomousSection",
    "CheckpointsSection",
    "CommandPolicySection",
    "Config",
    "ExecutionSection",
    "GitSection",
    "InitializerConfig",
    "InitializerSection",
    "LoggingSection",
    "ProgressSection",
    "RunnerConfig",
    "SandboxSection",
    "StateProviderSection",
    "VerificationSection",
    "find_project_root",
    "load_config",
    "parse_config",
    "render_config",
    "secret_values",
]

DEFAULT_ALLOWED_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite")
MASK = "***"
# The largest integer any setting takes (a 64-bit signed integer): beyond it a value is a
# typo or an attack, and it would fail later, far from the key that holds it.
MAX_INT = 2**63 - 1


_lazy = lazy_regex
# Names of environment variables whose values are credentials: config_view.SECRET_NAME.
_SECRET_NAME = SECRET_NAME
# Strings shorter than this are masked in the config display but not scrubbed from free
# text: replacing every "1" or "true" in a log would garble it and hide nothing.
_MIN_SECRET_LEN = 6
# Credentials the backends and providers read from the environment on their own.
_AMBIENT_SECRETS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
_PROVIDER_TOKENS = {"linear": ("LINEAR_API_KEY",), "github": ("GITHUB_TOKEN", "GH_TOKEN")}

_REF = ENV_REF  # ${VAR}, ${VAR:-default}; $${ is a literal ${
_PLAIN_KEY = _lazy(r"[\w$-]{1,60}")  # fullmatch: `$` would let a trailing newline through
_ENV_NAME = _lazy(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPO = _lazy(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")

Loc = tuple[str | int, ...]


def _fail(message: str, *subpath: str | int) -> PydanticCustomError:
    """A validation error whose message is ours and whose key path may go deeper than
    the field (``subpath``), so the one-line error names the exact key."""
    return PydanticCustomError("config", "{message}", {"message": message, "subpath": subpath})


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
                if data.get(name, 0) is None and _is_model(field.annotation):
                    data = {**data, name: {}}
        return data


# -- the sections ------------------------------------------------------------------------------


with warnings.catch_warnings():
    # ``schema`` is the documented key name; as a field it shadows pydantic's deprecated
    # ``BaseModel.schema()``, which nothing here uses (and which get_provider must not see).
    warnings.filterwarnings("ignore", message=".*shadows an attribute in parent.*")

    class StateProviderSection(_Section):
        """Where tasks live."""

        type: Literal["file", "linear", "github", "postgres"] = "file"
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
    """Extra rules for the shell commands an agent may run (``autonomous.policy``).

    The built-in deny rules (sudo, recursive rm of / or ~, git force-push, curl|sh,
    mkfs, dd onto devices, shutdown/reboot, fork bombs) always apply; they live in
    ``autonomous.policy.DEFAULT_DENY`` and are not repeated here, so writing your own
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

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data with every secret shown as ``***``."""
        data = self.model_dump(mode="json")
        scrub = sorted(secret_values(self), key=len, reverse=True)

        def walk(node: Any, loc: Loc) -> Any:
            if isinstance(node, dict):
                return {k: walk(v, (*loc, k)) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v, (*loc, i)) for i, v in enumerate(node)]
            if not isinstance(node, str) or not node:
                return node
            if loc in self._secret_paths or _is_secret_key(loc):
                return MASK
            if loc == ("state_provider", "dsn"):
                node = _mask_dsn(node)
            for secret in scrub:
                node = node.replace(secret, MASK)
            return node

        return walk(data, ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted()!r})"

    __str__ = __repr__


def _is_secret_key(loc: Loc) -> bool:
    """Keys that hold secrets whatever their value's origin."""
    if loc == ("progress", "slack_webhook"):
        return True
    return len(loc) == 5 and loc[:2] == ("autonomous", "mcp_servers") and loc[3] in ("env", "headers")


# -- loading -------------------------------------------------------------------------------------


def load_config(
    path: str | Path | None = None,
    *,
    project_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, substitute and validate a config file.

    ``path`` None: ``<project>/.ai-agents/config.yml``, where the project is
    ``project_dir`` or :func:`find_project_root`; a missing file means all defaults.
    An explicit ``path`` must exist; its project root is ``project_dir`` if given, else
    the directory holding its ``.ai-agents/`` folder (or the file's own directory).
    ``environ`` (default ``os.environ``) answers ``${VAR}`` references.
    """
    file, root = locate_config(path, project_dir)
    if path is None and not file.exists():
        return parse_config({}, root=root, environ=environ)
    label = _label(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror or exc})") from None
    data = _parse_yaml(text, label)
    return parse_config(data, source=file.absolute(), root=root, environ=environ, label=label)


def parse_config(
    data: Any,
    *,
    source: Path | None = None,
    root: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    label: str | None = None,
) -> Config:
    """Validate already-parsed data (the file's mapping) into a :class:`Config`,
    substituting ``${VAR}`` references. Errors name ``label`` (default: the source)."""
    label = label or (_label(source) if source is not None else "config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: expected a mapping of sections (state_provider, autonomous, execution, ...) "
            f"at the top level, got {_kind(data)}"
        )
    secret_paths: set[Loc] = set()
    secret_strings: set[str] = set()
    env = os.environ if environ is None else environ
    data = _substitute(data, (), env, label, secret_paths, secret_strings)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, label, secret_paths)) from None
    _attach(config, source, root, secret_paths, secret_strings)
    return config


def _attach(
    config: Config, source: Path | None, root: str | Path | None, paths: set[Loc] | frozenset[Loc], strings: Any
) -> None:
    config._source = source
    config._root = Path(root).resolve() if root is not None else find_project_root()
    config._secret_paths = frozenset(paths)
    config._secret_strings = frozenset(strings)


def _label(path: Path) -> str:
    """The file as the user would name it: relative to the cwd when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


# -- YAML ----------------------------------------------------------------------------------------

def _parse_yaml(text: str, label: str) -> Any:
    try:
        return safe_yaml.load(text)  # safe, no tags, aliases and size bounded
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = str(exc.problem or exc.context or "syntax error")
        if exc.context and exc.problem:
            started = exc.context_mark
            at = f" at line {started.line + 1}" if started is not None and started is not mark else ""
            problem += f" ({exc.context}{at})"
        raise ConfigError(f"{label}: {where}invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {' '.join(str(exc).split())}") from None


# -- ${VAR} --------------------------------------------------------------------------------------


def _substitute(
    node: Any, loc: Loc, env: Mapping[str, str], label: str, secret_paths: set[Loc], secret_strings: set[str]
) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, (*loc, k), env, label, secret_paths, secret_strings) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, (*loc, i), env, label, secret_paths, secret_strings) for i, v in enumerate(node)]
    if isinstance(node, safe_yaml.OutOfRangeInt) or (isinstance(node, int) and abs(node) > MAX_INT):
        digits = node.digits if isinstance(node, safe_yaml.OutOfRangeInt) else len(str(abs(node)))
        raise ConfigError(f"{label}: {_dotted(loc)}: number out of range ({digits} digits; at most {MAX_INT:,})")
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        value = env.get(name)
        if not value and default is not None:
            value = default
        if value is None:
            raise ConfigError(
                f"{label}: {_dotted(loc)}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}} for a fallback)"
            )
        if _SECRET_NAME().search(name):
            secret_paths.add(loc)
            if value:
                secret_strings.add(value)
        return value

    return _REF().sub(replace, node)


# -- errors --------------------------------------------------------------------------------------


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part)
        if not _PLAIN_KEY().fullmatch(name):  # a key with spaces, newlines, or of any length: quoted, cut short
            name = repr(name if len(name) <= 40 else name[:37] + "...")
        out += f".{name}" if out else name
    return out or "(top level)"


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _annotation_at(loc: Loc) -> Any:
    """The declared type at a key path of :class:`Config`, or None."""
    annotation: Any = Config
    for part in loc:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if _is_model(annotation):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return annotation


def _all_keys(model: type[BaseModel] = Config, prefix: Loc = ()) -> dict[str, list[Loc]]:
    """Every key of every section: name -> full paths (for "it belongs in ..." hints)."""
    found: dict[str, list[Loc]] = {}
    for name, field in model.model_fields.items():
        found.setdefault(name, []).append((*prefix, name))
        sub = _unwrap(field.annotation)
        if _is_model(sub):
            for key, paths in _all_keys(sub, (*prefix, name)).items():
                found.setdefault(key, []).extend(paths)
    return found


def _unknown_key(loc: Loc) -> str:
    parent = _unwrap(_annotation_at(loc[:-1]))
    key = str(loc[-1])
    valid = list(parent.model_fields) if _is_model(parent) else []
    elsewhere = [p for p in _all_keys().get(key, []) if p != loc]
    if elsewhere:  # the right key in the wrong section: `autonomous.mode` is execution.mode
        return f"unknown key here (did you mean '{_dotted(elsewhere[0])}'?)"
    close = [v for v in valid if v.startswith(key)] if len(key) >= 3 else []
    close = (close if len(close) == 1 else []) or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return _kind(value)


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
}


def _describe(exc: ValidationError, label: str, secret_paths: set[Loc]) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc: Loc = tuple(first["loc"])
    kind = first["type"]
    ctx = first.get("ctx") or {}
    value = first.get("input")
    if kind == "config":
        loc = (*loc, *ctx.get("subpath", ()))
        what = str(ctx["message"])
    else:
        hidden = loc in secret_paths or _is_secret_key(loc) or loc == ("state_provider", "dsn")
        got = "a secret value" if hidden else _show(value)
        stem = kind.rsplit("_", 1)[0] if kind.endswith(("_type", "_parsing")) else kind
        if kind == "extra_forbidden":
            what = _unknown_key(loc)
        elif kind == "literal_error":
            options = typing.get_args(_unwrap(_annotation_at(loc)))
            expected = ", ".join(map(str, options)) if options else str(ctx.get("expected"))
            what = f"expected one of {expected}, got {got}"
        elif kind == "int_from_float":
            what = f"expected an integer, got {got}"
        elif stem in _EXPECTED:
            what = f"expected {_EXPECTED[stem]}, got {got}"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            words = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
            bound = next(iter(ctx.values()))
            bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
            what = f"expected a number {words[kind]} {bound}, got {got}"
        elif kind == "string_too_short":
            what = f"expected a non-empty string, got {got}"
        elif kind == "missing":
            what = "required"
        else:
            what = f"{str(first['msg'])[:1].lower()}{str(first['msg'])[1:]}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{label}: {_dotted(loc)}: {what}{more}"


# -- secrets -------------------------------------------------------------------------------------

_DSN_URL = _lazy(r"^(?P<head>[a-zA-Z][\w+.-]*://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$", re.S)
_DSN_KV = _lazy(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


def _dsn_passwords(dsn: str) -> list[str]:
    found = []
    url = _DSN_URL().match(dsn)
    if url and url.group("password"):
        found.append(url.group("password"))
    for match in _DSN_KV().finditer(dsn):
        found.append(match.group("password").strip("'"))
    return [p for p in found if p]


def _mask_dsn(dsn: str) -> str:
    url = _DSN_URL().match(dsn)
    if url and url.group("password"):
        dsn = f"{url.group('head')}{MASK}{url.group('tail')}"
    return _DSN_KV().sub(lambda m: m.group("head") + MASK, dsn)


def secret_values(config: Config, environ: Mapping[str, str] | None = None) -> set[str]:
    """The secret strings this configuration uses now, to scrub from any text.

    Values substituted from credential-named variables, the Slack webhook, DSN
    passwords (``state_provider.dsn``, else ``$DATABASE_URL`` for postgres), MCP
    server ``env`` / ``headers`` values, and the environment's values of the token
    variables in use: ``api_key_env`` / ``oauth_token_env`` / ``linear_api_key_env``
    (or the provider's default LINEAR_API_KEY / GITHUB_TOKEN), ANTHROPIC_API_KEY,
    ANTHROPIC_AUTH_TOKEN and CLAUDE_CODE_OAUTH_TOKEN. Strings shorter than six
    characters are left out (scrubbing them would garble text and hide nothing).
    """
    env = os.environ if environ is None else environ
    found: set[str] = set(getattr(config, "_secret_strings", ()))
    provider = config.state_provider
    auto = config.autonomous
    if config.progress.slack_webhook:
        found.add(config.progress.slack_webhook)
    dsn = provider.dsn or (env.get("DATABASE_URL") if provider.type == "postgres" else None)
    if dsn:
        found.update(_dsn_passwords(dsn))
    for server in auto.mcp_servers.values():
        for key in ("env", "headers"):
            found.update(str(v) for v in (server.get(key) or {}).values())
    names = [provider.api_key_env, auto.oauth_token_env, auto.linear_api_key_env, *_AMBIENT_SECRETS]
    if config.execution.handoff == "pr":
        names.append(config.execution.pull_requests.token_env)
    if provider.api_key_env is None:
        names.extend(_PROVIDER_TOKENS.get(provider.type, ()))
    for name in names:
        if name and env.get(name):
            found.add(env[name])
    return {s for s in found if len(s) >= _MIN_SECRET_LEN}


# -- display -------------------------------------------------------------------------------------

_Dumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render_config(config: Config) -> str:
    """The effective configuration as YAML, secrets ``***`` (``autonomous config``).
    :meth:`Config.redacted` is the same as JSON-able data (``autonomous config --json``)."""
    return yaml.dump(config.redacted(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


# -- the published programmatic API --------------------------------------------------------------


class _FlatConfig(Config):
    """A :class:`Config` built from keyword arguments, the way the predecessor's
    ``RunnerConfig(model=..., max_tasks_per_session=5)`` was written.

    * keys of the ``autonomous`` section are given flat: ``model``, ``backend``,
      ``max_tasks_per_session``, ``max_turns_per_task``, ``allowed_tools`` ...;
    * whole sections by name, as mappings or models, merged over the base:
      ``execution={"mode": "supervised"}``, ``verification={"commands": ["pytest -q"]}``;
    * ``config=`` a loaded :class:`Config` to start from (default: all defaults, no
      file is read; use :meth:`from_yaml` for a file);
    * ``project_dir=`` the project root (default: the base config's root, else
      :func:`find_project_root`).

    Being a :class:`Config`, it goes wherever a loaded config does. Errors are the same
    one-line :class:`ConfigError` s, labelled with the class name.
    """

    def __init__(self, *, config: Config | None = None, project_dir: str | Path | None = None, **overrides: Any):
        sections = set(Config.model_fields)
        flat = {k: v for k, v in overrides.items() if k not in sections}
        given = {k: _plain(v) for k, v in overrides.items() if k in sections}
        if flat:
            given["autonomous"] = {**(given.get("autonomous") or {}), **flat}
        base = config.model_dump() if config is not None else {}
        data = _merge(base, given)
        label = type(self).__name__
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, label, set(getattr(config, "_secret_paths", ())))) from None
        if project_dir is not None:
            root: Path | None = Path(project_dir)
        else:
            root = config._root if config is not None else None
        _attach(
            self,
            config.source if config is not None else None,
            root,
            getattr(config, "_secret_paths", frozenset()),
            getattr(config, "_secret_strings", frozenset()),
        )

    @classmethod
    def from_yaml(cls, path: str | Path, *, project_dir: str | Path | None = None, **overrides: Any) -> Self:
        """Load ``path`` (see :func:`load_config`), then apply ``overrides`` as in the constructor."""
        return cls(config=load_config(path, project_dir=project_dir), **overrides)

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> Self:
        """``config`` with ``overrides`` applied, as this class."""
        return cls(config=config, **overrides)


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "mcp_servers":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class RunnerConfig(_FlatConfig):
    """Configuration for :class:`~autonomous.runner.AutonomousRunner` and the SDK runner.

    ``RunnerConfig(model="sonnet", max_tasks_per_session=5)``,
    ``RunnerConfig.from_yaml(".ai-agents/config.yml")``,
    ``RunnerConfig(config=load_config(), execution={"mode": "supervised"})``.
    Flat keywords are keys of the ``autonomous`` section; see :class:`_FlatConfig`.
    """


class InitializerConfig(_FlatConfig):
    """Configuration for :class:`~autonomous.initializer.ProjectInitializer`.

    ``InitializerConfig(model="opus", backend="claude-code")``; the same mapping as
    :class:`RunnerConfig` (flat keywords are keys of the ``autonomous`` section).
    """
