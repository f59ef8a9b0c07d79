"""The local tools the Messages API backend offers the model and runs itself.

The API has no tools of its own, so this backend brings six: ``read_file``, ``write_file``,
``edit_file``, ``list_dir``, ``search`` and ``bash``. All of them are confined to the project
directory: every path is resolved (``..``, absolute paths and symlinks included) and refused
unless the result lies inside the resolved project root. ``bash`` runs with the root as its
working directory, is checked against the :class:`~autonomous.backends.policy.CommandPolicy` before
it runs, and is bounded in time (the whole process group is killed on timeout) and in
output (head and tail kept, the middle replaced by a marker).

Tool failures are not exceptions to the caller: :meth:`LocalTools.execute` always returns a
:class:`ToolResult`, with ``is_error`` set when the tool refused or failed, because the
model is expected to read the error and adapt.

With a :class:`~autonomous.sandbox.Confinement` (the default: ``autonomous.sandbox``), ``bash``
runs inside bubblewrap (:mod:`autonomous.sandbox.bwrap`) with an environment free of
credentials, and the file tools also refuse the tool's own folders (``.ai-agents``, the
state and log folders) and writes under ``.git``. The file tools run in the runner's
process, never concurrently with a command of the agent (every process a command started
is gone when it returns), so a path checked is the path used. Without one, confinement is
a guard against mistakes, not a sandbox: a command run by ``bash`` can reach anything the
user can (the policy only refuses known-dangerous commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autonomous.backends.policy import BACKGROUND_REFUSAL, detached_job
from autonomous.sandbox import Confinement, bwrap
from autonomous.sandbox.env import scrubbed


class _Policy(Protocol):
    def check(self, command: str) -> tuple[bool, str]: ...


@dataclass(slots=True)
class ToolResult:
    content: str
    is_error: bool = False
    denied: bool = False  # refused by policy: a command denied, a path outside the project


class ToolError(Exception):
    """A tool refused or failed; the message goes back to the model as an error result."""

    denied = False


class PathRefused(ToolError):
    """A path resolves outside the project directory."""

    denied = True


# Directories nobody wants searched or listed recursively.
_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
# Never hand these to a command the model runs: it has no business with our credentials.
_SCRUBBED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")

# After the shell exits, how long background children may keep writing before they are killed.
_BACKGROUND_GRACE = 1.0

TRUNCATION_MARKER = "\n[... {omitted} bytes of output omitted ...]\n"


def _schema(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": properties, "required": required},
    }


TOOL_DEFINITIONS: list[dict[str, Any]] = [
    _schema(
        "read_file",
        "Read a text file in the project. Paths are relative to the project root. Returns numbered lines; "
        "use offset/limit for long files.",
        {
            "path": {"type": "string", "description": "File path relative to the project root."},
            "offset": {"type": "integer", "description": "First line to return (1-based).", "minimum": 1},
            "limit": {"type": "integer", "description": "Maximum number of lines to return.", "minimum": 1},
        },
        ["path"],
    ),
    _schema(
        "write_file",
        "Create or overwrite a text file in the project with the given content. Parent directories are created.",
        {
            "path": {"type": "string", "description": "File path relative to the project root."},
            "content": {"type": "string", "description": "The complete new content of the file."},
        },
        ["path", "content"],
    ),
    _schema(
        "edit_file",
        "Replace an exact string in a file. old_string must occur exactly once unless replace_all is true; "
        "include enough surrounding context to make it unique.",
        {
            "path": {"type": "string", "description": "File path relative to the project root."},
            "old_string": {"type": "string", "description": "The exact text to replace."},
            "new_string": {"type": "string", "description": "The replacement text."},
            "replace_all": {"type": "boolean", "description": "Replace every occurrence.", "default": False},
        },
        ["path", "old_string", "new_string"],
    ),
    _schema(
        "list_dir",
        "List a directory in the project (directories end with '/').",
        {"path": {"type": "string", "description": "Directory relative to the project root.", "default": "."}},
        [],
    ),
    _schema(
        "search",
        "Search file contents with a regular expression (Python syntax). Returns 'path:line: text' matches.",
        {
            "pattern": {"type": "string", "description": "Regular expression."},
            "path": {"type": "string", "description": "File or directory to search.", "default": "."},
            "glob": {"type": "string", "description": "Only files whose name matches this glob, e.g. '*.py'."},
            "ignore_case": {"type": "boolean", "default": False},
        },
        ["pattern"],
    ),
    _schema(
        "bash",
        "Run a shell command in the project root and return its combined stdout and stderr and exit code. "
        "Commands are time-limited; long output is truncated in the middle.",
        {
            "command": {"type": "string", "description": "The shell command."},
            "timeout": {"type": "number", "description": "Seconds before the command is killed."},
        },
        ["command"],
    ),
]

TOOL_NAMES = [t["name"] for t in TOOL_DEFINITIONS]
# The input fields that say what a call of these tools does (for events), most telling first.
INPUT_KEYS = ("command", "path", "pattern")


class LocalTools:
    """The tools, bound to one project root and one command policy."""

    def __init__(
        self,
        root: Path | str,
        policy: _Policy | None = None,
        *,
        bash_timeout: float = 120.0,
        max_bash_timeout: float = 600.0,
        output_cap: int = 30_000,
        read_cap: int = 200_000,
        max_search_results: int = 100,
        max_list_entries: int = 1000,
        env: dict[str, str] | None = None,
        sandbox: Confinement | None = None,
    ):
        self.root = Path(root).resolve()
        self.sandbox = sandbox
        self.policy = policy
        self.bash_timeout = bash_timeout
        self.max_bash_timeout = max_bash_timeout
        self.output_cap = output_cap
        self.read_cap = read_cap
        self.max_search_results = max_search_results
        self.max_list_entries = max_list_entries
        self.env = dict(env or {})
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "read_file": self._read_file,
            "write_file": self._write_file,
            "edit_file": self._edit_file,
            "list_dir": self._list_dir,
            "search": self._search,
            "bash": self._bash,
        }

    @staticmethod
    def definitions() -> list[dict[str, Any]]:
        """Anthropic tool definitions (``tools=`` of a Messages request)."""
        return [dict(t) for t in TOOL_DEFINITIONS]

    async def execute(self, name: str, tool_input: dict[str, Any] | None) -> ToolResult:
        handler = self._handlers.get(name)
        if handler is None:
            return ToolResult(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}", is_error=True)
        if not isinstance(tool_input, dict):
            return ToolResult("tool input must be a JSON object", is_error=True)
        try:
            result = handler(tool_input)
            if asyncio.iscoroutine(result):
                result = await result
            return result if isinstance(result, ToolResult) else ToolResult(str(result))
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True, denied=exc.denied)
        except (OSError, UnicodeError, ValueError) as exc:
            return ToolResult(f"{name} failed: {exc}", is_error=True)

    # -- paths -------------------------------------------------------------------------

    def resolve(self, path: Any, *, default: str | None = None, write: bool = False) -> Path:
        """``path`` made absolute and checked to be inside the project root (and, sandboxed,
        outside the tool's folders, and outside ``.git`` for a ``write``)."""
        if path is None or path == "":
            if default is None:
                raise ToolError("missing required argument 'path'")
            path = default
        if not isinstance(path, str):
            raise ToolError("'path' must be a string")
        if "\x00" in path:
            raise ToolError("invalid path")
        resolved = (self.root / os.path.expanduser(path)).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PathRefused(f"path {path!r} is outside the project directory ({self.root}); refused")
        refusal = self.sandbox.refusal(resolved, write=write) if self.sandbox is not None else None
        if refusal is not None:
            raise PathRefused(refusal)
        return resolved

    def _visible(self, path: Path) -> bool:
        return self.sandbox is None or self.sandbox.refusal(path, write=False) is None

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    # -- file tools --------------------------------------------------------------------

    def _read_file(self, args: dict[str, Any]) -> ToolResult:
        path = self.resolve(args.get("path"))
        if not path.is_file():
            problem = "is not a file" if path.exists() else "no such file"
            raise ToolError(f"{self._rel(path)}: {problem}")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise ToolError(f"{self._rel(path)} looks like a binary file ({len(data)} bytes); not shown")
        lines = data.decode("utf-8", errors="replace").splitlines()
        offset = max(1, _int(args.get("offset"), 1))
        limit = _int(args.get("limit"), len(lines)) if args.get("limit") is not None else len(lines)
        chosen = lines[offset - 1 : offset - 1 + max(0, limit)]
        out: list[str] = []
        size = 0
        for n, line in enumerate(chosen, start=offset):
            entry = f"{n:6}\t{line}"
            size += len(entry) + 1
            if size > self.read_cap:
                out.append(f"[... truncated at line {n - 1} of {len(lines)}; use offset to read further ...]")
                break
            out.append(entry)
        if not lines:
            return ToolResult(f"({self._rel(path)} is empty)")
        return ToolResult("\n".join(out))

    def _write_file(self, args: dict[str, Any]) -> ToolResult:
        path = self.resolve(args.get("path"), write=True)
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("'content' must be a string")
        if path.is_dir():
            raise ToolError(f"{self._rel(path)} is a directory")
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        verb = "overwrote" if existed else "created"
        return ToolResult(f"{verb} {self._rel(path)} ({len(content.encode('utf-8'))} bytes)")

    def _edit_file(self, args: dict[str, Any]) -> ToolResult:
        path = self.resolve(args.get("path"), write=True)
        old, new = args.get("old_string"), args.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str):
            raise ToolError("'old_string' and 'new_string' must be strings")
        if old == "":
            raise ToolError("'old_string' must not be empty (use write_file to create a file)")
        if old == new:
            raise ToolError("'old_string' and 'new_string' are identical; nothing to do")
        if not path.is_file():
            raise ToolError(f"{self._rel(path)}: no such file")
        text = path.read_text(encoding="utf-8")
        count = text.count(old)
        if count == 0:
            raise ToolError(f"old_string not found in {self._rel(path)}")
        if count > 1 and not args.get("replace_all"):
            raise ToolError(
                f"old_string occurs {count} times in {self._rel(path)}; add context to make it unique "
                "or set replace_all"
            )
        path.write_text(text.replace(old, new) if args.get("replace_all") else text.replace(old, new, 1), "utf-8")
        return ToolResult(f"edited {self._rel(path)} ({count} replacement{'s' if count > 1 else ''})")

    def _list_dir(self, args: dict[str, Any]) -> ToolResult:
        path = self.resolve(args.get("path"), default=".")
        if not path.is_dir():
            raise ToolError(f"{self._rel(path)} is not a directory")
        entries = sorted((p for p in path.iterdir() if self._visible(p.absolute())), key=lambda p: p.name)
        lines = [p.name + ("/" if p.is_dir() else "") for p in entries[: self.max_list_entries]]
        if len(entries) > self.max_list_entries:
            lines.append(f"[... {len(entries) - self.max_list_entries} more entries ...]")
        return ToolResult("\n".join(lines) if lines else f"({self._rel(path)} is empty)")

    def _search(self, args: dict[str, Any]) -> ToolResult:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("missing required argument 'pattern'")
        try:
            regex = re.compile(pattern, re.IGNORECASE if args.get("ignore_case") else 0)
        except re.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from None
        base = self.resolve(args.get("path"), default=".")
        glob = args.get("glob") if isinstance(args.get("glob"), str) else None
        matches: list[str] = []
        more = False
        for file in self._walk(base):
            if glob and not fnmatch.fnmatch(file.name, glob):
                continue
            try:
                data = file.read_bytes()
            except OSError:
                continue
            if len(data) > 5_000_000 or b"\x00" in data[:8192]:
                continue
            for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
                if regex.search(line):
                    if len(matches) >= self.max_search_results:
                        more = True
                        break
                    matches.append(f"{self._rel(file)}:{n}: {line[:300]}")
            if more:
                break
        if not matches:
            return ToolResult("no matches")
        if more:
            matches.append(f"[... stopped after {self.max_search_results} matches; narrow the search ...]")
        return ToolResult("\n".join(matches))

    def _walk(self, base: Path):
        if base.is_file():
            yield base
            return
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and self._visible(here / d))
            for name in sorted(filenames):
                file = Path(dirpath) / name
                # A symlink inside the tree may point outside it: only follow it if it stays in.
                try:
                    real = file.resolve()
                except OSError:
                    continue
                if real.is_relative_to(self.root) and real.is_file() and self._visible(real):
                    yield file

    # -- bash --------------------------------------------------------------------------

    async def _bash(self, args: dict[str, Any]) -> ToolResult:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("missing required argument 'command'")
        job = detached_job(command)  # the run ends with the turn: a detached job would outlive it unseen
        if job:
            return ToolResult(f"command refused: {job}: {BACKGROUND_REFUSAL}", is_error=True, denied=True)
        if self.policy is not None:
            ok, reason = self.policy.check(command)
            if not ok:
                return ToolResult(f"command refused by policy: {reason}", is_error=True, denied=True)
        timeout = self.bash_timeout
        if isinstance(args.get("timeout"), int | float) and args["timeout"] > 0:
            timeout = min(float(args["timeout"]), self.max_bash_timeout)
        if self.sandbox is not None:
            argv = bwrap.argv(self.sandbox, command, bwrap=bwrap.find_bwrap() or "bwrap")
            env = scrubbed(os.environ, self.env)
            return await run_command(argv, self.root, timeout=timeout, output_cap=self.output_cap, env=env)
        return await run_command(command, self.root, timeout=timeout, output_cap=self.output_cap, env=self._env())

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        for key in _SCRUBBED_ENV:
            env.pop(key, None)
        return env


