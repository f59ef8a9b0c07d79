"""A task's history read back from its notes: attempts, verification evidence, commits.

The runner writes one note per attempt when it releases a task (a first line saying how
it ended, then ``Turns: N, cost: $X, duration: Ys[, commit: SHA]``) and one note per
verification (``Verification passed|FAILED``, then summary lines: ``change set: ...``, the
baseline comparisons, ``Review: ...``; then ``$ command  ->  exit N (Xs)`` and the output's
tail). Notes are the one record every provider keeps (a SQL row, a Linear comment, a
GitHub comment), so reading them back here works the same for every store;
``tasks show``, ``diff`` and the dashboard all read history through this module.

A person's retry leaves a note starting with :data:`RETRY_NOTE`; attempts counted for a
limit (merge attempts) are those after the latest such note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autonomous.tasks import Note

RETRY_NOTE = "Retry requested"
# execution.handoff: review. The runner's note when a verified task goes to in_review, and
# the person's answer (``autonomous approve`` / ``reject``), which the runner reads when it
# claims the task again.
REVIEW_NOTE = "In review"
APPROVED_NOTE = "Approved"
REJECTED_NOTE = "Rejected"
# execution.handoff: pr. The runner's note when it pushed the task's branch and opened (or
# updated) its pull request, and the one when a reviewer asked for changes, which carries
# the review's id (handled once) and its text (the agent's feedback: the prompt shows a
# task's latest notes).
PR_NOTE = "In review: pull request"
CHANGES_NOTE = "Changes requested"
_PR = re.compile(r"^In review: pull request #(?P<number>\d+) (?P<url>\S+)")
_CHANGES = re.compile(r"^Changes requested on pull request #\d+ .*?\(review (?P<review>\d+)")


def pull_request(notes: Sequence[Note]) -> tuple[int, str] | None:
    """The number and URL of the pull request a task in review waits on: its latest review
    note is a pull request's (a review by a person, ``handoff: review``, has none)."""
    for note in reversed(notes):
        if note.text.startswith(REVIEW_NOTE):
            found = _PR.match(note.text)
            return (int(found["number"]), found["url"]) if found else None
    return None


def handled_reviews(notes: Sequence[Note]) -> set[int]:
    """The ids of the reviews whose requested changes went back to the agent."""
    return {int(m["review"]) for m in (_CHANGES.match(n.text) for n in notes) if m}


def change_rounds(notes: Sequence[Note]) -> int:
    """How many times reviewers asked for changes since a person's latest retry."""
    return sum(1 for n in since_retry(notes) if _CHANGES.match(n.text))


def review_decision(notes: Sequence[Note]) -> str | None:
    """``approved`` or ``rejected`` when a person answered the task's latest review, else None."""
    for note in reversed(notes):
        if note.text.startswith(APPROVED_NOTE):
            return "approved"
        if note.text.startswith(REJECTED_NOTE):
            return "rejected"
        if note.text.startswith(REVIEW_NOTE):
            return None
    return None


_SPENT = re.compile(
    r"^Turns: (?P<turns>\d+), cost: \$(?P<cost>[\d.]+), duration: (?P<duration>[\d.]+)s"
    r"(?:, commit: (?P<commit>[0-9a-f]{7,64}))?",
    re.MULTILINE,
)
_COMMAND = re.compile(
    r"^\$ (?P<command>.*?)  ->  (?:exit (?P<exit>-?\d+)|(?P<timeout>timed out) after \d+s) \((?P<duration>[\d.]+)s\)$"
)
_VERIFICATION = re.compile(
    r"^(?:After merging into .*?: )?Verification (?P<result>passed|FAILED)(?::\s*(?P<reason>.*))?$"
)
_ATTEMPT_OF = re.compile(r"^\(attempt (?P<n>\d+) of \d+\)$")
_RESULTS = [
    ("Done", "done"),
    ("In review", "in_review"),
    ("Blocked", "blocked"),
    ("Failed", "failed"),
    ("Merge failed", "merge_failed"),
    ("Interrupted", "interrupted"),
    ("Rate limited", "rate_limited"),
    ("Stopped", "budget"),
    ("Not run", "auth_error"),
    ("Context high", "requeued"),
]


