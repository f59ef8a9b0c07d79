"""The command policy: which shell commands an agent may run, shared by every backend.

A command is not checked as one string. It is split the way a shell would run it, and
every *simple command* in it is checked on its own:

* chains and pipes: ``a && b``, ``a || b``, ``a; b``, ``a | b``, ``a & b``, newlines;
* subshells and substitutions: ``( a )``, ``$( a )``, backticks, ``<( a )``, ``>( a )``,
  also inside double quotes;
* shells and ``eval`` running a string: ``bash -c 'a'``, ``sh -c "a"``, ``eval "a"``,
  ``find ... -exec a \\;``;
* prefixes that do not change what runs: leading ``NAME=value`` assignments, ``command``,
  ``builtin``, ``exec``, ``env`` (its options and assignments, ``-S``), ``nohup``,
  ``time``, ``nice``, ``timeout``, ``stdbuf``, ``setsid``, ``ionice``, ``xargs``, ``watch``,
  shell keywords (``if``, ``then``, ``do``, ``{``, ``!`` ...), a path on the program
  (``/usr/bin/sudo``) and quoting or escaping of its name (``\\sudo``, ``"sudo"``, ``s'u'do``).

Each simple command is normalised to ``program arg arg ...`` (quotes removed, tokens
joined by single spaces) and the deny rules are matched against it, against each
pipeline (its normalised commands, one a line) and, for the few rules that need the
shell text itself (fork bombs, ``sh <(curl ...)``), against the raw command.

This is a seat belt against an agent's mistakes, not a sandbox against an adversary: a
shell is Turing-complete (``x=su; ${x}do ...``, scripts written to a file and run later).
Run untrusted work in a container.

Default deny rules (:data:`DEFAULT_DENY`), each a regex:

=====================  ===============================================================
``sudo``               ``sudo``, ``doas``, ``su``: privilege escalation
``rm-root-home``       recursive ``rm`` of ``/``, ``/*``, ``/.``, ``~``, ``~/``, ``~/*``,
                       ``$HOME``, ``${HOME}``; any ``rm --no-preserve-root``
``git-force-push``     ``git push --force``, ``-f`` (also combined, ``-uf``), ``+refspec``
                       and ``--force-with-lease`` / ``--force-if-includes``: rewriting a
                       shared branch's history is a person's decision, even the "safe"
                       lease form, so it is denied by default too
``download-to-shell``  ``curl``/``wget`` piped into ``sh``, ``bash``, ``zsh``, ``dash``,
                       ``ksh``, ``fish`` (also via ``sudo``), ``sh <(curl ...)``,
                       ``sh -c "$(curl ...)"``
``mkfs``               ``mkfs``, ``mkfs.*``, ``mke2fs``, ``mkswap``
``dd-device``          ``dd ... of=/dev/...`` (not ``/dev/null``) and ``> /dev/sdX``-style
                       redirections onto disks
``shutdown``           ``shutdown``, ``reboot``, ``halt``, ``poweroff``,
                       ``systemctl poweroff|reboot|halt``, ``init 0|6``
``fork-bomb``          ``:(){ :|:& };:`` and the same shape with any function name
=====================  ===============================================================

User rules (config ``command_deny`` / ``command_allow``) are Python regexes. A deny entry
is searched anywhere in each normalised command and pipeline. An allow entry is matched
at the *start* of each normalised command (``git\\b``, ``npm (test|run)\\b``); when the
allow list is non-empty, every simple command must match one of its entries. Deny wins.

Enforcement: the API backend calls :meth:`CommandPolicy.check` before it runs a command.
The Claude Code CLI runs commands itself, so its backend passes
:meth:`CommandPolicy.to_cli_disallowed_tools` as ``--disallowedTools`` (the CLI's own
rules, a first line of defence) and installs this module as a ``PreToolUse`` hook
(:meth:`CommandPolicy.to_cli_settings`; ``python -m autonomous.backends.policy hook``), which
applies the full policy to every Bash call and fails closed.

This module imports only the standard library: the hook starts once per command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from autonomous.backends.shell_parse import parse_command
from autonomous.errors import ConfigError

POLICY_ENV = "AUTONOMOUS_COMMAND_POLICY"

# -- no background work that outlives the turn ------------------------------------------
# ``claude -p`` ends its process when the turn ends, killing a ``run_in_background`` shell
# or a background subagent while the run still reports success (anthropics/claude-code
# #85129, #89495). The CLI's own switch (checked in 2.1.332) stops it from starting them and
# from moving long commands to the background; the PreToolUse hook also refuses an explicit
# request with a reason the agent can act on, and the API backend's shell refuses jobs
# detached with ``&``, ``nohup`` or ``setsid`` (:func:`detached_job`).
NO_BACKGROUND_ENV = {"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS": "1"}
HOOK_MATCHER = "Bash|Agent|Task"  # the tools that can start background work (Task: the Agent tool's old name)
BACKGROUND_REFUSAL = (
    "background work is not allowed here: the session ends when your turn ends and kills anything still "
    "running, so its result would be lost. Run the command in the foreground (with a timeout if it is long) "
    "and wait for it"
)

Scope = Literal["command", "pipeline", "raw"]


@dataclass(frozen=True, slots=True)
class DenyRule:
    name: str
    pattern: str
    why: str
    scope: Scope = "command"
    cli_rules: tuple[str, ...] = ()  # the CLI's ``--disallowedTools`` rules for the same thing
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


_ROOT_OR_HOME = r"(?:/+\*?|/+\.|~/?\*?|\$\{?HOME\}?/?\*?)"
_SHELLS = r"(?:ba|z|da|k|fi)?sh"

DEFAULT_DENY: tuple[DenyRule, ...] = (
    DenyRule(
        "sudo",
        r"^(?:sudo|doas|su)(?:\s|$)",
        "privilege escalation",
        cli_rules=("Bash(sudo:*)", "Bash(doas:*)", "Bash(su:*)"),
    ),
    DenyRule(
        "rm-root-home",
        r"^rm\s(?=(?:.*\s)?(?:-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)(?:\s|$))(?:.*\s)?" + _ROOT_OR_HOME + r"(?:\s|$)",
        "recursive delete of / or the home folder",
        cli_rules=("Bash(rm -rf /)", "Bash(rm -rf ~)", "Bash(rm -fr /)", "Bash(rm -rf $HOME)"),
    ),
    DenyRule(
        "rm-no-preserve-root",
        r"^rm\s(?:.*\s)?--no-preserve-root(?:\s|$)",
        "rm --no-preserve-root",
        cli_rules=("Bash(rm --no-preserve-root:*)",),
    ),
    DenyRule(
        "git-force-push",
        r"^git(?:\s(?:-[Cc]\s\S+|--?[\w-]+(?:=\S+)?))*\spush(?:\s.*)?\s(?:--force(?:-with-lease|-if-includes)?(?:=\S*)?|-[a-zA-Z]*f[a-zA-Z]*|\+\S+)(?:\s|$)",
        "force push rewrites shared history (--force-with-lease included)",
        cli_rules=("Bash(git push --force:*)", "Bash(git push -f:*)", "Bash(git push --force-with-lease:*)"),
    ),
    DenyRule(
        "download-to-shell",
        r"(?m)^(?:curl|wget)(?:\s.*)?(?:\n.*)*\n(?:sudo\s+)?" + _SHELLS + r"(?:\s|$)",
        "downloaded code piped into a shell",
        scope="pipeline",
    ),
    DenyRule(
        "download-to-shell-subst",
        r"\b" + _SHELLS + r"\b[^|;&]*(?:<\(|\$\(|`)\s*(?:curl|wget)\b",
        "downloaded code run by a shell",
        scope="raw",
    ),
    DenyRule(
        "mkfs",
        r"^(?:mkfs(?:\.\w+)?|mke2fs|mkswap)(?:\s|$)",
        "formats a filesystem",
        cli_rules=("Bash(mkfs:*)", "Bash(mke2fs:*)", "Bash(mkswap:*)"),
    ),
    DenyRule(
        "dd-device",
        r"^dd\s(?:.*\s)?of=/dev/(?!null(?:\s|$)|zero(?:\s|$)|stdout(?:\s|$)|stderr(?:\s|$))",
        "writes onto a device",
    ),
    DenyRule(
        "redirect-device",
        r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk)\w*",
        "writes onto a disk device",
    ),
    DenyRule(
        "shutdown",
        r"^(?:(?:shutdown|reboot|halt|poweroff)(?:\s|$)|systemctl\s(?:.*\s)?(?:poweroff|reboot|halt)(?:\s|$)"
        r"|init\s+[06](?:\s|$))",
        "shuts down or reboots the machine",
        cli_rules=("Bash(shutdown:*)", "Bash(reboot:*)", "Bash(halt:*)", "Bash(poweroff:*)"),
    ),
    DenyRule(
        "fork-bomb",
        r"([\w:.]+)\s*\(\s*\)\s*\{\s*\1\s*\|\s*\1\s*&\s*\}?",
        "fork bomb",
        scope="raw",
    ),
)

_LITERAL = re.compile(r"[\w \-/=@%,:]+")  # a user deny entry that is also a plain CLI prefix


class CommandPolicy:
    """Deny rules (defaults plus ``deny``) and an optional allow list, see the module doc."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = (), *, defaults: bool = True):
        self.allow = [p for p in allow if p]
        self.deny = [p for p in deny if p]
        self.defaults = defaults
        self._allow = [_compile(p, "command_allow") for p in self.allow]
        self._deny = [_compile(p, "command_deny") for p in self.deny]
        self._rules = DEFAULT_DENY if defaults else ()

    # -- checking ------------------------------------------------------------------
    def check(self, command: str) -> tuple[bool, str]:
        """``(True, "")`` when ``command`` may run, else ``(False, reason)``."""
        if not isinstance(command, str):
            return False, "denied: not a command string"
        parsed = parse_command(command)
        if parsed.too_deep:
            return False, "denied: command nests too deeply to check"
        raw = " ".join(command.split())
        for rule in self._rules:
            views = {"command": parsed.commands, "pipeline": parsed.pipelines, "raw": [raw]}[rule.scope]
            for view in views:
                if rule.regex.search(view):
                    return False, f"denied by command policy ({rule.name}: {rule.why}): {_short(view)}"
        for pattern, regex in zip(self.deny, self._deny, strict=True):
            for view in (*parsed.commands, *parsed.pipelines):
                if regex.search(view):
                    return False, f"denied by command policy (command_deny {pattern!r}): {_short(view)}"
        if self._allow:
            for cmd in parsed.commands:
                if cmd and not any(r.match(cmd) for r in self._allow):
                    return False, f"not in the command allow list: {_short(cmd)}"
        return True, ""

    def simple_commands(self, command: str) -> list[str]:
        """The normalised simple commands the policy checks (for logs and tests)."""
        parsed = parse_command(command)
        return parsed.commands

    # -- the Claude Code CLI -----------------------------------------------------------
    def to_cli_disallowed_tools(self) -> list[str]:
        """Permission rules for ``claude --disallowedTools``: the CLI's own first line of defence.

        ``Bash(prefix:*)`` matches the prefix followed by a word boundary; a rule without a
        wildcard matches the exact command. The CLI also checks each part of a compound
        command. Regexes cannot be expressed there: the ``PreToolUse`` hook
        (:meth:`to_cli_settings`) enforces the full policy.
        """
        rules: list[str] = []
        for rule in self._rules:
            rules.extend(r for r in rule.cli_rules if r not in rules)
        for pattern in self.deny:
            literal = pattern.removeprefix("^")
            if _LITERAL.fullmatch(literal):
                rule = f"Bash({literal}:*)"
                if rule not in rules:
                    rules.append(rule)
        return rules

    def to_env(self) -> dict[str, str]:
        """The environment the hook reads this policy from; it also switches the CLI's
        background tasks off (:data:`NO_BACKGROUND_ENV`)."""
        policy = json.dumps({"allow": self.allow, "deny": self.deny, "defaults": self.defaults})
        return {POLICY_ENV: policy, **NO_BACKGROUND_ENV}

    def hook_command(self, python: str | None = None) -> str:
        return f"{shlex.quote(python or sys.executable)} -m autonomous.backends.policy hook"

    def to_cli_settings(self, python: str | None = None) -> dict[str, Any]:
        """``--settings`` JSON installing the policy as a ``PreToolUse`` hook on Bash.

        The hook reads the policy from :data:`POLICY_ENV` (:meth:`to_env`), which must be in
        the CLI's environment.
        """
        hook = {"type": "command", "command": self.hook_command(python), "timeout": 30}
        return {"hooks": {"PreToolUse": [{"matcher": HOOK_MATCHER, "hooks": [hook]}]}}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CommandPolicy:
        raw = (environ if environ is not None else os.environ).get(POLICY_ENV)
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("allow") or [], data.get("deny") or [], defaults=bool(data.get("defaults", True)))


