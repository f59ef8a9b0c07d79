"""Real processes racing on one store: what the file and postgres provider tests share.

A child runs a snippet of Python, opens the store, prints ``ready`` and waits for a line
on stdin; :func:`start_together` releases every child at once, so they truly race.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap

import pytest


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """A child Python process running ``code`` (it gets ``args`` as sys.argv[1:])."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_together(children: list[subprocess.Popen[str]], timeout: float = 240) -> list[str]:
    """Wait until every child has opened the store and says so, release them all at once,
    and return each one's remaining output."""
    for child in children:
        line = child.stdout.readline()
        if line != "ready\n":
            child.kill()
            pytest.fail(f"a child did not start: {line!r} {child.communicate()[1]}")
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=timeout)
        assert child.returncode == 0, err
        outputs.append(out)
    return outputs


def claimed_by(workers: list[str], outputs: list[str]) -> dict[str, list[str]]:
    """The task ids each worker printed first on its lines (``<id> <token>``)."""
    return {w: [line.split()[0] for line in out.splitlines()] for w, out in zip(workers, outputs, strict=True)}


def winners_by_task(workers: list[str], outputs: list[str], ids: list[str]) -> dict[str, list[str]]:
    """Who won each task, from lines ``won <id>`` / ``lost <id>``; every worker must have
    answered every attempt, in order."""
    winners: dict[str, list[str]] = collections.defaultdict(list)
    for worker, out in zip(workers, outputs, strict=True):
        results = [line.split() for line in out.splitlines()]
        assert [tid for _, tid in results] == ids  # every attempt answered: won or lost
        for verdict, tid in results:
            if verdict == "won":
                winners[tid].append(worker)
    return winners
