"""spec.py: reading spec files, exact parsing of structured specs, dependency checks,
and cutting free-form specs into sections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autonomous.errors import SpecError
from autonomous.init.dependencies import resolve_dependencies
from autonomous.init.sections import split_sections
from autonomous.init.source import read_spec
from autonomous.init.structured import dependency_keys, is_structured, parse_priority, parse_structured
from autonomous.tasks import Priority, parse_title

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TWO_PHASES = """\
# Auth Service

Intro prose that is not a task.

## Phase 1: Core Authentication
- [AUTH-1.1] Create user model and database schema
  - Priority: high
  - Acceptance criteria:
    - users table with a unique email and a password hash
    - [ ] migrations run
      on a fresh database
  - Test steps:
    1. Run `pytest tests/test_models.py`
    2. Inspect the schema
  Extra words about the model.
- [AUTH-1.2] Implement login endpoint
  - Depends on: AUTH-1.1
  - Acceptance criteria: returns a JWT on success
- [AUTH-1.2a] Rate-limit login attempts
  - Priority: P0
  - Depends on:
    - [AUTH-1.2] Implement login endpoint

## Phase 2: Enhanced Features

### [AUTH-2.1] Add password reset flow
Users can reset their password by email.

#### Acceptance Criteria
- an email with a one-time link is sent
- the link expires after one hour

#### Test steps
1. request a reset
2. follow the link

#### Depends on
- 1.2

**Priority:** low

- [AUTH-2.2] Implement email verification
  - Labels: email, backend
```python
- [AUTH-9.9] inside a code block: not a task
```
"""


# -- reading -------------------------------------------------------------------------------


def test_read_spec_returns_text_hash_and_normalised_newlines(tmp_path: Path):
    path = tmp_path / "spec.md"
    path.write_bytes(b"\xef\xbb\xbf# Title\r\n- [A-1.1] One\r\n")
    spec = read_spec(path)
    assert spec.text == "# Title\n- [A-1.1] One\n"
    assert len(spec.sha256) == 64
    assert spec.path == path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"  \n\t\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("# caf\u00e9 latin-1\n".encode("latin-1"), "not UTF-8"),
        ("# UTF-16 spec\n".encode("utf-16"), "binary"),
    ],
    ids=["missing", "empty", "whitespace", "binary", "latin-1", "utf-16"],
)
def test_bad_spec_files_are_spec_errors(tmp_path: Path, content: bytes | None, message: str):
    path = tmp_path / "spec.md"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=message) as info:
        read_spec(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_directory_is_a_spec_error(tmp_path: Path):
    with pytest.raises(SpecError, match="directory"):
        read_spec(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_is_a_spec_error(tmp_path: Path):
    path = tmp_path / "spec.md"
    path.write_text("# x\n")
    path.chmod(0)
    try:
        with pytest.raises(SpecError, match="cannot read"):
            read_spec(path)
    finally:
        path.chmod(0o644)


# -- structured parsing --------------------------------------------------------------------


def test_two_phase_spec_is_parsed_exactly():
    parsed = parse_structured(TWO_PHASES)
    assert parsed.title == "Auth Service"
    assert is_structured(parsed)
    assert [t.key for t in parsed.tasks] == ["AUTH-1.1", "AUTH-1.2", "AUTH-1.2a", "AUTH-2.1", "AUTH-2.2"]
    by = {t.key: t for t in parsed.tasks}
    assert by["AUTH-1.1"].task.title == "[AUTH-1.1] Create user model and database schema"
    assert by["AUTH-1.2a"].task.title == "[AUTH-1.2a] Rate-limit login attempts"
    assert parsed.phases == ["Phase 1: Core Authentication", "Phase 2: Enhanced Features"]
    assert by["AUTH-1.2"].phase == "Phase 1: Core Authentication"
    assert by["AUTH-2.2"].phase == "Phase 2: Enhanced Features"

    t11 = by["AUTH-1.1"].task
    assert t11.priority is Priority.HIGH
    assert t11.acceptance_criteria == [
        "users table with a unique email and a password hash",
        "migrations run on a fresh database",
    ]
    assert t11.test_steps == ["Run `pytest tests/test_models.py`", "Inspect the schema"]
    assert t11.description == "Extra words about the model."
    assert t11.dependencies == []

    assert by["AUTH-1.2"].task.acceptance_criteria == ["returns a JWT on success"]
    assert by["AUTH-1.2"].task.dependencies == ["AUTH-1.1"]
    assert by["AUTH-1.2a"].task.priority is Priority.URGENT
    assert by["AUTH-1.2a"].task.dependencies == ["AUTH-1.2"]

    t21 = by["AUTH-2.1"].task
    assert t21.description == "Users can reset their password by email."
    assert t21.acceptance_criteria == ["an email with a one-time link is sent", "the link expires after one hour"]
    assert t21.test_steps == ["request a reset", "follow the link"]
    assert t21.priority is Priority.LOW
    assert t21.dependencies == ["1.2"]  # as written; resolve_dependencies maps it
    assert by["AUTH-2.2"].task.labels == ["email", "backend"]
    assert "AUTH-9.9" in by["AUTH-2.2"].task.description  # the code block stays text of the task above it

    assert resolve_dependencies(parsed.tasks) == []
    assert by["AUTH-2.1"].task.dependencies == ["AUTH-1.2"]
    # every title carries the key the scheduler reads
    for t in parsed.tasks:
        assert parse_title(t.task.title).key == t.key


def test_parsing_is_deterministic():
    first = [t.to_dict() for t in parse_structured(TWO_PHASES).tasks]
    assert first == [t.to_dict() for t in parse_structured(TWO_PHASES).tasks]


def test_leading_number_and_task_word_forms():
    text = """\
