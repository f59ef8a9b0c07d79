"""The checks as they stood before the first task, and how a task's result compares.

A project whose suite already fails must not block every task, and a task must not be
blamed for a failure it did not cause. So the runner runs the checks once before the
first task (the *baseline*) and judges each later run of a command against it:

* it passed before: it must pass now;
* it failed before and passes now: fine (the task fixed it);
* it failed before and fails now: fine when no test fails now that did not fail before.
  Test ids come from pytest's junit XML (the runner adds ``--junitxml`` to a plain pytest
  command). When either run has no readable ids the failure cannot be told apart from a
  new one, so the command must pass (a configured check failing before its task is often
  that task's acceptance test).
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

from autonomous.checks.commands import CommandResult, run_command

Baseline = dict[str, CommandResult]  # command -> its result before the first task

PYTEST_NO_TESTS = 5  # pytest's exit code when it collected no test
# a single pytest run, nothing chained or redirected: --junitxml can be appended safely
_PLAIN_PYTEST = re.compile(r"^(?:\S*python[\d.]*\s+-m\s+pytest|\S*pytest|py\.test)(?:\s+[^;&|<>`$()\n]*)?$")
_MAX_IDS = 500


def takes_junit(command: str) -> bool:
    return bool(_PLAIN_PYTEST.match(command.strip())) and "--junitxml" not in command and "--junit-xml" not in command


def failing_tests(report: Path) -> list[str] | None:
    """``module::name`` of every failed or errored test case in a junit XML file; None when unreadable."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return None
    failed: list[str] = []
    for case in root.iter("testcase"):
        if any(child.tag in ("failure", "error") for child in case):
            name = case.get("name", "?")
            owner = case.get("classname") or case.get("file") or ""
            failed.append(f"{owner}::{name}" if owner else name)
    return sorted(set(failed))[:_MAX_IDS]


async def run_check(command: str, cwd: Path, timeout: float, report_dir: Path | None) -> CommandResult:
    """Run one check; a plain pytest command also writes a junit report the failing ids come from."""
    report = None
    actual = command
    if report_dir is not None and takes_junit(command):
        report_dir.mkdir(parents=True, exist_ok=True)
        report = report_dir / f"junit-{zlib.crc32(command.encode()):08x}.xml"
        report.unlink(missing_ok=True)
        actual = f"{command} --junitxml={shlex.quote(str(report))}"
    result = await run_command(actual, cwd, timeout)
    result.command = command  # the evidence names what the user configured or saw detected
    if result.exit_code == PYTEST_NO_TESTS and _PLAIN_PYTEST.match(command.strip()):
        # a project with no tests yet (a README task in a fresh project) has nothing that fails
        result.exit_code = 0
        result.tail.append("(pytest exit 5: no tests collected; nothing fails, so the check passes)")
    if report is not None and not result.passed:
        result.failing_tests = failing_tests(report)
    elif report is not None:
        result.failing_tests = []
    return result


async def run_baseline(commands: list[str], cwd: Path, timeout: float, report_dir: Path | None) -> Baseline:
    return {command: await run_check(command, cwd, timeout, report_dir) for command in commands}


def compare(now: CommandResult, before: CommandResult | None) -> tuple[bool, str]:
    """Whether ``now`` is acceptable, and a line for the evidence (empty when there is nothing to say).

    Sets ``now.accepted`` when a failure is the baseline's, not the task's."""
    new = [t for t in now.failing_tests or [] if before is None or t not in (before.failing_tests or [])]
    named = f"; failing tests: {', '.join(new[:10])}" + (f" and {len(new) - 10} more" if len(new) > 10 else "")
    if before is None or before.passed:
        if now.passed:
            return True, ""
        return False, (f"`{now.command}`: passed before the run, fails now" if before else "") + (named if new else "")
    # it failed before the first task
    if now.passed:
        return True, f"`{now.command}`: failed before the run, passes now"
    old = before.failing_tests
    if now.failing_tests is not None and old is not None and not now.timed_out:
        if not new:
            now.accepted = f"failed before the run with the same tests ({len(old)}); no new failures"
            return True, f"`{now.command}`: {now.accepted}"
        return False, f"`{now.command}`: failed before the run, and now more tests fail{named}"
    # Without test ids the runner cannot tell a task's new failure from the old one, and a
    # configured check that fails before its task is often the task's own acceptance test.
    return False, f"`{now.command}`: failed before the run too, but its failing tests cannot be read: it must pass"


def describe_failures(baseline: Baseline) -> list[str]:
    """One line per check that already fails before the first task (reported at start)."""
    lines = []
    for command, result in baseline.items():
        if result.passed:
            continue
        what = "timed out" if result.timed_out else f"exit {result.exit_code}"
        tests = result.failing_tests or []
        named = f": {', '.join(tests[:5])}" + (f" and {len(tests) - 5} more" if len(tests) > 5 else "") if tests else ""
        if result.failing_tests:
            judged = "tasks are judged against these failures, not blamed for them"
        else:
            judged = "its failing tests cannot be read, so a task is done only when it passes"
        lines.append(f"`{command}` already fails before the first task ({what}{named}); {judged}")
    return lines
