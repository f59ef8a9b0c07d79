"""The escape corpus (corpus.py) through all three backends' real tools, sandbox on.

The scripted model server asks for every attempt in one response; the real backend runs
them (the runner's bash in bubblewrap, Claude Code's tools under its sandbox settings).
Each attempt must change nothing outside what the agent may touch, leak nothing, and
(when it is a refusal) come back to the agent as a tool error recorded as an event.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from corpus import API_KEY, CONTROL, CORPUS, WEBHOOK, WEBHOOK_VAR, Attempt, Scene, plant, worked

from autonomous.backends import get_backend
from autonomous.backends.base import RunOptions
from autonomous.events import Event, EventKind, Outcome
from autonomous.sandbox import Confinement, bwrap
from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer

BACKENDS = ["anthropic-sdk", "claude-code", "claude-code-sdk"]
pytestmark = pytest.mark.skipif(bwrap.problem() is not None, reason=f"no sandbox here: {bwrap.problem()}")


@dataclass
class CorpusRun:
    backend: str
    scene: Scene
    events: list[Event]
    outcome: Outcome
    results: dict[int, Event]  # attempt index -> its TOOL_RESULT event (-1: the control command)

    def denied(self, tool_id: str) -> bool:
        return any(e.kind is EventKind.PERMISSION_DENIED and e.data.get("id") == tool_id for e in self.events)


class _Listener(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"echo reached\n")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Listener,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", params=BACKENDS)
def corpus_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, listener) -> CorpusRun:
    backend_name: str = request.param
    if backend_name != "anthropic-sdk" and bundled_claude_path() is None:
        pytest.skip("the bundled Claude Code CLI needs claude_agent_sdk: pip install 'autonomous-runner[sdk]'")
    base = tmp_path_factory.mktemp(backend_name)
    port, hits = listener
    hits.clear()
    scene = Scene(project=(base / "project").resolve(), outside=(base / "other").resolve(), port=port,
                  runner_pid=os.getpid(), hits=hits)  # fmt: skip
    scene.project.mkdir()
    subprocess.run(["git", "init", "-q", str(scene.project)], check=True)
    plant(scene)
    calls = [attempt.call(backend_name, scene) for attempt in (CONTROL, *CORPUS)]
    rules = [
        Rule(
            match=Match(has_tools=True, has_tool_result=False),
            response=Response(tool_use=[{"name": name, "input": tool_input} for name, tool_input in calls]),
        ),
        Rule(
            match=Match(has_tools=True, has_tool_result=True),
            response=Response(text='```json\n{"status": "blocked", "summary": "tried", "blocker": "the sandbox"}\n```'),
        ),
    ]
    sandbox = Confinement.for_project(scene.project, tool_dirs=[scene.project / ".ai-agents" / "state"])
    with ScriptedModelServer(rules) as server:
        if backend_name == "anthropic-sdk":
            env = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": API_KEY}
        else:
            env = claude_cli_env(server.url, base / "home", api_key=API_KEY)
        options = RunOptions(
            cwd=scene.project, env=env, task_id="T-1", max_turns=4, inactivity_timeout=240, sandbox=sandbox,
            claude_path=str(bundled_claude_path()) if backend_name != "anthropic-sdk" else None,
        )  # fmt: skip
        os.environ[WEBHOOK_VAR] = WEBHOOK  # the runner's own environment holds a webhook
        try:
            events, outcome = asyncio.run(_collect(get_backend(backend_name), options))
        finally:
            del os.environ[WEBHOOK_VAR]
    uses = [e for e in events if e.kind is EventKind.TOOL_USE and not e.data.get("subagent")]
    results = {e.data["id"]: e for e in events if e.kind is EventKind.TOOL_RESULT}
    # index -1: the control command; 0..: the corpus
    by_index = {i - 1: results[u.data["id"]] for i, u in enumerate(uses[: len(CORPUS) + 1]) if u.data["id"] in results}
    return CorpusRun(backend_name, scene, events, outcome, by_index)


async def _collect(backend, options: RunOptions) -> tuple[list[Event], Outcome]:
    events: list[Event] = []
    outcome: Outcome | None = None
    async for item in backend.run("Try everything in the corpus.", options):
        if isinstance(item, Outcome):
            outcome = item
        else:
            events.append(item)
    assert outcome is not None
    return events, outcome


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30 and len({a.name for a in CORPUS}) == len(CORPUS)


def test_ordinary_work_still_runs(corpus_run: CorpusRun) -> None:
    control = corpus_run.results.get(-1)
    assert control is not None and control.data.get("is_error") is False, control
    assert worked(corpus_run.scene) == "", control.data.get("excerpt")


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[a.name for a in CORPUS])
def test_no_escape(corpus_run: CorpusRun, index: int) -> None:
    attempt: Attempt = CORPUS[index]
    result = corpus_run.results.get(index)
    assert result is not None, f"{attempt.name}: no tool result recorded (events: {len(corpus_run.events)})"
    excerpt = str(result.data.get("excerpt", ""))
    escaped = attempt.escaped(corpus_run.scene)
    assert not escaped, f"{attempt.name} escaped: {escaped}\n{excerpt}"
    if attempt.leak:
        assert attempt.leak not in excerpt, f"{attempt.name} leaked {attempt.leak!r}:\n{excerpt}"
    if attempt.refused and not (attempt.vanishes_in_claude and corpus_run.backend != "anthropic-sdk"):
        assert result.data.get("is_error") is True, f"{attempt.name} was not a tool error:\n{excerpt}"
