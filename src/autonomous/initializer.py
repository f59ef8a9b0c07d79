"""The initializer: spec -> tasks in the provider, a META task, and the project marker.

Steps, each of which can be re-run safely:

1. read the spec (:func:`autonomous.spec.read_spec`: a bad file is a SpecError, exit 2);
2. plan the tasks: a structured spec is parsed exactly (no model, no cost); a free-form
   spec is decomposed by the configured backend, section by section, and the answer is
   validated against :class:`Decomposition` (a malformed or truncated answer is asked
   for again with the validation error, a bounded number of times);
3. check dependencies: ones that name nothing or close a cycle are dropped with a warning;
4. apply the plan to the provider, by key: new tasks are created in **one**
   ``create_tasks`` batch together with the META task (the provider writes a batch in one
   transaction and is idempotent by key, so a crash before the marker is written leaves
   either nothing or everything, and a re-run creates no duplicates); tasks whose spec
   text changed are updated (never their status); tasks no longer in the spec are
   reported, and canceled with ``prune``;
5. write ``.project_state.json`` atomically. Its presence is what makes a second
   ``init`` refuse without ``--force``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autonomous import __version__, sandbox, scheduler
from autonomous.config import Config, InitializerConfig, load_config
from autonomous.errors import (
    AlreadyInitialized,
    AutonomousError,
    ClaimConflict,
    ConfigError,
    DecompositionError,
    SpecError,
)
from autonomous.events import Outcome, OutcomeStatus, Text
from autonomous.fsutil import write_json_atomic
from autonomous.init import FORMATS, Imported, detect
from autonomous.init import parse as parse_import
from autonomous.init.ledger import clear_ledger, write_ledger
from autonomous.sandbox import Confinement
from autonomous.spec import (
    ParsedSpec,
    SpecFile,
    SpecTask,
    dependency_keys,
    is_structured,
    parse_priority,
    parse_structured,
    read_spec,
    resolve_dependencies,
    split_sections,
)
from autonomous.tasks import NewTask, Priority, Task, TaskStatus, TitleKind, parse_title, utcnow
from autonomous.workspace import git

MARKER_NAME = ".project_state.json"
MARKER_SCHEMA_VERSION = 1
META_KEY = "META"
AUTHOR = "initializer"
READ_ONLY_TOOLS = ("Read", "Glob", "Grep")  # the answer needs no tools; nothing here may write

ModelUse = Literal["auto", "never", "always"]
Method = Literal["structured", "model"]


# -- settings ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Settings:
    """What the initializer reads from its configuration, flattened once. Built only by
    :meth:`from_config`: the defaults are the config's (config.py), never repeated here."""

    project_dir: Path  # where the agent works (autonomous.project_dir)
    backend: str
    model: str
    max_tokens: int
    max_turns: int
    max_attempts: int  # model answers per section before giving up
    section_chars: int  # free-form specs are cut into sections of about this size
    ordering: str
    claude_path: str | None
    inactivity_timeout: float
    provider_type: str
    provider_ids: dict[str, Any]  # what the marker records about the store
    state_dir: Path  # where an import's ledger goes (autonomous.init.ledger)
    include_optional: bool  # import optional checklist tasks as work to do
    sandbox: Confinement | None  # the decomposing model's tools are confined like a task's agent

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        auto, init, store = config.autonomous, config.initializer, config.state_provider
        return cls(
            project_dir=config.project_dir,
            backend=auto.backend,
            model=auto.model,
            max_tokens=auto.max_tokens,
            max_turns=init.max_turns,
            max_attempts=init.max_attempts,
            section_chars=init.section_chars,
            ordering=config.execution.ordering,
            claude_path=auto.claude_path,
            inactivity_timeout=auto.inactivity_timeout,
            provider_type=store.type,
            provider_ids={
                "team_id": store.team_id,
                "project_id": None,  # the store's own, once it has one (Linear)
                "project_name": store.project_name,
                "repo": store.repo,
                "state_dir": store.state_dir,
            },
            state_dir=config.state_dir,
            include_optional=init.include_optional,
            sandbox=sandbox.for_section(
                config.project_dir, auto.sandbox, tool_dirs=(config.state_dir, config.log_dir)
            ),
        )


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


