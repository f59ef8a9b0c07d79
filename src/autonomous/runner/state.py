"""What a runner leaves behind for the next one: the previous session, stop and recovery."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autonomous import runner_state
from autonomous.config import Config
from autonomous.errors import AutonomousError, ClaimConflict, StaleClaim, TaskNotFound
from autonomous.events import Event, WarningEvent
from autonomous.prompts.build import RUNNER_AUTHOR as AUTHOR
from autonomous.providers.base import StateProvider
from autonomous.runner.process import same_host
from autonomous.runner_state import CurrentTask, RunnerState
from autonomous.tasks import TaskStatus


def load_previous(state_dir: Path) -> RunnerState | None:
    try:
        return runner_state.load(state_dir)
    except AutonomousError:
        return None


# -- status, stop, recovery ---------------------------------------------------------------------


def request_stop(state_dir: Path) -> tuple[bool, str]:
    """``autonomous stop``: SIGTERM the runner recorded in ``runner_state.json``.
    Returns (whether a runner was signalled, a sentence for the user)."""
    try:
        state = runner_state.load(Path(state_dir))
    except AutonomousError as exc:
        return False, str(exc)
    if state is None:
        return False, "no runner has run in this project"
    if state.state != "running":
        return False, f"no runner is running (last session {state.session_id} is {state.state})"
    if not same_host(state.worker_id):
        return False, f"the runner runs on another host ({state.worker_id}); stop it there"
    if not runner_state.pid_alive(state.pid):
        return False, f"no runner is running (pid {state.pid} of session {state.session_id} is gone)"
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False, f"no runner is running (pid {state.pid} is gone)"
    return True, f"sent SIGTERM to runner pid {state.pid} (session {state.session_id}); it finishes its current step"


def recovery_context(config: Config, *, events: int = 20, provider: StateProvider | None = None) -> dict[str, Any]:
    """``autonomous resume``: the status (:func:`autonomous.progress.collect_status`: state,
    runner, tasks in flight, ``recent_events``), plus ``task_notes`` (the last notes of each
    task in flight) and ``would`` (what ``--resume`` would do)."""
    from autonomous.progress import collect_status

    info = collect_status(config.state_dir, config.log_dir, None, events=events)
    if info["state"] == "unreadable":
        return {**info, "would": "fix or remove the state file"}
    state = load_previous(config.state_dir)
    notes: dict[str, list[str]] = {}
    if state is not None and state.current:
        try:
            own = provider is None
            prov = provider
            if prov is None:
                from autonomous.providers import get_provider

                prov = get_provider(config)
            try:
                for cur in state.current:
                    with contextlib.suppress(TaskNotFound):
                        notes[cur.key] = [n.text for n in prov.get_task(cur.id).notes[-3:]]
            finally:
                if own:
                    prov.close()
        except AutonomousError:
            pass
    info["task_notes"] = notes
    if state is None:
        info["would"] = "start a new session: no runner has run here"
    elif info["state"] == "running":
        info["would"] = f"nothing: a runner is running (pid {state.pid}); `autonomous stop` first"
    elif state.current:
        cur = state.current[0]
        how = (
            f"continuing its conversation {cur.backend_session_id}" if cur.backend_session_id else "in a fresh context"
        )
        others = [c.key for c in state.current[1:]]
        info["would"] = (
            f"continue session {state.session_id}: first {cur.key} ({cur.title}) {how}"
            + (f", with {', '.join(others)} on the other workers" if others else "")
            + ", then the next ready tasks"
        )
    elif state.state == "paused":
        info["would"] = f"continue session {state.session_id} after the pause ({state.pause_reason})"
    else:
        info["would"] = f"continue session {state.session_id} with the next ready task"
    return info


def recover_dead_claims(
    provider: StateProvider, previous: RunnerState | None, emit: Callable[[Event], None]
) -> list[CurrentTask]:
    """Claims left by a runner of this project that died (kill -9, power cut) go back
    to the pool now rather than when their lease expires. Only for a runner on this
    host whose pid is gone: a live runner's claims are never touched. Returns what
    that runner was working on, for ``--resume``."""
    if previous is None or not previous.current:
        return []
    dead = previous.pid != os.getpid() and not runner_state.pid_alive(previous.pid)
    targets = []
    for cur in previous.current:
        targets.append(cur)
        if not dead or not same_host(cur.worker_id or previous.worker_id):
            continue
        try:
            task = provider.get_task(cur.id)
        except TaskNotFound:
            continue
        holder = task.claim.worker_id if task.claim else None
        if task.status is TaskStatus.IN_PROGRESS and holder in (cur.worker_id, previous.worker_id):
            try:
                provider.update_task(task.id, force=True, status=TaskStatus.TODO)
                provider.add_note(
                    task.id,
                    f"Recovered: runner {holder} (pid {previous.pid}) died while working on this task; "
                    "back to todo"
                    + (f"; its conversation was {cur.backend_session_id}" if cur.backend_session_id else ""),
                    AUTHOR,
                )
                emit(
                    WarningEvent(
                        message=f"recovered {task.key} from dead runner pid {previous.pid}",
                        task_id=task.id,
                        key=task.key,
                    )
                )
            except (StaleClaim, ClaimConflict):
                pass
    return targets
