"""The ``claude-code-sdk`` backend: Claude Code driven through the Claude Agent SDK.

``claude_agent_sdk.ClaudeSDKClient`` spawns the Claude Code CLI (the SDK bundles one) and
talks to it over its streaming JSON protocol, so messages arrive as they happen and a
nudge goes into the same session. Claude Code runs the tools itself.

What this module has to get right, learnt from the SDK and its predecessor:

* ``allowed_tools`` is passed explicitly. Without it the CLI asks for permission for
  every write, nobody answers in a headless run, and ``Write`` silently does nothing.
* ``system_prompt=None`` makes the SDK send ``--system-prompt ""``, which *replaces*
  Claude Code's own prompt with nothing. We always pass the ``claude_code`` preset and
  append ours to it.
* The command policy is a ``PreToolUse`` hook on ``Bash`` answered in-process (deny with
  the reason; the model sees it) plus the CLI's own ``--disallowedTools`` rules as a first
  line of defence.
* The outcome follows the ``ResultMessage``, with the same rules as the CLI backend: a
  result with ``is_error`` is never a success whatever its ``subtype``;
  ``error_max_turns`` is max_turns, ``error_max_budget_usd`` is budget_exceeded, an API
  status of 429/529 is rate_limited, 401/403 auth_error. Success still needs the model's
  completion report; without one the model is nudged (at most ``max_nudges`` times).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autonomous.backends.base import Backend, RunOptions
from autonomous.backends.claude_cli import parse_usage_limit
from autonomous.backends.report import NUDGE_PROMPT, parse_report
from autonomous.errors import BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus, Usage
from autonomous.policy import CommandPolicy

INSTALL_HINT = "pip install 'autonomous-runner[sdk]'"

# How long to wait before trying again when the CLI reports a rate limit but no reset time.
DEFAULT_RATE_LIMIT_WAIT = timedelta(minutes=5)
_EVENT_TEXT_LIMIT = 4000
_AUTH_TEXT = re.compile(r"authentication_error|invalid (?:x-)?api[ -]key|please run /login|oauth token", re.I)


class AgentSDKBackend(Backend):
    name = "claude-code-sdk"

    def __init__(self, *, max_nudges: int = 2, max_api_retries: int = 4):
        self.max_nudges = max_nudges
        # The CLI retries failed API calls itself (each one a system "api_retry" message);
        # after this many 429/529 retries the run ends rate_limited instead of waiting on.
        self.max_api_retries = max_api_retries

    @staticmethod
    def _translate(sdk: Any, message: Any, tool_names: dict[str, str], last_text: list[str], ev: Any) -> list[Event]:
        """Events for one SDK message (the ResultMessage is handled by the caller)."""
        events: list[Event] = []
        if isinstance(message, sdk.SystemMessage):
            data = message.data or {}
            if message.subtype == "init":
                events.append(
                    ev(
                        EventKind.BACKEND_START,
                        session_id=data.get("session_id"),
                        model=data.get("model"),
                        tools=data.get("tools") or [],
                        mcp_servers=data.get("mcp_servers") or [],
                        permission_mode=data.get("permissionMode"),
                        cwd=data.get("cwd"),
                        version=data.get("claude_code_version"),
                    )
                )
            elif message.subtype == "api_retry":
                events.append(
                    ev(
                        EventKind.API_RETRY,
                        attempt=data.get("attempt"),
                        max_retries=data.get("max_retries"),
                        retry_delay_ms=data.get("retry_delay_ms"),
                        error_status=data.get("error_status"),
                        error=data.get("error"),
                    )
                )
        elif isinstance(message, sdk.AssistantMessage):
            top_level = message.parent_tool_use_id is None
            for block in message.content:
                if isinstance(block, sdk.TextBlock) and block.text:
                    if top_level:
                        last_text.append(block.text)
                    events.append(ev(EventKind.TEXT, text=block.text, subagent=not top_level))
                elif isinstance(block, sdk.ToolUseBlock):
                    tool_names[block.id] = block.name
                    events.append(
                        ev(
                            EventKind.TOOL_USE,
                            id=block.id,
                            name=block.name,
                            input=summarize_input(block.input),
                            subagent=not top_level,
                        )
                    )
            if message.error:
                events.append(ev(EventKind.ERROR, message=f"API error: {message.error}", status=None))
        elif isinstance(message, sdk.UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, sdk.ToolResultBlock):
                    events.append(
                        ev(
                            EventKind.TOOL_RESULT,
                            id=block.tool_use_id,
                            name=tool_names.get(block.tool_use_id, "?"),
                            is_error=bool(block.is_error),
                            excerpt=_clip(_result_text(block.content)),
                        )
                    )
        elif isinstance(message, sdk.RateLimitEvent):
            info = message.rate_limit_info
            resets = datetime.fromtimestamp(info.resets_at, UTC) if info.resets_at else None
            events.append(
                ev(
                    EventKind.RATE_LIMIT,
                    status=info.status,
                    limit_type=info.rate_limit_type,
                    utilization=info.utilization,
                    retry_at=resets.isoformat() if resets else None,
                )
            )
        return events

    def run(self, prompt: str, options: RunOptions) -> AsyncIterator[Event | Outcome]:
        sdk = _import_sdk()
        if options.claude_path and not Path(options.claude_path).exists():
            raise BackendError(f"Claude Code CLI not found at {options.claude_path} (autonomous.claude_path)")
        policy = CommandPolicy(options.command_allow, options.command_deny)  # ConfigError on a bad rule
        return self._run(sdk, policy, prompt, options)

    async def _run(
        self, sdk: Any, policy: CommandPolicy, prompt: str, options: RunOptions
    ) -> AsyncIterator[Event | Outcome]:
        started = time.monotonic()

        def ev(kind: EventKind, **data: Any) -> Event:
            return Event(kind, data, task_id=options.task_id, backend=self.name)

        denials: list[Event] = []  # filled by the hook, drained into the stream

        async def pre_tool_use(hook_input: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
            if hook_input.get("tool_name") != "Bash":
                return {}
            command = (hook_input.get("tool_input") or {}).get("command", "")
            allowed, reason = policy.check(command if isinstance(command, str) else "")
            if allowed:
                return {}  # no opinion: the normal permission rules apply
            denials.append(ev(EventKind.PERMISSION_DENIED, id=tool_use_id, name="Bash", reason=reason))
            return {
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            }

        stderr_tail: deque[str] = deque(maxlen=40)
        system_prompt: dict[str, Any] = {"type": "preset", "preset": "claude_code"}
        if options.append_system_prompt:
            system_prompt["append"] = options.append_system_prompt
        sdk_options = sdk.ClaudeAgentOptions(
            model=options.model,
            cwd=str(options.cwd),
            max_turns=options.max_turns,
            allowed_tools=list(options.allowed_tools),
            disallowed_tools=policy.to_cli_disallowed_tools(),
            permission_mode=options.permission_mode or None,
            system_prompt=system_prompt,
            mcp_servers=dict(options.mcp_servers),
            resume=options.session_id,
            cli_path=options.claude_path,
            env=dict(options.env),
            max_budget_usd=options.budget_usd,
            hooks={"PreToolUse": [sdk.HookMatcher(matcher="Bash", hooks=[pre_tool_use], on_failure="block")]},
            stderr=stderr_tail.append,
        )

        usage = Usage()
        session_id: str | None = options.session_id
        cost = 0.0
        turns = 0
        context_tokens = 0
        rate_limit_reset: datetime | None = None
        nudges = 0
        result: Any = None

        def outcome(status: OutcomeStatus, **kw: Any) -> Outcome:
            return Outcome(
                status=status,
                cost_usd=cost,
                turns=turns,
                usage=usage,
                session_id=session_id,
                context_tokens=context_tokens,
                duration_s=time.monotonic() - started,
                **kw,
            )

        client = sdk.ClaudeSDKClient(options=sdk_options)
        try:
            await client.connect()
            await client.query(prompt)
            while True:
                result = None
                last_text: list[str] = []
                tool_names: dict[str, str] = {}
                async for message in client.receive_response():
                    while denials:
                        yield denials.pop(0)
                    if isinstance(message, sdk.ResultMessage):
                        result = message
                        continue
                    for event in self._translate(sdk, message, tool_names, last_text, ev):
                        yield event
                    if isinstance(message, sdk.SystemMessage) and message.subtype == "init":
                        session_id = (message.data or {}).get("session_id") or session_id
                    if isinstance(message, sdk.AssistantMessage) and message.parent_tool_use_id is None:
                        context_tokens = _context_tokens(message.usage) or context_tokens
                    if isinstance(message, sdk.RateLimitEvent) and message.rate_limit_info.resets_at:
                        rate_limit_reset = datetime.fromtimestamp(message.rate_limit_info.resets_at, UTC)
                    stop = _stop_early(sdk, message, self.max_api_retries, rate_limit_reset)
                    if stop is not None:
                        # Waiting longer cannot help (credentials refused, retries exhausted,
                        # usage limit hit): end now; disconnecting stops the CLI.
                        status, error, retry_at = stop
                        yield outcome(status, error=_with_stderr(error, stderr_tail), retry_at=retry_at)
                        return
                while denials:
                    yield denials.pop(0)
                if result is None:
                    yield outcome(
                        OutcomeStatus.ERROR, error=_with_stderr("the CLI ended without a result", stderr_tail)
                    )
                    return

                session_id = result.session_id or session_id
                # usage and num_turns of a result cover its query only; total_cost_usd is the
                # running total of the CLI process (observed with CLI 2.1.330).
                cost = max(cost, result.total_cost_usd or 0.0)
                turns += result.num_turns or 0
                usage.add(_usage(result.usage))
                yield ev(
                    EventKind.USAGE,
                    usage=usage.to_dict(),
                    cost_usd=cost,
                    turns=turns,
                    context_tokens=context_tokens,
                    context_window=options.context_window,
                )
                for denial in result.permission_denials or []:
                    # Bash denials by our hook were reported as they happened.
                    if isinstance(denial, dict) and denial.get("tool_name") != "Bash":
                        yield ev(
                            EventKind.PERMISSION_DENIED,
                            id=denial.get("tool_use_id"),
                            name=denial.get("tool_name"),
                            reason="not permitted (permission mode / allowed_tools)",
                        )

                final = _error_outcome(result, rate_limit_reset)
                if final is not None:
                    status, error, retry_at = final
                    yield outcome(status, error=_with_stderr(error, stderr_tail), retry_at=retry_at)
                    return

                report = parse_report(result.result or "\n".join(last_text))
                if report is not None:
                    if report.blocked:
                        yield outcome(
                            OutcomeStatus.BLOCKED,
                            summary=report.summary,
                            blocker=report.blocker,
                            files_changed=report.files_changed,
                        )
                    else:
                        yield outcome(
                            OutcomeStatus.COMPLETED, summary=report.summary, files_changed=report.files_changed
                        )
                    return
                if nudges >= self.max_nudges:
                    yield outcome(
                        OutcomeStatus.FAILED,
                        summary=_clip(result.result or "", 1000),
                        error=f"no completion report after {nudges} nudge{'s' if nudges != 1 else ''}",
                    )
                    return
                if turns >= options.max_turns:
                    yield outcome(OutcomeStatus.MAX_TURNS, error=f"reached max_turns ({options.max_turns})")
                    return
                if options.budget_usd is not None and cost >= options.budget_usd:
                    yield outcome(
                        OutcomeStatus.BUDGET_EXCEEDED,
                        error=f"budget of ${options.budget_usd:.4f} reached (spent ${cost:.4f})",
                    )
                    return
                nudges += 1
                yield ev(EventKind.NUDGE, nudge=nudges, max_nudges=self.max_nudges)
                await client.query(NUDGE_PROMPT)
        except sdk.CLINotFoundError as exc:
            raise BackendError(f"Claude Code CLI not found: {exc}") from exc
        except sdk.ClaudeSDKError as exc:
            data = getattr(exc, "data", None)
            if isinstance(data, dict) and data.get("type") == "result" and result is None:
                final = _error_outcome(_ResultView(data), rate_limit_reset)
                if final is not None:
                    status, error, retry_at = final
                    yield outcome(status, error=_with_stderr(error, stderr_tail), retry_at=retry_at)
                    return
            yield outcome(OutcomeStatus.ERROR, error=_with_stderr(f"{type(exc).__name__}: {exc}", stderr_tail))
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()


class _ResultView:
    """A raw ``result`` payload (from a ResultError) with ResultMessage's attribute names."""

    def __init__(self, data: dict[str, Any]):
        self.subtype = data.get("subtype") or ""
        self.is_error = bool(data.get("is_error"))
        self.result = data.get("result")
        self.errors = data.get("errors")
        self.api_error_status = data.get("api_error_status")
        self.terminal_reason = data.get("terminal_reason")
        self.stop_reason = data.get("stop_reason")


