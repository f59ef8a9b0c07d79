"""The runner's own checks of a task's result, with evidence.

A model saying "done" is a claim, not a fact. Before a task is marked done the runner
runs the configured ``verification.commands`` in the project (through the shell, with
a timeout, in their own process group so a timeout kills everything they started) and,
when ``verification.require_changes`` is set, checks that the task's change set (the
paths it created, modified or deleted since it was claimed,
:mod:`autonomous.workspace.changes`) is not empty. The result carries the evidence
(command, exit code, last lines of output) that goes into the task's notes and, on
failure, back to the agent.

With ``verification.commands: auto`` (the default) the commands are detected
(:mod:`autonomous.checks.detect`); a baseline run before the first task
(:mod:`autonomous.checks.baseline`) keeps a check that already failed from being blamed
on a task, as long as the task does not make it worse; the review
(:mod:`autonomous.checks.review`) adds its verdict. Everything lands in one
:class:`VerificationResult`, whose :meth:`~VerificationResult.evidence` is the note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autonomous.checks.baseline import Baseline, compare, run_check
from autonomous.checks.commands import TAIL_LINES, CommandResult, run_command
from autonomous.checks.review import ReviewVerdict
from autonomous.tasks import Task
from autonomous.workspace.changes import ChangeSet

__all__ = ["TAIL_LINES", "CommandResult", "VerificationResult", "opts_out_of_changes", "run_command", "verify"]

NO_CHANGES = "no-changes"  # a task label (or ``[no-changes]`` in its description): it may change nothing


def opts_out_of_changes(task: Task) -> bool:
    """Investigation tasks answer a question; they need not change a file."""
    return NO_CHANGES in (label.strip().lower() for label in task.labels) or f"[{NO_CHANGES}]" in task.description


@dataclass(slots=True)
class VerificationResult:
    passed: bool
    commands: list[CommandResult] = field(default_factory=list)
    require_changes: bool = False
    changed: bool | None = None  # None when not checked
    reason: str = ""  # why it failed, one line
    diffstat: str = ""  # the task's change set, with lines added and removed
    notes: list[str] = field(default_factory=list)  # baseline comparisons, failing tests: one line each
    review: ReviewVerdict | None = None

    @property
    def ran_anything(self) -> bool:
        return bool(self.commands) or self.require_changes or self.review is not None

    def fail(self, reason: str) -> None:
        """Record a failure; the first reason stays the headline."""
        if self.passed:
            self.passed, self.reason = False, reason

    def evidence(self) -> str:
        """The note stored on the task, whatever the result. Summary lines come before the
        commands (each command is followed by its output), as :mod:`autonomous.history` reads them."""
        lines = [f"Verification {'passed' if self.passed else 'FAILED'}" + (f": {self.reason}" if self.reason else "")]
        if self.require_changes:
            found = "found" if self.changed else "NONE (no file created, modified or deleted)"
            lines.append(f"required changes: {found}")
        if self.diffstat:
            lines.append(f"change set: {self.diffstat}")
        lines += self.notes
        if self.review is not None:
            lines += self.review.evidence_lines()
        lines += [c.evidence() for c in self.commands]
        if not self.ran_anything:
            lines.append("(no verification configured: nothing was checked beyond the agent's report)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "changed": self.changed,
            "diffstat": self.diffstat,
            "notes": list(self.notes),
            "review": self.review.to_dict() if self.review is not None else None,
            "commands": [
                {
                    "command": c.command,
                    "exit_code": c.exit_code,
                    "timed_out": c.timed_out,
                    "failing_tests": c.failing_tests,
                    "accepted": c.accepted,
                    "tail": c.tail[-10:],
                }
                for c in self.commands
            ],
        }


async def verify(
    project_dir: Path,
    commands: Sequence[str],
    *,
    timeout: float = 600.0,
    require_changes: bool = False,
    change_set: ChangeSet | None = None,
    redact: Callable[[str], str] | None = None,
    baseline: Baseline | None = None,
    report_dir: Path | None = None,
) -> VerificationResult:
    """Run every command (all of them, so the evidence is complete) and the change check
    (``change_set``: what the task changed, from the runner's own snapshots). A command
    that failed in the ``baseline`` passes when it fails no worse (:func:`compare`);
    ``report_dir``: where pytest writes the junit XML the failing test ids are read from."""
    project_dir = Path(project_dir)
    result = VerificationResult(passed=True, require_changes=require_changes)
    if require_changes:
        result.changed = bool(change_set)
        if not result.changed:
            result.fail("the task changed nothing (no file created, modified or deleted)")
    for command in commands:
        cr = await run_check(command, project_dir, timeout, report_dir)
        if redact is not None:
            cr.tail = [redact(line) for line in cr.tail]
        result.commands.append(cr)
        verdict, note = compare(cr, baseline.get(command) if baseline is not None else None)
        if note:
            result.notes.append(note)
        if not verdict:
            what = "timed out" if cr.timed_out else f"exited {cr.exit_code}"
            new = _new_failures(cr, baseline)
            named = f" ({', '.join(new[:5])})" if new else ""
            result.fail(f"`{command}` {what}{named}")
    return result


def _new_failures(cr: CommandResult, baseline: Baseline | None) -> list[str]:
    before = baseline.get(cr.command) if baseline is not None else None
    known = set(before.failing_tests or []) if before is not None else set()
    return [t for t in cr.failing_tests or [] if t not in known]
