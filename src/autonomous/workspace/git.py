"""A small wrapper around the ``git`` command: what the runner needs to record each
task's work as its own commit.

Rules it keeps, because the repository is someone's real work:

* it stages and commits only the paths it is given (a task's change set,
  :mod:`autonomous.workspace.changes`), never ``git add -A``: a user's untracked ``.env``,
  notes or config stay untracked, and what the user staged stays staged and uncommitted;
* paths are passed NUL-separated through ``--pathspec-from-file`` and taken literally, so
  no file name is read as an option or a glob;
* it never pushes or stashes; the worktree and merge-queue helpers at the end (parallel
  workers) rebase task branches and move only the integration checkout, with
  ``reset --keep``, which refuses rather than overwrite a user's uncommitted edit;
* every command runs with stdin closed (or fed by us) and a timeout, so a hook or a
  signing prompt cannot hang an unattended night;
* every command runs with a controlled configuration (:func:`controlled_config`): no
  repository hooks, no fsmonitor, filters, textconv, merge drivers, external diff,
  aliases, pagers, editors, credential helpers or signing programs. An agent that wrote
  ``core.fsmonitor`` into ``.git/config``, a hook into ``.git/hooks`` or a filter into
  ``.gitattributes`` must not get the runner to run its program outside every sandbox;
  ``execution.git.run_hooks: true`` (:func:`set_run_hooks`) restores the repository's own.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autonomous.errors import GitError

# Runtime folders of the tool itself: never part of a task's commit.
RUNTIME_EXCLUDES = (".ai-agents/state", ".ai-agents/logs")
_TIMEOUT = 120.0

# Settings that make git run a program, set to run none (``-c`` wins over every config file).
_FIXED_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=ssh",
    "core.pager=cat",
    "core.editor=:",
    "sequence.editor=:",
    "core.askPass=",
    "credential.helper=",
    "diff.external=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "protocol.ext.allow=never",
    "uploadpack.packObjectsHook=",
)
# Configured names that run a program, and what replaces it: filters and aliases emptied (no
# filter, no alias), textconv and external diff commands made harmless (git runs an empty
# one as a program), merge drivers made to fail (a conflict, never someone else's program).
_PROGRAM_KEYS = (
    (re.compile(r"^filter\..+\.(?:clean|smudge|process)$", re.I), ""),
    (re.compile(r"^alias\..+$", re.I), ""),
    (re.compile(r"^gpg\.(?:.+\.)?program$", re.I), ""),
    (re.compile(r"^diff\..+\.textconv$", re.I), "cat"),
    (re.compile(r"^diff\..+\.command$", re.I), "true"),
    (re.compile(r"^merge\..+\.driver$", re.I), "false"),
)
_run_hooks = False


def set_run_hooks(enabled: bool) -> None:
    """``execution.git.run_hooks``: run the repository's hooks and configured programs (off by default)."""
    global _run_hooks
    _run_hooks = enabled


