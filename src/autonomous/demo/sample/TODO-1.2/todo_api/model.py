"""The Todo model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

MAX_TITLE = 200


def utc_now() -> str:
    """The current time as ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def clean_title(title: object) -> str:
    """The title without surrounding whitespace; ValueError if it is empty or too long."""
    if not isinstance(title, str):
        raise ValueError("title must be a string")
    title = title.strip()
    if not title:
        raise ValueError("title must not be empty")
    if len(title) > MAX_TITLE:
        raise ValueError(f"title must be at most {MAX_TITLE} characters")
    return title


@dataclass
class Todo:
    """One todo item."""

    id: int
    title: str
    done: bool = False
    created_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        self.title = clean_title(self.title)

    def to_dict(self) -> dict:
        """The todo as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Todo:
        """The todo a dict made by to_dict() describes."""
        return cls(id=int(data["id"]), title=data["title"], done=bool(data["done"]), created_at=data["created_at"])
