"""init/plan.py: model decomposition (a scripted backend for the logic, the real
claude-code backend against the scripted model server for the whole path)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from init_project import EXAMPLES, initialize, keys_in_store, make_config

from autonomous.backends.base import RunOptions
from autonomous.cli.init import run_init
from autonomous.errors import DecompositionError
from autonomous.events import Outcome, OutcomeStatus
from autonomous.init.apply import MARKER_NAME, ProjectInitializer
from autonomous.init.plan import extract_decomposition
from autonomous.tasks import Priority
from autonomous.testing.scripted_backend import ScriptedBackend

# -- model decomposition: the logic, with a scripted backend ---------------------------------------


def scripted(*answers: str, status: OutcomeStatus | None = None) -> ScriptedBackend:
    """The testing kit's scripted backend answering each run with the next text (or ``status``)."""

    def next_answer(prompt: str, options: RunOptions) -> Outcome | str:
        if status is not None:
            return Outcome(status, error="x")
        return queue.pop(0) if queue else "I have nothing more."

    queue = list(answers)
    backend = ScriptedBackend(default=next_answer, tool=None, cost_per_text=0.01)
    backend.max_nudges = 0  # as the initializer sets on the backends it makes: a bad answer is asked for again
    return backend


def prompts(backend: ScriptedBackend) -> list[str]:
    return [prompt for _, prompt, _ in backend.runs]


def answer(tasks: list[dict], **extra) -> str:
    return "Here is the plan.\n```json\n" + json.dumps({"tasks": tasks, "status": "complete", **extra}) + "\n```"


FREEFORM_TASKS = [
    {
        "key": "RECIPE-1.1",
        "title": "[RECIPE-1.1] Create the recipe model",
        "description": "Recipes with ingredients and steps.",
        "acceptance_criteria": ["a recipe has a title", "servings is positive"],
        "test_steps": ["pytest tests/test_recipe.py"],
        "priority": "high",
        "dependencies": [],
        "phase": 1,
    },
    {
        "title": "Import recipes from text",  # no key in the title: the key is put in front
        "key": "RECIPE-1.2",
        "acceptance_criteria": "one ingredient per line",  # a string where a list belongs
        "priority": "medium",
        "dependencies": ["RECIPE-1.1", "RECIPE-9.9"],  # one dangling
        "phase": 1,
    },
    {"title": "Search recipes", "phase": 2, "dependencies": ["RECIPE-2.2"]},  # no key at all
    {"title": "[RECIPE-2.2] Rank results", "dependencies": ["RECIPE-2.1"], "phase": 2},  # a cycle
]


def test_free_form_spec_is_decomposed_validated_and_keyed(project: Path):
    truncated = answer(FREEFORM_TASKS)[:300]
    backend = scripted(truncated, answer(FREEFORM_TASKS))
    result = initialize(project, EXAMPLES / "freeform-spec.md", backend=backend)

    assert result.method == "model" and result.model_calls == 2
    assert result.cost_usd == pytest.approx(0.02)
    assert "Your previous answer was rejected" not in prompts(backend)[0]
    assert "Your previous answer was rejected" in prompts(backend)[1] and "incomplete" in prompts(backend)[1]
    assert "Recipe Box" in prompts(backend)[0] and "[RECIPE-X.Y]" in prompts(backend)[0]
    assert backend.runs[0][2].allowed_tools == ["Read", "Glob", "Grep"]

    by = {t.key: t for t in result.tasks}
    assert list(by) == ["RECIPE-1.1", "RECIPE-1.2", "RECIPE-2.1", "RECIPE-2.2"]
    assert by["RECIPE-1.2"].title == "[RECIPE-1.2] Import recipes from text"
    assert by["RECIPE-1.2"].acceptance_criteria == ["one ingredient per line"]
    assert by["RECIPE-1.2"].priority is Priority.NORMAL
    assert by["RECIPE-1.2"].dependencies == [by["RECIPE-1.1"].id]
    assert by["RECIPE-2.1"].title == "[RECIPE-2.1] Search recipes"
    assert by["RECIPE-1.1"].priority is Priority.HIGH
    warnings = "\n".join(result.warnings)
    assert "answer 1 rejected" in warnings
    assert "'RECIPE-9.9' names no task" in warnings
    assert "cycle" in warnings
    assert sum(len(t.dependencies) for t in (by["RECIPE-2.1"], by["RECIPE-2.2"])) == 1
    assert json.loads((project / MARKER_NAME).read_text())["method"] == "model"


