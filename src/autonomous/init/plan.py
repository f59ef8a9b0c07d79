"""Planning an init: a spec's tasks, before anything is written.

A structured spec (the tool's own grammar) is parsed exactly, with no model and no cost; a
Spec Kit, Kiro, Task Master or beads list is imported exactly (``autonomous.init``'s format
modules); a free-form spec is decomposed by the configured backend, section by section,
and each answer is validated against :class:`Decomposition`: a malformed or truncated
answer is asked for again with the validation error, a bounded number of times. The
model's tasks are then normalised (:func:`_normalise`) so that title and key agree and
every key is unique. Applying the plan to the store is :mod:`autonomous.init.apply`.
"""

import contextlib
import gc
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autonomous import sandbox
from autonomous.config import Config
from autonomous.errors import (
    ConfigError,
    DecompositionError,
    SpecError,
)
from autonomous.events import Event, Outcome, OutcomeStatus, Text
from autonomous.init import FORMATS, Imported, detect
from autonomous.init import parse as parse_import
from autonomous.init.common import SpecTask
from autonomous.init.sections import split_sections
from autonomous.init.source import SpecFile, read_spec
from autonomous.init.structured import ParsedSpec, dependency_keys, is_structured, parse_priority, parse_structured
from autonomous.tasks import NewTask, Priority, TitleKind, parse_title

AUTHOR = "initializer"
READ_ONLY_TOOLS = ("Read", "Glob", "Grep")  # the answer needs no tools; nothing here may write

ModelUse = Literal["auto", "never", "always"]
Method = Literal["structured", "model"]
Progress = Callable[[str], None]


# -- the model's answer ----------------------------------------------------------------------------


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [line.strip(" -*\t") for line in value.splitlines() if line.strip(" -*\t")]
    return value


