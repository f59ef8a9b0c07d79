"""The ``claude-code`` backend: the Claude Code CLI (``claude -p``), the user's own subscription.

One run is one or more CLI processes on the same conversation::

    claude -p --output-format stream-json --verbose --max-turns N --model M
           --permission-mode P --allowedTools ... --disallowedTools ... --settings {hook}
           [--append-system-prompt S] [--mcp-config {...}] [--max-budget-usd B]
           (--session-id <new uuid> | --resume <session id>)          prompt on stdin

Every stdout line is one JSON message; :class:`StreamParser` turns them into events and,
at the end, into one :class:`Outcome` built from structured signals only (``subtype``,
``is_error``, ``terminal_reason``, ``api_error_status``, ``permission_denials``, the
``api_retry`` and ``rate_limit_event`` lines), never from the exit code alone: the CLI
exits 0 with no result line when it crashes late, and prints ``subtype: success`` with
``is_error: true`` when authentication fails.

A successful result is not yet a completed task: the final text must carry the completion
report (:mod:`autonomous.backends.report`). When it does not, the backend *nudges*: it
resumes the same session with :data:`NUDGE_PROMPT` (at most ``max_nudges`` times, within
the run's turn budget) before giving up with ``failed``.

The child runs in its own process group and is always reaped: on completion, on an early
stop, on the inactivity watchdog and when the consumer closes or cancels the generator
(the runner interrupts a task that way), the whole group gets SIGTERM, then SIGKILL after
a grace period, and the process is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autonomous.backends import pricing
from autonomous.backends.base import Backend, RunOptions
from autonomous.backends.report import NUDGE_PROMPT, Nudge
from autonomous.backends.result import (
    api_failure,
    as_int,
    context_tokens,
    outcome_from_result,
    parse_usage_limit,
    resets_at,
    stop_for_api_retry,
    stop_for_rate_limit,
    usage_from,
)
from autonomous.backends.text import clip, summarize_input, tool_result_text
from autonomous.errors import AutonomousError, BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus
from autonomous.policy import CommandPolicy

INSTALL_HINT = (
    "Claude Code CLI not found: install it with `npm install -g @anthropic-ai/claude-code`, "
    "or `pip install 'autonomous-runner[sdk]'` (the Agent SDK bundles the CLI), "
    "or set autonomous.claude_path"
)

_LINE_LIMIT = 64 * 1024 * 1024  # one stream-json line can carry a whole file read by a tool
# Message types the CLI prints that carry nothing for us; unknown ones get one warning.
_QUIET_TYPES = frozenset(
    {"stream_event", "control_request", "control_response", "control_cancel_request", "keep_alive", "tool_progress",
     "auth_status", "prompt_suggestion", "conversation_reset", "hook_event"}
)  # fmt: skip


# -- binary discovery ---------------------------------------------------------------------------


def bundled_claude() -> str | None:
    """The CLI bundled in the ``claude-agent-sdk`` wheel, found without importing the SDK."""
    try:
        spec = importlib.util.find_spec("claude_agent_sdk")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    exe = "claude.exe" if os.name == "nt" else "claude"
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_bundled" / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_claude(explicit: str | None = None) -> str:
    """``explicit`` (config ``claude_path``), else ``claude`` on PATH, else the SDK's bundled CLI."""
    if explicit:
        found = shutil.which(explicit)
        if found:
            return found
        raise BackendError(f"claude_path {explicit!r} is not an executable file. {INSTALL_HINT}")
    found = shutil.which("claude") or bundled_claude()
    if found:
        return found
    raise BackendError(INSTALL_HINT)


