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
* The outcome follows the ``ResultMessage``, converted to the CLI's ``result`` line and
  judged by the CLI backend's rules (:func:`~autonomous.backends.result.outcome_from_result`).
  A result without the model's completion report is :class:`~autonomous.backends.base.NoReport`:
  the base nudges with ``client.query`` in the same session.
* The task allowance reaches the CLI as ``max_turns`` / ``max_budget_usd`` when the client
  connects; every top-level assistant message is a turn charged as it arrives, so the base
  stops the run when a nudge would go past the allowance (the CLI counts turns per query).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autonomous.backends.base import Backend, NoReport, Run, RunOptions, Spend, StreamItem
from autonomous.backends.policy import HOOK_MATCHER, NO_BACKGROUND_ENV, CommandPolicy, background_request
from autonomous.backends.registry import import_extra
from autonomous.backends.result import (
    api_retry_event,
    context_tokens,
    init_events,
    outcome_from_result,
    resets_at,
    stop_for_api_retry,
    stop_for_rate_limit,
    usage_from,
)
from autonomous.backends.text import clip_middle, summarize_input, tool_result_text
from autonomous.errors import BackendError
from autonomous.events import (
    ErrorEvent,
    Event,
    Outcome,
    OutcomeStatus,
    PermissionDenied,
    RateLimit,
    Text,
    ToolResult,
    ToolUse,
)
from autonomous.sandbox import claude as claude_sandbox


