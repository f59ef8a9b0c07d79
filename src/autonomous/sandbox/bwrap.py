"""bubblewrap: the OS sandbox around every command the anthropic-sdk backend's ``bash`` runs.

Each command gets fresh namespaces (``--unshare-all``): its own PID namespace with its
own ``/proc`` (no other process's environment or working directory is readable), no
network unless the configuration turns it on, no capabilities, a new session (no
terminal injection), and a mount namespace built from nothing: the system folders
read-only, the project read-write, its ``.git`` read-only, the tool's folders as
read-only empty mounts, a private ``/tmp``; home folders and other projects are simply
not there. When the command's shell exits, bubblewrap's PID 1 exits and the kernel
kills everything left in the namespace: ``setsid nohup sleep &`` dies with it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from autonomous.sandbox.confinement import Confinement

PACKAGE = "bubblewrap"  # the Debian/Ubuntu/Fedora/Arch package that provides bwrap
SHELL = "/bin/bash"


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def argv(conf: Confinement, command: str, *, bwrap: str = "bwrap") -> list[str]:
    """The command line running ``command`` in a shell inside ``conf``'s sandbox."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if conf.network == "on":
        args.append("--share-net")
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in conf.read_paths:
        args += _mount_ro(str(path))
    for path in conf.masked:
        args += (
            ["--tmpfs", str(path), "--remount-ro", str(path)]
            if path.is_dir()
            else ["--ro-bind", "/dev/null", str(path)]
        )
    project, parent = str(conf.project), str(conf.project.parent)
    if parent != "/":  # an empty parent, read-only at the end: ``../x`` is refused, not written somewhere private
        args += ["--tmpfs", parent]
    args += ["--bind", project, project]
    for path in conf.read_only:
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for path in conf.hidden:
        if path.is_dir() and path.is_relative_to(conf.project):
            args += ["--tmpfs", str(path), "--remount-ro", str(path)]
        elif path.exists() and path.is_relative_to(conf.project):
            args += ["--ro-bind", "/dev/null", str(path)]
    if parent != "/":
        args += ["--remount-ro", parent]
    args += ["--remount-ro", "/", "--chdir", project, "--", SHELL, "-c", command]
    return args


def _mount_ro(path: str) -> list[str]:
    """``path`` read-only; a symlink (``/bin -> usr/bin`` on merged-/usr systems) stays one."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    if os.path.exists(path):
        return ["--ro-bind", path, path]
    return []


@functools.cache
def problem() -> str | None:
    """Why bubblewrap cannot sandbox commands on this machine (one line naming the fix), or ``None``.

    Cached: the answer does not change while the runner runs, and the check starts a process.
    """
    bwrap = find_bwrap()
    if bwrap is None:
        return f"bubblewrap is not installed: install the `{PACKAGE}` package (apt-get install {PACKAGE})"
    try:
        proc = subprocess.run(
            [bwrap, "--unshare-all", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({bwrap}) does not run: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"bubblewrap cannot create its namespaces here ({detail}): enable unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"
        )
    return None