# Plan
## Phase 1
1.1: Set up the repository
1.2: Add CI
- Task 1.3 Write the README
  - Depends on: 1.1, 1.2
## Phase 2
### Task 2.1: Ship it
#### Test steps
- tag a release
2.1a: Announce it
"""
    parsed = parse_structured(text)
    assert [(t.key, t.task.title) for t in parsed.tasks] == [
        ("1.1", "1.1: Set up the repository"),
        ("1.2", "1.2: Add CI"),
        ("1.3", "Task 1.3 Write the README"),
        ("2.1", "Task 2.1: Ship it"),
        ("2.1a", "2.1a: Announce it"),
    ]
    assert parsed.tasks[2].task.dependencies == ["1.1", "1.2"]
    assert parsed.tasks[3].task.test_steps == ["tag a release"]
    assert is_structured(parsed)


def test_bold_keys_and_checkboxes_are_unwrapped():
    parsed = parse_structured("- [ ] **[WEB-1.1]** Build the page\n- **[WEB-1.2] Style the page**\n")
    assert [t.task.title for t in parsed.tasks] == ["[WEB-1.1] Build the page", "[WEB-1.2] Style the page"]


def test_duplicate_keys_are_a_spec_error():
    with pytest.raises(SpecError, match=r"duplicate task key A-1\.1 on lines 1 and 3"):
        parse_structured("- [A-1.1] One\n- [A-1.2] Two\n- [A-1.1] Three\n")


def test_unknown_priority_is_a_warning_and_stays_normal():
    parsed = parse_structured("- [A-1.1] One\n  - Priority: whenever\n")
    assert parsed.tasks[0].task.priority is Priority.NORMAL
    assert parsed.warnings == ["line 2: unknown priority 'whenever' (kept normal)"]


def test_phase_mismatch_is_a_warning():
    parsed = parse_structured("## Phase 2: Later\n- [A-1.1] One\n- [A-1.2] Two\n")
    assert "A-1.1 is phase 1 by its key but sits under 'Phase 2: Later'" in parsed.warnings[0]


def test_free_form_specs_are_not_structured():
    readme_example = """\
# Requirements

## User Authentication

The system should support user authentication with:
- Login with email/password
- Password reset via email

## Dashboard

