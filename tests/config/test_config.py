"""config.py: defaults, every key, ${VAR} references, one-line errors, secrets, the flat API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from autonomous.config import (
    Config,
    InitializerConfig,
    RunnerConfig,
    find_project_root,
    load_config,
    parse_config,
    render_config,
    secret_values,
)
from autonomous.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(project: Path, text: str) -> Path:
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(project: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(project, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def leaves(data: Any, prefix: str = "") -> set[str]:
    """Key paths of the leaves of a dumped config (lists and mappings of values are leaves)."""
    if isinstance(data, dict) and data and prefix not in ("autonomous.mcp_servers",):
        out: set[str] = set()
        for key, value in data.items():
            out |= leaves(value, f"{prefix}.{key}" if prefix else key)
        return out
    return {prefix}


# -- a value for every key (not its default, except the webhook: a secret) --------------------------------

EVERY_KEY: dict[str, Any] = {
    "state_provider": {
        "type": "github",
        "state_dir": "var/state",
        "api_key_env": "MY_GH_TOKEN",
        "team_id": "team-1",
        "project_name": "My App",
        "repo": "octocat/hello-world",
        "write_interval": 0.5,
        "dsn": "postgresql://localhost/tasks",
        "schema": "tasks_team_a",
    },
    "autonomous": {
        "backend": "claude-code-sdk",
        "model": "claude-opus-4-5-20251101",
        "max_tokens": 4096,
        "max_turns_per_task": 150,
        "max_tasks_per_session": 3,
        "cost_limit_per_session": 2.5,
        "first_task_cost": 0.5,
        "rate_limit_rpm": 20,
        "oauth_token_env": "CLAUDE_CODE_OAUTH_TOKEN",
        "linear_api_key_env": "LINEAR_API_KEY",
        "project_dir": "app",
        "allowed_tools": ["Read", "Bash"],
        "workers": 2,
        "claude_path": "/opt/claude/bin/claude",
        "permission_mode": "acceptEdits",
        "inactivity_timeout": 120.0,
        "max_session_minutes": 90.0,
        "lease_seconds": 300.0,
        "max_rate_limit_wait": 60.0,
        "mcp_servers": {"files": {"command": "npx", "args": ["-y", "files-mcp"]}},
        "command_policy": {"allow": ["git\\b", "pytest\\b"], "deny": ["npm publish"]},
        "context_window": 1_000_000,
        "sandbox": {
            "enabled": False,
            "network": "allow",
            "allow_hosts": ["pypi.org"],
            "read_paths": ["~/.pyenv"],
        },
    },
    "execution": {
        "mode": "supervised",
        "on_failure": "continue",
        "ordering": "dependencies",
        "checkpoints": {"turn_interval": 10, "context_threshold": 0.9},
        "git": {
            "commit": False,
            "allow_dirty": True,
            "allow_files": [".env.test"],
            "branch_per_task": True,
            "merge_strategy": "rebase",
            "max_merge_attempts": 3,
            "remote": "origin",
            "branch": "trunk",
            "max_push_attempts": 5,
            "run_hooks": True,
        },
        "handoff": "review",
        "review_unblocks_dependents": True,
        "pull_requests": {
            "repo": "acme/widgets",
            "token_env": "WIDGETS_GITHUB_TOKEN",
            "api_url": "https://ghe.example",
        },
        "pr_poll_seconds": 30.0,
        "pr_wait": 3600.0,
    },
    "progress": {
        "slack_webhook": None,
        "notification_interval": 60.0,
        "notify_on_complete": False,
        "notify_on_blocked": False,
    },
    "verification": {
        "commands": ["pytest -q", "ruff check ."],
        "require_changes": False,
        "baseline": False,
        "review": True,
        "max_attempts": 4,
        "timeout": 30.0,
    },
    "logging": {"level": "debug", "dir": "var/logs"},
    "initializer": {
        "max_turns": 5,
        "max_attempts": 4,
        "section_chars": 20000,
        "include_optional": True,
        "tick_source": False,
    },
}


# -- defaults and the project root -------------------------------------------------------------------------


def test_missing_file_means_all_defaults(tmp_path: Path) -> None:
    config = load_config(project_dir=tmp_path)
    assert config.source is None and config.root == tmp_path.resolve()
    assert config.model_dump() == Config().model_dump()
    auto = config.autonomous
    assert (auto.backend, auto.model, auto.max_tokens, auto.max_turns_per_task) == ("claude-code", "opus", 8192, 50)
    assert (auto.max_tasks_per_session, auto.cost_limit_per_session, auto.rate_limit_rpm) == (10, 10.0, 50)
    assert auto.allowed_tools == ["Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite"]
    assert (auto.permission_mode, auto.lease_seconds, auto.max_rate_limit_wait) == ("default", 900.0, 21600.0)
    assert (auto.inactivity_timeout, auto.max_session_minutes, auto.context_window) == (600.0, None, 200_000)
    assert config.state_provider.type == "file" and config.state_provider.state_dir == ".ai-agents/state"
    assert config.execution.mode == "autonomous" and config.execution.checkpoints.turn_interval == 25
    assert config.execution.checkpoints.context_threshold == 0.8 and config.execution.git.merge_strategy == "merge"
    assert config.progress.notification_interval == 300 and config.verification.max_attempts == 2
    assert config.logging.level == "info" and config.logging.dir == ".ai-agents/logs"
    init = config.initializer
    assert (init.max_turns, init.max_attempts, init.section_chars) == (3, 3, 12_000)
    assert config.project_dir == tmp_path.resolve()


def test_empty_file_and_empty_sections_are_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).model_dump() == Config().model_dump()
    config = load_config(write(tmp_path, "# nothing yet\nautonomous:\nexecution:\n  checkpoints:\n"))
    assert config.model_dump() == Config().model_dump()
    assert config.source == tmp_path / ".ai-agents" / "config.yml"


def test_the_project_root_is_the_nearest_folder_with_ai_agents_or_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    (project / ".ai-agents").mkdir()
    assert find_project_root(deep) == project.resolve()
    (project / "src" / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git is a file
    assert find_project_root(deep) == (project / "src").resolve()
    assert find_project_root(tmp_path / "project") == project.resolve()

    write(project, "autonomous:\n  model: sonnet\n")
    monkeypatch.chdir(project / "src" / "pkg")
    (project / "src" / ".git").unlink()
    config = load_config()
    assert config.autonomous.model == "sonnet" and config.root == project.resolve()


def test_without_any_marker_the_cwd_is_the_root(tmp_path: Path) -> None:
    lonely = tmp_path / "a" / "b"
    lonely.mkdir(parents=True)
    # tmp_path's ancestors may hold a .git on some machines; only claim what holds here
    root = find_project_root(lonely)
    assert root == lonely.resolve() or (root / ".git").exists() or (root / ".ai-agents").is_dir()


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yml: no such file"):
        load_config(tmp_path / "config.yml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# -- every key ------------------------------------------------------------------------------------------


def test_the_test_covers_every_key() -> None:
    assert leaves(EVERY_KEY) == leaves(Config().model_dump(mode="json"))


def test_every_section_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(EVERY_KEY, sort_keys=False))
    config = load_config(path, environ={})
    assert config.model_dump(mode="json") == EVERY_KEY
    for section, values in EVERY_KEY.items():
        for key, value in values.items():
            got = getattr(getattr(config, section), key)
            assert (got.model_dump() if hasattr(got, "model_dump") else got) == value, f"{section}.{key}"
    # what `autonomous config` prints loads back to the same configuration
    again = load_config(write(tmp_path, render_config(config)), environ={})
    assert again.model_dump() == config.model_dump()
    assert json.loads(json.dumps(config.redacted())) == EVERY_KEY


def test_the_predecessors_documented_examples_load(tmp_path: Path) -> None:
    examples = [
        'state_provider:\n  type: "file"\nautonomous:\n  backend: "claude-code"\n  model: "opus"\n'
        '  max_tasks_per_session: 10\nexecution:\n  mode: "autonomous"\n',
        'autonomous:\n  backend: "anthropic-sdk"\n  model: "claude-opus-4-20250514"\n  cost_limit_per_session: 10.0\n',
        'autonomous:\n  backend: "claude-code-sdk"\n  model: "claude-opus-4-5-20251101"\n  max_turns_per_task: 150\n'
        '  oauth_token_env: "CLAUDE_CODE_OAUTH_TOKEN"\n  linear_api_key_env: "LINEAR_API_KEY"\n'
        '  project_dir: "/path/to/project"\n',
        'state_provider:\n  type: "linear"\n  api_key_env: "LINEAR_API_KEY"\n  team_id: "your-team-id"\n'
        '  project_name: "My Project"\n',
        'state_provider:\n  type: "github"\n  api_key_env: "GITHUB_TOKEN"\n  repo: "owner/repo"\n',
        'progress:\n  slack_webhook: "https://hooks.slack.com/services/..."\n  notification_interval: 300\n'
        "  notify_on_complete: true\n  notify_on_blocked: true\n",
    ]
    for text in examples:
        load_config(write(tmp_path, text), environ={})


def test_numbers_and_booleans_are_coerced_where_unambiguous(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path, "state_provider:\n  team_id: 42\nlogging:\n  level: DEBUG\nexecution:\n  git:\n    commit: 'no'\n"
        )
    )
    assert config.state_provider.team_id == "42" and config.logging.level == "debug"
    assert config.execution.git.commit is False


# -- ${VAR} ---------------------------------------------------------------------------------------------


def test_env_references_are_substituted(tmp_path: Path) -> None:
    text = (
        "autonomous:\n"
        "  model: ${MODEL}\n"
        "  max_tokens: ${MAX_TOKENS:-1024}\n"
        "  claude_path: ${CLAUDE_HOME:-/opt/claude}/bin/claude\n"
        "  allowed_tools: ['${TOOL}', Read]\n"
        "state_provider:\n"
        "  project_name: ${EMPTY:-fallback}\n"
        "  team_id: ${EMPTY:-}\n"
        "verification:\n"
        "  commands: ['echo $${HOME} $HOME ${GREETING}-${GREETING} $$']\n"
    )
    env = {"MODEL": "sonnet", "TOOL": "Bash", "EMPTY": "", "GREETING": "hi"}
    config = load_config(write(tmp_path, text), environ=env)
    assert config.autonomous.model == "sonnet"
    assert config.autonomous.max_tokens == 1024
    assert config.autonomous.claude_path == "/opt/claude/bin/claude"
    assert config.autonomous.allowed_tools == ["Bash", "Read"]
    assert config.state_provider.project_name == "fallback"  # `:-` also covers an empty value, as in the shell
    assert config.state_provider.team_id == ""
    assert config.verification.commands == ["echo ${HOME} $HOME hi-hi $$"]


def test_the_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMOUS_TEST_MODEL", "haiku")
    assert load_config(write(tmp_path, "autonomous:\n  model: ${AUTONOMOUS_TEST_MODEL}\n")).autonomous.model == "haiku"


def test_an_unset_variable_names_itself_the_key_and_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "progress:\n  slack_webhook: ${SLACK_WEBHOOK_URL}\n")
    assert message.startswith(str(tmp_path / ".ai-agents" / "config.yml") + ": progress.slack_webhook: ")
    assert "SLACK_WEBHOOK_URL is not set" in message and "${SLACK_WEBHOOK_URL:-" in message
    message = error_of(tmp_path, "verification:\n  commands: [ok, 'make ${TARGET}']\n")
    assert ": verification.commands[1]: environment variable TARGET is not set" in message


def test_substituted_values_are_validated_like_written_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  max_tokens: ${N}\n", environ={"N": "lots"})
    assert message.endswith("autonomous.max_tokens: expected an integer, got 'lots'")


# -- errors ---------------------------------------------------------------------------------------------


def test_the_error_names_the_file_as_the_user_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "autonomous:\n  max_turns_per_tsk: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value) == (
        ".ai-agents/config.yml: autonomous.max_turns_per_tsk: unknown key (did you mean 'max_turns_per_task'?)"
    )


def at(key: str, value: Any) -> str:
    """YAML setting one dotted key."""
    data: Any = value
    for part in reversed(key.split(".")):
        data = {part: data}
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("autonomus", "unknown key (did you mean 'autonomous'?)"),
        ("autonomous.max_turns_per_tsk", "unknown key (did you mean 'max_turns_per_task'?)"),
        ("autonomous.command_policy.dney", "unknown key (did you mean 'deny'?)"),
        ("execution.checkpoints.turn_intervl", "unknown key (did you mean 'turn_interval'?)"),
        ("execution.git.comit", "unknown key (did you mean 'commit'?)"),
        # the right key in the wrong place
        ("model", "unknown key here (did you mean 'autonomous.model'?)"),
        ("autonomous.mode", "unknown key here (did you mean 'execution.mode'?)"),
        (
            "zzz",
            "unknown key (valid keys: state_provider, autonomous, execution, progress, verification, logging, "
            "initializer)",
        ),
    ],
)
def test_unknown_keys_suggest_the_nearest_valid_one(tmp_path: Path, key: str, expected: str) -> None:
    assert error_of(tmp_path, at(key, 1)).split(": ", 1)[1] == f"{key}: {expected}"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("autonomous.max_tokens", "lots", "expected an integer, got 'lots'"),
        ("autonomous.max_tokens", 3.5, "expected an integer, got 3.5"),
        ("autonomous.max_tokens", -1, "expected a number > 0, got -1"),
        ("autonomous.cost_limit_per_session", "cheap", "expected a number, got 'cheap'"),
        ("verification.require_changes", "maybe", "expected true or false, got 'maybe'"),
        ("autonomous.allowed_tools", "Read", "expected a list, got 'Read'"),
        ("autonomous", 5, "expected a mapping, got 5"),
        ("autonomous.context_window", None, "expected an integer, got null"),
        ("autonomous.model", "", "expected a non-empty string, got ''"),
        ("autonomous.workers", 0, "expected a number >= 1, got 0"),
        ("execution.checkpoints.context_threshold", 1.5, "expected a number <= 1, got 1.5"),
        # choices list the valid ones
        ("autonomous.backend", "claude", "expected one of claude-code, anthropic-sdk, claude-code-sdk, got 'claude'"),
        ("state_provider.type", "jira", "expected one of file, postgres, linear, github, got 'jira'"),
        ("execution.mode", "yolo", "expected one of autonomous, interactive, supervised, got 'yolo'"),
        ("execution.git.merge_strategy", "squash", "expected one of rebase, merge, got 'squash'"),
        ("logging.level", "loud", "expected one of debug, info, warning, error, critical, got 'loud'"),
        (
            "autonomous.permission_mode",
            "yolo",
            "expected one of default, manual, acceptEdits, auto, dontAsk, plan, bypassPermissions, got 'yolo'",
        ),
    ],
)
def test_wrong_values_say_what_was_expected(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    assert error_of(tmp_path, at(key, value)).split(": ", 1)[1] == f"{key}: {expected}"


def test_a_list_item_is_named_by_index_and_further_problems_are_counted(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  allowed_tools: [Read, [x]]\n")
    assert message.endswith(": autonomous.allowed_tools[1]: expected a string, got a list")
    message = error_of(tmp_path, "autonomous:\n  max_tokens: -1\n  workers: 0\n")
    assert message.endswith(": autonomous.max_tokens: expected a number > 0, got -1 (and 1 more)")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("state_provider", {"type": "github", "repo": "x"}, "state_provider.repo: expected owner/name"),
        ("autonomous.command_policy.deny", ["ok", "("], "autonomous.command_policy.deny[1]: expected a regular"),
        ("autonomous.mcp_servers.s", {"type": "http"}, "autonomous.mcp_servers.s.url: expected a string (required"),
        ("autonomous.mcp_servers.s", {"args": ["a"]}, "autonomous.mcp_servers.s.command: expected a string"),
        ("autonomous.mcp_servers.s.type", "ws", "autonomous.mcp_servers.s.type: expected one of stdio, sse, http"),
        ("autonomous.mcp_servers.s", {"command": "a", "env": {"K": [1]}}, "autonomous.mcp_servers.s.env.K: expected"),
        ("autonomous.mcp_servers.s", "npx", "autonomous.mcp_servers.s: expected a mapping, got 'npx'"),
    ],
)
def test_value_checks_name_the_exact_key(tmp_path: Path, key: str, value: Any, expected: str) -> None:
    assert error_of(tmp_path, at(key, value)).split(": ", 1)[1].startswith(expected)


def test_a_repo_is_only_checked_for_github(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "state_provider:\n  repo: anything\n")).state_provider.repo == "anything"


def test_a_token_pasted_into_an_env_name_key_is_not_echoed(tmp_path: Path) -> None:
    for key in (
        "autonomous:\n  oauth_token_env",
        "autonomous:\n  linear_api_key_env",
        "state_provider:\n  api_key_env",
    ):
        message = error_of(tmp_path, f"{key}: sk-ant-oat01-very-secret\n")
        assert "expected the name of an environment variable" in message and "very-secret" not in message


def test_a_secret_value_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  max_tokens: ${API_KEY}\n", environ={"API_KEY": "sk-live-123456"})
    assert message.endswith("autonomous.max_tokens: expected an integer, got a secret value")


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  model: opus\n   backend: x\n")
    assert "config.yml: line 3, column" in message and "invalid YAML" in message
    message = error_of(tmp_path, "autonomous:\n  allowed_tools: [Read,\n\nexecution: {}\n")
    assert message.endswith(
        "config.yml: line 5, column 1: invalid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence at line 2)"
    )


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  model: a\nexecution: {}\nautonomous:\n  model: b\n")
    assert "line 4, column 1: invalid YAML: duplicate key 'autonomous' (first at line 1)" in message


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("3\n", "a number")])
def test_the_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    message = error_of(tmp_path, text)
    assert message.endswith(f"expected a mapping of sections (state_provider, autonomous, execution, ...) "
                            f"at the top level, got {kind}")  # fmt: skip


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    write(tmp_path, "autonomous:\n  backend: claude\n")
    result = subprocess.run(
        [sys.executable, "-m", "autonomous", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "autonomous.backend: expected one of claude-code" in result.stderr


# -- secrets --------------------------------------------------------------------------------------------


SECRET_CONFIG = """\
state_provider:
  type: postgres
  dsn: postgresql://runner:pg-pass-4242@db.internal:5432/tasks