class ModelTask(BaseModel):
    """One task as the model proposes it. Lenient where a harmless variation is common
    (a string instead of a list, ``medium`` for normal); strict about what matters: a
    title, and the right types."""

    model_config = ConfigDict(extra="ignore")

    key: str | None = None
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    acceptance_criteria: list[str] = Field(default_factory=list)
    test_steps: list[str] = Field(default_factory=list)
    priority: Priority = Priority.NORMAL
    dependencies: list[str] = Field(default_factory=list)
    phase: int | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().strip("[]").strip()
            return value or None
        return value

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    @field_validator("acceptance_criteria", "test_steps", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("dependencies", mode="before")
    @classmethod
    def _deps(cls, value: Any) -> Any:
        if isinstance(value, str):
            return dependency_keys(value)
        if isinstance(value, list):
            return [str(v).strip().strip("[]") for v in value if str(v).strip()]
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if value is None or value == "":
            return Priority.NORMAL
        if isinstance(value, str):
            return parse_priority(value) or value
        return value

    @field_validator("phase", mode="before")
    @classmethod
    def _phase(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = re.search(r"\d+", value)
            return int(m.group()) if m and len(m.group().lstrip("0")) <= 9 else None
        return value


class Decomposition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tasks: list[ModelTask] = Field(min_length=1)


def extract_decomposition(text: str) -> Decomposition:
    """The task list in a model's answer. Raises ValueError with a message meant to be
    shown back to the model: what was wrong, precisely enough to fix it."""
    if not text or not text.strip():
        raise ValueError("the answer was empty; reply with the JSON object")
    decoder = json.JSONDecoder()
    first_error: str | None = None
    candidates: list[Any] = []
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            if first_error is None and '"tasks"' in text[i:]:
                truncated = exc.pos >= len(text.rstrip().rstrip("`").rstrip()) - 1
                first_error = (
                    f"the JSON is incomplete: it ends at character {exc.pos} before the object is closed "
                    "(the answer was probably cut off; keep descriptions shorter)"
                    if truncated
                    else f"the JSON is malformed at character {exc.pos}: {exc.msg}"
                )
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict) and "tasks" in obj:
            candidates.append(obj)
        i = text.find("{", end)
    if not candidates:
        raise ValueError(first_error or 'no JSON object with a "tasks" list was found in the answer')
    try:
        return Decomposition.model_validate(candidates[-1])
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {err['msg']}")
        raise ValueError("the JSON does not match the schema: " + "; ".join(problems)) from None


# -- the plan -----------------------------------------------------------------------------------------


@dataclass(slots=True, repr=False)
class InitPlan:
    """The tasks the spec asks for, before anything is written.

    Its repr is a summary: asyncio formats the result of the task it ran (Python 3.11's
    ``asyncio.run`` does, when it restores the SIGINT handler), and a full repr of 100,000
    tasks cost two seconds of a large init."""

    project_name: str
    spec: SpecFile
    method: Method
    tasks: list[SpecTask]
    warnings: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    model_calls: int = 0
    format: str = "autonomous"  # the spec's format (autonomous.init.FORMATS)
    imported: Imported | None = None  # statuses and ledger of an imported task list

    @property
    def phases(self) -> list[str]:
        return list(dict.fromkeys(t.phase for t in self.tasks if t.phase))

    def __repr__(self) -> str:
        return f"InitPlan({self.project_name!r}, {self.method}, {len(self.tasks)} tasks)"


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a spec's tasks are parsed and written:
    that work makes hundreds of thousands of objects and no reference cycles, and each
    automatic collection would walk them all again (a fifth of a 100,000-task init).
    Everything is freed by reference counting as usual; the collector runs again after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- the planner -----------------------------------------------------------------------------------


class Planner:
    """Works out the tasks of one spec with one configuration. ``backend`` is called
    only when a model is needed, so a structured spec never builds one."""

    def __init__(self, config: Config, backend: Callable[[], Any], progress: Progress):
        self.config = config
        self._backend = backend
        self.progress = progress

    @property
    def backend(self) -> Any:
        return self._backend()

    async def plan_async(
        self,
        spec_path: str | Path,
        project_name: str | None = None,
        *,
        use_model: ModelUse = "auto",
        format: str | None = None,
        tag: str | None = None,
    ) -> InitPlan:
        """Read the spec and work out its tasks (asking the model when it has to).

        ``format`` forces one of :data:`autonomous.init.FORMATS` (default: recognised from
        the content); a Spec Kit, Kiro, Task Master or beads list is imported exactly,
        ``tag`` picking a Task Master tag; ``initializer.include_optional`` makes optional
        checklist tasks work to do."""
        if use_model not in ("auto", "never", "always"):
            raise ConfigError(f"use_model: {use_model!r} is not one of auto, never, always")
        if format is not None and format not in FORMATS:
            raise ConfigError(f"--format {format}: expected one of {', '.join(FORMATS)}")
        spec = read_spec(Path(spec_path).absolute())
        # the tool's own grammar is parsed once: to count its task lines, then to plan
        with _bulk():
            parsed = None if format or spec.text.lstrip().startswith(("{", "[")) else parse_structured(spec.text)
        imported = self._import(spec, project_name, format, tag, use_model, parsed)
        if imported is not None:
            return imported
        if parsed is None:
            with _bulk():
                parsed = parse_structured(spec.text)
        name = (project_name or "").strip() or parsed.title or self.config.project_dir.name or "project"
        structured = is_structured(parsed)
        if use_model == "never" and not structured:
            raise SpecError(
                f"{spec.path} is a free-form spec (no task lines such as '- [APP-1.1] Title' under '## Phase 1' "
                "headings) and --no-model was given; structure it or let the configured model decompose it"
            )
        if structured and use_model != "always":
            plan = InitPlan(name, spec, "structured", parsed.tasks, list(parsed.warnings))
        else:
            plan = await self._decompose(spec, name, parsed)
        return plan

    def _import(
        self, spec: SpecFile, project_name: str | None, fmt: str | None, tag: str | None,
        use_model: ModelUse, parsed: ParsedSpec | None,
    ) -> InitPlan | None:  # fmt: skip
        """The plan of a task list in another tool's format, or None for the tool's own."""
        warnings: list[str] = []
        if fmt is None:
            detection = detect(spec.text, len(parsed.tasks) if parsed else 0)
            fmt = detection.format
            warnings += detection.warnings
            if fmt != "autonomous":
                self.progress(f"{spec.path.name}: read as {fmt} ({detection.reason})")
        if fmt == "autonomous":
            if tag is not None:
                raise ConfigError("--tag is for Task Master files")
            return None
        if use_model == "always":
            raise ConfigError(f"--model-only: {spec.path} is a {fmt} task list, imported exactly without a model")
        include_optional = self.config.initializer.include_optional
        imported = parse_import(spec.text, fmt, tag=tag, include_optional=include_optional)
        if not imported.tasks:
            raise SpecError(f"{spec.path}: read as {fmt}, but it names no tasks")
        name = (project_name or "").strip() or imported.title or self.config.project_dir.name or "project"
        plan = InitPlan(name, spec, "structured", imported.tasks, warnings + imported.warnings)
        plan.format, plan.imported = fmt, imported
        return plan

    # -- model decomposition ---------------------------------------------------------------------------
    async def _decompose(self, spec: SpecFile, name: str, parsed: ParsedSpec) -> InitPlan:
        preamble, sections = split_sections(spec.text, self.config.initializer.section_chars)
        prefix = _choose_prefix(spec.text, name)
        plan = InitPlan(name, spec, "model", [], [])
        keys: dict[str, SpecTask] = {}
        for index, section in enumerate(sections, 1):
            where = f"part {index}/{len(sections)} ({section.title})" if len(sections) > 1 else "the spec"
            self.progress(f"decomposing {where} with {self.config.autonomous.backend} ({self.config.autonomous.model})")
            prompt = _decompose_prompt(
                name, prefix, preamble, section.text, section.title, index, len(sections), list(keys.values())
            )
            answer = await self._ask_for_tasks(prompt, where, plan)
            for task in _normalise(answer, prefix, keys, plan.warnings, section.title if len(sections) > 1 else ""):
                keys[task.key] = task
                plan.tasks.append(task)
        return plan

    async def _ask_for_tasks(self, prompt: str, where: str, plan: InitPlan) -> Decomposition:
        feedback = ""
        last_error = ""
        for attempt in range(1, self.config.initializer.max_attempts + 1):
            full = prompt if not feedback else f"{prompt}\n\n{feedback}"
            text, outcome = await self._run_model(full)
            plan.model_calls += 1
            plan.cost_usd += outcome.cost_usd
            if outcome.status in (
                OutcomeStatus.AUTH_ERROR,
                OutcomeStatus.RATE_LIMITED,
                OutcomeStatus.BUDGET_EXCEEDED,
                OutcomeStatus.INTERRUPTED,
            ) or (outcome.status is OutcomeStatus.ERROR and not text):
                detail = outcome.error or outcome.blocker or outcome.summary or outcome.status.value
                raise DecompositionError(f"the {self.config.autonomous.backend} backend failed on {where}: {detail}")
            try:
                return extract_decomposition(text)
            except ValueError as exc:
                last_error = str(exc)
                plan.warnings.append(f"{where}: answer {attempt} rejected: {last_error}")
                self.progress(f"{where}: answer {attempt} rejected ({last_error}); asking again")
                feedback = (
                    "## Your previous answer was rejected\n\n"
                    f"It could not be used: {last_error}.\n"
                    "Reply again with the complete, valid JSON object in the format above, and nothing else."
                )
        tries = self.config.initializer.max_attempts
        raise DecompositionError(f"the model gave no valid task list for {where} after {tries} attempts: {last_error}")

    async def _run_model(self, prompt: str) -> tuple[str, Outcome]:
        """Run the backend once with no tools; return the assistant's text and the outcome.

        The text comes from the TEXT events, not the outcome's summary: the summary is the
        completion report, and what we need is the JSON around it. When the backend sent
        several messages (a nudge for a missing report, say) we keep them all, newest
        last: :func:`extract_decomposition` takes the last complete task list.
        """
        from autonomous.backends.base import RunOptions

        c = self.config
        options = RunOptions(
            cwd=c.project_dir,
            model=c.autonomous.model,
            max_turns=c.initializer.max_turns,
            max_tokens=c.autonomous.max_tokens,
            allowed_tools=list(READ_ONLY_TOOLS),
            inactivity_timeout=c.autonomous.inactivity_timeout,
            claude_path=c.autonomous.claude_path,
            # the decomposing model's tools are confined like a task's agent
            sandbox=sandbox.for_section(c.project_dir, c.autonomous.sandbox, tool_dirs=(c.state_dir, c.log_dir)),
        )
        texts: list[str] = []

        def keep_text(event: Event) -> None:
            if isinstance(event, Text) and not event.subagent:
                texts.append(event.text)

        outcome = await self.backend.complete(prompt, options, keep_text)
        return "\n".join(texts), outcome


# -- prompt and normalisation ------------------------------------------------------------------------

_EXISTING_CAP = 200
_SPEC_PREFIX = re.compile(r"\[([A-Za-z][A-Za-z0-9_]*)-\d+\.\d+[a-z]?\]")


def _choose_prefix(text: str, project_name: str) -> str:
    """The key prefix: the one the spec already uses most, else one made from the name."""
    counts: dict[str, int] = {}
    for m in _SPEC_PREFIX.finditer(text):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    if counts:
        return max(counts, key=lambda k: counts[k])
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*", project_name)
    if not words:
        return "TASK"
    return words[0].upper()[:8]


def load_prompt(name: str) -> Template:
    return Template(resources.files("autonomous.prompts").joinpath(name).read_text(encoding="utf-8"))


def _decompose_prompt(
    name: str,
    prefix: str,
    preamble: str,
    section: str,
    section_title: str,
    index: int,
    total: int,
    earlier: list[SpecTask],
) -> str:
    last_phase = max((parse_title(t.task.title).phase or 0 for t in earlier), default=0)
    if total > 1 and last_phase:
        phase_rule = (
            f"Earlier parts of this specification were planned as phases 1 to {last_phase}; "
            f"number the phases of this part from {last_phase + 1}."
        )
    else:
        phase_rule = "Number phases from 1, tasks within a phase from 1."
    existing = ""
    if earlier:
        shown = earlier[-_EXISTING_CAP:]
        lines = [f"- {t.key}: {t.task.title}" for t in shown]
        more = len(earlier) - len(shown)
        existing = (
            "\n## Tasks already planned from earlier parts\n\nDo not repeat them; you may depend on them by key.\n\n"
            + "\n".join(lines)
            + (f"\n- ... and {more} more" if more else "")
            + "\n"
        )
    part_note = ""
    if total > 1:
        part_note = f"This is part {index} of {total} of a long specification: plan only this part. " + (
            "The overview that opens the specification is included for context.\n" if preamble else "\n"
        )
    spec_text = f"{preamble}\n\n[...]\n\n{section}" if (total > 1 and preamble) else section
    return load_prompt("decompose.md").safe_substitute(
        project_name=name,
        prefix=prefix,
        phase_rule=phase_rule,
        existing=existing,
        part_note=part_note,
        section_title=f" (part {index} of {total}: {section_title})" if total > 1 else "",
        spec=spec_text.strip(),
    )


def _normalise(
    answer: Decomposition, prefix: str, taken: dict[str, SpecTask], warnings: list[str], section: str
) -> list[SpecTask]:
    """Model tasks -> SpecTasks whose title carries the key, with unique keys.

    The title decides the scheduling order, so title and key must agree: a title with a
    key pattern gives the key; a key the title lacks is put in front of the title; a task
    with neither gets the next free ``PREFIX-phase.n``. A key already taken (by an earlier
    part, or twice in one answer) is renumbered to the next free number in its phase.
    """
    out: list[SpecTask] = []
    used = set(taken)

    def next_free(phase: int, pfx: str) -> str:
        n = 1
        while f"{pfx}-{phase}.{n}" in used:
            n += 1
        return f"{pfx}-{phase}.{n}"

    for mt in answer.tasks:
        title = re.sub(r"\s+", " ", mt.title).strip()
        tk = parse_title(title)
        if tk.kind is TitleKind.PHASED and tk.key:
            key = tk.key
        elif mt.key and parse_title(f"[{mt.key}] x").kind is TitleKind.PHASED:
            key = parse_title(f"[{mt.key}] x").key or mt.key
            title = f"[{key}] {title}"
        elif mt.key and parse_title(f"{mt.key}: x").kind is TitleKind.PHASED:
            key = mt.key
            title = f"{key}: {title}"
        else:
            key = next_free(mt.phase or 1, prefix)
            title = f"[{key}] {title}"
        if key in used:
            tk = parse_title(title)
            pfx = key.rsplit("-", 1)[0] if "-" in key else prefix
            fresh = next_free(tk.phase or mt.phase or 1, pfx)
            warnings.append(f"model task key {key} was already taken; renumbered to {fresh}")
            rest = re.sub(
                r"^\s*(\[[^\]]*\]|\d+\.\d+[a-z]?\s*:|(?:task|phase)\s+\d+\.\d+[a-z]?)\s*",
                "",
                title,
                count=1,
                flags=re.I,
            )
            title = f"[{fresh}] {rest}"
            key = fresh
        used.add(key)
        task = NewTask(
            title=title,
            key=key,
            description=mt.description.strip(),
            acceptance_criteria=[c.strip() for c in mt.acceptance_criteria if c and c.strip()],
            test_steps=[s.strip() for s in mt.test_steps if s and s.strip()],
            priority=mt.priority,
            dependencies=list(dict.fromkeys(mt.dependencies)),
        )
        phase = parse_title(title).phase
        out.append(SpecTask(task=task, phase=f"Phase {phase}" if phase else section, line=0))
    return out
