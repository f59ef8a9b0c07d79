"""``autonomous demo``: run the sample project end to end (see the package docstring)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from autonomous.demo.scenario import DEMO_TASKS, demo_rules, sample_files
from autonomous.errors import AutonomousError, BackendError, ConfigError

# Sent to the scripted server only; it is not a credential and looks nothing like one.
DEMO_API_KEY = "demo-key-for-the-scripted-server"
SDK_HINT = "pip install 'autonomous-runner[sdk]'"
SPEC_NAME = "spec.md"
# Environment the child processes may inherit: how the terminal looks and where Python
# and temporary files live. Nothing here can carry a credential.
_PASSTHROUGH = (
    "TERM",
    "COLORTERM",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TMPDIR",
    "TEMP",
    "TMP",
    "PYTHONPATH",
)


def find_spec() -> Path:
    """The sample spec: packaged in the wheel (``sample/spec.md``), or ``examples/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sample" / "spec.md", here.parents[2] / "examples" / "todo-api" / "spec.md"):
        if candidate.is_file():
            return candidate
    raise ConfigError("the sample spec examples/todo-api/spec.md is missing from this installation")


def python_command() -> tuple[str, Path]:
    """How the project's shell commands name this interpreter, and the folder to put first on PATH."""
    bin_dir = Path(sys.executable).parent
    for name in ("python", "python.exe"):
        if (bin_dir / name).exists():
            return "python", bin_dir
    return shlex.quote(sys.executable), bin_dir


def config_text(claude_path: Path, python: str) -> str:
    test = f"{python} -m pytest -q"
    return f"""\
# The demo project's configuration (see docs/configuration.md for every key).
# `autonomous demo` runs the agent against its scripted model server: it starts the
# Claude Code CLI below with ANTHROPIC_BASE_URL pointing at the server, a dummy API key
# and a throwaway HOME. Nothing here needs changing for a real model except, if you
# like, deleting claude_path to use the `claude` on your PATH.
state_provider:
  type: file
autonomous:
  backend: claude-code
  model: sonnet
  claude_path: {json.dumps(str(claude_path))}
  max_turns_per_task: 10
  max_tasks_per_session: 20
  cost_limit_per_session: 1.0
  inactivity_timeout: 120
execution:
  on_failure: stop
verification:
  commands:
    - {json.dumps(test)}
  require_changes: true
  review: true   # a fresh read-only session reviews each diff before the task is done
  max_attempts: 2
"""


def _git(project: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError("git is not installed; the demo needs it for a commit per task") from None
    if proc.returncode != 0:
        raise AutonomousError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def prepare_project(project: Path, claude_path: Path, python: str = "python") -> None:
    """A git repository with the spec, conventions, config and .gitignore, committed."""
    project.mkdir(parents=True, exist_ok=True)
    _git(project, "init", "-q")
    _git(project, "symbolic-ref", "HEAD", "refs/heads/main")
    _git(project, "config", "user.name", "autonomous demo")
    _git(project, "config", "user.email", "demo@example.invalid")
    _git(project, "config", "commit.gpgsign", "false")
    shutil.copyfile(find_spec(), project / SPEC_NAME)
    start = sample_files("project")
    (project / ".gitignore").write_text(start["gitignore"])
    (project / "AGENTS.md").write_text(start["AGENTS.md"])
    (project / ".ai-agents").mkdir(exist_ok=True)
    (project / ".ai-agents" / "config.yml").write_text(config_text(claude_path, python))
    _git(project, "add", "--", SPEC_NAME, ".gitignore", "AGENTS.md", ".ai-agents/config.yml")
    _git(project, "commit", "-q", "-m", "Demo project: spec, conventions and autonomous config")


def runner_env(server_url: str, home: Path, path_first: Path | None = None) -> dict[str, str]:
    """The environment of ``init`` and ``start``: built from nothing, never from ``os.environ``.

    :func:`~autonomous.testing.cli_env.claude_cli_env` (server URL, dummy key, throwaway
    HOME, no telemetry) plus how the terminal looks; the interpreter's folder goes first
    on PATH so ``python -m pytest`` means this Python.
    """
    from autonomous.testing.cli_env import claude_cli_env

    env = claude_cli_env(server_url, home, api_key=DEMO_API_KEY)
    for name in _PASSTHROUGH:
        if os.environ.get(name):
            env[name] = os.environ[name]
    if path_first is not None:
        env["PATH"] = os.pathsep.join([str(path_first), env["PATH"]])
    return env


def _check_directory(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="autonomous-demo-"))
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"{directory}: the directory is not empty; give a new or empty directory")
    return directory


