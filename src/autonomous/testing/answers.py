"""The scripted model server's answers, as the Messages API gives them: a message, the
same message as a stream of server-sent events (cut into several deltas, as real streams
are), and an error body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from autonomous.testing.scenario import ErrorSpec, Response, estimate_tokens, input_tokens

_CHUNK = 40  # characters per text / input_json delta: small enough that streams have several


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _content_blocks(resp: Response) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if resp.thinking is not None:
        blocks.append({"type": "thinking", "thinking": resp.thinking, "signature": "scripted-" + uuid.uuid4().hex})
    if resp.text is not None:
        blocks.append({"type": "text", "text": resp.text})
    for call in resp.tool_use:
        blocks.append(
            {"type": "tool_use", "id": call.id or new_id("toolu"), "name": call.name, "input": dict(call.input)}
        )
    return blocks


def _usage(resp: Response, body: Mapping[str, Any], blocks: list[dict[str, Any]]) -> dict[str, int]:
    out = estimate_tokens(*(b.get("text") or b.get("thinking") or b.get("input") or "" for b in blocks))
    usage = {
        "input_tokens": input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": out,
    }
    usage.update(resp.usage or {})
    return usage


def build_message(resp: Response, body: Mapping[str, Any]) -> dict[str, Any]:
    blocks = _content_blocks(resp)
    stop = resp.stop_reason or ("tool_use" if resp.tool_use else "end_turn")
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or "claude-scripted"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(resp, body, blocks),
    }


def _chunks(s: str) -> list[str]:
    return [s[i : i + _CHUNK] for i in range(0, len(s), _CHUNK)] or [""]


def stream_events(message: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event sequence of a real streamed answer, as (event name, data)."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    yield (
        "message_start",
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}},
    )
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            start, deltas = (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": c} for c in _chunks(block["text"])],
            )
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": c} for c in _chunks(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            js = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": c} for c in ["", *_chunks(js)]]
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        if index == 0:
            yield "ping", {"type": "ping"}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": usage,
        },
    )
    yield "message_stop", {"type": "message_stop"}


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def error_body(error: ErrorSpec, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.type, "message": error.message}, "request_id": request_id}
