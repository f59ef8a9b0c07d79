"""The OS sandbox around everything the agent runs (DESIGN.md: ``sandbox/``).

:class:`Confinement` says what one run may see and touch; :mod:`.bwrap` enforces it for the
anthropic-sdk backend's own tools, :mod:`.claude` turns it into Claude Code's settings
for the claude-code and claude-code-sdk backends. :func:`check` is the preflight: no
silent fallback to running unconfined. docs/security.md has the threat model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autonomous.sandbox.confinement import Confinement, Network

if TYPE_CHECKING:
    from autonomous.config import SandboxSection

__all__ = ["Confinement", "Network", "check", "describe", "for_section"]

OFF = "off (autonomous.sandbox: off): the agent runs with the user's rights"


def check(backend: str) -> str | None:
    """Why ``backend`` cannot run sandboxed on this machine (one line naming the fix), or ``None``.

    Every backend needs bubblewrap: the runner's own bash runs in it, and Claude Code
    uses it for its Bash tool on Linux, with socat for its network proxy.
    """
    import shutil

    from autonomous.sandbox import bwrap

    problem = bwrap.problem()
    if problem is None and backend != "anthropic-sdk" and shutil.which("socat") is None:
        problem = "Claude Code's sandbox needs socat for its network proxy: install the `socat` package"
    if problem is None:
        return None
    return f"{problem}; or set autonomous.sandbox: off to run the {backend} backend without a sandbox"


def describe(backend: str, conf: Confinement | None) -> str:
    """Which sandbox is in force, in one line (the session's first event, ``status``)."""
    if conf is None:
        return OFF
    how = "bubblewrap" if backend == "anthropic-sdk" else "Claude Code's sandbox (bubblewrap) + --restricted"
    return f"{how}: {conf.describe()}"


def for_section(cwd: Path, section: SandboxSection, *, tool_dirs: tuple[Path, ...] = ()) -> Confinement | None:
    """The confinement of an agent working in ``cwd`` under ``section``; ``None`` when it is off."""
    if not section.enabled:
        return None
    return Confinement.for_project(
        cwd,
        tool_dirs=tool_dirs,
        read_paths=section.read_paths,
        network=section.network,
        allow_hosts=section.allow_hosts,
    )