autonomous:
  oauth_token_env: MY_OAUTH
  mcp_servers:
    linear:
      type: http
      url: https://mcp.linear.app/mcp
      headers:
        Authorization: Bearer ${LINEAR_API_KEY}
    local:
      command: npx
      args: [-y, some-mcp]
      env:
        SERVICE_PASSWORD: plain-mcp-secret
        DEBUG: "1"
progress:
  slack_webhook: ${SLACK_WEBHOOK_URL}
verification:
  commands:
    - "curl -fsS -H 'X-Token: ${DEPLOY_TOKEN}' https://example.test/health"
    - echo ${GREETING}
    - echo oauth-token-value-77 is pasted here by mistake
"""

SECRET_ENV = {
    "LINEAR_API_KEY": "lin_api_abcdef123456",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/xyzzy-secret",
    "DEPLOY_TOKEN": "deploy-token-9999",
    "GREETING": "hello-world-visible",
}


def test_secrets_are_masked_in_every_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_OAUTH", "oauth-token-value-77")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api-key-000")
    config = load_config(write(tmp_path, SECRET_CONFIG), environ=SECRET_ENV)
    secrets = [
        *(v for k, v in SECRET_ENV.items() if k != "GREETING"),
        "pg-pass-4242",
        "plain-mcp-secret",
        "oauth-token-value-77",
        "sk-ant-api-key-000",
    ]
    shown = [render_config(config), json.dumps(config.redacted()), repr(config), str(config)]
    for text in shown:
        for secret in secrets:
            assert secret not in text, (secret, text)
    data = config.redacted()
    assert data["progress"]["slack_webhook"] == "***"
    assert data["state_provider"]["dsn"] == "postgresql://runner:***@db.internal:5432/tasks"
    servers = data["autonomous"]["mcp_servers"]
    assert servers["linear"]["headers"] == {"Authorization": "***"}
    assert servers["local"]["env"] == {"SERVICE_PASSWORD": "***", "DEBUG": "***"}
    assert servers["linear"]["url"] == "https://mcp.linear.app/mcp"  # not a secret
    commands = data["verification"]["commands"]
    assert commands == ["***", "echo hello-world-visible", "echo *** is pasted here by mistake"]
    # the real values are untouched for the code that uses them
    assert config.progress.slack_webhook == SECRET_ENV["SLACK_WEBHOOK_URL"]
    assert config.autonomous.mcp_servers["linear"]["headers"]["Authorization"] == "Bearer lin_api_abcdef123456"


def test_secret_values_lists_what_to_scrub(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SECRET_CONFIG), environ=SECRET_ENV)
    environ = {"MY_OAUTH": "oauth-token-value-77", "ANTHROPIC_API_KEY": "sk-ant-api-key-000", "UNRELATED": "x" * 20}
    found = secret_values(config, environ)
    assert found == {
        "lin_api_abcdef123456",
        "Bearer lin_api_abcdef123456",
        SECRET_ENV["SLACK_WEBHOOK_URL"],
        "deploy-token-9999",
        "pg-pass-4242",
        "plain-mcp-secret",
        "oauth-token-value-77",
        "sk-ant-api-key-000",
    }  # "1" (DEBUG) is too short to scrub from free text; GREETING is not a credential name


def test_provider_tokens_and_the_database_url(tmp_path: Path) -> None:
    linear = load_config(write(tmp_path, "state_provider:\n  type: linear\n"), environ={})
    assert secret_values(linear, {"LINEAR_API_KEY": "lin_api_zzzzzz", "GITHUB_TOKEN": "ghp_unused"}) == {
        "lin_api_zzzzzz"
    }
    github = load_config(write(tmp_path, "state_provider:\n  type: github\n  api_key_env: MY_GH\n"), environ={})
    assert secret_values(github, {"MY_GH": "ghp_mine123", "GITHUB_TOKEN": "ghp_default"}) == {"ghp_mine123"}
    postgres = load_config(write(tmp_path, "state_provider:\n  type: postgres\n"), environ={})
    env = {"DATABASE_URL": "host=db user=me password='s3cr3t pw' dbname=x"}
    assert secret_values(postgres, env) == {"s3cr3t pw"}
    dsn = parse_config({"state_provider": {"dsn": "host=db password=abc123xyz"}})
    assert dsn.redacted()["state_provider"]["dsn"] == "host=db password=***"


# -- the programmatic API -------------------------------------------------------------------------------


def test_runner_config_takes_the_autonomous_keys_flat(tmp_path: Path) -> None:
    config = RunnerConfig(model="claude-opus-4-20250514", max_tasks_per_session=5, project_dir=tmp_path)
    assert isinstance(config, Config)
    assert config.autonomous.model == "claude-opus-4-20250514" and config.autonomous.max_tasks_per_session == 5
    assert config.autonomous.max_turns_per_task == 50 and config.root == tmp_path.resolve()
    assert config.project_dir == tmp_path.resolve() and config.source is None

    init = InitializerConfig(model="claude-opus-4-20250514", backend="claude-code")
    assert isinstance(init, Config) and init.autonomous.backend == "claude-code"

    sections = RunnerConfig(model="sonnet", execution={"mode": "supervised", "git": {"commit": False}})
    assert sections.execution.mode == "supervised" and sections.execution.git.commit is False
    assert sections.execution.git.merge_strategy == "merge" and sections.autonomous.model == "sonnet"


def test_runner_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RunnerConfig(max_tasks=5)
    assert str(info.value) == "RunnerConfig: autonomous.max_tasks: unknown key (did you mean 'max_tasks_per_session'?)"
    with pytest.raises(ConfigError, match=r"^InitializerConfig: autonomous\.backend: expected one of"):
        InitializerConfig(backend="claude")


def test_from_yaml_reads_a_file_and_keeps_its_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path, "autonomous:\n  model: sonnet\n  max_turns_per_task: 7\nprogress:\n  slack_webhook: ${HOOK}\n"
    )
    monkeypatch.setenv("HOOK", "https://hooks.slack.com/services/from-yaml-secret")
    config = RunnerConfig.from_yaml(path, max_turns_per_task=9)
    monkeypatch.delenv("HOOK")
    assert type(config) is Config  # one model: the API builds the same Config a file does
    assert config.autonomous.model == "sonnet" and config.autonomous.max_turns_per_task == 9
    assert config.source == path and config.root == tmp_path.resolve()
    assert "from-yaml-secret" not in render_config(config)
    assert "https://hooks.slack.com/services/from-yaml-secret" in secret_values(config)

    wrapped = InitializerConfig(config=load_config(path, environ={"HOOK": "https://x.test/hook"}), model="haiku")
    assert wrapped.autonomous.model == "haiku" and wrapped.autonomous.max_turns_per_task == 7


def test_the_public_names_come_from_the_package() -> None:
    import autonomous

    assert autonomous.RunnerConfig is RunnerConfig and autonomous.InitializerConfig is InitializerConfig


# -- paths -----------------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_project_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    path = write(project, "autonomous:\n  project_dir: app\nstate_provider:\n  state_dir: state\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.root == project.resolve()
    assert config.project_dir == (project / "app").resolve()
    # the tool's own files stay beside .ai-agents/, even when the agent works in app/
    assert config.state_dir == (project / "state").resolve()
    assert config.log_dir == (project / ".ai-agents" / "logs").resolve()
    assert config.resolve_path("/abs/logs") == Path("/abs/logs")

    outside = tmp_path / "custom.yml"
    outside.write_text("autonomous:\n  project_dir: project\n")
    config = load_config(outside)
    assert config.root == tmp_path.resolve() and config.project_dir == project.resolve()
    assert load_config(outside, project_dir=project).root == project.resolve()


def test_importing_config_stays_light() -> None:
    code = (
        "import sys, autonomous.config\n"
        "heavy = ('rich', 'httpx', 'anthropic', 'claude_agent_sdk', 'psycopg', 'click')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- the documentation -----------------------------------------------------------------------------------


def test_the_docs_describe_every_key() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(key for key in leaves(EVERY_KEY) if f"`{key}`" not in docs)
    assert not missing, f"docs/configuration.md does not mention {missing}"


# -- the sandbox section ------------------------------------------------------------------------------------


def test_sandbox_is_on_by_default_and_off_only_when_said(tmp_path: Path) -> None:
    default = load_config(project_dir=tmp_path).autonomous.sandbox
    assert (default.enabled, default.network, default.allow_hosts) == (True, "off", [])
    off = load_config(write(tmp_path, "autonomous:\n  sandbox: off\n")).autonomous.sandbox
    assert off.enabled is False
    on = load_config(write(tmp_path, "autonomous:\n  sandbox:\n    network: on\n")).autonomous.sandbox
    assert (on.enabled, on.network) == (True, "on")
    assert load_config(write(tmp_path, "execution:\n  git:\n    run_hooks: true\n")).execution.git.run_hooks


def test_sandbox_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    message = error_of(tmp_path, "autonomous:\n  sandbox:\n    network: allow\n")
    assert "autonomous.sandbox.allow_hosts" in message and "network: allow needs the hosts" in message
    message = error_of(tmp_path, "autonomous:\n  permission_mode: bypassPermissions\n")
    assert "autonomous.permission_mode" in message and "sandbox: off" in message
    message = error_of(tmp_path, "autonomous:\n  sandbox:\n    network: maybe\n")
    assert "autonomous.sandbox.network" in message


@pytest.mark.parametrize(
    ("execution", "message"),
    [
        ({"handoff": "pr"}, "execution.handoff: pr needs execution.git.remote"),
        ({"handoff": "pr", "git": {"remote": "origin"}}, "execution.pull_requests.repo: handoff: pr needs the GitHub"),
        ({"pull_requests": {"token_env": "ghp-abc:123"}}, "execution.pull_requests.token_env: expected the name of"),
    ],
)
def test_handoff_pr_names_what_it_lacks(tmp_path, execution, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, yaml.safe_dump({"execution": execution})))


def test_handoff_pr_takes_the_repository_of_the_github_provider() -> None:
    config = parse_config(
        {
            "state_provider": {"type": "github", "repo": "acme/widgets"},
            "execution": {"handoff": "pr", "git": {"remote": "origin"}},
        }
    )
    assert config.execution.handoff == "pr" and config.execution.pull_requests.repo is None
