"""The prompts the runner sends: a task's prompt (``task.md``), the continuation after an
interruption and the feedback after a failed check; all size-capped, so notes and
conventions never grow a prompt without bound."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from autonomous import prompts, scheduler
from autonomous.tasks import Task, TaskStatus

if TYPE_CHECKING:
    from autonomous.config import Config
    from autonomous.verify import VerificationResult

HANDOFF_CAP = 4096  # bytes of handoff notes in one prompt, all sources together
NOTE_CAP = 1200  # characters kept of any single note quoted in a prompt
CONVENTIONS_CAP = 8192  # characters of AGENTS.md / CLAUDE.md quoted in a prompt
RUNNER_AUTHOR = "runner"  # the author of the runner's own notes


def shorten(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20].rstrip() + "\n…(truncated)"


def _bullets(items: Iterable[str], empty: str) -> str:
    items = [i for i in items if i and i.strip()]
    return "\n".join(f"- {i.strip()}" for i in items) if items else empty


def read_conventions(project_dir: Path, cap: int = CONVENTIONS_CAP) -> str:
    """The project's own instructions for agents (AGENTS.md, else CLAUDE.md), size-capped."""
    for name in ("AGENTS.md", "CLAUDE.md"):
        path = Path(project_dir) / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if text.strip():
            return f"## Project conventions ({name})\n\n{shorten(text, cap)}\n"
    return ""


def last_note(task: Task, prefer_author: str = RUNNER_AUTHOR) -> str | None:
    notes = [n for n in task.notes if n.author == prefer_author and not n.text.startswith("Verification")]
    notes = notes or task.notes
    return notes[-1].text if notes else None


def handoff_notes(task: Task, all_tasks: list[Task], cap: int = HANDOFF_CAP) -> str:
    """Short notes a fresh context needs: this task's own recent notes (a retry's
    evidence, a handoff after a full context), the last note of every task it depends
    on (or of the task done just before it), and the last session summary. The whole
    section is capped at ``cap`` bytes, so notes never grow a prompt without bound."""
    by_id = {t.id: t for t in all_tasks}
    parts: list[str] = []
    own = [n for n in task.notes][-3:]
    for note in own:
        parts.append(f"- earlier note on this task ({note.at:%Y-%m-%d %H:%M}): {shorten(note.text, NOTE_CAP)}")
    deps = [by_id[d] for d in task.dependencies if d in by_id]
    if not deps:
        ordered = scheduler.order(all_tasks)
        before = [t for t in ordered if t.status is TaskStatus.DONE and not scheduler.is_meta(t)]
        position = {t.id: i for i, t in enumerate(ordered)}
        mine = position.get(task.id, len(ordered))
        before = [t for t in before if position[t.id] < mine]
        deps = before[-1:]
    for dep in deps:
        text = last_note(dep)
        if text:
            parts.append(f"- from {dep.key} ({dep.status.value}): {shorten(text, NOTE_CAP)}")
    meta = next((t for t in all_tasks if scheduler.is_meta(t)), None)
    if meta is not None:
        summaries = [n for n in meta.notes if n.text.startswith("Session summary")]
        if summaries:
            parts.append(f"- last session: {shorten(summaries[-1].text, NOTE_CAP)}")
    if not parts:
        return ""
    body = ""
    for part in parts:
        if len((body + part + "\n").encode()) > cap - 64:
            body += "- (more notes left out)\n"
            break
        body += part + "\n"
    return "## Handoff notes\n\n" + body


def _verification_section(config: Config) -> str:
    if not config.checks.commands and not config.verification.require_changes:
        return ""
    lines = ["## How the runner will check your work", ""]
    lines += [f"- `{c}` must exit 0" for c in config.checks.commands]
    if config.verification.require_changes:
        lines.append("- the task must change the project (files or a commit)")
    return "\n".join(lines) + "\n"


def build_prompt(task: Task, all_tasks: list[Task], config: Config) -> str:
    """The task prompt from ``prompts/task.md``."""
    try:
        from autonomous.backends.report import REPORT_INSTRUCTIONS
    except ImportError:  # pragma: no cover - report.py ships with the package
        REPORT_INSTRUCTIONS = ""
    text = prompts.load("task.md").safe_substitute(
        key=task.key,
        title=task.title,
        description=task.description.strip() or "(no description: the title says it all)",
        acceptance_criteria=_bullets(task.acceptance_criteria, "- (none given)"),
        test_steps=_bullets(task.test_steps, "- (none given)"),
        verification=_verification_section(config),
        conventions=read_conventions(config.project_dir),
        handoff=handoff_notes(task, all_tasks),
        report_instructions=REPORT_INSTRUCTIONS,
    )
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def continuation_prompt(task: Task, note: str = "") -> str:
    return (
        f"You were interrupted while working on task {task.key}: {task.title}. Continue where you left off: "
        "check what is already done, finish the remaining work, run the tests, and end with the completion report."
        + (f"\n\nNote left when you were interrupted: {shorten(note, NOTE_CAP)}" if note else "")
    )


def verification_feedback(result: VerificationResult, attempt: int, max_attempts: int) -> str:
    if result.review is not None and not result.review.approved:
        from autonomous.checks import review

        return review.feedback(result.review, attempt, max_attempts)
    return (
        f"The runner checked your work and verification FAILED (attempt {attempt} of {max_attempts}). "
        "The task is not done until these checks pass. Fix the problem, then end with the completion report.\n\n"
        f"```\n{shorten(result.evidence(), 6000)}\n```"
    )