class AgentSDKBackend(Backend):
    name = "claude-code-sdk"

    def __init__(self, *, max_nudges: int = 2, max_api_retries: int = 4):
        self.max_nudges = max_nudges
        # The CLI retries failed API calls itself (each one a system "api_retry" message);
        # after this many 429/529 retries the run ends rate_limited instead of waiting on.
        self.max_api_retries = max_api_retries
        self._sdk: Any = None

    @staticmethod
    def _translate(sdk: Any, message: Any, tool_names: dict[str, str], last_text: list[str], ev: Any) -> list[Event]:
        """Events for one SDK message (the ResultMessage is handled by the caller)."""
        events: list[Event] = []
        if isinstance(message, sdk.SystemMessage):
            data = message.data or {}
            if message.subtype == "init":
                events.extend(init_events(data, ev))
            elif message.subtype == "api_retry":
                events.append(api_retry_event(data, ev))
        elif isinstance(message, sdk.AssistantMessage):
            top_level = message.parent_tool_use_id is None
            for block in message.content:
                if isinstance(block, sdk.TextBlock) and block.text:
                    if top_level:
                        last_text.append(block.text)
                    events.append(ev(Text, text=block.text, subagent=not top_level))
                elif isinstance(block, sdk.ToolUseBlock):
                    tool_names[block.id] = block.name
                    events.append(
                        ev(
                            ToolUse,
                            id=block.id,
                            name=block.name,
                            input=summarize_input(block.input),
                            subagent=not top_level,
                        )
                    )
            if message.error:
                events.append(ev(ErrorEvent, message=f"API error: {message.error}", status=None))
        elif isinstance(message, sdk.UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, sdk.ToolResultBlock):
                    events.append(
                        ev(
                            ToolResult,
                            id=block.tool_use_id,
                            name=tool_names.get(block.tool_use_id, "?"),
                            is_error=bool(block.is_error),
                            excerpt=clip_middle(tool_result_text(block.content)),
                        )
                    )
        elif isinstance(message, sdk.RateLimitEvent):
            info = message.rate_limit_info
            resets = resets_at(_rate_limit_info(info))
            events.append(
                ev(
                    RateLimit,
                    status=info.status,
                    limit_type=info.rate_limit_type,
                    utilization=info.utilization,
                    retry_at=resets.isoformat() if resets else None,
                )
            )
        return events

    # -- hooks
    def preflight(self, options: RunOptions) -> None:
        self._sdk = import_extra("claude_agent_sdk", "sdk", self.name)
        if options.claude_path and not Path(options.claude_path).exists():
            raise BackendError(f"Claude Code CLI not found at {options.claude_path} (autonomous.claude_path)")
        CommandPolicy(options.command_allow, options.command_deny)  # ConfigError on a bad rule

    def is_auth_failure(self, exc: BaseException) -> bool:
        data = getattr(exc, "data", None)
        return isinstance(data, dict) and data.get("api_error_status") in (401, 403)

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, self._sdk.CLINotFoundError):
            return f"Claude Code CLI not found: {exc}"
        return super().describe(exc)

    # -- one exchange
    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[StreamItem]:
        sdk = self._sdk
        if run.exchange == 0:
            await self._connect(run)
        client, denials, stderr_tail = run.state["client"], run.state["denials"], run.state["stderr"]
        await client.query(prompt)
        result: Any = None
        last_text: list[str] = []
        tool_names: dict[str, str] = {}
        try:
            async for message in client.receive_response():
                while denials:
                    yield denials.pop(0)
                if isinstance(message, sdk.ResultMessage):
                    result = message
                    continue
                for event in self._translate(sdk, message, tool_names, last_text, run.ev):
                    yield event
                if _new_turn(sdk, message, run):
                    yield Spend(1, context_tokens=context_tokens(usage_from(message.usage)) or None)
                if isinstance(message, sdk.RateLimitEvent):
                    reset = resets_at(_rate_limit_info(message.rate_limit_info))
                    run.state["rate_limit_reset"] = reset or run.state.get("rate_limit_reset")
                stop = _stop_early(sdk, message, self.max_api_retries)
                if stop is not None:
                    # Waiting longer cannot help (credentials refused, retries exhausted,
                    # usage limit hit): end now; disconnecting stops the CLI.
                    stop.error = _with_stderr(stop.error, stderr_tail)
                    yield stop
                    return
        except sdk.ClaudeSDKError as exc:
            data = getattr(exc, "data", None)
            if isinstance(data, dict) and data.get("type") == "result" and result is None:
                verdict = outcome_from_result(data, now=datetime.now(UTC), rate_limit_reset=_reset(run))
                if isinstance(verdict, Outcome) and not _reported(verdict):
                    verdict.error = _with_stderr(verdict.error, stderr_tail)
                    yield verdict
                    return
            raise BackendError(_with_stderr(f"{type(exc).__name__}: {exc}", stderr_tail)) from exc
        while denials:
            yield denials.pop(0)
        if result is None:
            yield Outcome(OutcomeStatus.ERROR, error=_with_stderr("the CLI ended without a result", stderr_tail))
            return
        run.session_id = result.session_id or run.session_id
        # Turns were charged as the model's responses arrived: the result's num_turns also
        # counts the turn the CLI refused at max_turns. Its usage covers this query only;
        # total_cost_usd is the running total of the CLI process (observed with CLI 2.1.330).
        cost = max(run.state["cost"], result.total_cost_usd or 0.0)
        yield Spend(0, cost - run.state["cost"], usage_from(result.usage))
        run.state["cost"] = cost
        for denial in result.permission_denials or []:
            # Bash denials by our hook were reported as they happened.
            if isinstance(denial, dict) and denial.get("tool_name") != "Bash":
                yield run.ev(
                    PermissionDenied,
                    id=denial.get("tool_use_id"),
                    name=denial.get("tool_name"),
                    reason="not permitted (permission mode / allowed_tools)",
                )
        verdict = outcome_from_result(
            _result_dict(result), "\n".join(last_text), now=datetime.now(UTC), rate_limit_reset=_reset(run)
        )
        if not isinstance(verdict, Outcome):
            yield NoReport(result.result or "")
            return
        if not _reported(verdict):
            verdict.error = _with_stderr(verdict.error, stderr_tail)
        yield verdict

    async def _connect(self, run: Run) -> None:
        """Start the CLI for this run (disconnected when the run ends), with the command policy hook."""
        sdk, options = self._sdk, run.options
        policy = CommandPolicy(options.command_allow, options.command_deny)
        denials: list[Event] = []  # filled by the hook, drained into the stream

        async def pre_tool_use(hook_input: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
            name = str(hook_input.get("tool_name"))
            reason = background_request(name, hook_input.get("tool_input"))  # work that would outlive the turn
            if reason is None and name != "Bash":
                return {}
            if reason is None:
                command = (hook_input.get("tool_input") or {}).get("command", "")
                allowed, reason = policy.check(command if isinstance(command, str) else "")
                if allowed:
                    return {}  # no opinion: the normal permission rules apply
            denials.append(run.ev(PermissionDenied, id=tool_use_id, name=name, reason=reason))
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
        sandboxed: dict[str, Any] = {}
        env = dict(options.env)
        if options.sandbox is not None:
            credentials = claude_sandbox.Credentials({**os.environ, **options.env})
            run.cleanup.callback(credentials.close)
            settings = claude_sandbox.merge_settings(claude_sandbox.settings(options.sandbox), credentials.settings())
            env.update(claude_sandbox.cli_environment({**os.environ, **env}))  # the CLI passes its environment on
            sandboxed = {
                "settings": json.dumps(settings),
                "tools": claude_sandbox.tool_names(options.allowed_tools),
                "extra_args": {"restricted": None},
            }
        sdk_options = sdk.ClaudeAgentOptions(
            model=options.model,
            cwd=str(options.cwd),
            max_turns=max(1, run.turns_left),
            allowed_tools=list(options.allowed_tools),
            disallowed_tools=policy.to_cli_disallowed_tools(),
            permission_mode=options.permission_mode or None,
            system_prompt=system_prompt,
            mcp_servers=dict(options.mcp_servers),
            resume=options.session_id,
            cli_path=options.claude_path,
            env={**NO_BACKGROUND_ENV, **env},
            max_budget_usd=run.usd_left,
            hooks={"PreToolUse": [sdk.HookMatcher(matcher=HOOK_MATCHER, hooks=[pre_tool_use], on_failure="block")]},
            stderr=stderr_tail.append,
            **sandboxed,
        )
        client = sdk.ClaudeSDKClient(options=sdk_options)
        run.cleanup.push_async_callback(_disconnect, client)
        run.state.update(client=client, denials=denials, stderr=stderr_tail, cost=0.0)
        try:
            await client.connect()
        except sdk.CLINotFoundError as exc:
            raise BackendError(f"Claude Code CLI not found: {exc}") from exc


async def _disconnect(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


def _new_turn(sdk: Any, message: Any, run: Run) -> bool:
    """Whether ``message`` starts a new top-level model response (the CLI sends one message per content block)."""
    if not isinstance(message, sdk.AssistantMessage) or message.parent_tool_use_id is not None:
        return False
    new = message.message_id is None or message.message_id != run.state.get("message_id")
    run.state["message_id"] = message.message_id
    return new


def _reset(run: Run) -> datetime | None:
    return run.state.get("rate_limit_reset")


def _reported(out: Outcome) -> bool:
    """Whether ``out`` is the model's own report (completed, blocked) rather than a failure."""
    return out.status in (OutcomeStatus.COMPLETED, OutcomeStatus.BLOCKED)


def _result_dict(message: Any) -> dict[str, Any]:
    """A ``ResultMessage`` as the CLI's stream-json ``result`` line it was parsed from."""
    keys = ("subtype", "is_error", "result", "errors", "api_error_status", "terminal_reason", "stop_reason")
    return {"type": "result", **{key: getattr(message, key, None) for key in keys}}


def _rate_limit_info(info: Any) -> dict[str, Any]:
    """The SDK's ``RateLimitInfo`` as the CLI's ``rate_limit_info`` object."""
    return {
        "status": info.status,
        "resetsAt": info.resets_at,
        "rateLimitType": info.rate_limit_type,
        "utilization": info.utilization,
        "overageStatus": info.overage_status,
    }


def _stop_early(sdk: Any, message: Any, max_api_retries: int) -> Outcome | None:
    """An outcome to end the run with now, before the CLI gives up on its own, or ``None`` to go on."""
    if isinstance(message, sdk.SystemMessage) and message.subtype == "api_retry":
        return stop_for_api_retry(message.data or {}, max_api_retries, datetime.now(UTC))
    if isinstance(message, sdk.RateLimitEvent):
        return stop_for_rate_limit(_rate_limit_info(message.rate_limit_info))
    return None


def _with_stderr(error: str, tail: deque[str]) -> str:
    lines = [line for line in tail if line.strip()]
    return f"{error}\nCLI stderr (last lines):\n" + "\n".join(lines[-10:]) if lines else error