def _compile(pattern: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{key}: {pattern!r} is not a valid regular expression: {exc}") from None


def _short(text: str, limit: int = 200) -> str:
    text = text.replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the Claude Code PreToolUse hook -----------------------------------------------------


def background_request(tool_name: str, tool_input: Any) -> str | None:
    """Why this tool call is refused for asking to run in the background, or None."""
    if not isinstance(tool_input, dict):
        return None
    if tool_input.get("run_in_background") in (True, "true", 1):
        return f"{tool_name} with run_in_background: {BACKGROUND_REFUSAL}"
    if tool_name == "Bash" and isinstance(tool_input.get("command"), str):
        job = detached_job(tool_input["command"])
        if job:
            return f"{job}: {BACKGROUND_REFUSAL}"
    return None


_QUOTED = re.compile(r"'[^']*'|\"(?:\\.|[^\"\\])*\"|\\.")
_NOT_A_JOB = re.compile(r"&&|[<>]&|&>|\|&")
_WAIT = re.compile(r"(?:^|[\s;&|(])wait(?=$|[\s;&|)])")
_DETACHERS = re.compile(r"(?:^|[\s;|&(`])(nohup|setsid|disown|daemonize|bg)(?=$|[\s;|&)`])")


def detached_job(command: str) -> str | None:
    """What in ``command`` would leave a job running after it returns (``cmd &``, ``nohup``,
    ``setsid``, ``disown``...), or None. Quoted text is ignored; ``&&``, ``2>&1`` and ``&>``
    are not jobs, and ``a & b; wait`` waits for its jobs. A seat belt like the rest of the
    policy: a program that forks by itself is not seen here (the backends reap the group)."""
    bare = _QUOTED.sub(lambda m: " " * len(m.group()), command)
    found = _DETACHERS.search(bare)
    if found:
        return f"`{found.group(1)}` detaches a job"
    if "&" in _NOT_A_JOB.sub("  ", bare) and not _WAIT.search(bare):
        return "`&` runs a job in the background"  # unless the command waits for its jobs
    return None


def hook_main(stdin: Any = None, stderr: Any = None, environ: dict[str, str] | None = None) -> int:
    """Claude Code ``PreToolUse`` hook: exit 2 (with the reason on stderr) blocks the call.

    Fails closed: a policy that cannot be read or an input that cannot be parsed blocks
    the command rather than letting it run unchecked.
    """
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    try:
        payload = json.loads(stdin.read() or "{}")
        refused = background_request(str(payload.get("tool_name")), payload.get("tool_input"))
        if refused:
            print(refused, file=stderr)
            return 2
        if payload.get("tool_name") not in (None, "Bash"):
            return 0
        command = (payload.get("tool_input") or {}).get("command", "")
        allowed, reason = CommandPolicy.from_env(environ).check(command)
    except Exception as exc:
        print(f"command policy hook failed, command blocked: {exc}", file=stderr)
        return 2
    if allowed:
        return 0
    print(reason, file=stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hook"]:
        return hook_main()
    if argv[:1] == ["check"] and len(argv) > 1:
        allowed, reason = CommandPolicy.from_env().check(" ".join(argv[1:]))
        print("allowed" if allowed else reason)
        return 0 if allowed else 1
    print("usage: python -m autonomous.backends.policy hook | check COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
