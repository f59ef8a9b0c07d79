"""The reading commands' configuration (autonomous.config_view): the full validation's
result, cached by everything it depends on, and never stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autonomous.config import Config, load_config
from autonomous.config_view import ReadingConfig, cache_dir, load_reading_config, reading_view
from autonomous.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".ai-agents").mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


def write(project: Path, text: str) -> Path:
    path = project / ".ai-agents" / "config.yml"
    path.write_text(text)
    return path


def test_the_view_is_the_full_validations_result_and_comes_from_the_cache(project: Path) -> None:
    text = "state_provider:\n  state_dir: data/store\nlogging:\n  dir: /tmp/x-logs\n"
    write(project, text + "execution:\n  ordering: phases\n")
    first = load_reading_config()
    assert isinstance(first, ReadingConfig)
    assert first == reading_view(load_config())
    assert (first.state_dir, first.log_dir, first.ordering) == (project / "data/store", Path("/tmp/x-logs"), "phases")
    assert len(list(cache_dir().glob("config-*.json"))) == 1
    assert load_reading_config() == first
    # a fresh process answers from the cache without importing pydantic or PyYAML
    code = (
        "import sys; from autonomous.config_view import load_reading_config; c = load_reading_config(); "
        "print(c.ordering, 'pydantic' in sys.modules, 'yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["phases", "False", "False"]


def test_a_changed_or_broken_file_is_validated_again(project: Path) -> None:
    path = write(project, "execution:\n  ordering: phases\n")
    assert load_reading_config().ordering == "phases"
    path.write_text("execution:\n  ordering: dependencies\n")
    assert load_reading_config().ordering == "dependencies"
    path.write_text("execution:\n  ordering: sideways\n")
    with pytest.raises(ConfigError, match=r"execution\.ordering"):
        load_reading_config()
    path.write_text("execution:\n  ordering: phases\nautonomous:\n  max_turns_per_task: -1\n")
    with pytest.raises(ConfigError, match="max_turns_per_task"):  # any key, not only the ones the view holds
        load_reading_config()


def test_referenced_variables_are_part_of_the_key_and_secrets_never_written(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "logging:\n  dir: ${LOG_HOME}/logs\nprogress:\n  slack_webhook: ${SLACK_TOKEN}\n")
    monkeypatch.setenv("LOG_HOME", "/srv/a")
    monkeypatch.setenv("SLACK_TOKEN", "https://hooks.example/very-secret-token")
    assert load_reading_config().log_dir == Path("/srv/a/logs")
    monkeypatch.setenv("LOG_HOME", "/srv/b")
    assert load_reading_config().log_dir == Path("/srv/b/logs")
    cached = "".join(p.read_text() for p in cache_dir().glob("config-*.json"))
    assert "very-secret-token" not in cached and "hooks.example" not in cached
    monkeypatch.delenv("SLACK_TOKEN")  # unset now: the full validation says so, as `start` would
    with pytest.raises(ConfigError, match="SLACK_TOKEN"):
        load_reading_config()


def test_other_providers_get_the_whole_configuration(project: Path) -> None:
    write(project, "state_provider:\n  type: postgres\n  dsn: postgresql://u:pw@db/x\n")
    config = load_reading_config()
    assert isinstance(config, Config) and config.state_provider.type == "postgres"
    assert list(cache_dir().glob("config-*.json")) == []


def test_no_config_file_and_an_unwritable_cache(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = project / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache cannot be created: only slower
    view = load_reading_config()
    assert isinstance(view, ReadingConfig) and view.state_dir == project / ".ai-agents" / "state"
    assert view.ordering == "strict" and view.source is None
    with pytest.raises(ConfigError, match="no such file"):
        load_reading_config(project / "missing.yml")
