"""Reading a spec or task file: the one place that turns a path into text, or into a
:class:`SpecError` that says plainly what is wrong with the file (missing, a directory,
too large, binary, not UTF-8, empty). Every format reads its file through here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from autonomous.errors import SpecError

MAX_SPEC_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpecFile:
    path: Path
    text: str
    sha256: str
    size: int


def read_spec(path: str | Path) -> SpecFile:
    """The spec's text, or a :class:`SpecError` that says plainly what is wrong with it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SpecError(f"spec file not found: {p}")
    if p.is_dir():
        raise SpecError(f"spec path is a directory, not a file: {p}")
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file is too large ({size} bytes; the limit is {MAX_SPEC_BYTES}): {p}")
        data = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file {p}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise SpecError(f"spec file looks binary (it contains NUL bytes; a spec is UTF-8 Markdown or text): {p}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"save it as UTF-8: {p}"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise SpecError(f"spec file is empty: {p}")
    return SpecFile(path=p, text=text, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
