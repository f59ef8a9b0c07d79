"""The typed events: fixed keys per kind, and a JSON line reads back as the same event."""

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from autonomous.events import EventKind, Outcome, OutcomeEvent, OutcomeStatus, Text, ToolUse
from autonomous.events.model import COMMON, TYPES, from_dict

AT = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)

# the least each kind needs; every other field has a default
REQUIRED = {
    EventKind.SESSION_START: {"session_id": "s-1"},
    EventKind.SESSION_END: {"session_id": "s-1", "exit_code": 0},
    EventKind.TASK_CLAIMED: {"title": "Login form"},
    EventKind.TASK_RECORDED: {"status": "done"},
    EventKind.TEXT: {"text": "hello"},
    EventKind.TOOL_USE: {"name": "Bash"},
    EventKind.TOOL_RESULT: {"name": "Bash"},
    EventKind.NUDGE: {"nudge": 1, "max_nudges": 2},
    EventKind.CHECKPOINT: {"checkpoint": "blocker"},
    EventKind.VERIFICATION: {"attempt": 1, "passed": True},
    EventKind.OUTCOME: {"status": "completed"},
    EventKind.WARNING: {"message": "careful"},
    EventKind.ERROR: {"message": "broken"},
}


def test_every_kind_has_a_class() -> None:
    assert set(TYPES) == set(EventKind)
    assert all(cls.kind is kind for kind, cls in TYPES.items())


@pytest.mark.parametrize("kind", list(EventKind))
def test_to_dict_has_the_same_keys_whatever_was_given_and_reads_back(kind: EventKind) -> None:
    cls = TYPES[kind]
    bare = cls(at=AT, **REQUIRED.get(kind, {}))
    record = bare.to_dict()
    names = [f.name for f in dataclasses.fields(cls) if f.name != "at"]
    assert list(record)[: len(COMMON)] == list(COMMON)  # the common fields first, in a fixed order
    assert set(record) == {"at", "kind", *names}  # every field, set or not: readers never miss a key
    assert record["kind"] == kind.value and record["at"] == AT.isoformat()
    line = json.dumps(record)
    assert from_dict(json.loads(line)) == bare


def test_a_read_back_event_keeps_its_fields_and_ignores_unknown_keys() -> None:
    event = ToolUse(name="Bash", id="tu-1", input={"command": "pytest -q"}, task_id="T-1", key="A-1", at=AT)
    record = json.loads(json.dumps(event.to_dict()))
    record["added_by_a_newer_version"] = 1
    assert from_dict(record) == event
    assert event.data == {"name": "Bash", "id": "tu-1", "input": {"command": "pytest -q"}, "subagent": False}


def test_events_are_frozen_and_stamping_fills_only_empty_common_fields() -> None:
    event = Text(text="hi", task_id="T-1", backend="claude-code")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "changed"  # type: ignore[misc]
    stamped = event.stamped(task_id="T-9", backend="other", worker_id="w1", key="A-1")
    assert (stamped.task_id, stamped.backend, stamped.worker_id, stamped.key) == ("T-1", "claude-code", "w1", "A-1")
    assert stamped.at == event.at and event.worker_id is None


def test_an_outcome_event_carries_the_outcome_as_json() -> None:
    outcome = Outcome(OutcomeStatus.RATE_LIMITED, error="429", cost_usd=0.1234567, turns=3, retry_at=AT)
    record = OutcomeEvent.of(outcome, task_id="T-1").to_dict()
    assert record["status"] == "rate_limited" and record["retry_at"] == AT.isoformat()
    assert record["cost_usd"] == 0.123457 and record["usage"]["input_tokens"] == 0


def test_a_field_the_kind_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError):
        Text(text="hi", colour="red")  # type: ignore[call-arg]
