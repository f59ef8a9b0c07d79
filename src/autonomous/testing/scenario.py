"""Scenarios of the scripted model server: the rules (a match on the request, the response
to give), how a scenario file is read and checked, the view of a request that rules match
against (:class:`Conversation`), and helpers that write the common rules. The format is
documented in :mod:`autonomous.testing.model_server` and docs/testing.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from autonomous import safe_yaml
from autonomous.errors import ScenarioError

DEFAULT_TEXT = "No scripted response matched."

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _check_keys(data: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return dict(data)


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    # bool is an int in Python; a scenario saying `turn: true` is a mistake, not turn 1.
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ScenarioError(f"{where}: expected a number, got a boolean")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ScenarioError(f"{where}: expected {name}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ToolCall:
    """One scripted tool_use block. ``id`` is generated when empty, as the real API would."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str = "tool_use") -> ToolCall:
        d = _check_keys(data, ("name", "input", "id"), where)
        if "name" not in d:
            raise ScenarioError(f"{where}: missing key 'name'")
        return cls(
            name=_typed(d["name"], str, f"{where}.name"),
            input=_typed(d.get("input", {}), Mapping, f"{where}.input"),
            id=_typed(d.get("id", ""), str, f"{where}.id"),
        )


@dataclass(frozen=True)
class ErrorSpec:
    """An API error answer. ``after_events`` makes a streamed answer fail mid-way instead."""

    status: int = 0
    type: str = ""
    message: str = ""
    retry_after: float | None = None
    after_events: int | None = None

    def __post_init__(self) -> None:
        status = self.status or _ERROR_STATUS.get(self.type, 0)
        if not status:
            raise ScenarioError("error: needs 'status' or a known 'type'")
        etype = self.type or _ERROR_TYPES.get(status, "api_error")
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "type", etype)
        if not self.message:
            object.__setattr__(self, "message", f"Scripted {etype} ({status}).")

    @classmethod
    def from_dict(cls, data: Any, where: str = "error") -> ErrorSpec:
        d = _check_keys(data, ("status", "type", "message", "retry_after", "after_events"), where)
        try:
            return cls(
                status=_typed(d.get("status", 0), int, f"{where}.status"),
                type=_typed(d.get("type", ""), str, f"{where}.type"),
                message=_typed(d.get("message", ""), str, f"{where}.message"),
                retry_after=_opt(d, "retry_after", (int, float), where),
                after_events=_opt(d, "after_events", int, where),
            )
        except ScenarioError as exc:
            if str(exc).startswith("error:"):
                raise ScenarioError(f"{where}:{str(exc)[len('error:') :]}") from None
            raise


