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
  Success still needs the model's completion report; without one the model is nudged (at
  most ``max_nudges`` times).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autonomous.backends.base import Backend, RunOptions
from autonomous.backends.report import NUDGE_PROMPT, Nudges
from autonomous.backends.result import (
    context_tokens,
    outcome_from_result,
    resets_at,
    stop_for_api_retry,
    stop_for_rate_limit,
    usage_from,
)
from autonomous.backends.text import clip_middle, summarize_input, tool_result_text
from autonomous.errors import BackendError
from autonomous.events import Event, EventKind, Outcome, OutcomeStatus, Usage
from autonomous.policy import CommandPolicy

INSTALL_HINT = "pip install 'autonomous-runner[sdk]'"


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
                            excerpt=clip_middle(tool_result_text(block.content)),
                        )
                    )
        elif isinstance(message, sdk.RateLimitEvent):
            info = message.rate_limit_info
            resets = resets_at(_rate_limit_info(info))
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
        context = 0
        rate_limit_reset: datetime | None = None
        nudges = Nudges(self.max_nudges)
        result: Any = None

        def outcome(out: Outcome, *, stderr: bool = False) -> Outcome:
            """``out`` with this run's totals; ``stderr``: its error gets the CLI's last stderr lines."""
            out.cost_usd, out.turns, out.usage, out.session_id = cost, turns, usage, session_id
            out.context_tokens, out.duration_s = context, time.monotonic() - started
            if stderr:
                out.error = _with_stderr(out.error, stderr_tail)
            return out

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
                        context = context_tokens(usage_from(message.usage)) or context
                    if isinstance(message, sdk.RateLimitEvent):
                        rate_limit_reset = resets_at(_rate_limit_info(message.rate_limit_info)) or rate_limit_reset
                    stop = _stop_early(sdk, message, self.max_api_retries)
                    if stop is not None:
                        # Waiting longer cannot help (credentials refused, retries exhausted,
                        # usage limit hit): end now; disconnecting stops the CLI.
                        yield outcome(stop, stderr=True)
                        return
                while denials:
                    yield denials.pop(0)
                if result is None:
                    yield outcome(Outcome(OutcomeStatus.ERROR, error="the CLI ended without a result"), stderr=True)
                    return

                session_id = result.session_id or session_id
                # usage and num_turns of a result cover its query only; total_cost_usd is the
                # running total of the CLI process (observed with CLI 2.1.330).
                cost = max(cost, result.total_cost_usd or 0.0)
                turns += result.num_turns or 0
                usage.add(usage_from(result.usage))
                yield ev(
                    EventKind.USAGE,
                    usage=usage.to_dict(),
                    cost_usd=cost,
                    turns=turns,
                    context_tokens=context,
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

                verdict = outcome_from_result(
                    _result_dict(result),
                    "\n".join(last_text),
                    now=datetime.now(UTC),
                    rate_limit_reset=rate_limit_reset,
                )
                if isinstance(verdict, Outcome):
                    yield outcome(verdict, stderr=not _reported(verdict))
                    return
                if nudges.exhausted:
                    yield outcome(nudges.given_up(result.result or ""))
                    return
                if turns >= options.max_turns:
                    yield outcome(Outcome(OutcomeStatus.MAX_TURNS, error=f"reached max_turns ({options.max_turns})"))
                    return
                if options.budget_usd is not None and cost >= options.budget_usd:
                    error = f"budget of ${options.budget_usd:.4f} reached (spent ${cost:.4f})"
                    yield outcome(Outcome(OutcomeStatus.BUDGET_EXCEEDED, error=error))
                    return
                yield ev(EventKind.NUDGE, nudge=nudges.take(), max_nudges=self.max_nudges)
                await client.query(NUDGE_PROMPT)
        except sdk.CLINotFoundError as exc:
            raise BackendError(f"Claude Code CLI not found: {exc}") from exc
        except sdk.ClaudeSDKError as exc:
            data = getattr(exc, "data", None)
            if isinstance(data, dict) and data.get("type") == "result" and result is None:
                verdict = outcome_from_result(data, now=datetime.now(UTC), rate_limit_reset=rate_limit_reset)
                if isinstance(verdict, Outcome) and not _reported(verdict):
                    yield outcome(verdict, stderr=True)
                    return
            error = f"{type(exc).__name__}: {exc}"
            yield outcome(Outcome(OutcomeStatus.ERROR, error=error), stderr=True)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()


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


def _import_sdk() -> Any:
    try:
        import claude_agent_sdk
    except ImportError:
        raise BackendError(f"the claude-code-sdk backend needs the claude-agent-sdk package: {INSTALL_HINT}") from None
    return claude_agent_sdk


def _with_stderr(error: str, tail: deque[str]) -> str:
    lines = [line for line in tail if line.strip()]
    return f"{error}\nCLI stderr (last lines):\n" + "\n".join(lines[-10:]) if lines else error
