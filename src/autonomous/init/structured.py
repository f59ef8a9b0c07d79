"""The tool's own spec format: a Markdown plan that already names its tasks, read
exactly (no model)::

    # Todo API

    ## Phase 1: Core
    - [TODO-1.1] Create the data model
      - Priority: high
      - Acceptance criteria:
        - a Todo has id, title, done
      - Test steps:
        - pytest tests/test_model.py
    - [TODO-1.2] Add the store
      - Depends on: TODO-1.1

A task line is a list item or a heading whose text starts with a title key the scheduler
understands (``[PREFIX-X.Y]`` with an optional letter, ``X.Y:``, ``Task X.Y``,
``Phase X.Y``; see :func:`autonomous.tasks.parse_title`). Whatever follows it, up to the
next task or the next heading at its level, belongs to it: nested items or sub-headings
labelled *acceptance criteria*, *test steps*, *priority*, *depends on*, *labels* or
*description* fill those fields, anything else is description. Parsing the plan
ourselves costs nothing and gives the same tasks every time, which a model cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from autonomous.errors import SpecError
from autonomous.init.common import HEADING, SpecTask
from autonomous.tasks import NewTask, Priority, TitleKind, check_title_numbers, parse_title


@dataclass(slots=True)
class ParsedSpec:
    title: str | None  # the first "# Heading"
    tasks: list[SpecTask] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bracketed: int = 0  # how many task lines used the [PREFIX-X.Y] form

    @property
    def phases(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.tasks:
            if t.phase:
                seen.setdefault(t.phase)
        return list(seen)


_FENCE = re.compile(r"^\s*(```|~~~)")
_BULLET = re.compile(r"^(\s*)(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s+")
_LEAD_EMPH = re.compile(r"^(\*\*|__)(.+?)\1")
_PHASE_HEADING = re.compile(r"\b(?:phase|milestone|stage|part)\s+(\d+)\b(?!\.\d)", re.IGNORECASE)

# Field labels, as a list item, a heading or a line of their own: "Acceptance criteria:".
_FIELDS = {
    "acceptance criteria": "acceptance_criteria",
    "acceptance": "acceptance_criteria",
    "criteria": "acceptance_criteria",
    "done when": "acceptance_criteria",
    "definition of done": "acceptance_criteria",
    "test steps": "test_steps",
    "tests": "test_steps",
    "test": "test_steps",
    "testing": "test_steps",
    "how to test": "test_steps",
    "verification": "test_steps",
    "verify": "test_steps",
    "priority": "priority",
    "depends on": "dependencies",
    "dependencies": "dependencies",
    "depends": "dependencies",
    "requires": "dependencies",
    "blocked by": "dependencies",
    "labels": "labels",
    "label": "labels",
    "tags": "labels",
    "description": "description",
    "details": "description",
    "notes": "description",
}
_LABEL = re.compile(
    r"^(?:\*\*|__)?(?P<label>" + "|".join(sorted(map(re.escape, _FIELDS), key=len, reverse=True)) + r")"
    r"(?:(?:\*\*|__)?\s*(?::|\uff1a)(?:\*\*|__)?\s*(?P<value>.*)|(?:\*\*|__)?\s*)$",
    re.IGNORECASE,
)
_LIST_FIELDS = {"acceptance_criteria", "test_steps", "dependencies", "labels", "description"}

_PRIORITY_WORDS = {
    "urgent": Priority.URGENT,
    "critical": Priority.URGENT,
    "highest": Priority.URGENT,
    "blocker": Priority.URGENT,
    "p0": Priority.URGENT,
    "high": Priority.HIGH,
    "p1": Priority.HIGH,
    "important": Priority.HIGH,
    "normal": Priority.NORMAL,
    "medium": Priority.NORMAL,
    "default": Priority.NORMAL,
    "p2": Priority.NORMAL,
    "low": Priority.LOW,
    "lowest": Priority.LOW,
    "minor": Priority.LOW,
    "p3": Priority.LOW,
    "p4": Priority.LOW,
}
_DEP_KEY = re.compile(r"\[?\b([A-Za-z][A-Za-z0-9_]*-\d+(?:\.\d+[a-z]?)?(?!\.?\d)|\d+\.\d+[a-z]?)\]?")
_NO_DEPS = re.compile(r"^\s*(none|n/?a|-+|nothing|no)\s*\.?\s*$", re.IGNORECASE)


def parse_priority(value: str) -> Priority | None:
    """``high``, ``P1``, ``Medium`` ... as a Priority; None when it is not one."""
    word = re.sub(r"[^a-z0-9]+", " ", value.lower()).strip().split(" ")[0] if value.strip() else ""
    return _PRIORITY_WORDS.get(word)


def dependency_keys(value: str, *, first_only: bool = False) -> list[str]:
    """Task keys named in ``value`` (``AUTH-1.1, [AUTH-1.2] and 1.3``)."""
    if _NO_DEPS.match(value):
        return []
    keys = [m.group(1) for m in _DEP_KEY.finditer(value)]
    return keys[:1] if first_only else keys


def _strip_item(text: str) -> str:
    """A list item's text without checkbox and a leading emphasis pair around the key."""
    text = _CHECKBOX.sub("", text.strip())
    m = _LEAD_EMPH.match(text)
    if m:
        text = (m.group(2) + text[m.end() :]).strip()
    return text


