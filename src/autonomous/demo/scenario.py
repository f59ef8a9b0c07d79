"""The demo's scenario: what the scripted agent does for each task of the sample spec.

The files it writes are package data under ``sample/``, one folder per task holding the
whole of every file that task writes, as a careful agent would write them (a file a later
task changes appears again, whole, in that task's folder); ``sample/project/`` holds what
the project starts with. The rules are built here (:func:`demo_rules`) because the
``Read`` and ``Write`` calls need the project's absolute paths. Rules match the prompt
heading (``Task TODO-1.2:``) and later tasks' rules come first: a later task's prompt
quotes earlier tasks' notes, never the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.abc import Traversable
from importlib.resources import files
from pathlib import Path
from typing import Any

SAMPLE = files("autonomous.demo") / "sample"


def sample_files(folder: str) -> dict[str, str]:
    """Every file under ``sample/<folder>/``, by its path relative to that folder."""
    found: dict[str, str] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{prefix}{child.name}/")
            else:
                found[prefix + child.name] = child.read_text(encoding="utf-8")

    walk(SAMPLE / folder, "")
    return found


@dataclass(frozen=True)
class DemoTask:
    """What the scripted agent does for one task of the spec."""

    key: str
    intro: str
    summary: str
    reads: Sequence[str] = ()  # files changed by this task that an earlier task created
    test_command: str = "python -m pytest -q"

    @property
    def writes(self) -> dict[str, str]:
        """Path in the project -> content: the files under ``sample/<key>/``."""
        return sample_files(self.key)


DEMO_TASKS: tuple[DemoTask, ...] = (
    DemoTask(
        "TODO-1.1",
        "I'll set up the package, the packaging metadata and a smoke test.",
        "Created the todo_api package (version 0.1.0), pyproject.toml with a test extra, and a smoke test.",
    ),
    DemoTask(
        "TODO-1.2",
        "I'll add the Todo dataclass with title validation and dict round-tripping.",
        "Added the Todo dataclass with to_dict/from_dict and title validation (stripped, 1-200 characters).",
        test_command="python -m pytest -q tests/test_model.py",
    ),
    DemoTask(
        "TODO-1.3",
        "I'll add TodoStore, persisting to a JSON file replaced atomically with os.replace.",
        "Added TodoStore (add, list, get, update, delete) over a JSON file written atomically; ids never reused.",
        test_command="python -m pytest -q tests/test_store.py",
    ),
    DemoTask(
        "TODO-1.3a",
        "I'll make TodoStore raise StoreError for a damaged file, leaving the file untouched.",
        "TodoStore now raises StoreError naming the path for a file that is not JSON or not the store's shape.",
        reads=("todo_api/store.py",),
    ),
    DemoTask(
        "TODO-2.1",
        "I'll add the HTTP handler with GET /todos and GET /todos/{id}, plus server tests.",
        "Added todo_api/server.py: GET /todos, GET /todos/{id}, JSON 404s; make_server() for tests.",
        test_command="python -m pytest -q tests/test_server.py",
    ),
    DemoTask(
        "TODO-2.2",
        "I'll add POST /todos with body validation and a Location header.",
        "Added POST /todos: 201 with Location, 400 for invalid JSON or a missing or invalid title.",
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command="python -m pytest -q tests/test_server.py -k post",
    ),
    DemoTask(
        "TODO-2.3",
        "I'll add PATCH and DELETE for single todos.",
        "Added PATCH /todos/{id} (200) and DELETE /todos/{id} (204), with 404 and 400 answers.",
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command='python -m pytest -q tests/test_server.py -k "patch or delete"',
    ),
    DemoTask(
        "TODO-2.4",
        "I'll add the done filter to GET /todos.",
        "GET /todos now filters by ?done=true|false and answers 400 for any other value.",
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command="python -m pytest -q tests/test_server.py -k filter",
    ),
    DemoTask(
        "TODO-3.1",
        "I'll add `python -m todo_api serve` and a test that runs it on a free port.",
        "Added python -m todo_api serve (--port, --data; port 0 prints the URL; Ctrl-C exits 0) and its test.",
        test_command="python -m pytest -q tests/test_cli.py",
    ),
    DemoTask(
        "TODO-3.2",
        "I'll write the README with installation, serve and every endpoint.",
        "Wrote README.md: installation, the serve command, and every endpoint with a curl example.",
    ),
)


def _report(task: DemoTask) -> str:
    report = {"status": "complete", "summary": task.summary, "files_changed": list(task.writes), "blocker": None}
    return f"The tests pass; {task.key} is done.\n\n```json\n{json.dumps(report)}\n```"


def _verdict(task: DemoTask) -> str:
    verdict = {"status": "complete", "verdict": "approve", "summary": f"The diff does what {task.key} asks."}
    return f"I read the diff and the files it touches.\n\n```json\n{json.dumps(verdict)}\n```"


def demo_rules(project: Path, python: str = "python") -> list[Any]:
    """The scenario: for every task, (Read ->) Write -> Bash (tests) -> completion report.

    ``project`` is the demo project's absolute path (the CLI's ``Read`` and ``Edit`` want
    absolute paths); ``python`` is the interpreter name the ``Bash`` calls use. Token usage
    is reported as zero so the CLI computes a cost of $0, which is what the demo costs.
    """
    from autonomous.testing.model_server import Match, Response, Rule

    project = Path(project)
    usage = {"input_tokens": 0, "output_tokens": 0}
    rules: list[Rule] = []
    for task in reversed(DEMO_TASKS):  # later tasks first: their prompts quote earlier tasks' notes
        heading = f"Task {task.key}:"
        turns: list[Response] = []
        if task.reads:
            turns.append(
                Response(
                    text=f"Reading {', '.join(task.reads)} before changing {'them' if len(task.reads) > 1 else 'it'}.",
                    tool_use=[{"name": "Read", "input": {"file_path": str(project / p)}} for p in task.reads],
                    usage=usage,
                )
            )
        turns.append(
            Response(
                text=task.intro,
                tool_use=[
                    {"name": "Write", "input": {"file_path": str(project / path), "content": content}}
                    for path, content in task.writes.items()
                ],
                usage=usage,
            )
        )
        command = task.test_command.replace("python ", f"{python} ", 1)
        turns.append(
            Response(
                text="Running the tests.",
                tool_use=[{"name": "Bash", "input": {"command": command, "description": "Run the tests"}}],
                usage=usage,
            )
        )
        done = Response(text=_report(task), usage=usage)
        for n, response in enumerate(turns, 1):
            rules.append(
                Rule(
                    name=f"{task.key}: turn {n}",
                    match=Match(contains=heading, turn=n, has_tools=True),
                    response=response,
                )
            )
        # The report; also the answer to anything later in the conversation (verification feedback).
        rules.append(Rule(name=f"{task.key}: report", match=Match(contains=heading, has_tools=True), response=done))
    # The independent review (verification.review: true) reads each diff in a fresh
    # session and approves; its prompt never holds an agent's "Task KEY:" heading.
    rules += [
        Rule(
            name=f"{task.key}: review",
            match=Match(contains=f"# Review of task {task.key}:", has_tools=True),
            response=Response(text=_verdict(task), usage=usage),
        )
        for task in reversed(DEMO_TASKS)
    ]
    return rules