async def run_command(
    command: str | list[str], cwd: Path, *, timeout: float, output_cap: int, env: dict[str, str] | None = None
) -> ToolResult:
    """Run ``command`` (a shell command, or an argv such as the sandbox's) in its own process
    group; kill the group on timeout.

    stdout and stderr are merged and read incrementally, keeping only the first and last
    ``output_cap / 2`` bytes, so a command printing gigabytes costs no memory.
    """
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    start = loop.subprocess_shell if isinstance(command, str) else loop.subprocess_exec
    program = (command,) if isinstance(command, str) else tuple(command)
    transport, protocol = await start(
        lambda: _ExitProtocol(exited, loop),
        *program,
        cwd=str(cwd),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group, so a timeout kills children too
    )
    proc = asyncio.subprocess.Process(transport, protocol, loop)
    buf = _HeadTail(output_cap)

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            buf.add(chunk)

    # The pump is never cancelled: reading the pipe to EOF is what lets asyncio close the
    # subprocess transport (no ResourceWarning). Killing the group ends the EOF wait.
    pump_task = asyncio.ensure_future(pump())
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except TimeoutError:
            timed_out = True
        else:
            # The shell is gone; the pipe stays open only while a background child holds it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump_task), _BACKGROUND_GRACE)
    finally:
        # Kills the whole group: on timeout, on cancellation, and leftover background
        # children after a normal exit (a no-op when the group is already empty).
        _kill_group(proc.pid)
        try:
            await asyncio.wait_for(asyncio.shield(pump_task), 10)
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:  # something escaped the group and holds the pipe
            pump_task.cancel()
            transport.close()
    output = buf.text()
    if timed_out:
        return ToolResult(f"{output}\n[command timed out after {timeout:g}s; its process group was killed]", True)
    code = proc.returncode
    footer = f"[exit code {code}]"
    return ToolResult(f"{output}\n{footer}" if output else footer, is_error=code != 0)


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` when the shell exits.

    ``Process.wait()`` (Python 3.11) returns only once the pipes close too, which a
    background child holding stdout would delay until the timeout.
    """

    def __init__(self, exited: asyncio.Future[None], loop: asyncio.AbstractEventLoop):
        super().__init__(limit=2**16, loop=loop)
        self._exited = exited

    def process_exited(self) -> None:
        super().process_exited()
        if not self._exited.done():
            self._exited.set_result(None)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _HeadTail:
    """Keeps the first and last ``cap // 2`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int):
        self.half = max(1, cap // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if omitted > 0:
            return head + TRUNCATION_MARKER.format(omitted=omitted) + tail
        return (head + tail).rstrip("\n")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