# Cheap first look: could this text start with a title key at all? Most lines cannot.
_MAYBE_TASK = re.compile(r"^\s*(?:\[[ xX]\]\s+)?(?:\*\*|__)?\s*(?:\[[A-Za-z]|\d|task\s|phase\s)", re.IGNORECASE)
_KEY_PART = re.compile(r"^\s*(\[[^\]]*\]|(?:task|phase)\s+\S+|\d+\.\d+[a-z]?\s*:)", re.IGNORECASE)


class _NumberOutOfRange(ValueError):
    """A task line whose key number is beyond the documented range (reported with its line)."""


def _task_title(text: str) -> str | None:
    """The title if ``text`` starts with a phased title key and has words after it."""
    if not _MAYBE_TASK.match(text):
        return None
    text = _strip_item(text)
    tk = parse_title(text)
    if tk.kind is not TitleKind.PHASED:
        problem = check_title_numbers(text, phased_only=True)
        if problem:
            raise _NumberOutOfRange(problem)
        return None
    rest = _KEY_PART.sub("", text, count=1)
    if not rest.strip(" :-\u2013\u2014.)*_"):
        return None
    return text


class _Builder:
    """One task being read: its fields, and which field the following lines fill."""

    def __init__(self, title: str, phase: str, line: int, indent: int, heading_level: int):
        self.title = title
        self.phase = phase
        self.line = line
        self.indent = indent  # the task item's indent (-1 for a heading task)
        self.heading_level = heading_level  # 0 for a list-item task
        self.fields: dict[str, list[str]] = {k: [] for k in _LIST_FIELDS}
        self.priority: Priority | None = None
        self.field: str | None = None  # field the following lines fill
        self.field_indent = -1  # indent of the label item; deeper items belong to it
        self.field_heading = False  # label came from a heading: everything until the next heading
        self.child_indent: int | None = None  # indent of a list-item task's first nested line

    def description_line(self, raw: str, body: str, indent: int, bullet: bool) -> str:
        """A line of free text under the task. Under a list-item task, its direct child
        items are prose (the bullet is only how the spec nests them), so the marker goes."""
        if self.heading_level:
            return raw.rstrip()
        if self.child_indent is None:
            self.child_indent = indent
        if bullet and indent <= self.child_indent:
            return " " * indent + body.strip()
        if not bullet and indent >= self.child_indent:
            return " " * self.child_indent + body.strip()
        return raw.rstrip()

    def build(self, warnings: list[str]) -> SpecTask:
        deps: list[str] = []
        for item in self.fields["dependencies"]:
            for key in dependency_keys(item):
                if key not in deps:
                    deps.append(key)
        labels: list[str] = []
        for item in self.fields["labels"]:
            for label in re.split(r"[,;]", item):
                label = label.strip(" `'\"")
                if label and label not in labels:
                    labels.append(label)
        description = "\n".join(self.fields["description"]).strip("\n")
        task = NewTask(
            title=self.title,
            description=_dedent(description),
            acceptance_criteria=[c for c in self.fields["acceptance_criteria"] if c],
            test_steps=[s for s in self.fields["test_steps"] if s],
            priority=self.priority or Priority.NORMAL,
            labels=labels,
            dependencies=deps,
        )
        return SpecTask(task=task, phase=self.phase, line=self.line)

    def set_field(self, name: str, value: str, line_no: int, indent: int, heading: bool, warnings: list[str]) -> None:
        self.field_indent = indent
        self.field_heading = heading
        if name == "priority":
            self.field = "priority" if not value else None
            if value:
                self._priority(value, line_no, warnings)
            return
        self.field = name
        if value:
            self.add(value, line_no, warnings, item=False)

    def add(self, text: str, line_no: int, warnings: list[str], *, item: bool) -> None:
        name = self.field or "description"
        if name == "priority":
            self._priority(text, line_no, warnings)
        elif name == "description":
            self.fields["description"].append(text)
        elif name == "dependencies":
            keys = dependency_keys(text, first_only=item)
            if not keys and not _NO_DEPS.match(text):
                warnings.append(f"line {line_no}: no task key in dependency {text.strip()!r} (ignored)")
            self.fields["dependencies"].append(" ".join(keys))
        else:
            self.fields[name].append(_strip_item(re.sub(r"^\d{1,3}[.)]\s+", "", text.strip())))

    def _priority(self, value: str, line_no: int, warnings: list[str]) -> None:
        p = parse_priority(value)
        if p is None:
            warnings.append(f"line {line_no}: unknown priority {value.strip()!r} (kept normal)")
        else:
            self.priority = p


