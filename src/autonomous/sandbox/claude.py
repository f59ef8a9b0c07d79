"""The confinement as Claude Code's own settings, for the claude-code and claude-code-sdk backends.

Pinned against the CLI bundled in claude-agent-sdk (``claude --version`` 2.1.332) and
checked by the escape corpus (tests/sandbox/): docs/security.md lists what each setting
does there. Claude Code runs its file tools itself and only its Bash tool in bubblewrap,
so the confinement takes four parts:

* ``--restricted`` confines Read, Write, Edit, Glob and Grep to the working directory,
  ignores the user's, project's and local settings files (an agent writing
  ``.claude/settings.json`` cannot add a hook or loosen anything for the next run) and
  refuses writes to git and tool configuration; it drops Bash unless ``--tools`` names it,
  so the allowed tools are named there;
* ``sandbox`` settings: Bash and everything it starts run in bubblewrap (``enabled``,
  ``failIfUnavailable``: no silent fallback, ``allowUnsandboxedCommands: false``: the model
  cannot ask its way out), reading nothing but the system folders, the interpreter,
  ``read_paths`` and the project (``denyRead: ["/"]`` with ``allowRead``), writing nothing
  in ``.git`` or the tool's folders, reaching only the allowed hosts through Claude
  Code's proxy (none by default);
* ``permissions.deny`` rules hide the tool's folders from the file tools, which
  ``--restricted`` still lets into the whole project;
* the API key never travels in the environment the CLI passes on to Bash: the claude-code
  backend hands it over through a pipe (:func:`key_pipe`, read once by the CLI), the
  claude-code-sdk backend, which cannot pass descriptors through the SDK, through
  ``apiKeyHelper`` (:class:`Credentials`: a file only the runner can read, outside
  everything the sandbox shows); every other credential-looking variable is emptied
  (:func:`cli_environment`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from autonomous.sandbox.confinement import Confinement
from autonomous.sandbox.env import is_secret_name

PINNED_CLI_VERSION = "2.1.332"
# The credentials the CLI needs and can take another way than its environment, in order of preference.
KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
# The CLI reads the API key from this descriptor (2.1.332); an empty pipe after that.
API_KEY_FD_ENV = "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR"
# Credentials the CLI can only read from its environment (which its Bash inherits): kept,
# and said so in docs/security.md. ``claude /login`` (a credentials file, hidden) avoids them.
_CLI_ONLY = ("CLAUDE_CODE_OAUTH_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_TOOL_NAME = re.compile(r"^[A-Za-z]+$")


def tool_names(allowed_tools: Sequence[str]) -> list[str]:
    """The built-in tools ``allowed_tools`` names, for ``--tools`` (``--restricted`` drops Bash otherwise).

    Rules such as ``Bash(git *)`` name their tool; MCP tools are not built-in and stay out.
    """
    names: list[str] = []
    for tool in allowed_tools:
        name = tool.split("(", 1)[0].strip()
        if _TOOL_NAME.match(name) and name not in names:
            names.append(name)
    return names


def cli_args(allowed_tools: Sequence[str]) -> list[str]:
    return ["--restricted", "--tools", ",".join(tool_names(allowed_tools))]


def settings(conf: Confinement) -> dict[str, Any]:
    """The ``sandbox`` and ``permissions`` settings of ``conf`` (merged into ``--settings``)."""
    readable = [*conf.read_paths, conf.project, *conf.read_only]
    if conf.network == "on":
        hosts = ["*"]
    elif conf.network == "allow":
        hosts = list(conf.allow_hosts)
    else:
        hosts = []
    deny: list[str] = []
    for path in conf.hidden:
        deny += [f"Read(/{path})", f"Read(/{path}/**)", f"Edit(/{path}/**)"]
    for path in conf.read_only:
        deny.append(f"Edit(/{path}/**)")
    return {
        "sandbox": {
            "enabled": True,
            "failIfUnavailable": True,
            "autoAllowBashIfSandboxed": True,
            "allowUnsandboxedCommands": False,
            "filesystem": {
                "denyRead": ["/", *map(str, (*conf.hidden, *conf.masked))],
                "allowRead": [str(p) for p in readable],
                "denyWrite": [str(p) for p in (*conf.read_only, *conf.hidden)],
            },
            "network": {"allowedDomains": hosts},
        },
        "permissions": {"deny": deny},
    }


class Credentials:
    """The API key in a file only the runner reads, for ``apiKeyHelper``; removed by :meth:`close`.

    The file lives in a fresh private folder under the system temp folder, which the
    sandbox does not show (``denyRead: ["/"]``) and the file tools cannot reach
    (``--restricted``).
    """

    def __init__(self, environ: Mapping[str, str], names: Sequence[str] = KEY_VARS):
        self._dir: str | None = None
        self.helper: str | None = None
        key = next((environ[name] for name in names if environ.get(name)), None)
        if key:
            self._dir = tempfile.mkdtemp(prefix="autonomous-key-")
            path = os.path.join(self._dir, "key")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
            self.helper = f"cat {shlex.quote(path)}"

    def settings(self) -> dict[str, Any]:
        return {"apiKeyHelper": self.helper} if self.helper else {}

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def key_pipe(environ: Mapping[str, str]) -> int | None:
    """The read end of a pipe holding ``ANTHROPIC_API_KEY`` (the caller passes it to the CLI as
    :data:`API_KEY_FD_ENV` and closes it), or ``None`` without a key.

    Unlike ``apiKeyHelper``, the CLI does not ask again after a 401, so a refused key costs
    one request, as it does from the environment.
    """
    key = environ.get("ANTHROPIC_API_KEY")
    if not key:
        return None
    read, write = os.pipe()
    try:
        os.write(write, key.encode("utf-8"))  # far below a pipe's capacity: never blocks
    finally:
        os.close(write)
    return read


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What to change in the CLI's environment: every credential-looking variable emptied
    (the CLI passes its environment on to Bash), except those it can only read there."""
    return {name: "" for name in environ if is_secret_name(name) and name not in _CLI_ONLY}


def merge_settings(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Settings objects merged key by key (``permissions.deny`` lists and ``hooks`` joined)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge_settings(out[key], value)
            elif isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = [*out[key], *value]
            else:
                out[key] = value
    return out