def controlled_config(cwd: Path) -> list[str]:
    """``-c`` options that keep every git command of the runner from running a program the
    repository's configuration names (see the module docstring); empty with ``run_hooks``."""
    if _run_hooks:
        return []
    args = [arg for item in _FIXED_CONFIG for arg in ("-c", item)]
    try:
        listing = subprocess.run(
            ["git", "config", "-z", "--list"], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=_TIMEOUT, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return args
    for entry in listing.stdout.split("\0"):
        key = entry.split("\n", 1)[0]
        for pattern, harmless in _PROGRAM_KEYS:
            if pattern.match(key):
                args += ["-c", f"{key}={harmless}"]
        if key.lower().startswith("filter."):
            args += ["-c", f"{key.rsplit('.', 1)[0]}.required=false"]
    return args


def _run(
    args: Sequence[str], cwd: Path, *, check: bool = True, env: dict[str, str] | None = None, stdin: str | None = None
) -> str:
    try:
        proc = subprocess.run(
            ["git", *controlled_config(cwd), *args],
            cwd=cwd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} timed out after {_TIMEOUT:.0f}s") from None
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def is_repo(path: Path) -> bool:
    """Whether ``path`` lies inside a git work tree."""
    try:
        return _run(["rev-parse", "--is-inside-work-tree"], Path(path), check=True).strip() == "true"
    except GitError:
        return False


def head(path: Path) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    try:
        return _run(["rev-parse", "--verify", "-q", "HEAD"], Path(path)).strip() or None
    except GitError:
        return None


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree (sha1 repositories)
_ARGS_CHUNK = 500  # paths per command line where git takes no --pathspec-from-file


def _paths_input(paths: Iterable[str]) -> str:
    """Paths for ``--pathspec-from-file=- --pathspec-file-nul``, each taken literally."""
    return "".join(f":(top,literal){p}\0" for p in paths)


def status_paths(repo: Path, pathspec: Sequence[str], *, untracked: bool = True) -> list[tuple[str, str]]:
    """``(XY, path)`` of every path under ``pathspec`` (relative to ``repo``, or ``:(top)``)
    that differs from HEAD, staged or not, untracked ones too unless ``untracked`` is
    false; ignored files and submodules aside. The paths printed are relative to the
    repository's top level (porcelain output always is)."""
    out = _run(
        [
            "status", "--porcelain=v1", "-z", "--no-renames", "--ignore-submodules=all",
            f"--untracked-files={'all' if untracked else 'no'}", "--", *pathspec,
        ],
        Path(repo),
    )  # fmt: skip
    return [(entry[:2], entry[3:]) for entry in out.split("\0") if entry]


def changed_between(repo: Path, old: str | None, new: str | None, pathspec: Sequence[str]) -> list[str]:
    """Paths under ``pathspec`` that differ between two commits (None: no commit yet)."""
    if old == new:
        return []
    out = _run(
        ["diff", "--name-only", "-z", "--no-renames", old or _EMPTY_TREE, new or _EMPTY_TREE, "--", *pathspec],
        Path(repo),
    )
    return [p for p in out.split("\0") if p]


def blobs_at(repo: Path, commit: str | None, paths: Sequence[str]) -> dict[str, tuple[int, str]]:
    """``path -> (mode, blob id)`` of the given paths in ``commit`` (absent paths left out)."""
    found: dict[str, tuple[int, str]] = {}
    if commit is None or not paths:
        return found
    for entry in _chunked(repo, ["ls-tree", "-r", "-z", "--full-tree", commit], paths).split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob":
            found[path] = (int(mode, 8), sha)
    return found


def added_paths(repo: Path, base: str, branch: str) -> list[str]:
    """Paths ``branch`` adds since it left ``base``."""
    out = _run(["diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", f"{base}...{branch}"], Path(repo))
    return [p for p in out.split("\0") if p]


def merge_base(repo: Path, a: str, b: str) -> str | None:
    return _run(["merge-base", a, b], Path(repo), check=False).strip() or None


def tracked_changes(repo: Path, pathspec: Sequence[str]) -> list[str]:
    """Tracked paths with uncommitted changes (staged or not) under ``pathspec``."""
    return sorted({path for _xy, path in status_paths(repo, pathspec, untracked=False)})


def tracked(repo: Path, paths: Sequence[str]) -> set[str]:
    """Which of ``paths`` are in the index."""
    if not paths:
        return set()
    return {p for p in _chunked(repo, ["ls-files", "-z", "--full-name"], paths).split("\0") if p}


def staged_diff(repo: Path, paths: Sequence[str]) -> str:
    """The staged change of ``paths`` against HEAD, as a zero-context patch (for the secret check)."""
    base = ["--cached"] if head(repo) else ["--cached", _EMPTY_TREE]
    args = [*base, "-U0", "--no-color", "--no-ext-diff", "--no-renames"]
    return _chunked(repo, ["diff", *args], paths)


def _chunked(repo: Path, args: Sequence[str], paths: Sequence[str]) -> str:
    """``git ARGS -- PATHS`` for the commands that take no --pathspec-from-file (diff,
    ls-files, ls-tree), in chunks that fit a command line; outputs concatenated."""
    return "".join(
        _run([*args, "--", *(f":(top,literal){p}" for p in paths[i : i + _ARGS_CHUNK])], Path(repo))
        for i in range(0, len(paths), _ARGS_CHUNK)
    )


def stage(repo: Path, paths: Sequence[str]) -> None:
    """Stage exactly ``paths``: present ones added, missing tracked ones removed."""
    repo = Path(repo)
    present = [p for p in paths if os.path.lexists(repo / p)]
    missing = sorted(tracked(repo, [p for p in paths if p not in set(present)]))
    if present:
        _run(["add", "--pathspec-from-file=-", "--pathspec-file-nul"], repo, stdin=_paths_input(present))
    if missing:
        _run(
            ["rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-", "--pathspec-file-nul"],
            repo, stdin=_paths_input(missing),
        )  # fmt: skip


def unstage(repo: Path, paths: Sequence[str]) -> None:
    """Put the index entries of ``paths`` back to HEAD's (the working tree is not touched)."""
    if not paths:
        return
    if head(repo):
        _run(["reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul"], Path(repo), stdin=_paths_input(paths))
    else:
        _run(
            ["rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-", "--pathspec-file-nul"],
            Path(repo), stdin=_paths_input(paths),
        )  # fmt: skip


def commit_paths(repo: Path, paths: Sequence[str], message: str) -> str | None:
    """Commit exactly ``paths`` (already staged with :func:`stage`): whatever else the user
    has staged stays staged and uncommitted. Returns the new commit, or None when the
    paths hold no change against HEAD."""
    repo = Path(repo)
    base = [] if head(repo) else [_EMPTY_TREE]
    staged = [p for p in _chunked(repo, ["diff", "--cached", *base, "--name-only", "-z"], paths).split("\0") if p]
    if not staged:
        return None
    _run(
        ["commit", "-q", "--no-edit", "-m", message, "--pathspec-from-file=-", "--pathspec-file-nul"],
        repo, stdin=_paths_input(staged), env=_identity_env(repo),
    )  # fmt: skip
    return head(repo)


def _identity_env(path: Path) -> dict[str, str]:
    """A fallback author for repositories where none is configured (fresh CI boxes);
    a configured identity always wins."""
    if _run(["config", "user.email"], path, check=False).strip():
        return {}
    return {
        "GIT_AUTHOR_NAME": "autonomous",
        "GIT_AUTHOR_EMAIL": "autonomous@localhost",
        "GIT_COMMITTER_NAME": "autonomous",
        "GIT_COMMITTER_EMAIL": "autonomous@localhost",
    }


def init(path: Path) -> None:
    """Create a repository (used by tests and by people trying the tool out)."""
    _run(["init", "-q"], Path(path))


# -- worktrees and the merge queue (parallel workers) ------------------------------------------
#
# With several workers each task runs in its own worktree on its own branch, created from
# the integration branch (the branch checked out in the project when the runner started).
# The runner merges finished branches one at a time. The only destructive commands here
# (``merge --abort``, ``reset --keep`` to the commit before the merge) run on the
# integration checkout, and only after :func:`is_clean` said it held no uncommitted work;
# a task branch and its commits are never deleted unless merged.

WORKTREES_DIR = ".ai-agents/worktrees"
BRANCH_PREFIX = "autonomous/"


def toplevel(path: Path) -> Path:
    return Path(_run(["rev-parse", "--show-toplevel"], Path(path)).strip())


def current_branch(path: Path) -> str | None:
    """The branch checked out at ``path``, or None when HEAD is detached."""
    out = _run(["symbolic-ref", "-q", "--short", "HEAD"], Path(path), check=False).strip()
    return out or None


def is_clean(path: Path, excludes: Iterable[str] = RUNTIME_EXCLUDES, *, untracked: bool = True) -> bool:
    """No uncommitted change under ``path`` (ignored files and ``excludes`` aside); with
    ``untracked=False`` untracked files do not count (a user's ``.env`` is not work)."""
    spec = [".", *(f":(exclude){e}" for e in excludes)]
    return not status_paths(Path(path), spec, untracked=untracked)


def branches(path: Path, prefix: str) -> list[str]:
    """Local branches whose name starts with ``prefix``."""
    out = _run(["for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}"], Path(path), check=False)
    return [b for b in out.splitlines() if b]


def remotes(path: Path) -> list[str]:
    return _run(["remote"], Path(path), check=False).split()


def branch_exists(path: Path, branch: str) -> bool:
    return _run(["rev-parse", "--verify", "-q", f"refs/heads/{branch}"], Path(path), check=False).strip() != ""


def is_merged(path: Path, branch: str, into: str) -> bool:
    """Every commit of ``branch`` is reachable from ``into``."""
    try:
        _run(["merge-base", "--is-ancestor", branch, into], Path(path))
        return True
    except GitError:
        return False


def branch_name(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in key).strip(".-") or "task"
    return BRANCH_PREFIX + safe


def hide_tool_dirs(project_dir: Path, dirs: Iterable[Path]) -> None:
    """Keep the tool's runtime folders (state, logs, worktrees) out of ``git status``
    through the repository's own ``info/exclude``: nothing tracked changes, and the
    user's ``.gitignore`` is not touched. Folders outside the repository are skipped."""
    if not is_repo(project_dir):
        return
    repo = toplevel(project_dir).resolve()
    for folder in dirs:
        try:
            rel = Path(folder).resolve().relative_to(repo)
        except ValueError:
            continue
        if rel.parts:
            ignore_locally(repo, "/" + rel.as_posix() + "/")


def ignore_locally(repo: Path, pattern: str) -> None:
    """Add ``pattern`` to the repository's ``info/exclude`` (not to a tracked file)."""
    common = Path(_run(["rev-parse", "--git-common-dir"], Path(repo)).strip())
    if not common.is_absolute():
        common = Path(repo) / common
    exclude = common / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    if pattern not in text.splitlines():
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n")


@dataclass(frozen=True, slots=True)
class Worktree:
    path: Path
    branch: str | None
    head: str | None


def prune_worktrees(repo: Path) -> None:
    """Forget worktrees whose directory is gone. Not while another worktree is being added:
    git reads a half-made one as broken."""
    _run(["worktree", "prune"], Path(repo), check=False)


def list_worktrees(repo: Path) -> list[Worktree]:
    out = _run(["worktree", "list", "--porcelain"], Path(repo))
    found: list[Worktree] = []
    path: Path | None = None
    branch = sha = None
    for line in [*out.splitlines(), ""]:
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
        elif line.startswith("HEAD "):
            sha = line[5:]
        elif line.startswith("branch "):
            branch = line[len("branch ") :].removeprefix("refs/heads/")
        elif not line and path is not None:
            found.append(Worktree(path, branch, sha))
            path, branch, sha = None, None, None
    return found


def add_worktree(repo: Path, path: Path, branch: str, base: str) -> None:
    """A new worktree at ``path`` on ``branch``: the existing branch when there is one
    (its commits are the task's earlier work), else a new branch from ``base``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if branch_exists(repo, branch):
        _run(["worktree", "add", "-q", str(path), branch], Path(repo))
    else:
        _run(["worktree", "add", "-q", "-b", branch, str(path), base], Path(repo))


def remove_worktree(repo: Path, path: Path) -> None:
    _run(["worktree", "remove", "--force", str(path)], Path(repo))


def is_applied(path: Path, branch: str, into: str) -> bool:
    """Every commit of ``branch`` has an equivalent change in ``into`` (``git cherry``): the
    branch was merged as a rebased copy (a push to a shared remote rebases)."""
    out = _run(["cherry", into, branch], Path(path), check=False)
    return all(line.startswith("-") for line in out.splitlines())


def delete_branch(repo: Path, branch: str, *, merged_into: str) -> bool:
    """Delete ``branch`` only when ``merged_into`` contains all its commits, or their changes."""
    if not (is_merged(repo, branch, merged_into) or is_applied(repo, branch, merged_into)):
        return False
    _run(["branch", "-D", branch], Path(repo))
    return True


def rename_branch(repo: Path, branch: str, new: str) -> str:
    """Keep a branch's commits under another name (a retry starts from a fresh base)."""
    name, n = new, 1
    while branch_exists(repo, name):
        n += 1
        name = f"{new}-{n}"
    _run(["branch", "-m", branch, name], Path(repo))
    return name


@dataclass(slots=True)
class MergeResult:
    merged: bool
    before: str | None = None  # the integration branch's commit before the merge
    after: str | None = None
    conflict: bool = False
    obstacle: bool = False  # the project's checkout is in the way (a redo would not help)
    output: str = ""
    rebased: bool = False  # pushed after rebasing onto work another runner pushed first (shared remote)


def merge_branch(
    repo: Path, branch: str, into: str, *, strategy: str, message: str, worktree: Path | None = None
) -> MergeResult:
    """Merge ``branch`` into ``into`` (checked out at ``repo``, which must be clean).

    ``merge``: ``git merge --no-ff``; a conflict is aborted. ``rebase``: the task branch is
    rebased onto ``into`` in its own worktree (a conflict is aborted there, the branch keeps
    its commits), then ``into`` is fast-forwarded."""
    repo = Path(repo)
    before = head(repo)
    if current_branch(repo) != into:
        return MergeResult(False, before, output=f"the project is not on the integration branch {into}")
    if strategy == "rebase":
        where = Path(worktree) if worktree is not None else repo
        proc = subprocess.run(
            ["git", "rebase", "-q", into, *([] if worktree is not None else [branch])],
            cwd=where, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **_identity_env(where)},
        )  # fmt: skip
        if proc.returncode != 0:
            _run(["rebase", "--abort"], where, check=False)
            return MergeResult(False, before, conflict=True, output=(proc.stdout + proc.stderr).strip())
        args = ["merge", "-q", "--ff-only", branch]
    else:
        args = ["merge", "-q", "--no-ff", "--no-edit", "-m", message, branch]
    proc = subprocess.run(
        ["git", *args], cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **_identity_env(repo)},
    )  # fmt: skip
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        _run(["merge", "--abort"], repo, check=False)
        if head(repo) != before and before is not None:
            _run(["reset", "-q", "--keep", before], repo)
        return MergeResult(False, before, conflict="CONFLICT" in output, output=output)
    return MergeResult(True, before, head(repo))