# -- results -----------------------------------------------------------------------------------------


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


@dataclass(slots=True, repr=False)
class InitResult:
    """What ``initialize`` did (or, with ``dry_run``, would do). Its repr is a summary
    (see :class:`InitPlan`)."""

    project_name: str
    spec_path: Path
    spec_sha256: str
    method: Method
    dry_run: bool
    planned: list[SpecTask]
    created: list[Task] = field(default_factory=list)
    updated: list[Task] = field(default_factory=list)
    unchanged: list[Task] = field(default_factory=list)
    not_in_spec: list[Task] = field(default_factory=list)
    canceled: list[Task] = field(default_factory=list)
    to_create: list[SpecTask] = field(default_factory=list)  # dry run: what would be created
    to_update: list[SpecTask] = field(default_factory=list)  # dry run: what would be updated
    meta: Task | None = None
    marker_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    model_calls: int = 0
    format: str = "autonomous"
    ledger_path: Path | None = None

    def __repr__(self) -> str:
        return (
            f"InitResult({self.project_name!r}, {self.method}, dry_run={self.dry_run}, "
            f"created={self.tasks_created}, updated={len(self.updated)}, unchanged={len(self.unchanged)})"
        )

    @property
    def tasks_created(self) -> int:
        """How many spec tasks this run created (the META task not counted)."""
        return len(self.to_create) if self.dry_run else len(self.created)

    @property
    def tasks(self) -> list[Task]:
        """The spec's tasks as the provider now holds them, in spec order."""
        return self.created + self.updated + self.unchanged if not self.dry_run else []

    def to_dict(self) -> dict[str, Any]:
        def brief(task: Task) -> dict[str, Any]:
            return task.to_dict()

        return {
            "project_name": self.project_name,
            "spec": {"path": str(self.spec_path), "sha256": self.spec_sha256},
            "method": self.method,
            "format": self.format,
            "dry_run": self.dry_run,
            "tasks_created": self.tasks_created,
            "planned": [t.to_dict() for t in self.planned],
            "created": [t.to_dict() for t in self.to_create] if self.dry_run else [brief(t) for t in self.created],
            "updated": [t.to_dict() for t in self.to_update] if self.dry_run else [brief(t) for t in self.updated],
            "unchanged": [t.key for t in self.unchanged],
            "not_in_spec": [t.key for t in self.not_in_spec],
            "canceled": [t.key for t in self.canceled],
            "meta": self.meta.to_dict() if self.meta else None,
            "marker": str(self.marker_path) if self.marker_path else None,
            "warnings": list(self.warnings),
            "cost_usd": round(self.cost_usd, 6),
            "model_calls": self.model_calls,
        }


# -- the marker -------------------------------------------------------------------------------------


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


def marker_path(project_dir: Path) -> Path:
    return Path(project_dir) / MARKER_NAME


