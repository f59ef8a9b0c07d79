"""Which command tests this project, when the config says ``verification.commands: auto``.

A new user's config has no ``verification`` section; without a check, a model that only
*says* it finished would be believed. So the runner finds the command a person would run,
in this order (the first that applies wins):

1. a test command the project states for agents in ``AGENTS.md`` or ``CLAUDE.md`` (a
   backticked or fenced command on a line that talks about tests), as Codex reads it;
2. Python with pytest: ``[tool.pytest.ini_options]`` in ``pyproject.toml``, ``pytest.ini``,
   ``[tool:pytest]`` in ``setup.cfg``, ``[pytest]`` in ``tox.ini``, ``conftest.py``, or a
   ``tests/`` folder holding ``test_*.py``;
3. ``package.json`` with a real ``scripts.test`` (not npm's "no test specified" stub): ``npm test``;
4. ``Cargo.toml``: ``cargo test``; 5. ``go.mod``: ``go test ./...``;
6. a ``Makefile`` with a ``test:`` target: ``make test``.

Only files are read; nothing is run. The result says where the command came from, so
``autonomous config`` and ``start --dry-run`` can show it.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

_INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
_TEST_WORD = re.compile(r"\btests?\b|\btesting\b", re.I)
_SETUP = re.compile(r"\b(?:install|ci|add|sync|init|setup|venv)\b")  # preparing, not testing
_FENCE = re.compile(r"^\s*(```|~~~)")
_RUNNERS = re.compile(
    r"^(?:\S*python\S*\s+-m\s+pytest|\S*pytest|py\.test|tox|nox|uv run|poetry run|hatch (?:run|test)|npm|pnpm|yarn|bun|"
    r"npx|cargo|go|make|just|bundle exec|rake|rspec|mvn|\./mvnw|gradle|\./gradlew|dotnet|mix|deno|bazel|ctest|"
    r"phpunit|vendor/bin/phpunit|composer|swift|\./\S+\.sh|bash|sh)\b"
)


@dataclass(frozen=True, slots=True)
class Detected:
    command: str
    source: str  # where it came from, e.g. "AGENTS.md line 12" or "pyproject.toml [tool.pytest.ini_options]"

    def describe(self) -> str:
        return f"`{self.command}` (from {self.source})"


def detect(project_dir: Path) -> Detected | None:
    """The project's test command, or None when nothing says how to test it."""
    project_dir = Path(project_dir)
    for finder in (_stated, _pytest, _npm, _cargo, _go, _make):
        found = finder(project_dir)
        if found is not None:
            return found
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _stated(root: Path) -> Detected | None:
    """A command in AGENTS.md / CLAUDE.md on a line about tests (or in a fenced block right after one)."""
    for name in _INSTRUCTION_FILES:
        text = _read(root / name)
        if not text:
            continue
        lines = text.splitlines()
        talk_of_tests = False  # the last prose line mentioned tests: the fenced block after it counts
        in_fence = False
        for number, line in enumerate(lines, 1):
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence:
                command = line.strip().removeprefix("$ ").strip()
                if talk_of_tests and _is_command(command) and not _SETUP.search(command):
                    return Detected(command, f"{name} line {number}")
                continue
            if not line.strip():
                continue
            talk_of_tests = bool(_TEST_WORD.search(line))
            if talk_of_tests:
                commands = [c.strip() for c in re.findall(r"`([^`\n]+)`", line) if _is_command(c.strip())]
                commands = [c for c in commands if not _SETUP.search(c)]
                # prefer the one that names tests ("`npm ci` then `npm test`"), else the line's command
                best = next((c for c in commands if _TEST_WORD.search(c)), commands[0] if commands else None)
                if best:
                    return Detected(best, f"{name} line {number}")
    return None


def _is_command(text: str) -> bool:
    return bool(text) and bool(_RUNNERS.match(text)) and len(text) < 200


def _python(root: Path) -> str:
    """The interpreter that has the project's dependencies: its own virtualenv when it has one."""
    for venv in (".venv", "venv"):
        candidate = root / venv / "bin" / "python"
        if candidate.is_file():
            return f"{venv}/bin/python"
    return "python3" if shutil.which("pytest") is None else ""


def pytest_command(root: Path) -> str:
    python = _python(root)
    return f"{python} -m pytest -q" if python else "pytest -q"


def _pytest(root: Path) -> Detected | None:
    source = None
    pyproject = _read(root / "pyproject.toml")
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject)
        except tomllib.TOMLDecodeError:
            data = {}
        if "pytest" in data.get("tool", {}):
            source = "pyproject.toml [tool.pytest.ini_options]"
    if source is None and (root / "pytest.ini").is_file():
        source = "pytest.ini"
    for name, section in (("setup.cfg", "tool:pytest"), ("tox.ini", "pytest")):
        if source is None and (root / name).is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read(root / name, encoding="utf-8")
            except configparser.Error:
                continue
            if parser.has_section(section):
                source = f"{name} [{section}]"
    if source is None and (root / "conftest.py").is_file():
        source = "conftest.py"
    if source is None and (root / "tests").is_dir() and any((root / "tests").rglob("test_*.py")):
        source = "tests/test_*.py"
    return Detected(pytest_command(root), source) if source else None


def _npm(root: Path) -> Detected | None:
    text = _read(root / "package.json")
    if text is None:
        return None
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (ValueError, AttributeError):
        return None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    if not isinstance(test, str) or not test.strip() or "no test specified" in test:
        return None
    return Detected("npm test", "package.json scripts.test")


def _cargo(root: Path) -> Detected | None:
    return Detected("cargo test", "Cargo.toml") if (root / "Cargo.toml").is_file() else None


def _go(root: Path) -> Detected | None:
    return Detected("go test ./...", "go.mod") if (root / "go.mod").is_file() else None


def _make(root: Path) -> Detected | None:
    for name in ("Makefile", "makefile", "GNUmakefile"):
        text = _read(root / name)
        if text and re.search(r"^test\s*:", text, re.M):
            return Detected("make test", f"{name} target test")
    return None


def plan(setting: str | list[str], project_dir: Path) -> tuple[list[str], str]:
    """The commands ``verification.commands`` stands for, and how they were chosen (for
    ``autonomous config``, ``start --dry-run`` and the session's first warning)."""
    if setting != "auto":
        return list(setting), "configured" if setting else "configured: none"
    found = detect(project_dir)
    if found is None:
        return [], "auto: no test command found (AGENTS.md/CLAUDE.md, pytest, package.json, Cargo, go.mod, Makefile)"
    return [found.command], f"auto: detected {found.describe()}"