def undo_merge(repo: Path, before: str) -> None:
    """Put the integration branch back on ``before`` (after a failing post-merge check).
    Only for the integration checkout, which was clean before the merge."""
    _run(["reset", "-q", "--keep", before], Path(repo))


def show(repo: Path, sha: str, *, stat: bool = False) -> str:
    """One commit as a patch (or a ``--stat`` summary); a merge commit as its diff against
    its first parent, which is what the merge brought in."""
    args = ["show", "--no-color", "--diff-merges=first-parent", "--format=commit %H%nDate:   %aI%n%n    %s%n"]
    return _run([*args, *(["--stat"] if stat else []), sha, "--"], repo)


# -- a shared remote (execution.git.remote; workspace/remote.py decides when) -------------------
#
# Pushes are plain ``git push REMOTE HEAD:refs/heads/BRANCH``: git itself refuses anything but
# a fast-forward, and nothing here ever passes --force.


def tracking_ref(remote: str, branch: str) -> str:
    return f"refs/remotes/{remote}/{branch}"


def fetch(repo: Path, remote: str, branch: str) -> str | None:
    """Bring the remote's ``branch`` into its tracking ref; its commit, or None when the
    remote has no such branch yet."""
    _run(["fetch", "-q", "--no-tags", remote, f"+refs/heads/{branch}:{tracking_ref(remote, branch)}"], Path(repo),
         check=False)  # fmt: skip
    return _run(["rev-parse", "--verify", "-q", tracking_ref(remote, branch)], Path(repo), check=False).strip() or None


