"""verify.py: commands with evidence, timeouts, and the required-changes check."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from autonomous import verify


def run(coro):
    return asyncio.run(coro)


def test_passing_and_failing_commands_keep_the_last_lines(tmp_path: Path) -> None:
    result = run(verify.verify(tmp_path, ["true", "for i in $(seq 1 100); do echo line$i; done; exit 3"], timeout=30))
    assert not result.passed and result.reason == "`for i in $(seq 1 100); do echo line$i; done; exit 3` exited 3"
    ok, bad = result.commands
    assert ok.passed and bad.exit_code == 3
    assert bad.tail[0] == "line61" and bad.tail[-1] == "line100" and len(bad.tail) == verify.TAIL_LINES
    evidence = result.evidence()
    assert evidence.startswith("Verification FAILED") and "exit 3" in evidence and "line100" in evidence


def test_stderr_is_captured_and_redacted(tmp_path: Path) -> None:
    result = run(
        verify.verify(
            tmp_path,
            ["echo secret-value-123 >&2; exit 1"],
            timeout=30,
            redact=lambda s: s.replace("secret-value-123", "***"),
        )
    )
    assert result.commands[0].tail == ["***"]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    result = run(verify.verify(tmp_path, [f"(sleep 30; touch {marker}) & sleep 30"], timeout=0.5))
    assert not result.passed and result.commands[0].timed_out and "timed out" in result.reason
    assert result.commands[0].exit_code is None


def test_no_verification_configured_passes_and_says_so(tmp_path: Path) -> None:
    result = run(verify.verify(tmp_path, [], timeout=5))
    assert result.passed and not result.ran_anything
    assert "nothing was checked" in result.evidence()


def test_require_changes_in_a_git_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a").write_text("1")
    before = verify.baseline(tmp_path)
    assert not run(verify.verify(tmp_path, [], require_changes=True, before=before)).passed
    (tmp_path / "a").write_text("22")  # already dirty before; edited again counts
    assert run(verify.verify(tmp_path, [], require_changes=True, before=before)).passed


def test_runtime_folders_do_not_count_as_changes(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    before = verify.baseline(tmp_path)
    (tmp_path / ".ai-agents" / "state").mkdir(parents=True)
    (tmp_path / ".ai-agents" / "state" / "runner_state.json").write_text("{}")
    assert not verify.changed(tmp_path, before)


def test_require_changes_without_git(tmp_path: Path) -> None:
    before = verify.baseline(tmp_path)
    assert before.git is None
    assert not verify.changed(tmp_path, before)
    (tmp_path / "new.txt").write_text("x")
    assert verify.changed(tmp_path, before)
