"""A backend that answers from a script: for testing the runner and the initializer, not a model.

It is a real :class:`~autonomous.backends.base.Backend` subclass, so what it yields goes
through the same final ``run()`` as the real backends: one outcome, the task allowance,
nudges, the watchdog. Each run takes the next *step* queued for the task (the first name
:attr:`ScriptedBackend.names` gives for the run that has steps or a hold; by default the
run's ``task_id``), else ``default``, else a plain completion::

    backend = ScriptedBackend(default=complete())
    backend.enqueue("DEMO-1.1", blocked("no credentials"), complete("a.txt"))

A step is called with the prompt and the options (it may write files into
``options.cwd``: the run happens in the project) and returns an :class:`Outcome`, or a
text, which is judged like a model's last message (a completion report, or a nudge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from autonomous.backends.base import Backend, NoReport, Run, RunOptions, Spend, StreamItem
from autonomous.backends.report import report_outcome
from autonomous.events import BackendStart, Outcome, OutcomeStatus, Text, ToolUse

Step = Callable[[str, RunOptions], Outcome | str]


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(
        self,
        steps: Mapping[str, Sequence[Step]] | None = None,
        default: Step | None = None,
        *,
        names: Callable[[RunOptions], Sequence[str]] | None = None,
        tool: str | None = "Bash",
        cost_per_text: float = 0.0,
    ):
        self.steps: dict[str, list[Step]] = {key: list(queue) for key, queue in (steps or {}).items()}
        self.default = default
        self.names = names or (lambda options: [options.task_id] if options.task_id else [])
        self.tool = tool  # a TOOL_USE event each exchange names, as an agent's would
        self.cost_per_text = cost_per_text  # what a text answer costs (one turn)
        self.runs: list[tuple[str | None, str, RunOptions]] = []  # (key, prompt, options) of every exchange
        self.hold: dict[str, asyncio.Event] = {}  # key -> a run of it waits until this is set
        self.entered: list[str] = []  # keys whose run reached its hold

    def enqueue(self, key: str, *steps: Step) -> None:
        self.steps.setdefault(key, []).extend(steps)

    def _key(self, options: RunOptions) -> str | None:
        names = list(self.names(options))
        return next((n for n in names if n in self.steps or n in self.hold), names[0] if names else None)

    async def _stream(self, prompt: str, run: Run) -> AsyncIterator[StreamItem]:
        options = run.options
        key = self._key(options)
        self.runs.append((key, prompt, options))
        session_id = run.session_id or f"sess-{len(self.runs)}"
        yield run.ev(BackendStart, session_id=session_id)
        if self.tool:
            yield run.ev(ToolUse, name=self.tool)
        if key in self.hold:
            self.entered.append(key)
            await self.hold[key].wait()
        queue = self.steps.get(key) if key else None
        step = queue.pop(0) if queue else self.default
        answer = step(prompt, options) if step else Outcome(OutcomeStatus.COMPLETED, summary="ok", turns=1)
        if isinstance(answer, str):
            yield run.ev(Text, text=answer)
            yield Spend(1, self.cost_per_text)
            verdict = report_outcome(answer)
            yield verdict if isinstance(verdict, Outcome) else NoReport(answer)
            return
        yield Spend(answer.turns, answer.cost_usd, answer.usage, answer.context_tokens or None)
        answer.session_id = answer.session_id or session_id
        yield answer


def complete(filename: str | None = None, cost: float = 0.1, turns: int = 2, summary: str = "implemented") -> Step:
    """A step that (optionally) writes ``filename`` and reports the task complete."""

    def step(prompt: str, options: RunOptions) -> Outcome:
        if filename:
            (options.cwd / filename).write_text(f"work for {filename}\n")
        files = [filename] if filename else []
        return Outcome(OutcomeStatus.COMPLETED, summary=summary, cost_usd=cost, turns=turns, files_changed=files)

    return step


def outcome(status: OutcomeStatus, **fields: object) -> Step:
    """A step that ends the run with ``status`` (and the given Outcome fields)."""
    return lambda prompt, options: Outcome(status, **fields)  # type: ignore[arg-type]
