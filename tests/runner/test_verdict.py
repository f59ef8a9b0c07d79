"""verdict.decide as a table: what happened -> the task's status and the note's first line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from autonomous import checkpoints as cp
from autonomous.events import Outcome, OutcomeStatus
from autonomous.runner.verdict import CONTEXT_REQUEUE_LIMIT, Result, decide
from autonomous.tasks import TaskStatus
from autonomous.verify import VerificationResult

PASSED = VerificationResult(passed=True)
FAILED = VerificationResult(passed=False, reason="`pytest` exited 1")
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "verification", "kw", "result", "status", "head"),
    [
        (Outcome(OutcomeStatus.COMPLETED, summary="ok"), PASSED, {}, Result.DONE, TaskStatus.DONE, "Done"),
        (Outcome(OutcomeStatus.COMPLETED), None, {}, Result.BLOCKED, TaskStatus.BLOCKED, "not verified"),
        (Outcome(OutcomeStatus.COMPLETED), FAILED, {"attempts": 2}, Result.BLOCKED, TaskStatus.BLOCKED,
         "verification failed after 2 attempt(s) of 2: `pytest` exited 1"),
        (Outcome(OutcomeStatus.COMPLETED), FAILED, {"attempts": 1, "allowance_spent": True}, Result.BLOCKED,
         TaskStatus.BLOCKED, "after 1 attempt(s) and the task's allowance is spent"),
        (Outcome(OutcomeStatus.BLOCKED, blocker="no database"), None, {}, Result.BLOCKED, TaskStatus.BLOCKED,
         "Blocked: no database"),
        (Outcome(OutcomeStatus.INTERRUPTED, error="SIGTERM"), None, {}, Result.INTERRUPTED, TaskStatus.TODO,
         "Interrupted (SIGTERM)"),
        (Outcome(OutcomeStatus.RATE_LIMITED, retry_at=AT), None, {}, Result.RATE_LIMITED, TaskStatus.TODO,
         "Rate limited until 2026-11-26T12:00:00+00:00"),
        (Outcome(OutcomeStatus.BUDGET_EXCEEDED), None, {}, Result.BUDGET, TaskStatus.TODO, "cost limit"),
        (Outcome(OutcomeStatus.AUTH_ERROR, error="401"), None, {}, Result.AUTH, TaskStatus.TODO,
         "credentials were refused (401)"),
        (Outcome(OutcomeStatus.MAX_TURNS, context_tokens=190_000), None, {"context_tokens_high": True},
         Result.REQUEUED, TaskStatus.TODO, "Context high (190000 tokens"),
        (Outcome(OutcomeStatus.MAX_TURNS), None,
         {"context_tokens_high": True, "context_restarts": CONTEXT_REQUEUE_LIMIT},
         Result.FAILED, TaskStatus.TODO, "context filled up 4 times"),
        (Outcome(OutcomeStatus.ERROR, error="stream cut"), None, {}, Result.FAILED, TaskStatus.TODO,
         "Failed (error): stream cut; back to todo"),
        (Outcome(OutcomeStatus.MAX_TURNS), None, {}, Result.FAILED, TaskStatus.TODO, "Failed (max_turns)"),
    ],
)  # fmt: skip
def test_the_verdict_table(outcome, verification, kw, result, status, head) -> None:
    kw = {"attempts": 1, "max_attempts": 2, "context_window": 200_000, **kw}
    verdict = decide(outcome, verification, **kw)
    assert (verdict.result, verdict.status) == (result, status)
    assert head in verdict.head


def test_only_a_passed_check_after_a_completion_is_done() -> None:
    """A completion is a claim: every other combination is not done."""
    for status in OutcomeStatus:
        for verification in (None, PASSED, FAILED):
            done = decide(Outcome(status), verification, attempts=1, max_attempts=2).status is TaskStatus.DONE
            assert done == (status is OutcomeStatus.COMPLETED and verification is PASSED)


def test_blockers_and_context_restarts_raise_their_checkpoints() -> None:
    blocked = decide(Outcome(OutcomeStatus.BLOCKED, blocker="x"), None, attempts=0, max_attempts=2)
    assert blocked.checkpoint is cp.CheckpointKind.BLOCKER
    high = decide(Outcome(OutcomeStatus.MAX_TURNS), None, attempts=0, max_attempts=2, context_tokens_high=True)
    assert high.checkpoint is cp.CheckpointKind.CONTEXT_HIGH and high.context_restart