@dataclass(slots=True)
class Attempt:
    """One run of the task that the runner recorded (a release note)."""

    at: str
    outcome: str  # the note's first line: "Done (commit ...)", "Blocked: ...", "Failed (max_turns): ..."
    turns: int
    cost_usd: float
    duration_s: float
    commit: str | None
    summary: str = ""
    after_retry: bool = True  # False for attempts before a person's latest retry

    @property
    def result(self) -> str:
        """How the attempt ended, in one word (the runner's note heads, see runner._record)."""
        return next((name for head, name in _RESULTS if self.outcome.startswith(head)), "other")

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "result": self.result,
            "outcome": self.outcome,
            "turns": self.turns,
            "cost_usd": self.cost_usd,
            "duration_s": self.duration_s,
            "commit": self.commit,
            "summary": self.summary,
            "after_retry": self.after_retry,
        }


@dataclass(slots=True)
class CommandEvidence:
    command: str
    exit_code: int | None  # None when it timed out
    duration_s: float
    tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "timed_out": self.exit_code is None,
            "duration_s": self.duration_s,
            "tail": list(self.tail),
        }


@dataclass(slots=True)
class Evidence:
    """One verification the runner ran on the task (a verification note)."""

    at: str
    passed: bool
    reason: str
    attempt: int | None
    commands: list[CommandEvidence] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # lines that are neither a command nor its output
    diffstat: str = ""  # "change set: ..." (the task's files, lines added and removed)
    review: str = ""  # "Review: approved ..." / "Review: CHANGES REQUESTED ..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "passed": self.passed,
            "reason": self.reason,
            "attempt": self.attempt,
            "commands": [c.to_dict() for c in self.commands],
            "lines": list(self.lines),
            "diffstat": self.diffstat,
            "review": self.review,
        }


def since_retry(notes: Sequence[Note]) -> Sequence[Note]:
    """The notes after a person's latest retry (all of them when there was none)."""
    for i in range(len(notes) - 1, -1, -1):
        if notes[i].text.startswith(RETRY_NOTE):
            return notes[i + 1 :]
    return notes


def attempts(notes: Sequence[Note]) -> list[Attempt]:
    """Every recorded attempt, oldest first."""
    recent = {id(n) for n in since_retry(notes)}
    found = []
    for note in notes:
        spent = _SPENT.search(note.text)
        if spent is None:
            continue
        lines = note.text.splitlines()
        summary = next((line[len("Summary: ") :] for line in lines if line.startswith("Summary: ")), "")
        found.append(
            Attempt(
                at=note.at.isoformat(),
                outcome=lines[0],
                turns=int(spent["turns"]),
                cost_usd=float(spent["cost"]),
                duration_s=float(spent["duration"]),
                commit=spent["commit"],
                summary=summary,
                after_retry=id(note) in recent,
            )
        )
    return found


def evidence(notes: Sequence[Note]) -> list[Evidence]:
    """Every verification's evidence, oldest first."""
    found = []
    for note in notes:
        lines = note.text.splitlines()
        head = _VERIFICATION.match(lines[0]) if lines else None
        if head is None:
            continue
        item = Evidence(note.at.isoformat(), head["result"] == "passed", (head["reason"] or "").strip(), None)
        for line in lines[1:]:
            command = _COMMAND.match(line)
            attempt = _ATTEMPT_OF.match(line)
            if command is not None:
                exit_code = None if command["timeout"] else int(command["exit"])
                item.commands.append(CommandEvidence(command["command"], exit_code, float(command["duration"])))
            elif attempt is not None:
                item.attempt = int(attempt["n"])
            elif item.commands:
                item.commands[-1].tail.append(line)
            else:
                item.lines.append(line)
                if line.startswith("change set: "):
                    item.diffstat = line[len("change set: ") :]
                elif line.startswith("Review: "):
                    item.review = line[len("Review: ") :]
        found.append(item)
    return found


def commits(notes: Sequence[Note]) -> list[str]:
    """The shas of the task's commits (done and work in progress), oldest first, once each."""
    shas: list[str] = []
    for attempt in attempts(notes):
        if attempt.commit and attempt.commit not in shas:
            shas.append(attempt.commit)
    return shas
