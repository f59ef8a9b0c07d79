"""The Backend contract: one prompt in, a stream of events out, exactly one Outcome at the end.

A backend implements one abstract method, :meth:`Backend._stream`: one *exchange* with the
model (the task prompt, or a nudge in the same conversation), yielding events, what it
spends (:class:`Spend`) and, last, either an :class:`Outcome` or :class:`NoReport`.
Everything every backend must get right lives once, in the final :meth:`Backend.run`,
as inspect_ai's ``Model.generate`` wraps ``ModelAPI.generate``:

* **exactly one Outcome** per run, whatever happens: an exception inside the stream is
  classified through the hooks (never a traceback), a stream that ends without its
  terminal item is an ``error`` (never a success), and the stream is always closed;
* **the task allowance** (:class:`TaskAllowance`, turns and dollars left for the task,
  shared by every attempt, nudge and review of it): every :class:`Spend` is charged to it
  as it happens, a turn that starts with nothing left stops the run (``max_turns`` /
  ``budget_exceeded``), and :meth:`Run.limit_reached` is the gate a backend asks before
  it sends a request;
* **nudges**: an exchange that ends without a completion report gets
  :data:`~autonomous.backends.report.NUDGE_PROMPT` as a new exchange in the same
  conversation, at most ``max_nudges`` times and only while the allowance lasts;
* **the inactivity watchdog**: no item from the stream for ``inactivity_timeout`` seconds
  ends the run ``error`` (the stream is closed, which stops the agent's process);
* **error classification** through hooks with safe defaults (:meth:`Backend.should_retry`,
  :meth:`Backend.retry_after`, :meth:`Backend.is_auth_failure`,
  :meth:`Backend.is_rate_limit`), used by :meth:`Backend._retrying` for one request and
  by :meth:`Backend.run` for an exception that escapes the stream.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, final

from autonomous.backends.report import NUDGE_PROMPT, Nudges
from autonomous.backends.text import clip
from autonomous.errors import AutonomousError
from autonomous.events import (
    ApiRetry,
    BackendStart,
    ErrorEvent,
    Event,
    Nudge,
    Outcome,
    OutcomeStatus,
    Usage,
    UsageUpdate,
)
from autonomous.events.model import E
from autonomous.sandbox import Confinement

DEFAULT_ALLOWED_TOOLS = ["Read", "Write", "Edit", "Glob", "Grep", "Bash", "TodoWrite"]


@dataclass(slots=True)
class TaskAllowance:
    """Turns and dollars one task may still spend, across every run of it.

    The runner makes one per task and passes the same object to every run (attempts,
    nudges, reviews); :meth:`Backend.run` charges it as the run spends, so two runs
    sharing it never spend more than it held. ``usd_left`` ``None``: no money limit.
    """

    turns_left: int
    usd_left: float | None = None

    def charge(self, turns: int, usd: float) -> None:
        self.turns_left -= turns
        if self.usd_left is not None:
            self.usd_left -= usd

    @property
    def turns_spent(self) -> bool:
        return self.turns_left <= 0

    @property
    def usd_spent(self) -> bool:
        return self.usd_left is not None and self.usd_left <= 0

    def to_dict(self) -> dict[str, Any]:
        return {"turns_left": self.turns_left, "usd_left": self.usd_left}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskAllowance:
        usd = data.get("usd_left")
        return cls(int(data["turns_left"]), None if usd is None else float(usd))


@dataclass(slots=True)
class RunOptions:
    """Everything a backend needs for one run. The runner fills it from the config.

    ``allowance``: the task's allowance, shared across its runs; when ``None`` the run
    gets its own from ``max_turns`` and ``budget_usd``.
    """

    cwd: Path
    model: str = "opus"
    max_turns: int = 50
    max_tokens: int = 8192
    allowed_tools: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED_TOOLS))
    permission_mode: str = "default"
    append_system_prompt: str | None = None
    session_id: str | None = None  # continue this conversation (``--resume``) when set
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None  # stamped on every event
    inactivity_timeout: float = 600.0
    budget_usd: float | None = None  # what this run may still spend; None = no limit
    rate_limit_rpm: int = 50
    command_deny: list[str] = field(default_factory=list)
    command_allow: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for child processes
    claude_path: str | None = None
    context_window: int = 200_000
    allowance: TaskAllowance | None = None
    # What the agent may see and touch (autonomous.sandbox); None: the sandbox is off.
    sandbox: Confinement | None = None


@dataclass(slots=True)
class Spend:
    """What the stream spent since its last Spend: turns (model requests), dollars, tokens.

    ``context_tokens``: the whole prompt of the latest request, when known.
    """

    turns: int = 0
    cost_usd: float = 0.0
    usage: Usage = field(default_factory=Usage)
    context_tokens: int | None = None


@dataclass(slots=True)
class NoReport:
    """The exchange ended normally but without a completion report; ``text`` is the last text."""

    text: str = ""


StreamItem = Event | Spend | NoReport | Outcome


class Run:
    """One run in flight: its options, allowance and totals, and what the backend keeps between exchanges."""

    def __init__(self, backend: str, options: RunOptions):
        self.backend = backend
        self.options = options
        self.allowance = options.allowance or TaskAllowance(options.max_turns, options.budget_usd)
        self.turns = 0
        self.cost_usd = 0.0
        self.usage = Usage()
        self.context_tokens = 0
        self.session_id: str | None = options.session_id
        self.exchange = 0  # 0: the task prompt; n: the n-th nudge
        self.state: dict[str, Any] = {}  # the backend's own, kept across exchanges
        self.cleanup = contextlib.AsyncExitStack()  # closed when the run ends
        self.started = time.monotonic()

    def ev(self, kind: type[E], **fields: Any) -> E:
        """An event of ``kind`` stamped with this run's task and backend."""
        return kind(task_id=self.options.task_id, backend=self.backend, **fields)

    @property
    def turns_left(self) -> int:
        return max(0, self.allowance.turns_left)

    @property
    def usd_left(self) -> float | None:
        return None if self.allowance.usd_left is None else max(0.0, self.allowance.usd_left)

    def limit_reached(self) -> Outcome | None:
        """The outcome to stop with when the allowance has nothing left for another turn, else ``None``.

        Asked before every exchange and before every request a backend sends itself.
        """
        if self.allowance.usd_spent:
            return Outcome(
                OutcomeStatus.BUDGET_EXCEEDED,
                error=f"the task's budget is spent (this run spent ${self.cost_usd:.4f})",
            )
        if self.allowance.turns_spent:
            return Outcome(OutcomeStatus.MAX_TURNS, error=f"the task's turns are spent (this run used {self.turns})")
        return None

    def finish(self, out: Outcome) -> Outcome:
        """``out`` with this run's totals."""
        out.cost_usd, out.turns, out.usage = self.cost_usd, self.turns, self.usage
        out.context_tokens = self.context_tokens
        out.session_id = out.session_id or self.session_id
        out.duration_s = max(0.0, time.monotonic() - self.started)
        return out


