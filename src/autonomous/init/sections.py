"""A free-form spec cut into sections a model can decompose one at a time: whole
top-level sections where they fit, an oversized one cut at its sub-headings, then at
paragraphs. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autonomous.init.common import FENCE, HEADING


@dataclass(frozen=True, slots=True)
class Section:
    title: str  # the heading(s) of what it holds, for progress messages
    text: str


def split_sections(text: str, max_chars: int = 30_000) -> tuple[str, list[Section]]:
    """The preamble (text before the first top-level section, the project's overview) and
    the spec cut into chunks of whole top-level sections of at most ``max_chars`` each.

    A spec that fits is one chunk. Sections are kept whole where they fit, so a model
    sees each feature in one piece; an oversized section is cut at its sub-headings, and
    as a last resort at paragraph breaks.
    """
    if len(text) <= max_chars:
        return "", [Section(_first_heading(text) or "spec", text)]
    preamble, sections = _cut(text, _top_level(text))
    chunks: list[Section] = []
    pending: list[Section] = []

    def flush() -> None:
        if pending:
            title = pending[0].title if len(pending) == 1 else f"{pending[0].title} .. {pending[-1].title}"
            chunks.append(Section(title, "\n".join(s.text for s in pending)))
            pending.clear()

    for section in sections:
        pieces = [section] if len(section.text) <= max_chars else _split_big(section, max_chars)
        for piece in pieces:
            if pending and sum(len(s.text) + 1 for s in pending) + len(piece.text) > max_chars:
                flush()
            pending.append(piece)
    flush()
    if not chunks:
        chunks = [Section("spec", preamble)]
        preamble = ""
    return preamble, chunks


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, text) of every Markdown heading outside code fences."""
    out: list[tuple[int, int, str]] = []
    offset = 0
    in_fence = False
    for line in text.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            h = HEADING.match(line)
            if h:
                out.append((offset, len(h.group(1)), h.group(2)))
        offset += len(line) + 1
    return out


def _first_heading(text: str) -> str | None:
    for _offset, _level, htext in _headings(text):
        return htext
    return None


def _top_level(text: str) -> int:
    levels = [level for _o, level, _t in _headings(text)]
    if not levels:
        return 0
    top = min(levels)
    if levels.count(top) == 1 and any(lv > top for lv in levels):
        return min(lv for lv in levels if lv > top)  # a single "# Title" is the document's name
    return top


def _cut(text: str, level: int) -> tuple[str, list[Section]]:
    marks = [(o, t) for o, lv, t in _headings(text) if lv == level] if level else []
    if not marks:
        return "", _paragraphs(text)
    preamble = text[: marks[0][0]].strip("\n")
    sections = []
    for (start, title), nxt in zip(marks, [*marks[1:], (len(text), "")], strict=True):
        sections.append(Section(title, text[start : nxt[0]].strip("\n")))
    return preamble, sections


def _split_big(section: Section, max_chars: int) -> list[Section]:
    body_levels = [lv for _o, lv, _t in _headings(section.text)[1:]]
    if body_levels:
        head, subs = _cut(section.text, min(body_levels))
        out: list[Section] = []
        for sub in subs:
            piece = Section(f"{section.title} / {sub.title}", f"{head}\n\n{sub.text}" if head else sub.text)
            out += [piece] if len(piece.text) <= max_chars else _paragraphs(piece.text, max_chars, section.title)
        return out
    return _paragraphs(section.text, max_chars, section.title)


def _paragraphs(text: str, max_chars: int | None = None, title: str = "spec") -> list[Section]:
    if max_chars is None:
        return [Section(title, text)]
    out: list[Section] = []
    buf = ""
    for para in re.split(r"\n\s*\n", text):
        while len(para) > max_chars:  # one enormous paragraph: hard cut
            if buf:
                out.append(Section(f"{title} (part {len(out) + 1})", buf))
                buf = ""
            out.append(Section(f"{title} (part {len(out) + 1})", para[:max_chars]))
            para = para[max_chars:]
        if buf and len(buf) + len(para) + 2 > max_chars:
            out.append(Section(f"{title} (part {len(out) + 1})", buf))
            buf = ""
        buf = f"{buf}\n\n{para}" if buf else para
    if buf.strip():
        out.append(Section(f"{title} (part {len(out) + 1})", buf))
    return out
