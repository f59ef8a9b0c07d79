"""Splitting a shell command the way a shell would run it, into the simple commands the
command policy checks (:mod:`autonomous.backends.policy` says what is split and why):
chains, pipes, subshells, substitutions (also inside double quotes), ``sh -c`` and
``eval`` strings, ``find -exec``, and the prefixes that do not change what runs. Each
simple command comes out normalised to ``program arg arg ...``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

# Prefixes that run the rest of the command unchanged: name -> options that take a value.
_WRAPPERS: dict[str, frozenset[str]] = {
    "command": frozenset(),
    "builtin": frozenset(),
    "exec": frozenset({"-a"}),
    "nohup": frozenset(),
    "time": frozenset({"-f", "-o", "--format", "--output"}),
    "env": frozenset({"-u", "--unset", "-C", "--chdir"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "setsid": frozenset(),
    "ionice": frozenset({"-c", "-n", "-p", "--class", "--classdata"}),
    "xargs": frozenset({"-I", "-n", "-P", "-d", "-E", "-L", "-s", "-a", "--max-args", "--max-procs", "--delimiter"}),
    "watch": frozenset({"-n", "--interval", "-d"}),
}
# Positional arguments a wrapper takes before the command (timeout DURATION).
_WRAPPER_POSITIONALS = {"timeout": 1}
_KEYWORDS = frozenset({"{", "}", "!", "(", ")", "if", "then", "else", "elif", "fi", "do", "done", "while", "until"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=")
_SHELL_PROGRAMS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
_MAX_DEPTH = 8
SUBST = "$(...)"


@dataclass(slots=True)
class Parsed:
    commands: list[str] = field(default_factory=list)  # normalised simple commands
    pipelines: list[str] = field(default_factory=list)  # normalised commands, one a line
    too_deep: bool = False


def parse_command(command: str) -> Parsed:
    """The simple commands and pipelines of ``command``, normalised."""
    parsed = Parsed()
    _parse(command, parsed, 0)
    return parsed


def _parse(command: str, out: Parsed, depth: int) -> None:
    if depth > _MAX_DEPTH:
        out.too_deep = True
        return
    pipelines, nested = _split(command)
    for inner in nested:
        _parse(inner, out, depth + 1)
    for pipeline in pipelines:
        normalised: list[str] = []
        for segment in pipeline:
            tokens = _normalise(_tokens(segment))
            if not tokens:
                continue
            # Whitespace inside a quoted word becomes one space, so a newline only ever
            # separates the commands of a pipeline (its view is the commands, one a line).
            normalised.append(" ".join(" ".join(t.split()) for t in tokens))
            for inner in _inner_commands(tokens):
                _parse(inner, out, depth + 1)
        out.commands.extend(normalised)
        if normalised:
            out.pipelines.append("\n".join(normalised))


def _split(cmd: str) -> tuple[list[list[str]], list[str]]:
    """Pipelines of segment texts, and the texts of nested commands (substitutions, subshells)."""
    pipelines: list[list[str]] = []
    pipeline: list[str] = []
    nested: list[str] = []
    buf: list[str] = []
    i, n = 0, len(cmd)

    def end_segment() -> None:
        pipeline.append("".join(buf))
        buf.clear()

    def end_pipeline() -> None:
        end_segment()
        pipelines.append(list(pipeline))
        pipeline.clear()

    while i < n:
        c = cmd[i]
        if c == "\\":
            buf.append(cmd[i : i + 2])
            i += 2
        elif c == "'":
            j = cmd.find("'", i + 1)
            j = n - 1 if j == -1 else j
            buf.append(cmd[i : j + 1])
            i = j + 1
        elif c == '"':
            i = _double_quoted(cmd, i, buf, nested)
        elif c == "`":
            j = _backtick_end(cmd, i)
            nested.append(cmd[i + 1 : j])
            buf.append(SUBST)
            i = j + 1
        elif c in "$<>" and cmd.startswith("(", i + 1):
            inner, j = _balanced(cmd, i + 1)
            nested.append(inner)
            buf.append(SUBST)
            i = j + 1
        elif c == "(":
            # A subshell ``( a; b )`` or a function body; either way its commands run.
            inner, j = _balanced(cmd, i)
            nested.append(inner)
            i = j + 1
        elif c == "#" and (not buf or "".join(buf)[-1:].isspace()):
            j = cmd.find("\n", i)
            i = n if j == -1 else j
        elif c == "|":
            if cmd.startswith("||", i):
                end_pipeline()
                i += 2
            else:
                end_segment()
                i += 2 if cmd.startswith("|&", i) else 1
        elif c == "&":
            prev = "".join(buf)[-1:]
            if prev in ("<", ">") or cmd.startswith("&>", i):
                buf.append(c)  # a redirection: 2>&1, &> file
                i += 1
            else:
                end_pipeline()
                i += 2 if cmd.startswith("&&", i) else 1
        elif c in ";\n":
            end_pipeline()
            i += 1
        else:
            buf.append(c)
            i += 1
    end_pipeline()
    return [[s for s in p if s.strip()] for p in pipelines if any(s.strip() for s in p)], nested


def _double_quoted(cmd: str, i: int, buf: list[str], nested: list[str]) -> int:
    """Copy a double-quoted string into ``buf``, pulling out the substitutions in it."""
    n = len(cmd)
    buf.append('"')
    i += 1
    while i < n:
        c = cmd[i]
        if c == "\\":
            buf.append(cmd[i : i + 2])
            i += 2
        elif c == '"':
            buf.append('"')
            return i + 1
        elif c == "`":
            j = _backtick_end(cmd, i)
            nested.append(cmd[i + 1 : j])
            buf.append(SUBST)
            i = j + 1
        elif c == "$" and cmd.startswith("(", i + 1):
            inner, j = _balanced(cmd, i + 1)
            nested.append(inner)
            buf.append(SUBST)
            i = j + 1
        else:
            buf.append(c)
            i += 1
    buf.append('"')
    return n


def _backtick_end(cmd: str, i: int) -> int:
    j = i + 1
    while j < len(cmd):
        if cmd[j] == "\\":
            j += 2
            continue
        if cmd[j] == "`":
            return j
        j += 1
    return len(cmd)


def _balanced(cmd: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis at ``start`` and the index of its closing one."""
    depth = 0
    i = start
    n = len(cmd)
    while i < n:
        c = cmd[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            j = cmd.find("'", i + 1)
            i = n if j == -1 else j + 1
            continue
        if c == '"':
            j = i + 1
            while j < n and cmd[j] != '"':
                j += 2 if cmd[j] == "\\" else 1
            i = j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return cmd[start + 1 : i], i
        i += 1
    return cmd[start + 1 :], n


def _tokens(segment: str) -> list[str]:
    try:
        return shlex.split(segment, posix=True)
    except ValueError:  # unbalanced quotes: a shell would refuse it too, check the words anyway
        return [t.strip("'\"") for t in segment.split()]


def _normalise(tokens: list[str]) -> list[str]:
    """Drop assignments, keywords and transparent wrappers; reduce the program to its name."""
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if not t or t in _KEYWORDS or _ASSIGNMENT.match(t):
            i += 1
            continue
        name = _program_name(t)
        if name in _WRAPPERS:
            i = _skip_wrapper(name, tokens, i + 1)
            continue
        break
    rest = tokens[i:]
    if rest:
        rest[0] = _program_name(rest[0])
    return rest


def _skip_wrapper(name: str, tokens: list[str], i: int) -> int:
    takes_value = _WRAPPERS[name]
    positionals = _WRAPPER_POSITIONALS.get(name, 0)
    while i < len(tokens):
        t = tokens[i]
        if t == "--":
            i += 1
            break
        if name == "env" and t in ("-S", "--split-string") and i + 1 < len(tokens):
            tokens[i + 2 : i + 2] = _tokens(tokens[i + 1])
            i += 2
            continue
        if name == "env" and t.startswith("--split-string="):
            tokens[i + 1 : i + 1] = _tokens(t.split("=", 1)[1])
            i += 1
            continue
        if name == "env" and _ASSIGNMENT.match(t):
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            i += 2 if t in takes_value else 1
            continue
        if positionals:
            positionals -= 1
            i += 1
            continue
        break
    return i


def _program_name(token: str) -> str:
    token = token.strip()
    if "/" in token.rstrip("/"):
        token = token.rstrip("/").rsplit("/", 1)[-1]
    return token


def _inner_commands(tokens: Sequence[str]) -> list[str]:
    """Command strings a simple command runs itself: ``sh -c``, ``eval``, ``find -exec``."""
    program, args = tokens[0], list(tokens[1:])
    if program in _SHELL_PROGRAMS:
        for k, arg in enumerate(args):
            if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
                return [args[k + 1]] if k + 1 < len(args) else []
            if not arg.startswith("-"):
                break
        return []
    if program == "eval":
        return [" ".join(args)] if args else []
    if program == "find":
        inner: list[str] = []
        for k, arg in enumerate(args):
            if arg in ("-exec", "-execdir", "-ok", "-okdir"):
                words: list[str] = []
                for word in args[k + 1 :]:
                    if word in (";", "+"):
                        break
                    words.append(shlex.quote(word))
                if words:
                    inner.append(" ".join(words))
        return inner
    return []
