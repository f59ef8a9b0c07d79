"""checkpoints.py: which checkpoints pause in which mode, and the terminal question."""

from __future__ import annotations

import io

import pytest

from autonomous.checkpoints import (
    Checkpoint,
    CheckpointKind,
    Decision,
    ExecutionMode,
    NoTerminal,
    TerminalApprover,
    TurnCounter,
    context_high,
    requires_review,
)


@pytest.mark.parametrize("kind", list(CheckpointKind))
def test_autonomous_mode_never_pauses(kind: CheckpointKind) -> None:
    assert not requires_review(kind, ExecutionMode.AUTONOMOUS)


def test_supervised_reviews_every_checkpoint_but_does_not_ask_before_tasks() -> None:
    assert all(requires_review(k, "supervised") for k in CheckpointKind if k is not CheckpointKind.BEFORE_TASK)
    assert not requires_review(CheckpointKind.BEFORE_TASK, "supervised")
    assert requires_review(CheckpointKind.BEFORE_TASK, "interactive")


def test_critical_checkpoints() -> None:
    assert Checkpoint(CheckpointKind.CONTEXT_HIGH).critical and Checkpoint(CheckpointKind.BLOCKER).critical
    assert not Checkpoint(CheckpointKind.TURN_INTERVAL).critical


def test_without_a_terminal_the_answer_is_pause() -> None:
    cpt = Checkpoint(CheckpointKind.BLOCKER, "A-1.1", "stuck")
    assert NoTerminal().ask(cpt) is Decision.PAUSE
    assert TerminalApprover(stdin=io.StringIO("c\n"), stdout=io.StringIO()).ask(cpt) is Decision.PAUSE  # not a TTY


def test_terminal_answers() -> None:
    out = io.StringIO()
    answers = iter(["what", "d", "a"])
    approver = TerminalApprover(stdout=out, input_fn=lambda prompt: next(answers))
    cpt = Checkpoint(CheckpointKind.REGRESSION_FAILURE, "A-1.1", "tests red", details="$ pytest -> exit 1")
    assert approver.ask(cpt) is Decision.ABORT
    text = out.getvalue()
    assert "checkpoint regression_failure on A-1.1: tests red" in text and "$ pytest -> exit 1" in text
    assert "please answer" in text

    def eof(prompt: str) -> str:
        raise EOFError

    assert TerminalApprover(stdout=out, input_fn=eof).ask(cpt) is Decision.PAUSE


def test_turn_counter_fires_once_per_interval() -> None:
    counter = TurnCounter(10)
    assert [counter.update(t) for t in (3, 9, 10, 11, 25, 29, 30)] == [False, False, True, False, True, False, True]
    assert not TurnCounter(0).update(1000)


def test_context_high() -> None:
    assert context_high(170_001, 200_000, 0.85)
    assert not context_high(170_000, 200_000, 0.85)
    assert not context_high(0, 200_000, 0.85)