def _error_outcome(result: Any, rate_limit_reset: datetime | None) -> tuple[OutcomeStatus, str, datetime | None] | None:
    """The outcome of a result that is not a success, or ``None`` for a success.

    The same order of rules as the CLI backend (``claude_cli.StreamParser``): ``is_error``
    decides, never ``subtype`` alone, since the CLI reports a failed API call as
    ``subtype: success`` with ``is_error: true``.
    """
    subtype = result.subtype or ""
    terminal = result.terminal_reason or ""
    is_error = result.is_error is True
    text = result.result if isinstance(result.result, str) else ""
    detail = "; ".join(str(e) for e in result.errors or [] if e) or text
    if subtype == "error_max_turns" or terminal == "max_turns":
        return OutcomeStatus.MAX_TURNS, detail or "reached the turn limit", None
    if subtype == "error_max_budget_usd" or terminal in ("max_budget", "max_budget_usd"):
        return OutcomeStatus.BUDGET_EXCEEDED, detail or "reached the budget", None
    limited, retry_at = parse_usage_limit(text)
    if limited and (is_error or len(text) < 300):
        return OutcomeStatus.RATE_LIMITED, _clip(text), retry_at or rate_limit_reset or _default_retry_at()
    if terminal.startswith("aborted"):
        return OutcomeStatus.INTERRUPTED, f"the CLI stopped the turn ({terminal})", None
    if not is_error and subtype == "success":
        return None
    status = result.api_error_status
    label = f"HTTP {status}: " if status is not None else ""
    if status in (401, 403) or _AUTH_TEXT.search(detail):
        return OutcomeStatus.AUTH_ERROR, _clip(label + detail), None
    if status in (429, 529):
        return OutcomeStatus.RATE_LIMITED, _clip(label + detail), rate_limit_reset or _default_retry_at()
    return OutcomeStatus.ERROR, _clip(label + detail) or f"the CLI reported an error (subtype {subtype or '?'})", None