def _opt(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = d.get(key)
    return None if value is None else _typed(value, kind, f"{where}.{key}")


@dataclass(frozen=True)
class Response:
    """What the server answers: content blocks, or an error, plus transport misbehaviour."""

    text: str | None = None
    tool_use: Sequence[ToolCall] = ()
    thinking: str | None = None
    stop_reason: str | None = None
    usage: Mapping[str, int] | None = None
    error: ErrorSpec | None = None
    delay: float = 0.0
    truncate_after_events: int | None = None
    malformed_event: bool = False
    stall: bool = False
    html: str | None = None
    headers: Mapping[str, str] | None = None  # extra response headers (the usage limiter's, say)

    def __post_init__(self) -> None:
        # Accept plain dicts from Python callers, so tests read like the YAML format.
        calls = tuple(c if isinstance(c, ToolCall) else ToolCall.from_dict(c) for c in self.tool_use)
        object.__setattr__(self, "tool_use", calls)
        if isinstance(self.error, Mapping):
            object.__setattr__(self, "error", ErrorSpec.from_dict(self.error))

    @classmethod
    def from_dict(cls, data: Any, where: str = "response") -> Response:
        keys = [f.name for f in fields(cls)]
        d = _check_keys(data, keys, where)
        calls = _typed(d.get("tool_use") or [], list, f"{where}.tool_use")
        usage = _opt(d, "usage", Mapping, where)
        if usage is not None:
            _check_keys(usage, _USAGE_KEYS, f"{where}.usage")
            for k, v in usage.items():
                _typed(v, int, f"{where}.usage.{k}")
        return cls(
            text=_opt(d, "text", str, where),
            tool_use=tuple(ToolCall.from_dict(c, f"{where}.tool_use[{i}]") for i, c in enumerate(calls)),
            thinking=_opt(d, "thinking", str, where),
            stop_reason=_opt(d, "stop_reason", str, where),
            usage=usage,
            error=None if d.get("error") is None else ErrorSpec.from_dict(d["error"], f"{where}.error"),
            delay=float(_typed(d.get("delay", 0.0), (int, float), f"{where}.delay")),
            truncate_after_events=_opt(d, "truncate_after_events", int, where),
            malformed_event=_typed(d.get("malformed_event", False), bool, f"{where}.malformed_event"),
            stall=_typed(d.get("stall", False), bool, f"{where}.stall"),
            html=_opt(d, "html", str, where),
            headers=_opt(d, "headers", Mapping, where),
        )


_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True)
class Match:
    """Conditions on one request; every condition that is set must hold."""

    contains: str | None = None
    last_user_contains: str | None = None
    turn: int | None = None
    has_tool_result: bool | None = None
    tool_result_contains: str | None = None
    system_contains: str | None = None
    model: str | None = None
    has_tools: bool | None = None
    stream: bool | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "match") -> Match:
        kinds: dict[str, type] = {
            "contains": str,
            "last_user_contains": str,
            "turn": int,
            "has_tool_result": bool,
            "tool_result_contains": str,
            "system_contains": str,
            "model": str,
            "has_tools": bool,
            "stream": bool,
        }
        d = _check_keys(data or {}, kinds, where)
        return cls(**{k: _opt(d, k, kinds[k], where) for k in d})

    def matches(self, conv: Conversation) -> bool:
        checks = (
            (self.contains, lambda v: v in conv.text),
            (self.last_user_contains, lambda v: v in conv.last_user_text),
            (self.turn, lambda v: v == conv.turn),
            (self.has_tool_result, lambda v: v == conv.has_tool_result),
            (self.tool_result_contains, lambda v: v in conv.tool_result_text),
            (self.system_contains, lambda v: v in conv.system_text),
            (self.model, lambda v: v in conv.model),
            (self.has_tools, lambda v: v == conv.has_tools),
            (self.stream, lambda v: v == conv.stream),
        )
        return all(check(value) for value, check in checks if value is not None)


@dataclass(frozen=True)
class Rule:
    """A match and its response; ``times`` lets "fail once, then succeed" be two rules."""

    response: Response
    match: Match = field(default_factory=Match)
    times: int | None = None
    name: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str = "rule") -> Rule:
        d = _check_keys(data, ("name", "match", "response", "times"), where)
        if "response" not in d:
            raise ScenarioError(f"{where}: missing key 'response'")
        return cls(
            name=_typed(d.get("name", ""), str, f"{where}.name"),
            match=Match.from_dict(d.get("match"), f"{where}.match"),
            response=Response.from_dict(d["response"], f"{where}.response"),
            times=_opt(d, "times", int, where),
        )