Users should see a dashboard with:
- Overview metrics
"""
    assert not is_structured(parse_structured(readme_example))
    # one "1.2:" line in prose is a coincidence, not a plan
    assert not is_structured(parse_structured("Intro\n\n1.2: the ratio we need\n"))
    # one bracketed key is a plan
    assert is_structured(parse_structured("- [APP-1.1] Do the thing\n"))
    assert not is_structured(parse_structured((EXAMPLES / "freeform-spec.md").read_text()))


def test_helpers():
    assert parse_priority("Medium") is Priority.NORMAL
    assert parse_priority("P1 - soon") is Priority.HIGH
    assert parse_priority("eventually") is None
    assert dependency_keys("[AUTH-1.1], AUTH-1.2 and 2.3a") == ["AUTH-1.1", "AUTH-1.2", "2.3a"]
    assert dependency_keys("none") == []
    assert dependency_keys("after AUTH-1.2. Also OPS-7.") == ["AUTH-1.2", "OPS-7"]


# -- dependencies ---------------------------------------------------------------------------


def _tasks(text: str):
    return parse_structured(text).tasks


def test_unknown_and_self_dependencies_are_dropped_with_warnings():
    tasks = _tasks("- [A-1.1] One\n  - Depends on: A-1.1, X-9.9\n- [A-1.2] Two\n  - Depends on: a-1.1\n")
    warnings = resolve_dependencies(tasks)
    assert warnings == ["A-1.1: depends on itself; dropped", "A-1.1: dependency 'X-9.9' names no task; dropped"]
    assert tasks[0].task.dependencies == []
    assert tasks[1].task.dependencies == ["A-1.1"]  # case-insensitive match


def test_dependencies_on_known_keys_outside_the_spec_are_kept():
    tasks = _tasks("- [A-1.1] One\n  - Depends on: OPS-7\n")
    assert resolve_dependencies(tasks, known_keys=["OPS-7"]) == []
    assert tasks[0].task.dependencies == ["OPS-7"]


def test_cycles_are_broken_with_a_warning():
    tasks = _tasks("- [A-1.1] One\n  - Depends on: A-1.2\n- [A-1.2] Two\n  - Depends on: A-1.1\n")
    warnings = resolve_dependencies(tasks, ordering="dependencies")
    assert len(warnings) == 1 and "cycle" in warnings[0] and "dropped" in warnings[0]
    remaining = [d for t in tasks for d in t.task.dependencies]
    assert len(remaining) == 1


def test_forward_dependency_deadlocks_under_strict_ordering_and_is_dropped():
    text = "- [A-1.1] One\n  - Depends on: A-2.1\n- [A-2.1] Two\n"
    strict = _tasks(text)
    assert "under strict ordering" in resolve_dependencies(strict, ordering="strict")[0]
    assert strict[0].task.dependencies == []
    relaxed = _tasks(text)
    assert resolve_dependencies(relaxed, ordering="dependencies") == []
    assert relaxed[0].task.dependencies == ["A-2.1"]


def test_long_dependency_chain_is_checked_without_recursion():
    lines = [f"- [C-1.{i}] Task {i}" + (f"\n  - Depends on: C-1.{i - 1}" if i > 1 else "") for i in range(1, 5001)]
    tasks = _tasks("\n".join(lines))
    assert resolve_dependencies(tasks) == []
    assert tasks[-1].task.dependencies == ["C-1.4999"]


# -- sections --------------------------------------------------------------------------------


def test_a_short_spec_is_one_section():
    preamble, sections = split_sections("# T\n\nhello\n", max_chars=1000)
    assert preamble == "" and len(sections) == 1 and sections[0].text == "# T\n\nhello\n"


def test_long_spec_is_cut_at_top_level_sections():
    body = "\n".join(f"## Feature {i}\n\n" + ("words " * 120) + "\n\n### Detail\n\nmore\n" for i in range(12))
    text = "# Product\n\nOverview paragraph.\n\n" + body
    preamble, sections = split_sections(text, max_chars=2000)
    assert preamble.startswith("# Product") and "Overview" in preamble
    assert len(sections) > 1
    assert all(len(s.text) <= 2000 for s in sections)
    joined = "\n".join(s.text for s in sections)
    for i in range(12):
        assert joined.count(f"## Feature {i}\n") == 1  # every section once, none split
    assert sections[0].title.startswith("Feature 0")


def test_oversized_section_is_cut_at_its_sub_headings_then_paragraphs():
    big = "## Huge\n\n" + "\n\n".join(f"### Part {i}\n\n" + ("x " * 400) for i in range(5))
    text = "# Doc\n\n## Small\n\nsmall\n\n" + big + "\n\n## Wall\n\n" + "\n\n".join("y " * 300 for _ in range(6))
    _preamble, sections = split_sections(text, max_chars=1500)
    assert all(len(s.text) <= 1500 for s in sections)
    titles = [s.title for s in sections]
    assert any("Huge / Part 3" in t for t in titles)
    assert any(t.startswith("Wall (part") for t in titles)


def test_example_structured_spec_parses():
    parsed = parse_structured((EXAMPLES / "todo-api" / "spec.md").read_text())
    assert is_structured(parsed)
    assert 8 <= len(parsed.tasks) <= 12
    assert len(parsed.phases) == 3
    assert any(t.key.endswith("a") for t in parsed.tasks)
    assert any(t.task.dependencies for t in parsed.tasks)
    assert all(t.task.acceptance_criteria and t.task.test_steps for t in parsed.tasks)
    assert parsed.warnings == [] and resolve_dependencies(parsed.tasks) == []
