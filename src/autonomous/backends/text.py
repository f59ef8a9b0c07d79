"""How the backends shorten model and tool text for events, so every backend's events read alike."""

from __future__ import annotations

import json
from typing import Any

# The input fields that say what a Claude Code tool call does, most telling first.
CLAUDE_CODE_INPUT_KEYS = ("command", "file_path", "notebook_path", "path", "pattern", "url", "query", "description")


def clip(text: str, limit: int = 500) -> str:
    """The head of ``text``, at most ``limit`` characters (for one-line summaries)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip_middle(text: str, limit: int = 4000) -> str:
    """Head and tail of ``text`` (an error or a test run usually says what matters at the end)."""
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


def summarize_input(tool_input: Any, keys: tuple[str, ...] = CLAUDE_CODE_INPUT_KEYS) -> str:
    """One line saying what a tool call does: the first of ``keys`` it has, else its JSON."""
    if isinstance(tool_input, dict):
        for key in keys:
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                return clip(" ".join(value.split()) if key == "command" else value, 300)
    try:
        return clip(json.dumps(tool_input, default=str, ensure_ascii=False), 300)
    except (TypeError, ValueError):
        return clip(str(tool_input), 300)


def tool_result_text(content: Any) -> str:
    """A tool result's content as text: text blocks verbatim, other blocks as ``[type]``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', 'block')}]")
        return "\n".join(parts)
    return "" if content is None else str(content)
