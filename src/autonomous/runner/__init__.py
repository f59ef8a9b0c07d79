"""The coding-agent loop: claim a task, build its prompt, run the backend, verify, record.

One session of ``autonomous start``::

    start session (provider.record_session, META note, runner_state.json)
    recover claims of a dead runner of this project (kill -9 leaves nothing stuck)
    loop:
        limits checked BEFORE claiming (tasks, wall clock, budget: never start a task the
        remaining budget cannot cover at its expected cost)
        claim_next (a unique worker id, a lease renewed at lease/3 by a heartbeat)
        prompt (prompts/task.md: task, conventions, bounded handoff notes, report rules)
        backend.run in a fresh context, its typed events stamped with the worker and the
        task and streamed to the event bus (autonomous.events.bus), which redacts them
        once, fans them out to the sinks and keeps each worker's live progress
        outcome -> verification (the runner decides completion) -> git commit -> release
        checkpoints (stop-on-failure, context high, reviews in supervised mode)
    end session (summary note on META, record_session, runner_state.json)

Exit codes (DESIGN.md): 0 no work left or a limit reached cleanly; 1 a task failed or was
blocked and the runner stopped; 2 usage or configuration (also: the backend's credentials
were refused); 3 paused at a checkpoint awaiting review; 4 budget or rate limit exhausted;
130 interrupted.

Safety rules kept here, in one place:

* A task is ``done`` only when the backend reports completion *and* verification passes.
* Every write about a task presents the claim's fencing token; a worker that lost its
  lease (``StaleClaim`` on renew) interrupts its agent and records nothing.
* Work is never thrown away: a task released unfinished gets a work-in-progress commit
  (when committing is on) and a handoff note, and goes back to ``todo``.
* State survives crashes: runner_state.json is written atomically at every step, and a
  claim whose runner died (pid gone) is handed back at the next start.

Where each part lives::

    session.py    AutonomousRunner: start/end, META notes, the session record, resume
    pool.py       the workers side by side: claims, halts, pauses, rate-limit waits, pull request polls
    worker.py     one task: claim -> prompt -> backend -> verify -> record
    handoff.py    where verified work goes (execution.handoff merge | review | pr); the shared remote
    verdict.py    pure: outcome + checks + attempts -> status and note
    budget.py     SessionBudget: reservations, the task allowances, the limit
    preflight.py  what is checked before the first claim (exit 2 with the fix)
    process.py    worker ids, the one-runner-per-project lock, signal handlers, killing children
    state.py      what the last runner left: stop, dead-claim recovery, recovery context

Prompts are built in :mod:`autonomous.prompts.build`; worktrees and the merge queue are
:mod:`autonomous.workspace.worktrees`; what a task commits is :mod:`autonomous.workspace.commit`.
Events are :mod:`autonomous.events` (``model.py`` one class per kind, ``bus.py``, ``sinks/``).
"""

from __future__ import annotations

from autonomous.errors import ExitCode
from autonomous.prompts.build import HANDOFF_CAP, build_prompt, handoff_notes
from autonomous.runner.budget import SessionBudget
from autonomous.runner.session import AutonomousRunner, RunResult
from autonomous.runner.state import recovery_context, request_stop
from autonomous.runner.verdict import Result

# The exit codes of `autonomous start` under their historic names (ExitCode is the source).
EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_PAUSED = ExitCode.PAUSED
EXIT_BUDGET = ExitCode.BUDGET
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAUSED",
    "EXIT_USAGE",
    "HANDOFF_CAP",
    "AutonomousRunner",
    "Result",
    "RunResult",
    "SessionBudget",
    "build_prompt",
    "handoff_notes",
    "recovery_context",
    "request_stop",
]
