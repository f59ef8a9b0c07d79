"""Everything the command line prints as JSON goes through here: one envelope,
``{"schema_version": 1, ...}``, and one way to fail (``error: ...`` on stderr, one line)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click

from autonomous.jsondoc import JSON_SCHEMA_VERSION, envelope


def emit_json(payload: dict[str, Any], *, pretty: bool = True) -> None:
    """The JSON envelope: ``{"schema_version": 1, ...}``, indented unless ``pretty`` is
    off (the large outputs, ``next`` and ``tasks``, are compact unless ``--pretty``)."""
    document = envelope(payload)
    if pretty:
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        click.echo(json.dumps(document, separators=(",", ":"), default=str))


def emit_json_stream(name: str, items: Iterable[dict[str, Any]], *, pretty: bool = False) -> None:
    """The envelope with one list, ``{"schema_version": 1, "<name>": [...]}``, written item
    by item as they come (a listing of 100,000 tasks is never held whole); ``pretty``
    collects them and indents. An error part way leaves the output cut short and is
    reported on stderr with a non-zero exit, as every error is."""
    if pretty:
        emit_json({name: list(items)}, pretty=True)
        return
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
    write = sys.stdout.write
    write(f'{{"schema_version":{JSON_SCHEMA_VERSION},{encode(name)}:[')
    separator, page = "", []
    for item in items:
        page.append(item)
        if len(page) == 500:  # encoded a page at a time: one encoder call per page, not per item
            write(separator + encode(page)[1:-1])
            separator, page = ",", []
    if page:
        write(separator + encode(page)[1:-1])
    write("]}\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
