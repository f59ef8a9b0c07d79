import hashlib
import os

import pytest

from autonomous import runner_state
from autonomous.errors import StoreCorrupt
from autonomous.runner_state import CurrentTask, RunnerState


def test_missing_state_is_none(tmp_path):
    assert runner_state.load(tmp_path) is None


def test_round_trip(tmp_path):
    state = RunnerState(session_id="s1", worker_id="w1", cost_usd=1.5, tasks_completed=["A-1.1"])
    state.current.append(CurrentTask(id="T-2", key="A-1.2", title="t", started_at="2026-01-01T00:00:00+00:00", token=3))
    runner_state.save(tmp_path, state)
    assert runner_state.load(tmp_path) == state
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runner_state.json", "runner_state.tasks"]


def test_finished_keys_are_appended_once_never_rewritten(tmp_path):
    state = RunnerState(session_id="s1", worker_id="w1")
    runner_state.save(tmp_path, state)
    for i in range(300):
        [state.tasks_completed, state.tasks_blocked, state.tasks_failed][i % 3].append(f"A-1.{i}")
        runner_state.save(tmp_path, state)
        assert (tmp_path / "runner_state.json").stat().st_size < 1000  # the state file does not grow
    journal = (tmp_path / "runner_state.tasks").read_text().splitlines()
    assert len(journal) == 300 and journal[:2] == ["s1\tcompleted\tA-1.0", "s1\tblocked\tA-1.1"]
    assert runner_state.load(tmp_path) == state


def test_a_new_session_starts_the_journal_afresh_and_stray_lines_are_ignored(tmp_path):
    runner_state.save(tmp_path, RunnerState(session_id="s1", worker_id="w1", tasks_completed=["A-1.1", "A-1.2"]))
    second = RunnerState(session_id="s2", worker_id="w1", tasks_failed=["B-1.1"])
    runner_state.save(tmp_path, second)
    assert (tmp_path / "runner_state.tasks").read_text() == "s2\tfailed\tB-1.1\n"
    with open(tmp_path / "runner_state.tasks", "a") as fh:  # appended by a save whose state file never landed
        fh.write("s2\tfailed\tB-1.2\ns1\tcompleted\tA-1.3\n")
    assert runner_state.load(tmp_path) == second


def test_fsync_only_at_durable_points_and_once_a_second(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    clock = [1000.0]
    monkeypatch.setattr(runner_state.time, "monotonic", lambda: clock[0])
    state = RunnerState(session_id="s1", worker_id="w1")
    runner_state.save(tmp_path, state)  # a session starts: durable
    assert len(synced) >= 2  # the file and its directory
    synced.clear()
    for i in range(50):  # a burst of steps within one second: no fsync at all
        state.turns = i
        state.tasks_completed.append(f"A-1.{i}")
        runner_state.save(tmp_path, state)
    assert synced == []
    clock[0] += runner_state.FSYNC_INTERVAL
    runner_state.save(tmp_path, state)
    assert synced, "a second later the next step is made durable"
    synced.clear()
    state.state = "stopped"
    runner_state.save(tmp_path, state)  # the state changes: durable at once
    assert synced
    assert runner_state.load(tmp_path) == state


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"schema_version": 99}', b"[1, 2]", b'{"schema_version": 1, "x": 1}']
)
def test_damaged_file_is_reported_and_left_untouched(tmp_path, content):
    path = tmp_path / "runner_state.json"
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt) as err:
        runner_state.load(tmp_path)
    assert str(path) in str(err.value)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest()


def test_pid_alive():
    assert runner_state.pid_alive(os.getpid())
    assert not runner_state.pid_alive(2**22 + 12345)
