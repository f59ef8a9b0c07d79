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
    assert [p.name for p in tmp_path.iterdir()] == ["runner_state.json"]


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
