"""The completion report: how the model says a task is done or blocked.

Every task prompt ends with :data:`REPORT_INSTRUCTIONS`, which asks the model to finish with
a small JSON object::

    {"status": "complete", "summary": "...", "files_changed": ["..."], "blocker": null}

:func:`parse_report` reads it back from the final assistant text. The *last* report in
the text wins, because models often quote an example report before writing the real
one. Text markers (``## Task Complete`` / ``## Task Blocked``) are the fallback for
models that ignore the JSON instruction. Model output is untrusted text, so parsing
tolerates anything and never raises: no recognisable report is ``None``, and the backend
answers that with :data:`NUDGE_PROMPT`.

All three backends (CLI, Agent SDK, Messages API) share this module so a report means the
same thing whichever backend ran the task: :func:`report_outcome` turns the final text
into ``completed``/``blocked`` or :data:`NUDGE`, and :class:`Nudges` counts the nudges.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from autonomous.backends.text import clip_middle
from autonomous.events import Outcome, OutcomeStatus

ReportStatus = Literal["complete", "blocked"]

REPORT_INSTRUCTIONS = """\
## When you finish

End your final message with a completion report: one JSON object in a ```json fenced block, \
and nothing after it.

If the task is done:
```json
{"status": "complete", "summary": "<one or two sentences: what you did>", \
"files_changed": ["<path>", "..."], "blocker": null}
```

If you cannot finish it (missing information, a broken dependency, something outside \
the repository), do not guess: stop and report it as blocked:
```json
{"status": "blocked", "summary": "<what you did so far>", "files_changed": ["<path>"], \
"blocker": "<what is in the way and what would unblock it>"}
```

Do not edit task status anywhere yourself; the runner records it from this report.
"""

NUDGE_PROMPT = (
    "You stopped without a completion report. If the task is finished, reply now with only the JSON "
    'report ({"status": "complete", ...}). If something prevents you from finishing, reply with '
    '{"status": "blocked", ...} and the blocker. Otherwise continue the work and end with the report.'
)

# Only look at the end of very long texts: the report is at the end, and scanning a
# megabyte of tool output for braces would be quadratic.
_MAX_SCAN = 50_000
_MAX_FIELD = 4_000

_STATUS_ALIASES = {
    "complete": "complete",
    "completed": "complete",
    "done": "complete",
    "success": "complete",
    "blocked": "blocked",
}

# "## Task Complete", "### Task Blocked: reason" (not "## Task Completed-ish").
_MARKER = re.compile(
    r"^[ \t]*#{1,6}[ \t]*task[ \t]+(complete|completed|blocked)(?:[ \t]*[:.!]?[ \t]*$|[ \t]*[:\u2014\u2013-][ \t]+)",
    re.I | re.M,
)
_FILES_LINE = re.compile(r"^[ \t*-]*files?[ \t]+(?:modified|changed)[ \t]*:[ \t]*(.+)$", re.I | re.M)
_FILES_INLINE = re.compile(r"files?[ \t]+(?:modified|changed)[ \t]*:[ \t]*([^\n]+?)(?:\.[ \t]|\.$|$)", re.I | re.M)


class Nudge:
    """No completion report yet: ask again (:data:`NUDGE_PROMPT`) in the same conversation."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NUDGE"


NUDGE: Final = Nudge()


@dataclass(slots=True)
class Nudges:
    """How many nudges a run has used, out of ``limit``."""

    limit: int
    used: int = 0

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def take(self) -> int:
        self.used += 1
        return self.used

    def counted(self) -> str:
        """``"1 nudge"``, ``"2 nudges"``: for the error of a run that never reported."""
        return f"{self.used} nudge{'s' if self.used != 1 else ''}"

    def given_up(self, last_text: str) -> Outcome:
        """The outcome of a run whose nudges are used up without a report."""
        return Outcome(
            OutcomeStatus.FAILED,
            summary=clip_middle(last_text, 1000),
            error=f"no completion report after {self.counted()}",
        )


def report_outcome(*texts: str | None) -> Outcome | Nudge:
    """The outcome the first report found in ``texts`` (tried in order) stands for, else :data:`NUDGE`.

    The returned outcome carries only what the report says (status, summary, blocker,
    files); the backend adds cost, turns and usage.
    """
    seen: set[str] = set()
    for text in texts:
        if not text or text in seen:
            continue
        seen.add(text)
        report = parse_report(text)
        if report is None:
            continue
        if report.blocked:
            return Outcome(
                OutcomeStatus.BLOCKED,
                summary=report.summary,
                blocker=report.blocker,
                files_changed=list(report.files_changed),
            )
        return Outcome(OutcomeStatus.COMPLETED, summary=report.summary, files_changed=list(report.files_changed))
    return NUDGE


@dataclass(slots=True)
class Report:
    status: ReportStatus
    summary: str = ""
    files_changed: list[str] = field(default_factory=list)
    blocker: str = ""
    source: Literal["json", "marker"] = "json"

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"


def parse_report(text: str | None) -> Report | None:
    """The last completion report in ``text``, or ``None`` when there is none.

    A JSON object with a recognised ``status`` wins over text markers wherever they are;
    among several JSON reports the last one wins. Never raises.
    """
    try:
        if not text or not isinstance(text, str):
            return None
        text = text[-_MAX_SCAN:]
        return _last_json_report(text) or _marker_report(text)
    except Exception:  # untrusted input: a parsing bug must not crash a run
        return None


def _last_json_report(text: str) -> Report | None:
    found: Report | None = None
    for obj in json_objects(text):
        report = _from_dict(obj)
        if report is not None:
            found = report
    return found


def json_objects(text: str):
    """Top-level JSON objects embedded in ``text``, in order (fenced or bare)."""
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            yield obj
        i = text.find("{", end)


def _from_dict(obj: dict[str, Any]) -> Report | None:
    raw_status = obj.get("status")
    if not isinstance(raw_status, str):
        return None
    status = _STATUS_ALIASES.get(raw_status.strip().lower())
    if status is None:
        return None
    blocker = _text(obj.get("blocker"))
    if status == "blocked" and not blocker:
        blocker = _text(obj.get("reason")) or _text(obj.get("summary")) or "blocked (no reason given)"
    return Report(
        status=status,  # type: ignore[arg-type]
        summary=_text(obj.get("summary")),
        files_changed=_files(obj.get("files_changed", obj.get("files"))),
        blocker=blocker if status == "blocked" else "",
        source="json",
    )


def _marker_report(text: str) -> Report | None:
    matches = list(_MARKER.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    after = text[last.end() :].strip()[:_MAX_FIELD]
    if last.group(1).lower() == "blocked":
        return Report(status="blocked", summary=after, blocker=after or "blocked (no reason given)", source="marker")
    return Report(status="complete", summary=after, files_changed=_files_from_text(after), source="marker")


def _files_from_text(text: str) -> list[str]:
    m = _FILES_LINE.search(text) or _FILES_INLINE.search(text)
    if not m:
        return []
    value = m.group(1).strip()
    # "a.py, b.py." or "a.py. Tests pass." -> cut at the first sentence end.
    value = re.split(r"\.(?:\s|$)", value, maxsplit=1)[0]
    return _files([part.strip(" `'\"") for part in re.split(r"[,;]", value)])


def _files(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, str) and item.strip() and item.strip() not in out:
            out.append(item.strip()[:1000])
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()[:_MAX_FIELD]
    if isinstance(value, int | float | bool):
        return str(value)
    try:
        return json.dumps(value)[:_MAX_FIELD]
    except (TypeError, ValueError):
        return ""