# -- the stream parser ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class StreamParser:
    """Turns the CLI's stream-json lines into events, then into an :class:`Outcome`.

    Pure: no I/O, no clock except through ``clock``, so recorded transcripts replay exactly.
    ``stop`` is set when a line shows that waiting longer cannot help (a 401/403 being
    retried, a 429/529 retried more than ``max_api_retries`` times, a usage limit that
    was rejected): the backend then kills the CLI and reports ``stop``.
    """

    def __init__(
        self,
        *,
        backend: str = "claude-code",
        task_id: str | None = None,
        max_api_retries: int = 3,
        early_stop: bool = True,
        clock: Callable[[], datetime] = _now,
    ):
        self.backend = backend
        self.early_stop = early_stop
        self.task_id = task_id
        self.max_api_retries = max_api_retries
        self.clock = clock
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.final_text = ""  # text of the last top-level assistant message
        self.context_tokens = 0
        self.turns_seen = 0  # assistant messages (API responses) so far, for live progress
        self.stop: Outcome | None = None
        self.needs_nudge = False
        self.denials: list[str] = []
        self.api_error: dict[str, Any] | None = None
        self.last_retry: dict[str, Any] | None = None
        self.rate_limit_reset: datetime | None = None  # from the last rate_limit_event that had one
        self.lines = 0
        self._message_id: str | None = None
        self._estimates: dict[str | None, float] = {}  # message id -> its cost priced from its usage
        self._tools: dict[str, str] = {}
        self._denied_ids: set[str] = set()
        self._warned: set[str] = set()

    # -- lines -------------------------------------------------------------------------------
    def _ev(self, kind: EventKind, **data: Any) -> Event:
        return Event(kind, data, task_id=self.task_id, backend=self.backend)

    def feed(self, line: str | bytes) -> list[Event]:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.strip()
        if not line:
            return []
        self.lines += 1
        try:
            msg = json.loads(line)
        except ValueError:
            return [self._ev(EventKind.WARNING, message="claude printed a line that is not JSON", line=clip(line, 300))]
        if not isinstance(msg, dict):
            return [
                self._ev(EventKind.WARNING, message="claude printed JSON that is not an object", line=clip(line, 300))
            ]
        if isinstance(msg.get("session_id"), str) and msg["session_id"]:
            self.session_id = msg["session_id"]
        kind = msg.get("type")
        handler = {
            "system": self._system,
            "assistant": self._assistant,
            "user": self._user,
            "result": self._result,
            "rate_limit_event": self._rate_limit,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            if kind in _QUIET_TYPES or kind in self._warned:
                return []
            self._warned.add(str(kind))
            return [self._ev(EventKind.WARNING, message=f"unknown stream-json message type {kind!r} (ignored)")]
        try:
            return handler(msg)
        except Exception as exc:  # a shape we did not expect must not end the run
            return [self._ev(EventKind.WARNING, message=f"could not read a {kind!r} message: {exc}")]

    def _system(self, msg: dict[str, Any]) -> list[Event]:
        subtype = msg.get("subtype")
        if subtype == "init":
            self.model = msg.get("model") if isinstance(msg.get("model"), str) else self.model
            tools = msg.get("tools") if isinstance(msg.get("tools"), list) else []
            return [
                self._ev(
                    EventKind.BACKEND_START,
                    session_id=self.session_id,
                    model=self.model,
                    tools=[str(t) for t in tools],
                    mcp_servers=msg.get("mcp_servers") or [],
                    permission_mode=msg.get("permissionMode"),
                    cwd=msg.get("cwd"),
                    version=msg.get("claude_code_version"),
                )
            ]
        if subtype == "api_retry":
            return self._api_retry(msg)
        return []  # hook responses, compaction boundaries, status lines: informational

    def _api_retry(self, msg: dict[str, Any]) -> list[Event]:
        self.last_retry = msg
        events = [
            self._ev(
                EventKind.API_RETRY,
                attempt=as_int(msg.get("attempt")),
                max_retries=msg.get("max_retries"),
                retry_delay_ms=as_int(msg.get("retry_delay_ms")),
                error_status=msg.get("error_status"),
                error=msg.get("error"),
            )
        ]
        if self.stop is not None or not self.early_stop:
            return events
        self.stop = stop_for_api_retry(msg, self.max_api_retries, self.clock())
        if self.stop is not None and self.stop.retry_at is not None:
            retry_at = self.stop.retry_at.isoformat()
            events.append(self._ev(EventKind.RATE_LIMIT, status=msg.get("error_status"), retry_at=retry_at))
        return events

    def _assistant(self, msg: dict[str, Any]) -> list[Event]:
        message = msg.get("message") if isinstance(msg.get("message"), dict) else {}
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            content = []
        top_level = not msg.get("parent_tool_use_id")
        synthetic = message.get("model") == "<synthetic>"
        events: list[Event] = []
        message_id = message.get("id")
        new_message = message_id != self._message_id or message_id is None
        usage = message.get("usage")
        if top_level and isinstance(usage, dict) and not synthetic and self.model and pricing.is_known(self.model):
            # The CLI states the cost only when the run ends; priced from each message's
            # usage, a person watching sees it grow meanwhile (the result's figure replaces it).
            self._estimates[message_id] = pricing.cost(self.model, usage_from(usage))
        if top_level and new_message:
            self._message_id = message_id
            self.final_text = ""
            if not synthetic:
                self.turns_seen += 1
                live = {"cost_usd_estimate": round(sum(self._estimates.values()), 6)} if self._estimates else {}
                events.append(self._ev(EventKind.USAGE, turns=self.turns_seen, **live))
        texts: list[str] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
                events.append(self._ev(EventKind.TEXT, text=block["text"], subagent=not top_level))
            elif btype in ("tool_use", "server_tool_use", "mcp_tool_use"):
                name = str(block.get("name", "?"))
                tool_id = str(block.get("id", ""))
                self._tools[tool_id] = name
                events.append(
                    self._ev(
                        EventKind.TOOL_USE,
                        id=tool_id,
                        name=name,
                        input=summarize_input(block.get("input")),
                        subagent=not top_level,
                    )
                )
        if top_level and texts:
            self.final_text = (self.final_text + "\n" + "\n".join(texts)).strip()
        if top_level and isinstance(usage, dict) and not synthetic:
            self.context_tokens = context_tokens(usage_from(usage))
        if msg.get("is_api_error_message") or (msg.get("error") and synthetic):
            text = "\n".join(texts)
            self.api_error = {
                "status": msg.get("api_error_status"),
                "type": msg.get("api_error_type"),
                "error": msg.get("error"),
                "text": text,
            }
            events.append(
                self._ev(
                    EventKind.ERROR, message=clip(text or str(msg.get("error"))), status=msg.get("api_error_status")
                )
            )
        return events

    def _user(self, msg: dict[str, Any]) -> list[Event]:
        message = msg.get("message") if isinstance(msg.get("message"), dict) else {}
        content = message.get("content")
        if not isinstance(content, list):
            return []
        events: list[Event] = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            tool_id = str(block.get("tool_use_id", ""))
            text = tool_result_text(block.get("content"))
            is_error = bool(block.get("is_error"))
            name = self._tools.get(tool_id, "?")
            events.append(self._ev(EventKind.TOOL_RESULT, id=tool_id, name=name, is_error=is_error, excerpt=clip(text)))
            if is_error and _looks_denied(text):
                self._denied_ids.add(tool_id)
                self.denials.append(f"{name}: {clip(' '.join(text.split()), 200)}")
                events.append(self._ev(EventKind.PERMISSION_DENIED, id=tool_id, name=name, reason=clip(text, 300)))
        return events

    def _result(self, msg: dict[str, Any]) -> list[Event]:
        self.result = msg
        events = [
            self._ev(
                EventKind.USAGE,
                turns=as_int(msg.get("num_turns")),
                cost_usd=float(msg.get("total_cost_usd") or 0.0),
                usage=usage_from(msg.get("usage")).to_dict(),
            )
        ]
        denials = msg.get("permission_denials")
        for denial in denials if isinstance(denials, list) else []:
            if not isinstance(denial, dict):
                continue
            tool_id = str(denial.get("tool_use_id", ""))
            if tool_id and tool_id in self._denied_ids:
                continue
            name = str(denial.get("tool_name", "?"))
            what = summarize_input(denial.get("tool_input"))
            self._denied_ids.add(tool_id)
            self.denials.append(f"{name}: {what}")
            events.append(self._ev(EventKind.PERMISSION_DENIED, id=tool_id, name=name, input=what))
        return events

    def _rate_limit(self, msg: dict[str, Any]) -> list[Event]:
        info = msg.get("rate_limit_info") if isinstance(msg.get("rate_limit_info"), dict) else {}
        retry_at = resets_at(info)
        self.rate_limit_reset = retry_at or self.rate_limit_reset
        events = [
            self._ev(
                EventKind.RATE_LIMIT,
                status=info.get("status"),
                limit_type=info.get("rateLimitType"),
                utilization=info.get("utilization"),
                retry_at=retry_at.isoformat() if retry_at else None,
            )
        ]
        if self.stop is None and self.early_stop:
            self.stop = stop_for_rate_limit(info)
        return events

    # -- the outcome ----------------------------------------------------------------------
    def outcome(self, returncode: int | None = None, stderr: str = "") -> Outcome:
        """The outcome of this one CLI process (the backend adds nudges and totals)."""
        self.needs_nudge = False
        out = Outcome(OutcomeStatus.ERROR, session_id=self.session_id, context_tokens=self.context_tokens)
        r = self.result
        if r is not None:
            out.cost_usd = float(r.get("total_cost_usd") or 0.0)
            out.turns = as_int(r.get("num_turns"))
            out.usage = usage_from(r.get("usage"))
            out.duration_s = as_int(r.get("duration_ms")) / 1000
        if self.stop is not None:
            out.status, out.error, out.retry_at = self.stop.status, self.stop.error, self.stop.retry_at
        elif r is None:
            self._no_result(out, returncode, stderr)
        else:
            self._from_result(out, r)
        if self.denials:
            note = "permission denied: " + "; ".join(self.denials)
            out.error = f"{out.error}; {note}" if out.error else note
        return out

    def _no_result(self, out: Outcome, returncode: int | None, stderr: str) -> None:
        if self.api_error is not None:
            failure = api_failure(
                self.api_error.get("status"),
                self.api_error.get("type"),
                self.api_error["text"],
                now=self.clock(),
                rate_limit_reset=self.rate_limit_reset,
            )
            out.status, out.error, out.retry_at = failure.status, failure.error, failure.retry_at
            return
        limited, retry_at = parse_usage_limit(self.final_text, self.clock(), strict=True)
        if limited:
            out.status, out.retry_at, out.error = OutcomeStatus.RATE_LIMITED, retry_at, clip(self.final_text)
            return
        out.status = OutcomeStatus.ERROR
        tail = clip(" ".join(stderr.split()[-60:]), 400) if stderr else ""
        out.error = f"claude exited with code {returncode} without a result" + (f": {tail}" if tail else "")

    def _from_result(self, out: Outcome, r: dict[str, Any]) -> None:
        verdict = outcome_from_result(
            r, self.final_text, now=self.clock(), api_error=self.api_error, rate_limit_reset=self.rate_limit_reset
        )
        if isinstance(verdict, Nudge):
            out.status, out.error = OutcomeStatus.FAILED, "no completion report"
            self.needs_nudge = True
            return
        out.status, out.error, out.retry_at = verdict.status, verdict.error, verdict.retry_at
        out.summary, out.blocker, out.files_changed = verdict.summary, verdict.blocker, verdict.files_changed


_DENIAL_MARKERS = (
    "denied by command policy",
    "not in the command allow list",
    "command policy hook failed",
    "permission to use",
    "has been denied",
    "requested permissions",
    "haven't granted",
)


def _looks_denied(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _DENIAL_MARKERS)


def parse_stream(
    lines: Iterable[str | bytes], *, returncode: int | None = 0, **kwargs: Any
) -> tuple[list[Event], Outcome]:
    """Replay a whole transcript (tests, post-mortems): every event and the single-process outcome."""
    parser = StreamParser(**kwargs)
    events: list[Event] = []
    for line in lines:
        events.extend(parser.feed(line))
        if parser.stop is not None:
            break
    return events, parser.outcome(returncode)


# -- the backend --------------------------------------------------------------------------------------


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


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
    ) -> list[str]:
        args = [binary, "-p", "--output-format", "stream-json", "--verbose"]
        args += ["--max-turns", str(max(1, max_turns)), "--model", options.model]
        args += ["--permission-mode", options.permission_mode]
        if options.allowed_tools:
            args += ["--allowedTools", *options.allowed_tools]
        disallowed = policy.to_cli_disallowed_tools()
        if disallowed:
            args += ["--disallowedTools", *disallowed]
        args += ["--settings", json.dumps(policy.to_cli_settings())]
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
        return env

    # -- a run ---------------------------------------------------------------------------------------
    async def run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        def ev(kind: EventKind, **data: Any) -> Event:
            return Event(kind, data, task_id=options.task_id, backend=self.name)

        try:
            policy = CommandPolicy(options.command_allow, options.command_deny)
            binary = find_claude(options.claude_path)
        except AutonomousError as exc:
            yield ev(EventKind.ERROR, message=str(exc))
            yield Outcome(OutcomeStatus.ERROR, error=str(exc), session_id=options.session_id)
            return

        control = _Control(asyncio.get_running_loop())
        self._active.add(control)
        try:
            async with contextlib.aclosing(self._run(prompt, options, binary, policy, control, ev)) as stream:
                async for item in stream:
                    yield item
        finally:
            self._active.discard(control)

    async def _run(
        self,
        prompt: str,
        options: RunOptions,
        binary: str,
        policy: CommandPolicy,
        control: _Control,
        ev: Callable[..., Event],
    ) -> AsyncIterator[Event | Outcome]:
        started = time.monotonic()
        resume = options.session_id is not None
        session_id = options.session_id or str(uuid.uuid4())
        total = Outcome(OutcomeStatus.ERROR, session_id=session_id)
        text = prompt
        nudges = 0
        while True:
            turns_left = options.max_turns - total.turns
            budget_left = None if options.budget_usd is None else options.budget_usd - total.cost_usd
            if budget_left is not None and budget_left <= 0:
                final = Outcome(OutcomeStatus.BUDGET_EXCEEDED, error="no budget left for this run")
                break
            inv = _Invocation(StreamParser(task_id=options.task_id, max_api_retries=self.max_api_retries), control)
            invocation = self._invoke(
                binary, text, options, inv, policy=policy, session_id=session_id, resume=resume,
                max_turns=turns_left, budget_usd=budget_left,
            )  # fmt: skip
            async with contextlib.aclosing(invocation) as stream:
                async for event in stream:
                    if event.kind is EventKind.USAGE and "turns" in event.data:
                        event.data["turns"] += total.turns
                        for name in ("cost_usd", "cost_usd_estimate"):
                            if name in event.data:
                                event.data[name] += total.cost_usd
                    yield event
            out = inv.outcome or Outcome(OutcomeStatus.ERROR, error="the CLI run ended without an outcome")
            total.cost_usd += out.cost_usd
            total.turns += out.turns
            total.usage.add(out.usage)
            total.context_tokens = out.context_tokens or total.context_tokens
            session_id = out.session_id or session_id
            final = out
            if not inv.parser.needs_nudge or control.interrupted.is_set():
                break
            if nudges >= self.max_nudges or options.max_turns - total.turns <= 0:
                final.error = f"no completion report (after {nudges} nudge{'s' if nudges != 1 else ''})"
                break
            nudges += 1
            yield ev(EventKind.NUDGE, attempt=nudges, session_id=session_id, turns_left=options.max_turns - total.turns)
            text = NUDGE_PROMPT
            resume = True
        final.cost_usd, final.turns, final.usage = total.cost_usd, total.turns, total.usage
        final.context_tokens = total.context_tokens
        final.session_id = final.session_id or session_id
        final.duration_s = time.monotonic() - started
        yield final

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
    ) -> AsyncIterator[Event]:
        """One CLI process. Yields its events and leaves the outcome in ``inv.outcome``."""
        parser = inv.parser
        args = self.build_args(
            binary, options, policy=policy, session_id=session_id, resume=resume, max_turns=max_turns,
            budget_usd=budget_usd,
        )  # fmt: skip
        if inv.control.interrupted.is_set():
            inv.outcome = Outcome(OutcomeStatus.INTERRUPTED, error="interrupted", session_id=session_id)
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(options.cwd),
                env=self.child_env(options, policy),
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            message = f"could not start {binary}: {exc}"
            yield parser._ev(EventKind.ERROR, message=message)
            inv.outcome = Outcome(OutcomeStatus.ERROR, error=message, session_id=session_id)
            return
        inv.pid = proc.pid
        stderr_tail: deque[str] = deque(maxlen=50)
        tasks = [
            asyncio.ensure_future(_feed_stdin(proc, prompt)),
            asyncio.ensure_future(_drain(proc.stderr, stderr_tail)),
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
                done, _ = await asyncio.wait(
                    {read, interrupted}, timeout=options.inactivity_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if interrupted in done:
                    ended = Outcome(OutcomeStatus.INTERRUPTED, error="interrupted")
                    break
                if not done:
                    n = options.inactivity_timeout
                    ended = Outcome(OutcomeStatus.ERROR, error=f"no output for {n:g} s: the CLI was stopped")
                    yield parser._ev(EventKind.ERROR, message=ended.error, pid=proc.pid)
                    break
                try:
                    line = read.result()
                except ValueError as exc:  # a line longer than the limit: skip it, keep reading
                    read = None
                    yield parser._ev(EventKind.WARNING, message=f"skipped an oversized stream line: {exc}")
                    continue
                read = None
                if not line:
                    eof = True
                    break
                for event in parser.feed(line):
                    if first and event.kind is EventKind.BACKEND_START:
                        event.data["pid"] = proc.pid
                        first = False
                    yield event
                if parser.stop is not None:
                    break
        finally:
            for pending in (read, interrupted, *tasks):
                if pending is not None and not pending.done():
                    pending.cancel()
            await self._reap(proc, natural=eof)
            for pending in (read, interrupted, *tasks):
                if pending is not None:
                    with contextlib.suppress(BaseException):
                        await pending
        if ended is not None:
            ended.session_id = parser.session_id or session_id
            if parser.result is not None:  # the result line came before the stop: keep its totals
                done_outcome = parser.outcome(proc.returncode)
                ended.cost_usd, ended.turns, ended.usage = done_outcome.cost_usd, done_outcome.turns, done_outcome.usage
            ended.context_tokens = parser.context_tokens
            inv.outcome = ended
        else:
            inv.outcome = parser.outcome(proc.returncode, "".join(stderr_tail))
            inv.outcome.session_id = inv.outcome.session_id or session_id

    async def _reap(self, proc: asyncio.subprocess.Process, *, natural: bool = False) -> None:
        """End the CLI and everything it started, and wait for the CLI.

        The CLI leads its own process group (``start_new_session``), but it starts each Bash
        tool command in a *new session* of its own, so killing the group is not enough:
        the CLI's descendants are listed first (while they are still its descendants) and
        their groups are killed after it. ``natural``: the CLI closed its output by itself,
        so it gets the grace period to exit on its own (it saves the session after the
        result line) before any signal.
        """
        pgid = proc.pid
        family = _descendants(proc.pid) if proc.returncode is None else []
        try:
            if proc.returncode is None and natural:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), self.kill_grace)
            if proc.returncode is None:
                _killpg(pgid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), self.kill_grace)
                except TimeoutError:
                    _killpg(pgid, signal.SIGKILL)
                    await proc.wait()
        finally:
            _killpg(pgid, signal.SIGKILL)  # background jobs left in the CLI's own group
            own = os.getpgrp()
            for pid in family:
                try:
                    group = os.getpgid(pid)
                except (ProcessLookupError, PermissionError):
                    continue
                if group != own:
                    _killpg(group, signal.SIGKILL)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Linux ``/proc``; elsewhere only the group kill applies)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` asking the kernel to SIGKILL the CLI if the runner dies.

    Without it a runner killed with SIGKILL leaves the CLI working on the task,
    unsupervised, while the next runner resumes the same task. libc is loaded here, in
    the parent, so the child only makes one foreign call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: nobody will reap us
            os._exit(1)

    return preexec


async def _feed_stdin(proc: asyncio.subprocess.Process, prompt: str) -> None:
    stdin = proc.stdin
    if stdin is None:
        return
    try:
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()
            await stdin.wait_closed()


async def _drain(stream: asyncio.StreamReader | None, tail: deque[str]) -> None:
    if stream is None:
        return
    while True:
        chunk = await stream.readline()
        if not chunk:
            return
        tail.append(chunk.decode("utf-8", "replace"))
