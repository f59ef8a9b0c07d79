"""What a request cost, from its token usage: a dated price table in USD per million tokens.

Prices change; this table is a snapshot, so it carries its date (:data:`PRICES_AS_OF`) and
source. To update it, compare :data:`PRICES` with the source page and edit the rows (see
``docs/pricing.md``). Dated ids (``claude-haiku-4-5-20251001``) and context suffixes
(``claude-opus-4-7[1m]``) match their undated row; anything else must be in the table.

A model missing from the table is priced as the most expensive row and logged as a warning:
a budget limit must never see an unknown model as free.

Only the API backend computes cost from this table; the Claude Code CLI and the Agent SDK
report ``total_cost_usd`` themselves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from autonomous.events import Usage

log = logging.getLogger(__name__)

# Source: https://platform.claude.com/docs/en/about-claude/pricing ("Model pricing"),
# checked 2026-11-24. Cache write is the 5-minute write (1.25x input); cache read is
# "cache hits and refreshes" (0.1x input). 1-hour cache writes (2x input) are not used
# by this runner.
PRICES_AS_OF = "2026-11-24"
PRICES_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float  # 5-minute cache write
    cache_read: float


def _row(input_: float, output: float) -> Price:
    return Price(input_, output, round(input_ * 1.25, 4), round(input_ * 0.1, 4))


_OPUS_45_PLUS = _row(5.0, 25.0)  # Opus 4.5 onwards: $5 / $25
_OPUS_4 = _row(15.0, 75.0)  # Opus 4 and 4.1: $15 / $75
_SONNET_4 = _row(3.0, 15.0)
_HAIKU_45 = _row(1.0, 5.0)

PRICES: dict[str, Price] = {
    "claude-opus-5": _OPUS_45_PLUS,
    "claude-opus-4-8": _OPUS_45_PLUS,
    "claude-opus-4-7": _OPUS_45_PLUS,
    "claude-opus-4-6": _OPUS_45_PLUS,
    "claude-opus-4-5": _OPUS_45_PLUS,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-opus-4": _OPUS_4,  # claude-opus-4-20250514
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,  # claude-sonnet-4-20250514
    "claude-haiku-4-5": _HAIKU_45,
}

# The short names Claude Code accepts. Each resolves to the current model of its family,
# which may move; these rows price the family as of PRICES_AS_OF.
ALIASES: dict[str, str] = {
    "opus": "claude-opus-4-7",
    "sonnet": "claude-sonnet-4-6",
    "haiku": "claude-haiku-4-5",
}

MOST_EXPENSIVE: Price = max(PRICES.values(), key=lambda p: (p.output, p.input))

_SUFFIX = re.compile(r"\[[^\]]*\]$")  # "[1m]"
_DATE = re.compile(r"-(\d{8}|latest)$")  # "-20251001", "-latest"
_warned: set[str] = set()


def lookup(model: str) -> Price | None:
    """The table's price for ``model``, or ``None`` when it is not in the table."""
    name = _SUFFIX.sub("", (model or "").strip().lower())
    name = ALIASES.get(name, name)
    # "anthropic.claude-..." (Bedrock) and "models/claude-..." style prefixes.
    idx = name.find("claude-")
    if idx > 0:
        name = name[idx:]
    # Exact match after dropping a date: a prefix match would price an unreleased
    # "claude-sonnet-4-9" as Sonnet 4 instead of flagging it as unknown.
    return PRICES.get(_DATE.sub("", name))


def is_known(model: str) -> bool:
    return lookup(model) is not None


def price_for(model: str) -> Price:
    """The price of ``model``; an unknown model costs as much as the most expensive one."""
    price = lookup(model)
    if price is not None:
        return price
    if model not in _warned:
        _warned.add(model)
        log.warning("no price for model %r (table of %s); pricing it as the most expensive model", model, PRICES_AS_OF)
    return MOST_EXPENSIVE


def cost(model: str, usage: Usage) -> float:
    """USD for ``usage`` tokens of ``model``."""
    p = price_for(model)
    return (
        usage.input_tokens * p.input
        + usage.output_tokens * p.output
        + usage.cache_creation_input_tokens * p.cache_write
        + usage.cache_read_input_tokens * p.cache_read
    ) / 1_000_000
