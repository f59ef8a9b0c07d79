"""Applying an init plan: idempotent create, update, prune, and the project marker.

Each step can be re-run safely. New tasks are created in **one** ``create_tasks`` batch
together with the META task (the provider writes a batch in one transaction and is
idempotent by key, so a crash before the marker is written leaves either nothing or
everything, and a re-run creates no duplicates); tasks whose spec text changed are
updated (never their status); tasks no longer in the spec are reported, and canceled with
``prune``. Last, ``.project_state.json`` is written atomically: its presence is what makes
a second ``init`` refuse without ``--force``. Working out the tasks is
:mod:`autonomous.init.plan`.
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autonomous import __version__, actions, scheduler
from autonomous.config import Config, parse_config
from autonomous.errors import (
    AlreadyInitialized,
    ClaimConflict,
)
from autonomous.fsutil import write_json_atomic
from autonomous.init import Imported
from autonomous.init.common import SpecTask
from autonomous.init.dependencies import resolve_dependencies
from autonomous.init.ledger import clear_ledger, write_ledger
from autonomous.init.plan import AUTHOR, InitPlan, Method, ModelUse, Planner, Progress, _bulk
from autonomous.tasks import NewTask, Priority, Task, TaskStatus, utcnow
from autonomous.workspace import git

MARKER_NAME = ".project_state.json"
MARKER_SCHEMA_VERSION = 1
META_KEY = "META"


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


class ProjectInitializer:
    """``ProjectInitializer(load_config()).initialize("spec.md", project_name=...)``.

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
            config = parse_config({}, root=project_dir)
        elif project_dir is not None:  # the same configuration, rooted in that project
            config = config.rooted_at(project_dir)
        self.config = config
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

            made = get_backend(self.config.autonomous.backend)
            backend = made() if isinstance(made, type) else made
            if hasattr(backend, "max_nudges"):
                # A task run nudges for a missing completion report; our answer is the task
                # list, and a malformed one is asked for again here, with the error attached.
                backend.max_nudges = 0
            self._backend = backend
        return self._backend

    def planner(self) -> Planner:
        """The planner of this initializer's spec, asking its backend when it needs a model."""
        return Planner(self.config, lambda: self.backend, self.progress)

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
        ``formats``: ``format``, ``tag`` (see :meth:`Planner.plan_async`)."""
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
        marker = read_marker(self.config.project_dir)
        mpath = marker_path(self.config.project_dir)
        if marker is not None and not force:
            raise AlreadyInitialized(
                f"project already initialized: {mpath} exists; use --force to apply the spec again "
                "(tasks are matched by key, nothing is duplicated)"
            )
        plan = await self.planner().plan_async(spec_path, project_name, use_model=use_model, **formats)
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
        plan = asyncio.run(self.planner().plan_async(spec_path, project_name, use_model=use_model, **formats))
        plan.warnings += resolve_dependencies(plan.tasks, (), self.config.execution.ordering)
        return plan

    # -- applying the plan -------------------------------------------------------------------------------
    def _dry_run_without_store(self, plan: InitPlan) -> InitResult:
        plan.warnings += resolve_dependencies(plan.tasks, (), self.config.execution.ordering)
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
        result.warnings += resolve_dependencies(plan.tasks, outside, self.config.execution.ordering)
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
            if any(not t.status.satisfied for t in result.created):
                actions.reopen_meta(provider)
                meta = provider.get_task(meta.id)
        provider.add_note(
            meta.id,
            f"init ({plan.method}) from {plan.spec.path} sha256 {plan.spec.sha256[:12]}: "
            f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged, "
            f"{len(result.not_in_spec)} not in spec, {len(result.canceled)} canceled",
            AUTHOR,
        )
        result.meta = meta

        if plan.imported is not None:
            result.ledger_path = write_ledger(self.config.state_dir, plan.imported.ledger(self._spec_ref(plan)))
        else:
            clear_ledger(self.config.state_dir)
        mpath = marker_path(self.config.project_dir)
        write_marker(mpath, self._marker(plan, meta, created_at, now))
        result.marker_path = mpath
        with contextlib.suppress(git.GitError, OSError):  # a courtesy: the runner does it again at start
            git.hide_tool_dirs(self.config.project_dir, [self.config.state_dir, self.config.log_dir])
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
            return str(plan.spec.path.resolve().relative_to(self.config.project_dir.resolve()))
        except ValueError:
            return str(plan.spec.path.resolve())

    def _marker(self, plan: InitPlan, meta: Task, created_at: str, now: datetime) -> dict[str, Any]:
        c = self.config
        provider = self._provider
        store = c.state_provider
        ids: dict[str, Any] = {
            "team_id": store.team_id,
            "project_id": None,  # the store's own, once it has one (Linear)
            "project_name": store.project_name,
            "repo": store.repo,
            "state_dir": store.state_dir,
        }
        for attr in ("team_id", "project_id", "repo", "state_dir"):
            value = getattr(provider, attr, None)
            if value is not None:
                ids[attr] = str(value)
        try:
            spec_path = str(plan.spec.path.resolve().relative_to(c.project_dir))
        except ValueError:
            spec_path = str(plan.spec.path.resolve())
        return {
            "schema_version": MARKER_SCHEMA_VERSION,
            "initialized": True,
            "project_name": plan.project_name,
            "provider": {
                "type": getattr(provider, "kind", None) or c.state_provider.type,
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