def read_marker(project_dir: Path) -> dict[str, Any] | None:
    """The marker's content; None when there is none. An unreadable marker counts as
    present (``{}``): refusing is safer than initializing over a project we cannot read."""
    path = marker_path(project_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(path: Path, data: dict[str, Any]) -> None:
    """Temp file, fsync, ``os.replace``: readers and crashes see the old or the new marker."""
    write_json_atomic(path, data)


# -- the initializer ---------------------------------------------------------------------------------

Progress = Callable[[str], None]


class ProjectInitializer:
    """``ProjectInitializer(InitializerConfig(...)).initialize("spec.md", project_name=...)``.

    ``provider`` and ``backend`` may be passed in (tests, embedding); otherwise they are
    built from the configuration when first needed, so a structured spec never touches
    a backend and a dry run of a new project never opens the store.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        provider: Any = None,
        backend: Any = None,
        project_dir: str | Path | None = None,
        progress: Progress | None = None,
    ):
        if config is None:  # the defaults; no file is read
            config = InitializerConfig(project_dir=project_dir)
        elif project_dir is not None:  # the same configuration, rooted in that project
            config = InitializerConfig(config=config, project_dir=project_dir)
        self.config = config
        self.settings = Settings.from_config(config)
        self._provider = provider
        self._owns_provider = provider is None
        self._backend = backend
        self.progress: Progress = progress or (lambda message: None)

    # -- wiring -------------------------------------------------------------------------------------
    @property
    def provider(self) -> Any:
        if self._provider is None:
            from autonomous.providers import get_provider

            self._provider = get_provider(self.config)
        return self._provider

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from autonomous.backends import get_backend

            made = get_backend(self.settings.backend)
            backend = made() if isinstance(made, type) else made
            if hasattr(backend, "max_nudges"):
                # A task run nudges for a missing completion report; our answer is the task
                # list, and a malformed one is asked for again here, with the error attached.
                backend.max_nudges = 0
            self._backend = backend
        return self._backend

    def close(self) -> None:
        if self._owns_provider and self._provider is not None:
            self._provider.close()
            self._provider = None

    # -- public API ---------------------------------------------------------------------------------
    def initialize(
        self,
        spec_path: str | Path,
        project_name: str | None = None,
        *,
        force: bool = False,
        prune: bool = False,
        dry_run: bool = False,
        use_model: ModelUse = "auto",
        **formats: Any,
    ) -> InitResult:
        """Create (or with ``force``, update) the project's tasks from the spec.
        ``formats``: ``format``, ``tag``, ``include_optional`` (see :meth:`plan_async`)."""
        return asyncio.run(
            self.initialize_async(
                spec_path, project_name, force=force, prune=prune, dry_run=dry_run, use_model=use_model, **formats
            )
        )

    async def initialize_async(
        self,
        spec_path: str | Path,
        project_name: str | None = None,
        *,
        force: bool = False,
        prune: bool = False,
        dry_run: bool = False,
        use_model: ModelUse = "auto",
        **formats: Any,
    ) -> InitResult:
        marker = read_marker(self.settings.project_dir)
        mpath = marker_path(self.settings.project_dir)
        if marker is not None and not force:
            raise AlreadyInitialized(
                f"project already initialized: {mpath} exists; use --force to apply the spec again "
                "(tasks are matched by key, nothing is duplicated)"
            )
        plan = await self.plan_async(spec_path, project_name, use_model=use_model, **formats)
        try:
            if dry_run and marker is None and self._provider is None:
                return self._dry_run_without_store(plan)
            with _bulk():
                return self._apply(plan, marker or {}, prune=prune, dry_run=dry_run)
        finally:
            self.close()

    def plan(
        self, spec_path: str | Path, project_name: str | None = None, *, use_model: ModelUse = "auto", **formats: Any
    ) -> InitPlan:
        """The tasks the spec asks for, dependencies checked among themselves; writes nothing."""
        plan = asyncio.run(self.plan_async(spec_path, project_name, use_model=use_model, **formats))
        plan.warnings += resolve_dependencies(plan.tasks, (), self.settings.ordering)
        return plan

    async def plan_async(
        self,
        spec_path: str | Path,
        project_name: str | None = None,
        *,
        use_model: ModelUse = "auto",
        format: str | None = None,
        tag: str | None = None,
        include_optional: bool | None = None,
    ) -> InitPlan:
        """Read the spec and work out its tasks (asking the model when it has to).

        ``format`` forces one of :data:`autonomous.init.FORMATS` (default: recognised from
        the content); a Spec Kit, Kiro, Task Master or beads list is imported exactly,
        ``tag`` picking a Task Master tag and ``include_optional`` (default: the config's)
        making optional checklist tasks work to do."""
        if use_model not in ("auto", "never", "always"):
            raise ConfigError(f"use_model: {use_model!r} is not one of auto, never, always")
        if format is not None and format not in FORMATS:
            raise ConfigError(f"--format {format}: expected one of {', '.join(FORMATS)}")
        spec = read_spec(Path(spec_path).absolute())
        if include_optional is None:
            include_optional = self.settings.include_optional
        # the tool's own grammar is parsed once: to count its task lines, then to plan
        with _bulk():
            parsed = None if format or spec.text.lstrip().startswith(("{", "[")) else parse_structured(spec.text)
        imported = self._import(spec, project_name, format, tag, include_optional, use_model, parsed)
        if imported is not None:
            return imported
        if parsed is None:
            with _bulk():
                parsed = parse_structured(spec.text)
        name = (project_name or "").strip() or parsed.title or self.settings.project_dir.name or "project"
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
        self, spec: SpecFile, project_name: str | None, fmt: str | None, tag: str | None, include_optional: bool,
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
        imported = parse_import(spec.text, fmt, tag=tag, include_optional=include_optional)
        if not imported.tasks:
            raise SpecError(f"{spec.path}: read as {fmt}, but it names no tasks")
        name = (project_name or "").strip() or imported.title or self.settings.project_dir.name or "project"
        plan = InitPlan(name, spec, "structured", imported.tasks, warnings + imported.warnings)
        plan.format, plan.imported = fmt, imported
        return plan

    # -- model decomposition ---------------------------------------------------------------------------
    async def _decompose(self, spec: SpecFile, name: str, parsed: ParsedSpec) -> InitPlan:
        preamble, sections = split_sections(spec.text, self.settings.section_chars)
        prefix = _choose_prefix(spec.text, name)
        plan = InitPlan(name, spec, "model", [], [])
        keys: dict[str, SpecTask] = {}
        for index, section in enumerate(sections, 1):
            where = f"part {index}/{len(sections)} ({section.title})" if len(sections) > 1 else "the spec"
            self.progress(f"decomposing {where} with {self.settings.backend} ({self.settings.model})")
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
        for attempt in range(1, self.settings.max_attempts + 1):
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
                raise DecompositionError(f"the {self.settings.backend} backend failed on {where}: {detail}")
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
        raise DecompositionError(
            f"the model gave no valid task list for {where} after {self.settings.max_attempts} attempts: {last_error}"
        )

    async def _run_model(self, prompt: str) -> tuple[str, Outcome]:
        """Run the backend once with no tools; return the assistant's text and the outcome.

        The text comes from the TEXT events, not the outcome's summary: the summary is the
        completion report, and what we need is the JSON around it. When the backend sent
        several messages (a nudge for a missing report, say) we keep them all, newest
        last: :func:`extract_decomposition` takes the last complete task list.
        """
        from autonomous.backends.base import RunOptions

        s = self.settings
        options = RunOptions(
            cwd=s.project_dir,
            model=s.model,
            max_turns=s.max_turns,
            max_tokens=s.max_tokens,
            allowed_tools=list(READ_ONLY_TOOLS),
            inactivity_timeout=s.inactivity_timeout,
            claude_path=s.claude_path,
            sandbox=s.sandbox,
        )
        texts: list[str] = []
        outcome: Outcome | None = None
        stream = self.backend.run(prompt, options)
        try:
            async for item in stream:
                if isinstance(item, Outcome):
                    outcome = item
                elif isinstance(item, Text) and not item.subagent:
                    texts.append(item.text)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if outcome is None:
            outcome = Outcome(OutcomeStatus.ERROR, error="the backend ended without an outcome")
        return "\n".join(texts), outcome

    # -- applying the plan -------------------------------------------------------------------------------
    def _dry_run_without_store(self, plan: InitPlan) -> InitResult:
        plan.warnings += resolve_dependencies(plan.tasks, (), self.settings.ordering)
        return InitResult(
            project_name=plan.project_name,
            spec_path=plan.spec.path,
            spec_sha256=plan.spec.sha256,
            method=plan.method,
            format=plan.format,
            dry_run=True,
            planned=plan.tasks,
            to_create=list(plan.tasks),
            warnings=plan.warnings,
            cost_usd=plan.cost_usd,
            model_calls=plan.model_calls,
        )

    def _apply(self, plan: InitPlan, marker: dict[str, Any], *, prune: bool, dry_run: bool) -> InitResult:
        provider = self.provider
        result = InitResult(
            project_name=plan.project_name,
            spec_path=plan.spec.path,
            spec_sha256=plan.spec.sha256,
            method=plan.method,
            format=plan.format,
            dry_run=dry_run,
            planned=plan.tasks,
            warnings=list(plan.warnings),
            cost_usd=plan.cost_usd,
            model_calls=plan.model_calls,
        )
        existing = provider.list_tasks()
        by_key = {t.key: t for t in existing}
        by_id = {t.id: t for t in existing}
        meta = next((t for t in scheduler.order(existing) if scheduler.is_meta(t)), None)
        # Dependencies may also name tasks that are in the store but not in the spec.
        outside = [k for k in by_key if k != META_KEY]
        result.warnings += resolve_dependencies(plan.tasks, outside, self.settings.ordering)
        planned_keys = {t.key for t in plan.tasks}

        new: list[SpecTask] = []
        changed: list[tuple[SpecTask, Task, dict[str, Any]]] = []
        for st in plan.tasks:
            current = by_key.get(st.key)
            if current is None:
                new.append(st)
                continue
            diff = _diff(st.task, current, by_id)
            if diff:
                changed.append((st, current, diff))
            else:
                result.unchanged.append(current)
        result.not_in_spec = [t for t in existing if t.key not in planned_keys and not scheduler.is_meta(t)]
        for t in result.not_in_spec:
            if not prune:
                result.warnings.append(f"{t.key} is no longer in the spec; kept (use --prune to cancel it)")

        if dry_run:
            result.to_create = new
            result.to_update = [st for st, _t, _d in changed]
            result.canceled = [t for t in result.not_in_spec if not t.status.satisfied] if prune else []
            result.meta = meta
            return result

        now = utcnow()
        created_at = str(marker.get("created_at") or now.isoformat())
        batch = [st.task for st in new]
        meta_new = None
        if meta is None:
            meta_new = NewTask(
                title=f"META: {plan.project_name}",
                key=META_KEY,
                description=_meta_description(plan, created_at, now, len(plan.tasks)),
                priority=Priority.LOW,
                labels=["meta"],
            )
            batch.insert(0, meta_new)
        if batch:
            # One batch, one provider write: all of it lands or none of it does.
            created = provider.create_tasks(batch)
            for task in created.created + created.existing:
                if task.key == META_KEY and meta_new is not None:
                    meta = task
            result.created = [t for t in created.created if t.key != META_KEY]
            for t in created.tasks:
                by_key[t.key] = t
                by_id[t.id] = t

        for st, current, diff in changed:
            if "dependencies" in diff:
                diff["dependencies"] = [by_key[k].id for k in diff["dependencies"] if k in by_key]
            try:
                result.updated.append(provider.update_task(current.id, **diff))
            except ClaimConflict:
                result.warnings.append(f"{st.key} is claimed by a worker right now; not updated (re-run later)")
                result.unchanged.append(current)

        if plan.imported is not None:
            result.created = self._imported_statuses(plan.imported, result)

        if prune:
            for t in result.not_in_spec:
                if t.status.satisfied:
                    continue
                try:
                    canceled = provider.update_task(t.id, status=TaskStatus.CANCELED)
                except ClaimConflict:
                    result.warnings.append(f"{t.key} is claimed by a worker right now; not canceled")
                    continue
                provider.add_note(t.id, f"canceled by `autonomous init --prune`: not in {plan.spec.path}", AUTHOR)
                result.canceled.append(canceled)

        assert meta is not None
        if meta_new is None:
            wanted_title = f"META: {plan.project_name}"
            description = _meta_description(plan, created_at, now, len(plan.tasks))
            try:
                meta = provider.update_task(meta.id, title=wanted_title, description=description)
            except ClaimConflict:  # pragma: no cover - nobody claims META
                pass
        provider.add_note(
            meta.id,
            f"init ({plan.method}) from {plan.spec.path} sha256 {plan.spec.sha256[:12]}: "
            f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged, "
            f"{len(result.not_in_spec)} not in spec, {len(result.canceled)} canceled",
            AUTHOR,
        )
        result.meta = meta

        if plan.imported is not None:
            result.ledger_path = write_ledger(self.settings.state_dir, plan.imported.ledger(self._spec_ref(plan)))
        else:
            clear_ledger(self.settings.state_dir)
        mpath = marker_path(self.settings.project_dir)
        write_marker(mpath, self._marker(plan, meta, created_at, now))
        result.marker_path = mpath
        with contextlib.suppress(git.GitError, OSError):  # a courtesy: the runner does it again at start
            git.hide_tool_dirs(self.settings.project_dir, [self.config.state_dir, self.config.log_dir])
        return result

    def _imported_statuses(self, imported: Imported, result: InitResult) -> list[Task]:
        """Give each task created from an imported list the status its file gives it (a
        store creates tasks as todo), and make an optional task skipped by an earlier init
        work to do when optional tasks are now included. A re-init never touches any
        other status: the store's, set by the runner or a person, is the newer truth."""
        created = []
        for task in result.created:
            wanted = imported.statuses.get(task.key, TaskStatus.TODO)
            if wanted is not task.status:
                task = self.provider.update_task(task.id, status=wanted)
            created.append(task)
        for i, task in enumerate(result.unchanged + result.updated):
            wanted = imported.statuses.get(task.key)
            if wanted is TaskStatus.TODO and task.status is TaskStatus.CANCELED and "optional" in task.labels:
                reopened = self.provider.update_task(task.id, status=TaskStatus.TODO)
                target = result.unchanged if i < len(result.unchanged) else result.updated
                target[target.index(task)] = reopened
        return created

    def _spec_ref(self, plan: InitPlan) -> str:
        """The spec's path relative to the project (where a worker's copy of it is), else absolute."""
        try:
            return str(plan.spec.path.resolve().relative_to(self.settings.project_dir.resolve()))
        except ValueError:
            return str(plan.spec.path.resolve())

    def _marker(self, plan: InitPlan, meta: Task, created_at: str, now: datetime) -> dict[str, Any]:
        s = self.settings
        provider = self._provider
        ids = {k: v for k, v in s.provider_ids.items()}
        for attr in ("team_id", "project_id", "repo", "state_dir"):
            value = getattr(provider, attr, None)
            if value is not None:
                ids[attr] = str(value)
        try:
            spec_path = str(plan.spec.path.resolve().relative_to(s.project_dir))
        except ValueError:
            spec_path = str(plan.spec.path.resolve())
        return {
            "schema_version": MARKER_SCHEMA_VERSION,
            "initialized": True,
            "project_name": plan.project_name,
            "provider": {
                "type": getattr(provider, "kind", None) or s.provider_type,
                **ids,
                "meta_task_id": meta.id,
            },
            "spec": {"path": spec_path, "sha256": plan.spec.sha256},
            "method": plan.method,
            "task_count": len(plan.tasks),
            "created_at": created_at,
            "updated_at": now.isoformat(),
            "version": __version__,
        }


def _diff(want: NewTask, have: Task, by_id: dict[str, Task]) -> dict[str, Any]:
    """The fields the spec changed (as update_task keywords; dependencies as keys)."""
    diff: dict[str, Any] = {}
    if want.title != have.title:
        diff["title"] = want.title
    if want.description != have.description:
        diff["description"] = want.description
    if list(want.acceptance_criteria) != list(have.acceptance_criteria):
        diff["acceptance_criteria"] = list(want.acceptance_criteria)
    if list(want.test_steps) != list(have.test_steps):
        diff["test_steps"] = list(want.test_steps)
    if want.priority != have.priority:
        diff["priority"] = want.priority
    have_deps = [by_id[d].key if d in by_id else d for d in have.dependencies]
    if sorted(want.dependencies) != sorted(have_deps):
        diff["dependencies"] = list(want.dependencies)
    return diff


def _meta_description(plan: InitPlan, created_at: str, now: datetime, count: int) -> str:
    lines = [
        f"Project tracking task for {plan.project_name}.",
        "",
        f"- Spec: {plan.spec.path} (sha256 {plan.spec.sha256})",
        f"- Created: {created_at}",
        f"- Last init: {now.isoformat()}",
        f"- Method: {plan.method}",
        f"- Tasks: {count}",
    ]
    phases: dict[str, int] = {}
    for t in plan.tasks:
        phases[t.phase or "(no phase)"] = phases.get(t.phase or "(no phase)", 0) + 1
    if phases and list(phases) != ["(no phase)"]:
        lines.append(f"- Phases: {len(phases)}")
        lines += [f"  - {name}: {n} tasks" for name, n in phases.items()]
    return "\n".join(lines)


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


# -- command line --------------------------------------------------------------------------------------


TABLE_ROWS = 200  # rows of init's table; a 100,000-task spec is summed up, not printed


def render_table(result: InitResult, out: TextIO) -> None:
    """The human summary of an init run (or dry run)."""
    verb = "Would create" if result.dry_run else "Created"
    if result.dry_run:
        groups = [("create", [st.task for st in result.to_create]), ("update", [st.task for st in result.to_update])]
    else:
        groups = [("created", result.created), ("updated", result.updated)]
    groups.append(("cancel" if result.dry_run else "canceled", result.canceled))
    total = sum(len(tasks) for _, tasks in groups)
    rows = [
        (action, t.key, t.priority.value, t.title)
        for action, t in itertools.islice(((a, t) for a, tasks in groups for t in tasks), TABLE_ROWS)
    ]
    if rows:
        widths = [max(len(r[i]) for r in [*rows, ("ACTION", "KEY", "PRIORITY", "TITLE")]) for i in range(3)]
        header = ("ACTION", "KEY", "PRIORITY", "TITLE")
        for row in [header, *rows]:
            out.write(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}\n")
        if total > len(rows):
            out.write(f"... and {total - len(rows)} more (`autonomous tasks` lists them; --json prints every one)\n")
        out.write("\n")
    how = "parsed from the structured spec" if result.method == "structured" else "decomposed by the model"
    if result.format != "autonomous":
        how = f"imported from the {result.format} task list"
    summary = (
        f"{verb} {result.tasks_created} task(s) for {result.project_name!r} ({how}, {len(result.planned)} in spec)"
    )
    if result.dry_run:
        updates = len(result.to_update)
        summary += f"; would update {updates}" if updates else ""
        summary += ". Dry run: nothing was written."
    else:
        extra = [f"{len(result.updated)} updated", f"{len(result.unchanged)} unchanged"]
        if result.canceled:
            extra.append(f"{len(result.canceled)} canceled")
        summary += "; " + ", ".join(extra) + "."
    out.write(summary + "\n")
    if result.not_in_spec and not result.canceled:
        keys = ", ".join(t.key for t in result.not_in_spec[:20])
        more = len(result.not_in_spec) - 20
        out.write(
            f"Not in the spec any more (kept; --prune cancels them): {keys}{f' and {more} more' if more > 0 else ''}\n"
        )
    if result.cost_usd:
        out.write(f"Model cost: ${result.cost_usd:.4f} in {result.model_calls} call(s).\n")
    if result.marker_path:
        out.write(f"Wrote {result.marker_path}. Next: `autonomous next --explain`, then `autonomous start`.\n")


def run_init(
    spec: str | Path,
    *,
    project_name: str | None = None,
    force: bool = False,
    prune: bool = False,
    dry_run: bool = False,
    as_json: bool = False,
    no_model: bool = False,
    model_only: bool = False,
    format: str | None = None,
    tag: str | None = None,
    include_optional: bool | None = None,
    config_path: str | Path | None = None,
    project_dir: str | Path | None = None,
    config: Config | None = None,
    provider: Any = None,
    backend: Any = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``autonomous init``: run it and render the result; return the exit code.

    0 done (or dry run printed); 1 the model could not produce a valid plan or the store
    failed; 2 usage error, bad spec, bad config, or already initialized without --force.
    Errors are one line on ``err``: ``error: <message>``.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if no_model and model_only:
            raise ConfigError("--no-model and --model-only exclude each other")
        if config is None:
            config = load_config(Path(config_path) if config_path else None, project_dir=project_dir)
        use_model: ModelUse = "never" if no_model else "always" if model_only else "auto"
        progress = None if as_json else (lambda message: print(message, file=err, flush=True))
        initializer = ProjectInitializer(
            config, provider=provider, backend=backend, project_dir=project_dir, progress=progress
        )
        result = initializer.initialize(
            spec, project_name, force=force, prune=prune, dry_run=dry_run, use_model=use_model,
            format=format, tag=tag, include_optional=include_optional,
        )  # fmt: skip
    except AutonomousError as exc:
        print(f"error: {exc}", file=err)
        return exc.exit_code
    if as_json:
        json.dump({"schema_version": 1, **result.to_dict()}, out, indent=2, default=str)
        out.write("\n")
    else:
        for warning in result.warnings:
            print(f"warning: {warning}", file=err)
        render_table(result, out)
    return 0
