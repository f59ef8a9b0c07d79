"""The runner's verdict on one task: a pure function from what happened to what it means.

``decide`` turns the backend's :class:`Outcome`, the last verification and the attempt
counts into the task's next status and the first line of its note. It does no I/O, so it
is tested as a table (tests/runner/test_verdict.py). What happens around it (the commit
of a verified task, the merge of its branch, a secret found in its change) can still turn
a ``done`` into ``blocked`` or ``todo``: the worker applies those afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from autonomous import checkpoints as cp
from autonomous.events import Outcome, OutcomeStatus
from autonomous.tasks import TaskStatus
from autonomous.verify import VerificationResult

CONTEXT_REQUEUE_LIMIT = 3  # fresh-context restarts of one task per session before it counts as failed


class Result:
    """How one task ended for the runner (not the backend's outcome: the runner's verdict)."""

    DONE = "done"
    BLOCKED = "blocked"  # agent reported a blocker, or verification kept failing
    FAILED = "failed"  # the run failed (error, max turns...): back to todo for a retry
    REQUEUED = "requeued"  # context high: continues in a fresh context
    RATE_LIMITED = "rate_limited"
    BUDGET = "budget"
    AUTH = "auth"
    INTERRUPTED = "interrupted"
    LOST = "lost"  # the lease was taken over: nothing recorded
    MERGE_RETRY = "merge_retry"  # verified, but its branch did not merge: back to todo, retried on the new base
    IN_REVIEW = "in_review"  # verified and committed on its branch: waits for a person (execution.handoff: review)


@dataclass(frozen=True, slots=True)
class Verdict:
    result: str  # a Result value
    status: TaskStatus
    head: str  # the first line of the task's note
    summary: str = ""
    checkpoint: cp.CheckpointKind | None = None  # a checkpoint the verdict raises (blocker, context high)
    retry_at: datetime | None = None
    context_restart: bool = False  # counts one more fresh-context restart of the task


def decide(
    outcome: Outcome,
    verification: VerificationResult | None,
    *,
    attempts: int,
    max_attempts: int,
    allowance_spent: bool = False,
    context_tokens_high: bool = False,
    context_window: int = 0,
    context_restarts: int = 0,
) -> Verdict:
    """The verdict (see the module docstring). ``context_tokens_high``: the run ended
    with its context above the configured threshold; ``context_restarts``: how many
    fresh-context restarts the task already had this session."""
    status = outcome.status
    if status is OutcomeStatus.COMPLETED and verification is not None and verification.passed:
        return Verdict(Result.DONE, TaskStatus.DONE, "Done", outcome.summary or "(no summary)")
    if status is OutcomeStatus.COMPLETED:
        why = "and the task's allowance is spent" if allowance_spent else f"of {max_attempts}"
        reason = verification.reason if verification is not None else "not verified"
        head = f"Blocked: verification failed after {attempts} attempt(s) {why}: {reason}"
        return Verdict(Result.BLOCKED, TaskStatus.BLOCKED, head, outcome.summary)
    if status is OutcomeStatus.BLOCKED:
        head = f"Blocked: {outcome.blocker or outcome.error or 'the agent reported a blocker'}"
        return Verdict(Result.BLOCKED, TaskStatus.BLOCKED, head, outcome.summary, cp.CheckpointKind.BLOCKER)
    if status is OutcomeStatus.INTERRUPTED:
        head = f"Interrupted ({outcome.error or 'stop requested'}); back to todo, work in progress kept"
        return Verdict(Result.INTERRUPTED, TaskStatus.TODO, head, outcome.summary)
    if status is OutcomeStatus.RATE_LIMITED:
        head = "Rate limited" + (f" until {outcome.retry_at.isoformat()}" if outcome.retry_at else "")
        return Verdict(Result.RATE_LIMITED, TaskStatus.TODO, head, outcome.summary, retry_at=outcome.retry_at)
    if status is OutcomeStatus.BUDGET_EXCEEDED:
        head = "Stopped: the session's cost limit was reached during the task"
        return Verdict(Result.BUDGET, TaskStatus.TODO, head, outcome.summary)
    if status is OutcomeStatus.AUTH_ERROR:
        head = f"Not run: the backend's credentials were refused ({outcome.error})"
        return Verdict(Result.AUTH, TaskStatus.TODO, head)
    if context_tokens_high:
        count = context_restarts + 1
        if count > CONTEXT_REQUEUE_LIMIT:
            head = f"Failed: context filled up {count} times ({status.value})"
            return Verdict(Result.FAILED, TaskStatus.TODO, head, outcome.summary, context_restart=True)
        head = (
            f"Context high ({outcome.context_tokens} tokens of {context_window}): "
            "re-queued to continue in a fresh context"
        )
        high = cp.CheckpointKind.CONTEXT_HIGH
        return Verdict(Result.REQUEUED, TaskStatus.TODO, head, outcome.summary, high, context_restart=True)
    head = f"Failed ({status.value}): {outcome.error or outcome.summary or 'no detail'}; back to todo"
    return Verdict(Result.FAILED, TaskStatus.TODO, head, outcome.summary)