def _check_requirements() -> Path:
    from autonomous.testing.cli_env import bundled_claude_path

    if importlib.util.find_spec("claude_agent_sdk") is None:
        raise BackendError(f"the demo runs the Claude Code CLI bundled with claude-agent-sdk: {SDK_HINT}")
    claude = bundled_claude_path()
    if claude is None:
        raise BackendError(f"claude-agent-sdk is installed without its bundled Claude Code CLI: {SDK_HINT}")
    if importlib.util.find_spec("pytest") is None:
        raise ConfigError("the demo's sample project is tested with pytest: pip install pytest")
    if shutil.which("git") is None:
        raise ConfigError("git is not installed; the demo needs it for a commit per task")
    return claude


def _run_step(args: Sequence[str], project: Path, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    say(f"\n$ autonomous {' '.join(args)}")
    proc = subprocess.Popen([sys.executable, "-m", "autonomous", *args], cwd=project, env=dict(env))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it stop cleanly and save
        return proc.wait()


def _summary(project: Path) -> tuple[list[Any], list[str]]:
    from autonomous.config import load_config
    from autonomous.providers import get_provider
    from autonomous.scheduler import order

    config = load_config(project / ".ai-agents" / "config.yml")
    with get_provider(config) as provider:
        tasks = [t for t in order(provider.list_tasks()) if not t.key.startswith("META")]
    commits = _git(project, "log", "--oneline").splitlines()
    return tasks, commits


def run_demo(directory: Path | None = None, *, out: TextIO | None = None) -> int:
    """``autonomous demo [DIR]``; returns the exit code (0: every task done)."""
    from autonomous.testing.model_server import Response, Scenario, ScriptedModelServer

    stream = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    claude = _check_requirements()
    project = _check_directory(directory).resolve()
    python, bin_dir = python_command()
    started = time.monotonic()
    prepare_project(project, claude, python)
    scenario = Scenario(
        demo_rules(project, python),
        default=Response(text="The demo scenario has no scripted answer for this request."),
    )
    say(f"autonomous demo: a sample project in {project}")
    say(f"  spec.md                 the todo-api example spec ({len(DEMO_TASKS)} tasks in 3 phases)")
    say(f"  .ai-agents/config.yml   backend claude-code, verification `{python} -m pytest -q`, a commit per task")
    say(f"  Claude Code CLI         {claude}")
    with tempfile.TemporaryDirectory(prefix="autonomous-demo-home-") as home, ScriptedModelServer(scenario) as server:
        say(f"  model                   the scripted model server at {server.url} (no account, no cost)")
        env = runner_env(server.url, Path(home), bin_dir)
        code = _run_step(["init", "--spec", SPEC_NAME], project, env, say)
        if code != 0:
            say(f"autonomous demo: init failed (exit {code})")
            return code
        _git(project, "add", "--", ".project_state.json")
        _git(project, "commit", "-q", "-m", "autonomous init: tasks from spec.md")
        code = _run_step(["start"], project, env, say)
        requests = len(server.message_requests())
        unanswered = sum(1 for r in server.message_requests() if r.rule is None)
    elapsed = time.monotonic() - started
    tasks, commits = _summary(project)
    done = [t for t in tasks if t.status.value == "done"]
    say("")
    say(f"Summary: {len(done)} of {len(tasks)} tasks done in {elapsed:.0f} s, {requests} model requests, $0.00 spent.")
    for t in tasks:
        say(f"  {t.status.value:<11} {t.key:<10} {t.title}")
    if unanswered:
        say(f"  ({unanswered} request(s) got the scenario's default answer)")
    say("")
    say(f"Commits (git log --oneline in {project}):")
    for line in commits:
        say(f"  {line}")
    say("")
    say(f"The project is in {project}:")
    say("  todo_api/   the code the agent wrote     tests/   its tests (`python -m pytest -q`)")
    say("  .ai-agents/logs/   autonomous.log and events.jsonl (`autonomous logs`, `autonomous status`)")
    say(f"  look around: cd {project} && autonomous tasks && autonomous tasks show TODO-1.3")
    say("")
    say("To use a real model in your own project:")
    say("  1. Leave out the demo's model-server settings: the demo started the CLI with ANTHROPIC_BASE_URL")
    say("     pointing at its scripted server and a dummy ANTHROPIC_API_KEY; do not set these, and drop")
    say("     autonomous.claude_path to use the `claude` on your PATH (or keep it: it is the real CLI).")
    say("  2. Sign in: `claude login` (Claude subscription), or export ANTHROPIC_API_KEY=<your key>.")
    say("  3. autonomous init --spec your-spec.md")
    say("  4. autonomous start        (and `autonomous status` in another terminal)")
    if code != 0:
        return code
    return 0 if len(done) == len(tasks) and tasks else 1