def _dedent(text: str) -> str:
    lines = text.split("\n")
    widths = [len(x) - len(x.lstrip(" ")) for x in lines if x.strip()]
    cut = min(widths, default=0)
    return "\n".join(x[cut:] for x in lines).strip()


def parse_structured(text: str) -> ParsedSpec:
    """Every task the spec names, in spec order, with its fields. Never calls a model.

    Duplicate keys are a :class:`SpecError` (two tasks cannot share an identity); other
    oddities (an unknown priority word) are warnings. Dependencies are returned as
    written; :func:`resolve_dependencies` checks them against the known keys.
    """
    result = ParsedSpec(title=None)
    warnings = result.warnings
    headings: list[tuple[int, str]] = []  # enclosing non-task headings: (level, text)
    current: _Builder | None = None
    builders: list[_Builder] = []
    in_fence = False

    def phase_name() -> str:
        for _level, text in reversed(headings):
            if _PHASE_HEADING.search(text):
                return text
        for level, text in reversed(headings):
            if level > 1:
                return text
        return ""

    def close() -> None:
        nonlocal current
        if current is not None:
            builders.append(current)
            current = None

    def task_title(text: str, line_no: int) -> str | None:
        try:
            return _task_title(text)
        except _NumberOutOfRange as exc:
            raise SpecError(f"line {line_no}: {exc}") from None

    for line_no, raw in enumerate(text.split("\n"), 1):
        if _FENCE.match(raw):
            in_fence = not in_fence
            if current is not None:
                current.fields["description"].append(raw)
            continue
        if in_fence:
            if current is not None:
                current.fields["description"].append(raw)
            continue
        if not raw.strip():
            if current is not None and current.fields["description"] and current.field in (None, "description"):
                current.fields["description"].append("")
            continue

        h = HEADING.match(raw)
        if h:
            level, htext = len(h.group(1)), h.group(2)
            title = task_title(htext, line_no)
            if title is not None:
                close()
                while headings and headings[-1][0] >= level:
                    headings.pop()
                current = _Builder(title, phase_name(), line_no, -1, level)
                continue
            label = _LABEL.match(_strip_item(htext))
            if current is not None and label and (current.heading_level == 0 or level > current.heading_level):
                current.set_field(_FIELDS[label["label"].lower()], label["value"] or "", line_no, -1, True, warnings)
                continue
            if current is not None and current.heading_level and level > current.heading_level:
                current.field = "description"
                current.field_heading = True
                current.fields["description"].append(raw.strip())
                continue
            close()
            if level == 1 and result.title is None:
                result.title = re.sub(r"[*_`]", "", htext).strip() or None
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, htext))
            continue

        b = _BULLET.match(raw)
        indent = len(raw) - len(raw.lstrip(" \t"))
        body = b.group(2) if b else raw.strip()
        in_field_item = (
            current is not None
            and current.field is not None
            and (current.field_heading or (b is not None and indent > current.field_indent))
        )
        title = task_title(body, line_no) if (b or indent == 0) else None
        if title is not None and not (in_field_item and current is not None and current.field == "dependencies"):
            close()
            current = _Builder(title, phase_name(), line_no, indent, 0)
            continue
        if current is None:
            continue  # prose outside any task: context for people, not a task
        if current.heading_level == 0 and indent <= current.indent:
            close()  # a sibling item that is not a task ends the task
            continue
        # a label has a colon, or is the whole (short) line: "Acceptance criteria"
        maybe_label = ":" in body or "\uff1a" in body or len(body) <= 40
        label = _LABEL.match(_strip_item(body)) if maybe_label else None
        if label and (b is not None or indent <= max(current.indent, 0) + 4):
            current.set_field(_FIELDS[label["label"].lower()], label["value"] or "", line_no, indent, False, warnings)
            continue
        if (
            b is None
            and current.field in ("acceptance_criteria", "test_steps")
            and indent > max(current.field_indent, 0)
            and current.fields[current.field]
        ):
            items = current.fields[current.field]
            items[-1] = f"{items[-1]} {body}"  # a wrapped item continues on the next line
            continue
        if in_field_item:
            assert current.field is not None
            if current.field == "description":
                current.fields["description"].append(raw.rstrip())
            else:
                current.add(body, line_no, warnings, item=b is not None)
            continue
        current.field = None
        current.fields["description"].append(current.description_line(raw, body, indent, b is not None))
    close()

    seen: dict[str, int] = {}
    for builder in builders:
        spec_task = builder.build(warnings)
        key = spec_task.key
        if key in seen:
            raise SpecError(f"duplicate task key {key} on lines {seen[key]} and {spec_task.line}")
        seen[key] = spec_task.line
        if spec_task.task.title.lstrip().startswith("["):
            result.bracketed += 1
        result.tasks.append(spec_task)
        m = _PHASE_HEADING.search(spec_task.phase)
        tk = parse_title(spec_task.task.title)
        if m and tk.phase is not None and (m.group(1).lstrip("0") or "0") != str(tk.phase):
            warnings.append(
                f"line {spec_task.line}: {key} is phase {tk.phase} by its key but sits under {spec_task.phase!r}; "
                "the key decides the order"
            )
    return result


def is_structured(parsed: ParsedSpec) -> bool:
    """Whether a spec names its own tasks: one ``[PREFIX-X.Y]`` line, or two of the other
    forms (a single ``1.2: ...`` line in prose is more likely a coincidence)."""
    return parsed.bracketed > 0 or len(parsed.tasks) >= 2