@dataclass(slots=True)
class PushOutcome:
    pushed: bool
    rejected: bool  # the remote moved on since the fetch, or was busy: fetch, rebase, try again
    output: str = ""


def push(repo: Path, remote: str, branch: str) -> PushOutcome:
    """Push HEAD to the remote's ``branch``, fast-forward only (never forced)."""
    proc = subprocess.run(
        ["git", "push", "--porcelain", remote, f"HEAD:refs/heads/{branch}"],
        cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return PushOutcome(True, False, output)
    # not a fast-forward (another runner pushed first), or the remote's ref was locked by a
    # push in progress at the same moment: both are worth another fetch, rebase and push
    rejected = any(word in output for word in ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref"))
    return PushOutcome(False, rejected, output)


def delete_remote_branch(repo: Path, remote: str, branch: str, expected: str) -> bool:
    """Delete ``branch`` on the remote only while it still points at ``expected`` (what this
    runner pushed): commits someone added to it since are never lost. True when deleted."""
    proc = subprocess.run(
        ["git", "push", "--porcelain", f"--force-with-lease=refs/heads/{branch}:{expected}", remote,
         f":refs/heads/{branch}"],
        cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_TIMEOUT,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    return proc.returncode == 0


def rebase_onto(repo: Path, upstream: str) -> tuple[bool, str]:
    """Rebase the checked-out branch onto ``upstream``; a conflict is aborted (the branch
    keeps its commits). Returns (rebased, git's output)."""
    proc = subprocess.run(
        ["git", "rebase", "-q", upstream], cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=_TIMEOUT, env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **_identity_env(Path(repo))},
    )  # fmt: skip
    if proc.returncode != 0:
        _run(["rebase", "--abort"], Path(repo), check=False)
        return False, (proc.stdout + proc.stderr).strip()
    return True, ""


def fast_forward(repo: Path, target: str) -> bool:
    """Move the checked-out branch to ``target`` when that is a fast-forward; False (nothing
    done) when the branch has commits ``target`` lacks, or the move would overwrite a file."""
    return subprocess.run(
        ["git", "merge", "-q", "--ff-only", target], cwd=repo, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=_TIMEOUT, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    ).returncode == 0  # fmt: skip


def commit_of_task(repo: Path, ref: str, task_id: str) -> str | None:
    """The commit on ``ref`` that finished task ``task_id`` (its message's trailer line), or None."""
    out = _run(
        ["log", "-1", "--format=%H", "--fixed-strings", f"--grep=autonomous: task {task_id} done", ref, "--"],
        Path(repo), check=False,
    )  # fmt: skip
    return out.strip() or None


def count_ahead(repo: Path, base: str, ref: str = "HEAD") -> int:
    """Commits of ``ref`` that ``base`` lacks."""
    out = _run(["rev-list", "--count", f"{base}..{ref}"], Path(repo), check=False).strip()
    return int(out) if out.isdigit() else 0


def keep_branch(repo: Path, name: str, at: str = "HEAD") -> str:
    """A branch ``name`` (or ``name-2`` ...) at ``at``, so commits about to leave the
    checked-out branch stay reachable for a person."""
    branch, n = name, 1
    while branch_exists(repo, branch):
        n += 1
        branch = f"{name}-{n}"
    _run(["branch", branch, at], Path(repo))
    return branch