def test_attempts_are_bounded_and_the_error_is_exit_1(project: Path):
    backend = scripted("not json", '{"tasks": []}', '{"tasks": [{"title": ""}]}')
    err = io.StringIO()
    code = run_init(EXAMPLES / "freeform-spec.md", config=make_config(project), backend=backend, err=err, as_json=True)
    assert code == 1 and len(prompts(backend)) == 3
    assert "no valid task list" in err.getvalue() and "tasks.0.title" in err.getvalue()
    assert not (project / MARKER_NAME).exists()


def test_backend_failure_is_reported_not_retried(project: Path):
    backend = scripted("", status=OutcomeStatus.AUTH_ERROR)
    with pytest.raises(DecompositionError, match="backend failed"):
        initialize(project, EXAMPLES / "freeform-spec.md", backend=backend)
    assert len(prompts(backend)) == 1


def test_model_only_decomposes_even_a_structured_spec(project: Path, spec: Path):
    backend = scripted(answer([{"title": "[SHOP-1.1] Create the product model"}]))
    result = initialize(project, spec, backend=backend, use_model="always")
    assert result.method == "model" and [t.key for t in result.tasks] == ["SHOP-1.1"]
    assert "[SHOP-X.Y]" in prompts(backend)[0]  # the spec's own prefix is kept


def test_long_free_form_spec_is_decomposed_section_by_section(project: Path):
    sections = "\n\n".join(f"## Feature {i}\n\n" + f"Feature {i} needs work. " * 60 for i in range(6))
    spec = project / "long.md"
    spec.write_text("# Big\n\nAn overview.\n\n" + sections)
    answers = [answer([{"key": "BIG-1.1", "title": "Do a part"}, {"title": "Do another part"}]) for _ in range(6)]
    backend = scripted(*answers)
    init = ProjectInitializer(make_config(project, initializer={"section_chars": 3000}), backend=backend)
    result = init.initialize(spec)
    assert len(prompts(backend)) == len(result.planned) // 2 > 1
    assert all("An overview." in p for p in prompts(backend))
    assert "part 2 of" in prompts(backend)[1] and "BIG-1.1: [BIG-1.1] Do a part" in prompts(backend)[1]
    keys = [t.key for t in result.tasks]
    assert len(keys) == len(set(keys)) == len(result.planned)  # renumbered, never merged
    assert any("already taken; renumbered" in w for w in result.warnings)


def test_extract_decomposition_messages():
    with pytest.raises(ValueError, match="incomplete"):
        extract_decomposition('{"tasks": [{"title": "a"}')
    with pytest.raises(ValueError, match=r'no JSON object with a "tasks" list'):
        extract_decomposition("I think we should build it.")
    with pytest.raises(ValueError, match="tasks: List should have at least 1 item"):
        extract_decomposition('{"tasks": []}')
    # the last complete task list wins (an example quoted earlier does not)
    got = extract_decomposition('e.g. {"tasks": [{"title": "x"}]} real: {"tasks": [{"title": "y"}]}')
    assert [t.title for t in got.tasks] == ["y"]


# -- model decomposition: the whole path, real CLI against the scripted model server ---------------


def test_free_form_spec_through_the_real_claude_cli(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("claude_agent_sdk")
    from autonomous.testing.cli_env import bundled_claude_path, claude_cli_env
    from autonomous.testing.model_server import Match, Response, Rule, ScriptedModelServer

    if bundled_claude_path() is None:
        pytest.skip("the bundled Claude Code CLI is missing")
    valid = answer(FREEFORM_TASKS[:2], summary="2 tasks in 1 phase")
    rules = [
        Rule(
            name="valid after feedback",
            match=Match(has_tools=True, last_user_contains="Your previous answer was rejected"),
            response=Response(text=valid),
        ),
        Rule(
            name="truncated",
            times=1,
            match=Match(has_tools=True, contains="Decompose a specification into tasks"),
            response=Response(text=valid[: len(valid) // 2]),
        ),
    ]
    with ScriptedModelServer(rules) as server:
        for name, value in claude_cli_env(server.url, tmp_path / "home").items():
            monkeypatch.setenv(name, value)  # the CLI inherits the environment
        result = ProjectInitializer(make_config(project)).initialize(EXAMPLES / "freeform-spec.md")
        used = [r.rule for r in server.message_requests() if r.rule]

    assert used == ["truncated", "valid after feedback"]  # no nudges in between
    assert result.method == "model" and result.model_calls == 2
    assert [t.key for t in result.tasks] == ["RECIPE-1.1", "RECIPE-1.2"]
    assert result.tasks[1].dependencies == [result.tasks[0].id]
    assert any("answer 1 rejected" in w and "incomplete" in w for w in result.warnings)
    assert keys_in_store(project) == ["META", "RECIPE-1.1", "RECIPE-1.2"]
    assert (project / MARKER_NAME).exists()