def _default_retry_at() -> datetime:
    return datetime.now(UTC) + DEFAULT_RATE_LIMIT_WAIT


def _stop_early(
    sdk: Any, message: Any, max_api_retries: int, rate_limit_reset: datetime | None
) -> tuple[OutcomeStatus, str, datetime | None] | None:
    """An outcome to end the run with now, before the CLI gives up on its own (it retries
    refused credentials and throttling with long backoffs), or ``None`` to go on."""
    if isinstance(message, sdk.SystemMessage) and message.subtype == "api_retry":
        data = message.data or {}
        status, error = data.get("error_status"), data.get("error")
        attempt = data.get("attempt") if isinstance(data.get("attempt"), int) else 0
        if status in (401, 403) or error == "authentication_failed":
            return OutcomeStatus.AUTH_ERROR, f"the API refused the credentials (HTTP {status}, {error})", None
        if (status in (429, 529) or error in ("rate_limit", "overloaded")) and attempt > max_api_retries:
            delay = data.get("retry_delay_ms") if isinstance(data.get("retry_delay_ms"), int | float) else 0
            retry_at = datetime.now(UTC) + max(timedelta(milliseconds=delay), timedelta(seconds=1))
            return (
                OutcomeStatus.RATE_LIMITED,
                f"the API is still refusing after {attempt} retries (HTTP {status}, {error})",
                retry_at,
            )
    if isinstance(message, sdk.RateLimitEvent):
        info = message.rate_limit_info
        if info.status == "rejected" and info.overage_status not in ("allowed", "allowed_warning"):
            return (
                OutcomeStatus.RATE_LIMITED,
                f"usage limit reached ({info.rate_limit_type or 'unknown window'})",
                rate_limit_reset or _default_retry_at(),
            )
    return None


def _context_tokens(usage: dict[str, Any] | None) -> int:
    if not usage:
        return 0
    keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    return sum(int(usage.get(k) or 0) for k in keys)


def summarize_input(tool_input: Any) -> str:
    """One line saying what a tool call does: the command, the path, the pattern."""
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "notebook_path", "path", "pattern", "url", "query", "description"):
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                return _clip(" ".join(value.split()) if key == "command" else value, 300)
    try:
        return _clip(json.dumps(tool_input, default=str, ensure_ascii=False), 300)
    except (TypeError, ValueError):
        return _clip(str(tool_input), 300)


def _import_sdk() -> Any:
    try:
        import claude_agent_sdk
    except ImportError:
        raise BackendError(f"the claude-code-sdk backend needs the claude-agent-sdk package: {INSTALL_HINT}") from None
    return claude_agent_sdk


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_creation_input_tokens=int(raw.get("cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(raw.get("cache_read_input_tokens") or 0),
    )


def _result_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def _with_stderr(error: str, tail: deque[str]) -> str:
    lines = [line for line in tail if line.strip()]
    return f"{error}\nCLI stderr (last lines):\n" + "\n".join(lines[-10:]) if lines else error


def _clip(text: str, limit: int = _EVENT_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]
