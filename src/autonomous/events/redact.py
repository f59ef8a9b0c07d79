"""Redaction of secrets before anything leaves the process.

The :class:`~autonomous.events.bus.EventBus` applies one :class:`Redactor` to every event
before any sink sees it; notes and verification output use the same redactor's
:meth:`Redactor.text`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from autonomous.events.model import E

# Shapes of well-known credentials, redacted even when nobody told us about them.
_TOKEN_SHAPES = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|lin_api_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]+|xox[abpr]-[A-Za-z0-9\-]{8,})"
)
REDACTED = "***"


class Redactor:
    """Replaces known secret values and credential-shaped strings with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first so a secret containing another is replaced whole; very short
        # values would redact ordinary words, so they are not treated as secrets.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The known secret values (credential shapes aside): what a commit must not hold either."""
        return tuple(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _TOKEN_SHAPES.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def event(self, event: E) -> E:
        """A copy of ``event`` with every text field redacted (the common fields name
        tasks and workers, never secrets, and pass through)."""
        clean = {name: self.value(value) for name, value in event.data.items()}
        return dataclasses.replace(event, **clean)
