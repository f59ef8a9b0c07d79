"""The ``claude-code`` backend on the :class:`~autonomous.backends.base.Backend` contract.

One exchange is one CLI process: the task prompt starts a new session (``--session-id``),
a nudge resumes it (``--resume``). What the task allowance has left goes to the CLI as
``--max-turns`` and ``--max-budget-usd``, so the CLI stops itself; the base charges the
turns (each new top-level assistant message) and the cost (the result line) as they arrive.

The child runs in its own process group and is always reaped: on completion, on an early
stop, on the inactivity watchdog and when the consumer closes or cancels the generator
(the runner interrupts a task that way), the whole group gets SIGTERM, then SIGKILL after
a grace period, and the process is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from autonomous.backends.base import Backend, NoReport, Run, RunOptions, Spend, StreamItem
from autonomous.backends.claude_cli.discovery import find_claude
from autonomous.backends.claude_cli.parser import StreamParser
from autonomous.backends.claude_cli.process import drain, feed_stdin, parent_death_signal, reap
from autonomous.backends.policy import CommandPolicy
from autonomous.backends.result import usage_from
from autonomous.events import BackendStart, ErrorEvent, Event, Outcome, OutcomeStatus, Usage, UsageUpdate, WarningEvent
from autonomous.sandbox import claude as claude_sandbox

_LINE_LIMIT = 64 * 1024 * 1024  # one stream-json line can carry a whole file read by a tool


@dataclass(slots=True, eq=False)
class _Control:
    """One run in flight, so :meth:`ClaudeCodeBackend.interrupt` can reach it from anywhere."""

    loop: asyncio.AbstractEventLoop
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)

    def interrupt(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.interrupted.set)


@dataclass(slots=True)
class _Invocation:
    """One CLI process: its parser and, once it has ended, its outcome."""

    parser: StreamParser
    control: _Control
    outcome: Outcome | None = None
    pid: int | None = None
    # what the parser's USAGE events reported so far, to turn them into Spend deltas
    turns: int = 0
    cost_usd: float = 0.0

    def spend(self, event: UsageUpdate) -> Spend:
        """A parser USAGE event (process totals so far) as what was spent since the last one.

        Turns are the model's responses as they arrive; the result line's ``num_turns`` is
        not used for them, because the CLI counts the turn it refused at ``--max-turns`` too
        (observed: ``--max-turns 1``, one request, ``num_turns: 2``). Cost: an estimate priced
        from each message's tokens while the run goes on, the result line's figure at the end.
        """
        result = event.cost_usd is not None
        turns = self.turns if result else event.turns or 0
        # before the result: the parser's estimate priced from each message's tokens (the
        # allowance must see money go while the run goes on); the result's figure corrects it
        figure = event.cost_usd if result else event.cost_usd_estimate
        cost = figure or (0.0 if result else self.cost_usd)
        spend = Spend(
            turns=turns - self.turns,
            cost_usd=cost - self.cost_usd,
            usage=usage_from(event.usage) if event.usage is not None else Usage(),
            context_tokens=self.parser.context_tokens or None,
        )
        self.turns, self.cost_usd = turns, cost
        return spend


class ClaudeCodeBackend(Backend):
    """Runs tasks through ``claude -p`` (see the module docstring)."""

    name = "claude-code"

    def __init__(
        self,
        *,
        max_api_retries: int = 3,
        max_nudges: int = 2,
        kill_grace: float = 5.0,
        extra_args: Iterable[str] = (),
    ):
        self.max_api_retries = max_api_retries
        self.max_nudges = max_nudges
        self.kill_grace = kill_grace
        self.extra_args = list(extra_args)
        self._active: set[_Control] = set()

    # -- control --------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop every run in flight: each ends with ``Outcome(interrupted)``.

        Safe to call from a signal handler or another thread. Cancelling the task that
        consumes :meth:`run` (or closing the generator) stops the run too, without an
        outcome.
        """
        for control in list(self._active):
            control.interrupt()

    # -- the command line ---------------------------------------------------------------------------
    def build_args(
        self,
        binary: str,
        options: RunOptions,
        *,
        policy: CommandPolicy,
        session_id: str,
        resume: bool,
        max_turns: int,
        budget_usd: float | None = None,
        key_helper: dict[str, Any] | None = None,
    ) -> list[str]:
        """The command line; sandboxed (``options.sandbox``), with Claude Code's sandbox
        settings, ``--restricted`` and ``key_helper`` (the ``apiKeyHelper`` setting) added."""
        args = [binary, "-p", "--output-format", "stream-json", "--verbose"]
        args += ["--max-turns", str(max(1, max_turns)), "--model", options.model]
        args += ["--permission-mode", options.permission_mode]
        if options.allowed_tools:
            args += ["--allowedTools", *options.allowed_tools]
        disallowed = policy.to_cli_disallowed_tools()
        if disallowed:
            args += ["--disallowedTools", *disallowed]
        settings = policy.to_cli_settings()
        if options.sandbox is not None:
            args += claude_sandbox.cli_args(options.allowed_tools)
            sandboxed = claude_sandbox.settings(options.sandbox)
            settings = claude_sandbox.merge_settings(settings, sandboxed, key_helper or {})
        args += ["--settings", json.dumps(settings)]
        if options.append_system_prompt:
            args += ["--append-system-prompt", options.append_system_prompt]
        if options.mcp_servers:
            args += ["--mcp-config", json.dumps({"mcpServers": options.mcp_servers})]
        if budget_usd is not None:
            args += ["--max-budget-usd", f"{max(budget_usd, 0.0):.4f}"]
        args += self.extra_args
        args += ["--resume", session_id] if resume else ["--session-id", session_id]
        return args

    @staticmethod
    def child_env(options: RunOptions, policy: CommandPolicy) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CLAUDECODE", None)  # set inside a Claude Code session; a nested CLI would refuse to start
        env.update(options.env)
        env.update(policy.to_env())
        if options.sandbox is not None:  # the CLI passes its environment on to Bash
            env.update(claude_sandbox.cli_environment(env))
        return env

    # -- one exchange -------------------------------------------------------------------------------
    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[StreamItem]:
        options = run.options
        if run.exchange == 0:
            control = _Control(asyncio.get_running_loop())
            self._active.add(control)
            run.cleanup.callback(self._active.discard, control)
            run.state.update(
                binary=find_claude(options.claude_path),  # BackendError (an error outcome) when missing
                policy=CommandPolicy(options.command_allow, options.command_deny),
                control=control,
                resume=options.session_id is not None,
            )
            run.session_id = options.session_id or str(uuid.uuid4())
            if options.sandbox is not None:  # the API key goes through a pipe (_invoke), a token through a file
                credentials = claude_sandbox.Credentials({**os.environ, **options.env}, ("ANTHROPIC_AUTH_TOKEN",))
                run.cleanup.callback(credentials.close)
                run.state["key_helper"] = credentials.settings()
        session_id = run.session_id or str(uuid.uuid4())
        parser = StreamParser(task_id=options.task_id, max_api_retries=self.max_api_retries)
        inv = _Invocation(parser, run.state["control"])
        invocation = self._invoke(
            run.state["binary"], prompt, options, inv, policy=run.state["policy"], session_id=session_id,
            resume=run.state["resume"], max_turns=run.turns_left, budget_usd=run.usd_left,
            key_helper=run.state.get("key_helper"),
        )  # fmt: skip
        async with contextlib.aclosing(invocation) as stream:
            async for event in stream:
                yield inv.spend(event) if isinstance(event, UsageUpdate) else event
        run.state["resume"] = True  # a nudge continues this conversation
        out = inv.outcome or Outcome(OutcomeStatus.ERROR, error="the CLI run ended without an outcome")
        run.session_id = out.session_id or session_id
        if inv.parser.needs_nudge and not inv.control.interrupted.is_set():
            yield NoReport(inv.parser.final_text)
            return
        yield out

    async def _invoke(
        self,
        binary: str,
        prompt: str,
        options: RunOptions,
        inv: _Invocation,
        *,
        policy: CommandPolicy,
        session_id: str,
        resume: bool,
        max_turns: int,
        budget_usd: float | None,
        key_helper: dict[str, Any] | None = None,
    ) -> AsyncIterator[Event]:
        """One CLI process. Yields its events and leaves the outcome in ``inv.outcome``.

        No watchdog here: the base's inactivity watchdog closes this generator, and the
        ``finally`` reaps the process.
        """
        parser = inv.parser
        args = self.build_args(
            binary, options, policy=policy, session_id=session_id, resume=resume, max_turns=max_turns,
            budget_usd=budget_usd, key_helper=key_helper,
        )  # fmt: skip
        if inv.control.interrupted.is_set():
            inv.outcome = Outcome(OutcomeStatus.INTERRUPTED, error="interrupted", session_id=session_id)
            return
        env = self.child_env(options, policy)
        key_fd = claude_sandbox.key_pipe({**os.environ, **options.env}) if options.sandbox is not None else None
        if key_fd is not None:
            env[claude_sandbox.API_KEY_FD_ENV] = str(key_fd)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(options.cwd),
                env=env,
                start_new_session=True,
                preexec_fn=parent_death_signal(),
                limit=_LINE_LIMIT,
                pass_fds=() if key_fd is None else (key_fd,),
            )
        except OSError as exc:
            message = f"could not start {binary}: {exc}"
            yield parser._ev(ErrorEvent, message=message)
            inv.outcome = Outcome(OutcomeStatus.ERROR, error=message, session_id=session_id)
            return
        finally:
            if key_fd is not None:
                os.close(key_fd)
        inv.pid = proc.pid
        stderr_tail: deque[str] = deque(maxlen=50)
        tasks = [
            asyncio.ensure_future(feed_stdin(proc, prompt)),
            asyncio.ensure_future(drain(proc.stderr, stderr_tail)),
        ]
        interrupted = asyncio.ensure_future(inv.control.interrupted.wait())
        read: asyncio.Future[bytes] | None = None
        ended: Outcome | None = None
        eof = False
        first = True
        try:
            while True:
                if read is None:
                    read = asyncio.ensure_future(proc.stdout.readline())  # type: ignore[union-attr]
                done, _ = await asyncio.wait({read, interrupted}, return_when=asyncio.FIRST_COMPLETED)
                if interrupted in done:
                    ended = Outcome(OutcomeStatus.INTERRUPTED, error="interrupted")
                    break
                try:
                    line = read.result()
                except ValueError as exc:  # a line longer than the limit: skip it, keep reading
                    read = None
                    yield parser._ev(WarningEvent, message=f"skipped an oversized stream line: {exc}")
                    continue
                read = None
                if not line:
                    eof = True
                    break
                for event in parser.feed(line):
                    if first and isinstance(event, BackendStart):
                        event = dataclasses.replace(event, pid=proc.pid)
                        first = False
                    yield event
                if parser.stop is not None:
                    break
        finally:
            for pending in (read, interrupted, *tasks):
                if pending is not None and not pending.done():
                    pending.cancel()
            await reap(proc, self.kill_grace, natural=eof)
            for pending in (read, interrupted, *tasks):
                if pending is not None:
                    with contextlib.suppress(BaseException):
                        await pending
        if ended is not None:
            ended.session_id = parser.session_id or session_id
            inv.outcome = ended
        else:
            inv.outcome = parser.outcome(proc.returncode, "".join(stderr_tail))
            inv.outcome.session_id = inv.outcome.session_id or session_id
