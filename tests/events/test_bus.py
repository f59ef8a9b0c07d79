"""The bus: redacts each event once before every sink, keeps each worker's live progress,
and asks for the state write at most once a second plus one trailing write."""

import itertools
from collections.abc import Callable

from autonomous.events import (
    Event,
    Outcome,
    OutcomeEvent,
    OutcomeStatus,
    Redactor,
    TaskClaimed,
    TaskRecorded,
    Text,
    ToolUse,
    UsageUpdate,
    WarningEvent,
)
from autonomous.events.bus import EventBus

SECRET = "s3cr3t-value-planted-42"
W1 = {"task_id": "T-1", "key": "A-1", "worker_id": "w1"}
W2 = {"task_id": "T-2", "key": "A-2", "worker_id": "w2"}


class Recording:
    """A sink that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


class CountingRedactor(Redactor):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__(secrets)
        self.calls = 0

    def event(self, event):  # type: ignore[override]
        self.calls += 1
        return super().event(event)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """``schedule(delay, fn)`` as the event loop's ``call_later``: nothing runs until the
    test fires what is due."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pending: list[list] = []  # [due, fn, cancelled]

    def __call__(self, delay: float, fn: Callable[[], None]) -> "FakeTimers.Handle":
        entry = [self.clock.now + delay, fn, False]
        self.pending.append(entry)
        return FakeTimers.Handle(entry)

    class Handle:
        def __init__(self, entry: list) -> None:
            self.entry = entry

        def cancel(self) -> None:
            self.entry[2] = True

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        due = [e for e in self.pending if e[0] <= self.clock.now]
        self.pending = [e for e in self.pending if e[0] > self.clock.now]
        for _, fn, cancelled in due:
            if not cancelled:
                fn()


def test_the_bus_redacts_each_event_once_before_every_sink() -> None:
    first, second = Recording(), Recording()
    redactor = CountingRedactor([SECRET])
    bus = EventBus([first, second], redactor)
    bus.emit(Text(text=f"the token is {SECRET}", **W1))
    bus.emit(ToolUse(name="Bash", input={"command": f"curl -u {SECRET} x"}, **W1))
    bus.emit(WarningEvent(message=f"a list holds it: {[SECRET]}"))
    assert redactor.calls == 3  # once per event, not once per sink
    for sink in (first, second):
        assert len(sink.events) == 3
        assert all(SECRET not in repr(e) for e in sink.events)
    assert first.events[0].text == "the token is ***"
    assert first.events[1].input == {"command": "curl -u *** x"}
    assert first.events[0] is second.events[0]  # the same redacted copy for every sink


def test_live_progress_per_worker_counts_every_run_of_the_task() -> None:
    bus = EventBus()
    bus.emit(TaskClaimed(title="one", **W1))
    bus.emit(TaskClaimed(title="two", **W2))
    bus.emit(ToolUse(name="Bash", **W1))
    bus.emit(UsageUpdate(turns=2, cost_usd=0.5, **W1))
    bus.emit(ToolUse(name="Read", **W2))
    assert (bus.live["w1"].tool, bus.live["w1"].turns, bus.live["w1"].cost_usd) == ("Bash", 2, 0.5)
    assert bus.live["w2"].tool == "Read" and bus.live["w2"].turns == 0
    # the first run ends; the second run's figures start from zero again, the task's go on
    bus.emit(OutcomeEvent.of(Outcome(OutcomeStatus.COMPLETED, turns=3, cost_usd=0.75), **W1))
    assert (bus.live["w1"].tool, bus.live["w1"].turns, bus.live["w1"].cost_usd) == (None, 3, 0.75)
    bus.emit(UsageUpdate(turns=1, cost_usd=0.1, **W1))
    assert (bus.live["w1"].turns, bus.live["w1"].cost_usd) == (4, 0.85)
    # an event about another task (a stale one) does not move the worker's progress
    bus.emit(UsageUpdate(turns=50, cost_usd=9.0, task_id="T-old", worker_id="w1"))
    assert bus.live["w1"].turns == 4
    bus.emit(TaskRecorded(status="done", turns=4, cost_usd=0.85, **W1))
    bus.emit(TaskClaimed(title="three", task_id="T-3", key="A-3", worker_id="w1"))
    assert (bus.live["w1"].task_id, bus.live["w1"].turns, bus.live["w1"].tool) == ("T-3", 0, None)


def test_a_burst_of_progress_is_saved_at_most_once_a_second_plus_the_trailing_write() -> None:
    clock = FakeClock()
    timers = FakeTimers(clock)
    saves: list[tuple[float, int]] = []
    bus = EventBus(clock=clock)
    bus.track(lambda: saves.append((clock.now, bus.live["w1"].turns)), timers)
    bus.emit(TaskClaimed(title="one", **W1))  # the first change is written at once
    assert saves == [(100.0, 0)]
    for turn in range(1, 301):  # 300 events in 3 seconds
        bus.emit(UsageUpdate(turns=turn, cost_usd=turn / 100, **W1))
        timers.advance(0.01)
    timers.advance(1.0)  # let the last trailing write happen
    times = [t for t, _ in saves]
    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in itertools.pairwise(times))
    assert len(saves) <= 1 + 3 + 1  # the first, at most one a second, and the trailing one
    assert saves[-1][1] == 300  # the last change is never lost
    assert len(timers.pending) == 0 or all(e[2] for e in timers.pending)


def test_events_that_change_no_progress_write_nothing_and_untrack_cancels_the_trailing_write() -> None:
    clock = FakeClock()
    timers = FakeTimers(clock)
    saves: list[float] = []
    bus = EventBus(clock=clock)
    bus.track(lambda: saves.append(clock.now), timers)
    bus.emit(Text(text="thinking", **W1))  # no task claimed by w1 on this bus yet
    bus.emit(WarningEvent(message="no task"))
    assert saves == []
    bus.emit(TaskClaimed(title="one", **W1))
    bus.emit(ToolUse(name="Bash", **W1))  # inside the second: put off
    assert saves == [100.0]
    bus.untrack()  # the session ended: its own last write is the last word
    timers.advance(5.0)
    assert saves == [100.0]
