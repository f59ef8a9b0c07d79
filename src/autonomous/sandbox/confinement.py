"""What the agent may see and touch: one :class:`Confinement` per run, shared by every mechanism.

The same rules are enforced three ways, and live here once:

* the anthropic-sdk backend's ``bash`` runs inside bubblewrap (:mod:`autonomous.sandbox.bwrap`);
* its file tools run in the runner's process and ask :meth:`Confinement.refusal` before
  touching a path (after resolving ``..``, absolute paths and symlinks);
* Claude Code gets them as its own sandbox and permission settings
  (:mod:`autonomous.sandbox.claude`).

The rules: the project (the agent's working directory) is writable; its ``.git`` is
read-only (hooks, config and refs belong to the runner) and the tool's own folders
(``.ai-agents``, the state and log folders) are absent; outside the project only the
system folders, the interpreter the runner runs on and ``read_paths`` are visible, read-only,
and a private ``/tmp`` is writable; home folders and other projects are absent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Network = Literal["off", "on", "allow"]

# Outside the project, the folders a build needs to run programs, read-only. The rest of
# the machine (home folders, other projects, /srv, /mnt, /var ...) is absent.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
# Inside the visible system folders, files that hold secrets: shown empty.
MASKED_PATHS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/ssh")
TOOL_DIR = ".ai-agents"


@dataclass(frozen=True, slots=True)
class Confinement:
    """The sandbox one run gets. ``project``: the agent's working directory, resolved."""

    project: Path
    hidden: tuple[Path, ...] = ()  # inside the project, absent (the tool's own folders)
    read_only: tuple[Path, ...] = ()  # inside or outside the project, visible but never writable (.git)
    read_paths: tuple[Path, ...] = ()  # outside the project, visible read-only (system folders, interpreter, config)
    masked: tuple[Path, ...] = ()  # inside read_paths, shown empty (/etc/shadow ...)
    network: Network = "off"
    allow_hosts: tuple[str, ...] = ()

    @classmethod
    def for_project(
        cls,
        cwd: Path | str,
        *,
        tool_dirs: Iterable[Path | str] = (),
        read_paths: Iterable[Path | str] = (),
        network: Network = "off",
        allow_hosts: Sequence[str] = (),
    ) -> Confinement:
        """The confinement of an agent working in ``cwd``; ``tool_dirs``: the state and log
        folders (hidden wherever they are), ``read_paths``: more folders to show read-only."""
        project = Path(cwd).resolve()
        hidden = [project / TOOL_DIR, *(Path(p).resolve() for p in tool_dirs)]
        hidden = [h for h in hidden if not any(h != o and _under(h, o) for o in hidden)]  # the outermost only
        git_dirs = _git_dirs(project)
        visible = [Path(p) for p in SYSTEM_PATHS if Path(p).exists()]
        visible += [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
        visible += [Path(os.path.expanduser(str(p))).resolve() for p in read_paths]
        if network != "off":  # /etc/resolv.conf is often a symlink into /run (systemd-resolved)
            visible.append(Path("/etc/resolv.conf").resolve().parent)
        return cls(
            project=project,
            hidden=tuple(_unique(hidden)),
            read_only=tuple(_unique(git_dirs)),
            read_paths=tuple(_unique(p for p in visible if not _under(p, project))),
            masked=tuple(Path(p) for p in MASKED_PATHS if os.path.lexists(p)),
            network=network,
            allow_hosts=tuple(allow_hosts),
        )

    def describe(self) -> str:
        """One line for the session's first event and ``status``."""
        net = self.network if self.network != "allow" else f"allow {', '.join(self.allow_hosts) or 'nothing'}"
        return f"project writable, .git read-only, {TOOL_DIR} hidden, network {net}"

    def refusal(self, path: Path, *, write: bool) -> str | None:
        """Why the runner's own file tools must not read (or write) ``path``, or ``None``.

        ``path`` is already resolved (symlinks followed); paths outside the project are the
        caller's to refuse.
        """
        for hidden in self.hidden:
            if _under(path, hidden):
                return f"{self._rel(path)} is in {self._rel(hidden)}, the runner's own folder: refused by the sandbox"
        if write:
            for ro in self.read_only:
                if _under(path, ro):
                    return f"{self._rel(path)} is in {self._rel(ro)}, which is read-only in the sandbox: refused"
        return None

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.project) if _under(path, self.project) else str(path)


def _git_dirs(project: Path) -> list[Path]:
    """The repository folders git needs to read in ``project`` (read-only for the agent):
    ``.git``, or for a worktree, its own folder and the main repository's."""
    dot_git = project / ".git"
    if dot_git.is_dir():
        return [dot_git]
    if not dot_git.is_file():
        return []
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except OSError:
        return []
    if not text.startswith("gitdir:"):
        return []
    own = (project / text.removeprefix("gitdir:").strip()).resolve()
    dirs = [dot_git, own]
    common = own / "commondir"
    if common.is_file():
        dirs.append((own / common.read_text(encoding="utf-8").strip()).resolve())
    return dirs


def _under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen
