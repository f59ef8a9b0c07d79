"""Task lists people already have, imported exactly: GitHub Spec Kit and Kiro/cc-sdd
``tasks.md``, Task Master ``tasks.json``, beads ``issues.jsonl`` (one module each), the
choice of format from the content (:func:`detect`), export back to them
(:mod:`autonomous.init.export`) and the ticking of a finished task's box
(:mod:`autonomous.init.tick`).

The tool's own ``## Phase N`` / ``- [KEY-1.2]`` grammar is :mod:`autonomous.init.structured`;
detection says ``autonomous`` for it and the initializer takes its usual path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from autonomous.errors import SpecError
from autonomous.init import beads, kiro, speckit, taskmaster
from autonomous.init.common import FORMATS, IMPORTED, Imported

__all__ = ["FORMATS", "IMPORTED", "Detection", "Imported", "detect", "parse"]


@dataclass(slots=True)
class Detection:
    format: str  # one of FORMATS
    reason: str  # why, in words, for the warning and the JSON result
    warnings: list[str] = field(default_factory=list)


def detect(text: str, autonomous_tasks: int = 0) -> Detection:
    """Which format ``text`` is in, from its content alone. ``autonomous_tasks`` is how
    many task lines of the tool's own grammar the structured parser found (it has
    already read the file; reading it twice would cost a 10,000-task import its time).

    JSON decides first (an object with ``tasks``: Task Master; JSON objects one per line:
    beads). Markdown is counted: Spec Kit ``- [ ] T001`` lines, Kiro ``- [ ] 1.`` lines
    and the tool's own; the most wins, and a file with more than one kind says so.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data is not None and taskmaster.looks_like(data):
            return Detection("taskmaster", "a JSON object with a tasks list (Task Master)")
        if beads.looks_like(text):
            return Detection("beads", "one JSON object per line with id and title (beads)")
        if data is not None:
            raise SpecError('a JSON file that is neither Task Master ({"tasks": [...]}) nor beads (JSONL)')
    counts = {
        "speckit": speckit.count_lines(text),
        "kiro": kiro.count_lines(text),
        "autonomous": autonomous_tasks,
    }
    found = {k: n for k, n in counts.items() if n}
    if not found:
        return Detection("autonomous", "no task lines of a known format (a free-form spec)")
    order = sorted(found, key=lambda k: (-found[k], list(counts).index(k)))
    chosen = order[0]
    names = {"speckit": "Spec Kit '- [ ] T001'", "kiro": "Kiro '- [ ] 1.'", "autonomous": "'- [KEY-1.2]'"}
    reason = f"{found[chosen]} {names[chosen]} task line(s)"
    det = Detection(chosen, reason)
    if len(order) > 1:
        others = ", ".join(f"{found[k]} {names[k]}" for k in order[1:])
        det.warnings.append(
            f"the file mixes task formats: chose {chosen} ({reason}) over {others}, because it has the most task "
            f"lines; pass --format to choose another"
        )
    return det


def parse(text: str, fmt: str, *, tag: str | None = None, include_optional: bool = False) -> Imported:
    """The tasks of ``text`` read as ``fmt`` (one of IMPORTED)."""
    if tag is not None and fmt != "taskmaster":
        raise SpecError(f"--tag is for Task Master files; this file is read as {fmt}")
    if fmt == "speckit":
        return speckit.parse(text)
    if fmt == "kiro":
        return kiro.parse(text, include_optional=include_optional)
    if fmt == "taskmaster":
        return taskmaster.parse(text, tag=tag)
    if fmt == "beads":
        return beads.parse(text)
    raise SpecError(f"unknown format {fmt!r}; expected one of {', '.join(IMPORTED)}")