class _Stop(Exception):
    """Internal: the run ends with ``outcome`` (raised out of the stream loop)."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.error)
        self.outcome = outcome


class Backend(abc.ABC):
    """A way to run a prompt through Claude. Subclasses implement :meth:`_stream` and may
    override the hooks; :meth:`run` is final."""

    name: ClassVar[str] = "abstract"
    max_nudges: int = 2
    # retries of one request (:meth:`_retrying`): how many, and the longest wait between two
    max_retries: int = 4
    max_retry_wait: float = 60.0
    backoff_base: float = 1.0

    # -- hooks, with safe defaults: nothing is retried, nothing is an auth or rate-limit failure
    def preflight(self, options: RunOptions) -> None:
        """Checks that need no network, run when :meth:`run` is called (so a missing extra or
        key fails before the runner claims anything). Raise :class:`BackendError`."""
        return None

    def should_retry(self, exc: BaseException) -> bool:
        """Whether a request that raised ``exc`` may be sent again (5xx, 429, a cut or malformed stream)."""
        return False

    def retry_after(self, exc: BaseException) -> float | None:
        """The wait the server asked for before a retry, in seconds, if it said."""
        return None

    def is_auth_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the credentials were refused (retrying cannot help)."""
        return False

    def is_rate_limit(self, exc: BaseException) -> bool:
        """Whether ``exc`` is throttling (429/529): when retries run out the run is ``rate_limited``."""
        return False

    def status_of(self, exc: BaseException) -> int | None:
        """The HTTP status ``exc`` stands for, for ``API_RETRY`` events."""
        status = getattr(exc, "status_code", None)
        return status if isinstance(status, int) else None

    def describe(self, exc: BaseException) -> str:
        """One line for ``exc`` in events and outcomes."""
        return f"{type(exc).__name__}: {exc}"

    async def sleep(self, seconds: float) -> None:
        """Waits between retries (tests replace it so they never wait)."""
        await asyncio.sleep(seconds)

    # -- the one abstract method
    @abc.abstractmethod
    def _stream(self, prompt: str, run: Run) -> AsyncIterator[StreamItem]:
        """One exchange: send ``prompt`` (the task, or a nudge when ``run.exchange > 0``) in
        the run's conversation; yield events and :class:`Spend` as they happen, and last an
        :class:`Outcome` (a report or a failure) or :class:`NoReport`."""

    # -- the wrapper
    @final
    def run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        """Run the prompt to the end. Yields events as they happen; the last item yielded
        is always exactly one Outcome, whatever went wrong."""
        self.preflight(options)
        return self._run(prompt, options)

    @final
    async def complete(self, prompt: str, options: RunOptions, on_event: Callable[[Event], None]) -> Outcome:
        """:meth:`run` to its end for a caller that wants the outcome: each event goes to
        ``on_event`` as it happens; the stream is closed however this ends (an interruption
        cancels it), and a stream that somehow ended without an outcome is an error."""
        outcome: Outcome | None = None
        stream = self.run(prompt, options)
        try:
            async for item in stream:
                if isinstance(item, Outcome):
                    outcome = item
                else:
                    on_event(item)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
        return outcome or Outcome(OutcomeStatus.ERROR, error="the backend ended without an outcome")

    async def _run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        run = Run(self.name, options)
        nudges = Nudges(self.max_nudges)
        outcome: Outcome | None = None
        try:
            async with run.cleanup:
                text = prompt
                while outcome is None:
                    stop = run.limit_reached()
                    if stop is not None:
                        outcome = stop
                        break
                    ended: Outcome | NoReport | None = None
                    try:
                        async with contextlib.aclosing(self._exchange(text, run)) as exchange:
                            async for item in exchange:
                                if isinstance(item, Outcome | NoReport):
                                    ended = item  # the exchange's last item: it ends, closing its stream
                                else:
                                    yield item
                    except _Stop as stopped:
                        ended = stopped.outcome
                    if ended is None:
                        outcome = Outcome(OutcomeStatus.ERROR, error="the stream ended without a result")
                    elif isinstance(ended, Outcome):
                        outcome = ended
                    elif nudges.exhausted:
                        outcome = nudges.given_up(ended.text)
                    elif (stop := run.limit_reached()) is not None:
                        stop.error = f"no completion report, and {stop.error}"
                        outcome = stop
                    else:
                        yield run.ev(
                            Nudge,
                            nudge=nudges.take(),
                            max_nudges=self.max_nudges,
                            turns_left=run.turns_left,
                            session_id=run.session_id,
                        )
                        run.exchange += 1
                        text = NUDGE_PROMPT
        except Exception as exc:  # a backend failure must end in an outcome, never a traceback
            if outcome is None:
                outcome = self._failure(exc)
                yield run.ev(ErrorEvent, message=outcome.error)
        if outcome is None:  # cleanup raised after an outcome-less exit; cannot happen, but stay honest
            outcome = Outcome(OutcomeStatus.ERROR, error="the run ended without an outcome")
        yield run.finish(outcome)

    async def _exchange(self, prompt: str, run: Run) -> AsyncIterator[Event | Outcome | NoReport]:
        """The stream of one exchange, closed whatever happens, with the watchdog and the
        allowance applied to what it yields."""
        timeout = run.options.inactivity_timeout
        async with contextlib.aclosing(self._stream(prompt, run)) as stream:
            while True:
                try:
                    # asyncio.timeout, not wait_for: the stream stays in this task (the Agent
                    # SDK's anyio task groups must be left by the task that entered them)
                    async with asyncio.timeout(timeout):
                        item = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    error = f"no output for {timeout:g} s: the run was stopped"
                    yield run.ev(ErrorEvent, message=error)
                    raise _Stop(Outcome(OutcomeStatus.ERROR, error=error)) from None
                if isinstance(item, Spend):
                    started_turn = item.turns > 0
                    over_budget = started_turn and run.allowance.usd_spent
                    self._charge(run, item)
                    yield self._usage_event(run, item)
                    if over_budget or (started_turn and run.allowance.turns_left < 0):
                        # a turn started that the allowance did not cover: stop the agent now
                        raise _Stop(run.limit_reached() or Outcome(OutcomeStatus.MAX_TURNS))
                    continue
                if isinstance(item, BackendStart) and item.session_id:
                    run.session_id = item.session_id
                yield item
                if isinstance(item, Outcome | NoReport):
                    return

    @staticmethod
    def _charge(run: Run, spend: Spend) -> None:
        run.turns += spend.turns
        run.cost_usd += spend.cost_usd
        run.usage.add(spend.usage)
        if spend.context_tokens:
            run.context_tokens = spend.context_tokens
        run.allowance.charge(spend.turns, spend.cost_usd)

    @staticmethod
    def _usage_event(run: Run, spend: Spend) -> Event:
        """The one shape of USAGE events: the run's totals so far."""
        return run.ev(
            UsageUpdate,
            turns=run.turns,
            cost_usd=run.cost_usd,
            usage=run.usage.to_dict(),
            request_cost_usd=spend.cost_usd,
            context_tokens=run.context_tokens,
            context_window=run.options.context_window,
        )

    def _failure(self, exc: BaseException) -> Outcome:
        """The outcome for an exception that escaped the stream, classified by the hooks."""
        if isinstance(exc, AutonomousError):
            return Outcome(OutcomeStatus.ERROR, error=str(exc))
        detail = clip(self.describe(exc), 1000)
        if self.is_auth_failure(exc):
            return Outcome(OutcomeStatus.AUTH_ERROR, error=detail)
        if self.is_rate_limit(exc):
            wait = self.retry_after(exc)
            retry_at = datetime.now(UTC) + timedelta(seconds=wait if wait is not None else self.max_retry_wait)
            return Outcome(OutcomeStatus.RATE_LIMITED, error=detail, retry_at=retry_at)
        return Outcome(OutcomeStatus.ERROR, error=detail)

    # -- one request, retried: for backends that send requests themselves
    async def _retrying(self, run: Run, request: Callable[[], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        """The items of ``request()``, sent again on failures the hooks call retryable.

        A retry yields an ``API_RETRY`` event. Items already yielded by a failed attempt
        stay yielded (events only: a backend must yield its result last). Ends the run
        (``auth_error``, ``rate_limited`` with ``retry_at``, ``error``) when the failure is
        final, the retries are spent, or the server asks for a wait longer than
        ``max_retry_wait`` (the runner schedules that one).
        """
        attempt = 0
        while True:
            try:
                async for item in request():
                    yield item
                return
            except (asyncio.CancelledError, _Stop):
                raise
            except Exception as exc:
                if self.is_auth_failure(exc) or not self.should_retry(exc):
                    raise _Stop(self._failure(exc)) from None
                wait = self.retry_after(exc)
                delay = wait if wait is not None else min(self.backoff_base * 2**attempt, self.max_retry_wait)
                detail = clip(self.describe(exc), 1000)
                if attempt >= self.max_retries or delay > self.max_retry_wait:
                    why = f"gave up after {attempt} retries"
                    if attempt < self.max_retries:
                        why = f"retry after {delay:g}s"
                    status = OutcomeStatus.RATE_LIMITED if self.is_rate_limit(exc) else OutcomeStatus.ERROR
                    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                    raise _Stop(Outcome(status, error=f"{detail} ({why})", retry_at=retry_at)) from None
                attempt += 1
                yield run.ev(
                    ApiRetry,
                    attempt=attempt,
                    max_retries=self.max_retries,
                    retry_delay_ms=int(delay * 1000),
                    error_status=self.status_of(exc),
                    error=detail,
                )
                if delay > 0:
                    await self.sleep(delay)
