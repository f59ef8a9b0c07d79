"""The independent review (``verification.review: true``): a second opinion before done.

Checks catch what a command can see; they do not see a change that passes the tests but
misses the task. After the checks pass, the runner starts a *fresh* session of the
configured backend (no memory of the agent's conversation) with read-only tools
(:data:`REVIEW_TOOLS`), gives it the task, its acceptance criteria, its test steps and the
diff of the task's change set (:mod:`autonomous.checks.diff`), and asks for a JSON verdict:
approve, or changes with a reason per criterion. Changes go back to the agent like a
failed check. The review runs under the task's allowance, so its turns and cost count
against the task. A review that gives no readable verdict does not approve: the task is
not done on a reviewer's silence.

This module is pure (prompt in, verdict out); the runner runs the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from autonomous import prompts
from autonomous.backends.base import RunOptions
from autonomous.backends.report import json_objects
from autonomous.tasks import Task

REVIEW_TOOLS = ["Read", "Glob", "Grep"]
_DIFF_CAP = 60_000  # characters of diff in the prompt; the reviewer can read the files for more
_REASON_CAP = 500


@dataclass(slots=True)
class Criterion:
    criterion: str
    met: bool
    reason: str = ""


@dataclass(slots=True)
class ReviewVerdict:
    approved: bool
    summary: str = ""
    criteria: list[Criterion] = field(default_factory=list)
    error: str = ""  # no readable verdict (the reviewer's run failed, or its answer had none)
    turns: int = 0
    cost_usd: float = 0.0

    @property
    def unmet(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.met]

    def headline(self) -> str:
        if self.error:
            return f"review gave no verdict: {self.error}"
        return "review approved" if self.approved else "review requested changes"

    def evidence_lines(self) -> list[str]:
        head = "Review: " + ("approved" if self.approved else "no verdict" if self.error else "CHANGES REQUESTED")
        head += f" ({self.turns} turns, ${self.cost_usd:.4f})"
        lines = [head + (f": {self.summary}" if self.summary else "") + (f": {self.error}" if self.error else "")]
        for c in self.criteria:
            reason = f" ({c.reason})" if c.reason else ""
            lines.append(f"review {'met' if c.met else 'NOT MET'}: {c.criterion}{reason}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "summary": self.summary,
            "error": self.error,
            "criteria": [{"criterion": c.criterion, "met": c.met, "reason": c.reason} for c in self.criteria],
            "turns": self.turns,
            "cost_usd": self.cost_usd,
        }


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {i.strip()}" for i in items if i.strip()) or "- (none given)"


def build_prompt(task: Task, diff: str, diffstat: str, checks: list[str]) -> str:
    shown = diff if len(diff) <= _DIFF_CAP else diff[:_DIFF_CAP] + "\n…(diff truncated: read the files for the rest)"
    return (
        prompts.load("review.md")
        .safe_substitute(
            key=task.key,
            title=task.title,
            description=task.description.strip() or "(no description: the title says it all)",
            acceptance_criteria=_bullets(task.acceptance_criteria),
            test_steps=_bullets(task.test_steps),
            checks=_bullets(checks) if checks else "- (no commands: only that the task changed files)",
            diffstat=diffstat,
            diff=shown.rstrip() or "(empty)",
        )
        .strip()
        + "\n"
    )


def review_options(options: RunOptions) -> RunOptions:
    """The agent's options made read-only, in a fresh conversation: the reviewer may look, not touch."""
    return replace(
        options,
        allowed_tools=list(REVIEW_TOOLS),
        permission_mode="dontAsk",  # anything not allowed is refused, never asked for
        session_id=None,
        mcp_servers={},
        command_allow=[],
    )


def parse_verdict(text: str) -> ReviewVerdict | None:
    """The last JSON object in ``text`` that carries a ``verdict``; None when there is none."""
    found = None
    for obj in json_objects(text):
        if isinstance(obj.get("verdict"), str):
            found = obj
    if found is None:
        return None
    word = found["verdict"].strip().lower()
    if word not in ("approve", "approved", "changes", "changes_requested", "request_changes", "reject"):
        return None
    criteria = []
    for item in found.get("criteria") or []:
        if isinstance(item, dict):
            criteria.append(
                Criterion(
                    str(item.get("criterion") or "?")[:_REASON_CAP],
                    item.get("met") is True,
                    str(item.get("reason") or "")[:_REASON_CAP],
                )
            )
    approved = word in ("approve", "approved") and all(c.met for c in criteria)
    return ReviewVerdict(approved, str(found.get("summary") or "")[:_REASON_CAP], criteria)


def feedback(verdict: ReviewVerdict, attempt: int, max_attempts: int) -> str:
    """What the agent is told when the review asks for changes (like a failed check)."""
    lines = [
        f"An independent reviewer read your change and asked for changes (attempt {attempt} of {max_attempts}). "
        "The task is not done until the review approves. Address every point, then end with the completion report.",
        "",
    ]
    if verdict.summary:
        lines.append(f"Reviewer's summary: {verdict.summary}")
    for c in verdict.unmet or verdict.criteria:
        lines.append(f"- {c.criterion}: {'met' if c.met else 'NOT met'}" + (f" ({c.reason})" if c.reason else ""))
    if verdict.error:
        lines.append(f"- the review gave no verdict: {verdict.error}")
    return "\n".join(lines)