@dataclass(frozen=True)
class Scenario:
    """An ordered list of rules and the answer for requests none of them match."""

    rules: Sequence[Rule] = ()
    default: Response = field(default_factory=lambda: Response(text=DEFAULT_TEXT))

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))

    @classmethod
    def from_dict(cls, data: Any, where: str = "scenario") -> Scenario:
        d = _check_keys(data if data is not None else {}, ("rules", "default"), where)
        rules = _typed(d.get("rules") or [], list, f"{where}.rules")
        default = d.get("default")
        return cls(
            rules=tuple(Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(rules)),
            default=Response(text=DEFAULT_TEXT) if default is None else Response.from_dict(default, "default"),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Scenario:
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{p}: cannot read scenario: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw) if p.suffix == ".json" else safe_yaml.load(raw, max_bytes=16 * 1024 * 1024)
        except (ValueError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ScenarioError as exc:
            raise ScenarioError(f"{p}: {exc}") from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a YAML (or ``.json``) scenario file; errors name the file and key path."""
    return Scenario.from_file(path)


# -- reading requests ----------------------------------------------------------------------


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, Mapping):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"{block.get('name', '')} {json.dumps(block.get('input', {}), ensure_ascii=False)}"
    if kind == "tool_result":
        return _content_text(block.get("content", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(_block_text(b) for b in content)
    return _block_text(content)


class Conversation:
    """What rules can see of one Messages request, computed once per request."""

    def __init__(self, body: Mapping[str, Any]):
        self.body = body
        messages = body.get("messages")
        self.messages: list[Mapping[str, Any]] = (
            [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []
        )
        self.model: str = str(body.get("model", ""))
        self.stream: bool = bool(body.get("stream", False))
        self.has_tools: bool = bool(body.get("tools"))

    @cached_property
    def text(self) -> str:
        return "\n".join(_content_text(m.get("content", "")) for m in self.messages)

    @cached_property
    def _last_user(self) -> Mapping[str, Any]:
        return next((m for m in reversed(self.messages) if m.get("role") == "user"), {})

    @cached_property
    def last_user_text(self) -> str:
        return _content_text(self._last_user.get("content", ""))

    @cached_property
    def _tool_results(self) -> list[Mapping[str, Any]]:
        content = self._last_user.get("content", "")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result"]

    @property
    def has_tool_result(self) -> bool:
        return bool(self._tool_results)

    @cached_property
    def tool_result_text(self) -> str:
        return "\n".join(_block_text(b) for b in self._tool_results)

    @cached_property
    def system_text(self) -> str:
        parts = [_content_text(self.body.get("system", ""))]
        parts += [_content_text(m.get("content", "")) for m in self.messages if m.get("role") == "system"]
        return "\n".join(parts)

    @property
    def turn(self) -> int:
        return 1 + sum(1 for m in self.messages if m.get("role") == "assistant")


def estimate_tokens(*parts: Any) -> int:
    # ~4 characters per token is the usual rule of thumb; plausible is all cost tests need.
    chars = sum(len(p) if isinstance(p, str) else len(json.dumps(p, ensure_ascii=False)) for p in parts)
    return max(1, chars // 4)


def input_tokens(body: Mapping[str, Any]) -> int:
    return estimate_tokens(body.get("system", ""), body.get("messages", []), body.get("tools", []))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; secrets in headers are redacted."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    time: float
    rule: str | None = None  # name of the rule that answered; None for the default or non-message paths
    status: int = 200

    @cached_property
    def conversation(self) -> Conversation:
        return Conversation(self.body if isinstance(self.body, Mapping) else {})


# -- helpers that write the common rules -----------------------------------------------------


def _report_text(report: Mapping[str, Any], lead: str) -> str:
    return f"{lead}\n\n```json\n{json.dumps(report)}\n```\n"


def complete_task_rules(
    key: str,
    files: Mapping[str, str] | None = None,
    summary: str | None = None,
) -> list[Rule]:
    """Rules for the common happy path: write ``files`` on turn 1, then report completion.

    Both rules require ``has_tools`` so the CLI's side requests (titles, quota probes),
    which quote the prompt but offer no tools, cannot use them up.
    """
    files = dict(files or {})
    report = {
        "status": "complete",
        "summary": summary or f"{key} implemented.",
        "files_changed": list(files),
        "blocker": None,
    }
    done = Response(text=_report_text(report, f"{key} is done."))
    if not files:
        return [Rule(name=f"{key}: complete", match=Match(contains=key, has_tools=True), response=done)]
    write = Response(
        text=f"Working on {key}.",
        tool_use=tuple(ToolCall("Write", {"file_path": path, "content": content}) for path, content in files.items()),
    )
    return [
        Rule(name=f"{key}: write files", match=Match(contains=key, turn=1, has_tools=True), response=write),
        Rule(name=f"{key}: complete", match=Match(contains=key, has_tool_result=True, has_tools=True), response=done),
    ]


def blocked_rules(key: str, blocker: str, summary: str | None = None) -> list[Rule]:
    """A rule for a task the model cannot finish: it answers with a blocked report at once."""
    report = {
        "status": "blocked",
        "summary": summary or f"Could not finish {key}.",
        "files_changed": [],
        "blocker": blocker,
    }
    return [
        Rule(
            name=f"{key}: blocked",
            match=Match(contains=key, has_tools=True),
            response=Response(text=_report_text(report, f"{key} is blocked.")),
        )
    ]
