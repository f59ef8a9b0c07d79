"""verify.py: commands with evidence, timeouts, and the required-changes check."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from autonomous import verify
from autonomous.workspace import changes


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


def test_require_changes_reads_the_task_change_set(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a").write_text("1")
    before = changes.capture(tmp_path)
    result = run(verify.verify(tmp_path, [], require_changes=True, change_set=changes.diff(before, before)))
    assert not result.passed and "changed nothing" in result.reason
    assert "NONE" in result.evidence()
    (tmp_path / "a").write_text("22")  # already dirty before; edited again counts
    cs = changes.diff(before, changes.capture(tmp_path))
    assert run(verify.verify(tmp_path, [], require_changes=True, change_set=cs)).passed
