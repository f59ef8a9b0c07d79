"""GitHub Spec Kit ``tasks.md``: ``## Phase N: ...`` sections of ``- [ ] T001 [P] [US1] ...``.

The mapping (docs/initializer.md has the table): the task id is the key; the phase is the
heading it sits under (the scheduler orders by ``phase.n``, the title's order key); ``[P]``
is the ``parallel`` label, and the order rule lets a run of ``[P]`` tasks of one phase
go side by side while every other task waits for the step before it; ``[USn]`` is a label
and the story's ``(Priority: Pn)`` the priority; ``(depends on T012)`` and the lines of a
"Dependencies" section that name task ids are explicit dependencies; ``[x]`` is done.
"""

from __future__ import annotations

import re

from autonomous.errors import SpecError
from autonomous.init.common import (
    CHECKBOX,
    PARALLEL_LABEL,
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
from autonomous.init.structured import parse_priority
from autonomous.tasks import NewTask, Priority

TASK_ID = re.compile(r"^T\d{3,}$")
_ID_START = re.compile(r"^(?P<id>T[0-9A-Za-z]*)\b\s*(?P<rest>.*)$")
_MARKER = re.compile(r"^\[(?P<tag>[A-Za-z][A-Za-z0-9_-]{0,15})\]\s*")
_PHASE = re.compile(
    r"^#{2,3}\s+(?:[^\w\s]+\s*)*Phase\s+(?P<num>[\d.]+)\s*(?:[:\-\u2013\u2014.]\s*(?P<name>.*))?$", re.I
)
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_STORY_PRIORITY = re.compile(r"\(\s*Priority\s*:\s*(?P<p>P\d)\s*\)", re.I)
_STORY = re.compile(r"User\s+Story\s+(\d+)", re.I)
_INLINE_DEPS = re.compile(r"\s*\(\s*(?:depends\s+on|after|requires|blocked\s+by)\s*:?\s*(?P<ids>[^)]*)\)", re.I)
_IDS = re.compile(r"\bT(\d{3,})(?:\s*[-\u2013]\s*T?(\d{3,}))?\b")
_AFTER = re.compile(r"\b(depends\s+on|depend\s+on|requires?|needs?|after|blocked\s+by)\b", re.I)
_BEFORE = re.compile(r"\b(blocks?|before)\b", re.I)
_DEPS_SECTION = re.compile(r"dependenc", re.I)
_DETAIL_BULLET = re.compile(r"^[-*+]\s+")
_CHECKPOINT = re.compile(r"^\s*(?:[-*]\s+)?\*\*Checkpoint\*\*\s*:?\s*(?P<text>.*)$", re.I)


def task_ids(text: str) -> list[str]:
    """``T012, T014-T016`` -> ``["T012", "T014", "T015", "T016"]`` (ranges keep the width)."""
    out: list[str] = []
    for m in _IDS.finditer(text):
        width = len(m.group(1))
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        if last < first or last - first > 1000:
            last = first
        out += [f"T{n:0{width}d}" for n in range(first, last + 1)]
    return out


def count_lines(text: str) -> int:
    """How many lines look like Spec Kit task lines (format detection)."""
    n = 0
    for _no, raw in content_lines(text):
        m = CHECKBOX.match(raw)
        if m and TASK_ID.match(m["rest"].split(" ", 1)[0] if m["rest"] else ""):
            n += 1
    return n


def parse(text: str) -> Imported:
    """Every task of a Spec Kit ``tasks.md``, in file order; SpecError naming the line for
    a malformed task line or a duplicate id."""
    result = Imported("speckit", checklist=True)
    phase_no = 0
    phase_name = ""
    phase_priority: Priority | None = None
    story = ""
    in_deps_section = False
    deps_lines: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    phases: dict[int, list[tuple[str, bool]]] = {}
    numbers: dict[int, int] = {}
    last_in_phase: NewTask | None = None
    detail_of: tuple[NewTask, int] | None = None  # the task whose indented lines follow, and its indent
    for line_no, raw in content_lines(text):
        h = _HEADING.match(raw)
        if h:
            detail_of = None
            level = len(h["hashes"])
            if level == 1 and result.title is None:
                result.title = re.sub(r"^Tasks\s*:\s*", "", h["text"]).strip() or None
            p = _PHASE.match(raw)
            if p:
                phase_no += 1
                phase_name = h["text"].strip()
                pm = _STORY_PRIORITY.search(phase_name)
                phase_priority = parse_priority(pm["p"]) if pm else None
                sm = _STORY.search(phase_name)
                story = f"US{sm.group(1)}" if sm else ""
                in_deps_section = False
                last_in_phase = None
            elif level <= 2:
                in_deps_section = bool(_DEPS_SECTION.search(h["text"]))
            continue
        if in_deps_section:
            deps_lines.append((line_no, raw))
            continue
        cp = _CHECKPOINT.match(raw)
        if cp and last_in_phase is not None and cp["text"].strip():
            last_in_phase.acceptance_criteria.append(cp["text"].strip())
            continue
        m = CHECKBOX.match(raw)
        indent = len(raw) - len(raw.lstrip())
        task_line = m is not None and m["rest"][:1] == "T" and m["rest"][1:2].isdigit()
        if detail_of is not None and raw.strip() and indent > detail_of[1] and not task_line:
            detail = _DETAIL_BULLET.sub("", raw.strip(), count=1)
            detail_of[0].description += "\n" + detail  # a line under a task: more of its description
            continue
        if raw.strip() and indent == 0:
            detail_of = None
        if not m:
            continue
        rest = m["rest"].strip()
        idm = _ID_START.match(rest)
        if not idm or not idm["id"][1:2].isdigit():
            if not is_box(m["mark"]):
                continue  # "- [P] tasks touch different files": prose, not a checkbox
            result.warnings.append(f"line {line_no}: checkbox without a task id (T001): {rest[:60]!r}; not a task")
            continue
        key = idm["id"]
        if not TASK_ID.match(key):
            raise SpecError(f"line {line_no}: malformed task id {key!r} (expected T followed by digits, like T001)")
        status = checkbox_status(m["mark"], line_no)
        if key in seen:
            raise SpecError(f"duplicate task id {key} on lines {seen[key]} and {line_no}")
        seen[key] = line_no
        body = idm["rest"]
        parallel = False
        labels: list[str] = []
        tags: list[str] = []
        while True:
            mk = _MARKER.match(body)
            if not mk:
                break
            tag = mk["tag"]
            tags.append(tag)
            if tag == "P":
                parallel = True
            elif tag not in labels:
                labels.append(tag)
            body = body[mk.end() :]
        deps: list[str] = []
        for dm in _INLINE_DEPS.finditer(body):
            deps += task_ids(dm["ids"])
        title_text = _INLINE_DEPS.sub("", body).strip()
        if not title_text:
            raise SpecError(f"line {line_no}: task {key} has no description")
        if story and not any(lb.upper().startswith("US") for lb in labels):
            labels.append(story)
        if parallel:
            labels.insert(0, PARALLEL_LABEL)
        number = phase_no or 1
        numbers[number] = numbers.get(number, 0) + 1
        task = NewTask(
            title=phased_title(number, numbers[number], title_text),
            key=key,
            description=title_text,
            priority=phase_priority or Priority.NORMAL,
            labels=labels,
            dependencies=list(dict.fromkeys(deps)),
        )
        fields = {"tags": tags} if tags else {}
        result.add(task, phase=phase_name, line=line_no, status=status,
                   source=Source(line=line_no, line_sha=line_sha(raw), fields=fields))  # fmt: skip
        phases.setdefault(number, []).append((key, parallel))
        last_in_phase = task
        detail_of = (task, indent)
    by_key = {t.key: t.task for t in result.tasks}
    for members in phases.values():
        implied = sequence([k for k, _p in members], [p for _k, p in members])
        for key, waits in implied.items():
            add_dependencies(by_key[key], waits)
    _section_dependencies(deps_lines, by_key, result.warnings)
    return result


def _section_dependencies(lines: list[tuple[int, str]], by_key: dict[str, NewTask], warnings: list[str]) -> None:
    """Lines of a "Dependencies & Execution Order" section that name task ids on both
    sides of a verb: ``T014 depends on T012, T013`` / ``T010 blocks T011``. Prose that
    names no task ids (``Setup before Foundational``) is for people: the phases already
    say it."""
    for line_no, raw in lines:
        verb = _AFTER.search(raw) or _BEFORE.search(raw)
        if verb is None:
            continue
        left, right = task_ids(raw[: verb.start()]), task_ids(raw[verb.end() :])
        if not left or not right:
            continue
        if verb.re is _BEFORE:
            left, right = right, left
        for key in left:
            task = by_key.get(key)
            if task is None:
                warnings.append(f"line {line_no}: the dependencies section names {key}, which is not a task; ignored")
                continue
            add_dependencies(task, right)
