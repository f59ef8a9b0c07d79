"""Configuration errors as one line: ``<file>: <key.path>: <what was expected>``.

pydantic's errors name a location and a type; a user needs the key as written in the
file, the value that was wrong (never a secret's) and what to write instead: the nearest
valid key for a typo, the right section for a key in the wrong one, the allowed values
of a choice. Validators raise :func:`fail` to give their own message and to point deeper
than the field (``subpath``), so the line names the exact key.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from autonomous.config.secrets import is_secret_key
from autonomous.config_view import lazy_regex

Loc = tuple[str | int, ...]

_PLAIN_KEY = lazy_regex(r"[\w$-]{1,60}")  # fullmatch: `$` would let a trailing newline through


def fail(message: str, *subpath: str | int) -> PydanticCustomError:
    """A validation error whose message is ours and whose key path may go deeper than
    the field (``subpath``), so the one-line error names the exact key."""
    return PydanticCustomError("config", "{message}", {"message": message, "subpath": subpath})


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part)
        if not _PLAIN_KEY().fullmatch(name):  # a key with spaces, newlines, or of any length: quoted, cut short
            name = repr(name if len(name) <= 40 else name[:37] + "...")
        out += f".{name}" if out else name
    return out or "(top level)"


def error_loc(exc: ValidationError) -> Loc:
    """The key path of the first problem, down to the key a validator of ours named."""
    first = exc.errors(include_url=False)[0]
    subpath = (first.get("ctx") or {}).get("subpath", ()) if first["type"] == "config" else ()
    return (*first["loc"], *subpath)


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _annotation_at(root: type[BaseModel], loc: Loc) -> Any:
    """The declared type at a key path of ``root``, or None."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if is_model(annotation):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return annotation


def _all_keys(model: type[BaseModel], prefix: Loc = ()) -> dict[str, list[Loc]]:
    """Every key of every section: name -> full paths (for "it belongs in ..." hints)."""
    found: dict[str, list[Loc]] = {}
    for name, field in model.model_fields.items():
        found.setdefault(name, []).append((*prefix, name))
        sub = _unwrap(field.annotation)
        if is_model(sub):
            for key, paths in _all_keys(sub, (*prefix, name)).items():
                found.setdefault(key, []).extend(paths)
    return found


def _unknown_key(root: type[BaseModel], loc: Loc) -> str:
    parent = _unwrap(_annotation_at(root, loc[:-1]))
    key = str(loc[-1])
    valid = list(parent.model_fields) if is_model(parent) else []
    elsewhere = [p for p in _all_keys(root).get(key, []) if p != loc]
    if elsewhere:  # the right key in the wrong section: `autonomous.mode` is execution.mode
        return f"unknown key here (did you mean '{dotted(elsewhere[0])}'?)"
    close = [v for v in valid if v.startswith(key)] if len(key) >= 3 else []
    close = (close if len(close) == 1 else []) or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return kind_of(value)


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
}


def describe(exc: ValidationError, label: str, secret_paths: set[Loc] | frozenset[Loc], root: type[BaseModel]) -> str:
    """The first validation problem of ``root`` as one line (and how many more there are)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = error_loc(exc)
    kind = first["type"]
    ctx = first.get("ctx") or {}
    value = first.get("input")
    if kind == "config":
        what = str(ctx["message"])
    else:
        hidden = loc in secret_paths or is_secret_key(loc) or loc == ("state_provider", "dsn")
        got = "a secret value" if hidden else _show(value)
        stem = kind.rsplit("_", 1)[0] if kind.endswith(("_type", "_parsing")) else kind
        if kind == "extra_forbidden":
            what = _unknown_key(root, loc)
        elif kind == "literal_error":
            options = typing.get_args(_unwrap(_annotation_at(root, loc)))
            expected = ", ".join(map(str, options)) if options else str(ctx.get("expected"))
            what = f"expected one of {expected}, got {got}"
        elif kind == "int_from_float":
            what = f"expected an integer, got {got}"
        elif stem in _EXPECTED:
            what = f"expected {_EXPECTED[stem]}, got {got}"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            words = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
            bound = next(iter(ctx.values()))
            bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
            what = f"expected a number {words[kind]} {bound}, got {got}"
        elif kind == "string_too_short":
            what = f"expected a non-empty string, got {got}"
        elif kind == "missing":
            what = "required"
        else:
            what = f"{str(first['msg'])[:1].lower()}{str(first['msg'])[1:]}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{label}: {dotted(loc)}: {what}{more}"
