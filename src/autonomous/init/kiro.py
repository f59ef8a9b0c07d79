"""Kiro and cc-sdd ``tasks.md``: ``- [ ] 1. Title`` with sub-tasks ``- [ ] 1.1 Title``.

The mapping (docs/initializer.md has the table): the number is the key; a task with
sub-tasks is a *group*, not a task of its own: its sub-tasks carry its name as their
phase, and its box is ticked when the last of them is done. Detail bullets under a task
are its description; ``_Requirements: 1.1, 2.3_`` and ``**Validates: ...**`` are kept as
references (in the description, for the agent, and in the ledger); cc-sdd's ``(P)`` is
the ``parallel`` label (the order rule lets it run beside its neighbours),
``_Depends: 1.2_`` a dependency, ``_Boundary: X_`` a reference. An optional task
(``- [ ]*``, also ``- [ ]\\*``) has the label ``optional`` and is imported canceled, so
no runner takes it and nothing waits for it, unless ``--include-optional``. Drift that
real files show is accepted: ``## Task 1:`` headings, emojis anywhere, unnumbered
checkboxes under a numbered task, any indentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from autonomous.errors import SpecError
from autonomous.init.common import (
    CHECKBOX,
    HEADING,
    OPTIONAL_LABEL,
    PARALLEL_LABEL,
    Group,
    Imported,
    Source,
    add_dependencies,
    checkbox_status,
    content_lines,
    is_box,
    line_sha,
    phased_title,
    sequence,
)
from autonomous.tasks import NewTask, TaskStatus

_SYMBOLS = r"(?:[^\w\s\[\]()*_`#-]+\s*)*"  # emojis and the like, before the number
_NUMBERED = re.compile(
    rf"^{_SYMBOLS}(?:\*\*)?(?:Task\s+)?(?P<num>\d+(?:\.\d+)*)(?:\.(?!\d)|:|\))?(?:\*\*)?(?:\s+|$)(?P<title>.*)$", re.I
)
_TASK_HEADING = re.compile(
    rf"^#{{2,4}}\s+{_SYMBOLS}(?:\[(?P<mark>.)\]\s*)?Task\s+(?P<num>\d+(?:\.\d+)*)\s*[:.\-\u2013\u2014]?\s*(?P<title>.*)$",
    re.I,
)
_PARALLEL = re.compile(r"\s*\(P\)\s*")
_REF = re.compile(
    r"^\s*(?:[-*+]\s+)?(?:_|\*\*)?\s*(?P<name>Requirements?|Validates|Depends(?:\s+on)?|Boundary|Leverage)\s*:\s*"
    r"(?P<value>.*?)\s*(?:_|\*\*)?\s*$",
    re.I,
)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_DEP_NUM = re.compile(r"\b\d+(?:\.\d+)*\b")


@dataclass(slots=True)
class _Entry:
    key: str
    title: str
    line: int
    raw: str
    status: TaskStatus
    tickable: bool  # a checkbox line (a heading has no box)
    optional: bool
    parallel: bool
    details: list[str] = field(default_factory=list)
    refs: dict[str, list[str]] = field(default_factory=dict)
    children: list[_Entry] = field(default_factory=list)

    @property
    def top(self) -> str:
        return self.key.split(".", 1)[0]


def count_lines(text: str) -> int:
    """How many lines look like Kiro task lines (format detection)."""
    n = 0
    for _no, raw in content_lines(text):
        m = CHECKBOX.match(raw)
        if (m and _NUMBERED.match(m["rest"])) or _TASK_HEADING.match(raw):
            n += 1
    return n


def parse(text: str, *, include_optional: bool = False) -> Imported:
    result = Imported("kiro", checklist=True)
    tops: list[_Entry] = []
    by_key: dict[str, _Entry] = {}
    current: _Entry | None = None
    current_top: _Entry | None = None
    unnumbered = 0

    def register(entry: _Entry) -> None:
        if entry.key in by_key:
            raise SpecError(f"duplicate task number {entry.key} on lines {by_key[entry.key].line} and {entry.line}")
        by_key[entry.key] = entry

    for line_no, raw in content_lines(text):
        th = _TASK_HEADING.match(raw)
        if th:
            entry = _entry(
                th["num"], th["title"], line_no, raw, th["mark"] or " ", False, tickable=th["mark"] is not None
            )
            register(entry)
            current = current_top = entry
            tops.append(entry)
            unnumbered = 0
            continue
        h = HEADING.match(raw)
        if h:
            if len(h.group(1)) == 1 and result.title is None:
                result.title = (
                    re.sub(r"^(?:Implementation\s+Plan|Tasks)\s*[:\-\u2013]?\s*", "", h.group(2)).strip() or None
                )
            current = None
            if len(h.group(1)) <= 2:
                current_top = None
            continue
        m = CHECKBOX.match(raw)
        if m:
            num = _NUMBERED.match(m["rest"])
            if num:
                entry = _entry(num["num"], num["title"], line_no, raw, m["mark"], bool(m["star"]), tickable=True)
            elif current_top is not None and m["rest"].strip():
                unnumbered += 1
                key = f"{current_top.key}.{unnumbered}"
                while key in by_key:
                    unnumbered += 1
                    key = f"{current_top.key}.{unnumbered}"
                entry = _entry(key, m["rest"], line_no, raw, m["mark"], bool(m["star"]), tickable=True)
            elif not is_box(m["mark"]):
                continue
            else:
                result.warnings.append(
                    f"line {line_no}: checkbox without a task number: {m['rest'][:60]!r}; not a task"
                )
                current = None
                continue
            if not entry.title:
                raise SpecError(f"line {line_no}: task {entry.key} has no title")
            register(entry)
            if "." not in entry.key:
                tops.append(entry)
                current_top = entry
                unnumbered = 0
            else:
                parent = by_key.get(entry.top)
                if parent is None:
                    tops.append(entry)  # a sub-number without its parent: a task of its own
                else:
                    parent.children.append(entry)
                    entry.optional = entry.optional or parent.optional
            current = entry
            continue
        if current is None or not raw.strip():
            continue
        ref = _REF.match(raw)
        if ref:
            name = ref["name"].lower()
            name = (
                "requirements" if name.startswith("requirement") else "depends" if name.startswith("depends") else name
            )
            current.refs.setdefault(name, []).append(ref["value"].strip(" _*"))
            continue
        current.details.append(_BULLET.sub("", raw.strip()) if _BULLET.match(raw) else raw.strip())

    for phase, top in enumerate(tops, 1):
        if top.children:
            group = Group(
                top.key, top.title, top.line if top.tickable else 0, line_sha(top.raw) if top.tickable else ""
            )
            result.groups[top.key] = group
            members = []
            for n, child in enumerate(top.children, 1):
                if top.status is TaskStatus.DONE and child.status is not TaskStatus.DONE:
                    result.warnings.append(
                        f"line {child.line}: {child.key} is not ticked but its group {top.key} (line {top.line}) is; "
                        f"kept as not done"
                    )
                context = [*top.details, f"Part of {top.key}. {top.title}"]
                _add(result, child, phase, n, f"{top.key}. {top.title}", top.key, context, include_optional)
                group.members.append(child.key)
                members.append(child)
            implied = sequence([c.key for c in members], [c.parallel for c in members])
            by_task = {t.key: t.task for t in result.tasks}
            for key, waits in implied.items():
                add_dependencies(by_task[key], waits)
        else:
            _add(result, top, phase, 0, f"{top.key}. {top.title}", "", [], include_optional)
    # a dependency on a group is a dependency on each of its sub-tasks
    for st in result.tasks:
        deps: list[str] = []
        for d in st.task.dependencies:
            deps += result.groups[d].members if d in result.groups else [d]
        st.task.dependencies = list(dict.fromkeys(d for d in deps if d != st.key))
    return result


def _entry(num: str, title: str, line: int, raw: str, mark: str, star: bool, *, tickable: bool) -> _Entry:
    status = checkbox_status(mark, line)
    parallel = bool(_PARALLEL.search(title))
    title = _PARALLEL.sub(" ", title).strip()
    title = re.sub(r"^\*\*(.+?)\*\*", r"\1", title).strip()
    if title.endswith("**") and title.count("**") % 2:  # "**3. Title**": the number opened the bold
        title = title[:-2].rstrip()
    return _Entry(num.rstrip("."), title, line, raw, status, tickable, star, parallel)


def _add(result: Imported, e: _Entry, phase: int, number: int, phase_name: str, parent: str, context: list[str],
         include_optional: bool) -> None:  # fmt: skip
    description = list(e.details)
    fields: dict = {}
    labels: list[str] = []
    deps: list[str] = []
    for name, values in e.refs.items():
        if name == "depends":
            for v in values:
                deps += _DEP_NUM.findall(v)
            continue
        fields[name] = values
        pretty = {"requirements": "Requirements", "validates": "Validates", "boundary": "Boundary"}.get(name, name)
        description.append(f"{pretty}: {', '.join(values)}")
    if e.parallel:
        labels.append(PARALLEL_LABEL)
    status = e.status
    if e.optional:
        labels.append(OPTIONAL_LABEL)
        if status is TaskStatus.TODO and not include_optional:
            status = TaskStatus.CANCELED
            fields["skipped_optional"] = True
    description += context
    task = NewTask(
        title=phased_title(phase, number, e.title),
        key=e.key,
        description="\n".join(description).strip(),
        labels=labels,
        dependencies=list(dict.fromkeys(deps)),
    )
    source = Source(line=e.line if e.tickable else 0, line_sha=line_sha(e.raw) if e.tickable else "",
                    parent=parent, fields=fields)  # fmt: skip
    result.add(task, phase=phase_name, line=e.line, status=status, source=source)
