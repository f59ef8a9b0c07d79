"""The envelope of every JSON document the tool prints or serves (``--json`` output,
the dashboard's API): ``{"schema_version": 1, ...}``, in one place so both agree."""

from __future__ import annotations

from typing import Any

JSON_SCHEMA_VERSION = 1


def envelope(payload: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": JSON_SCHEMA_VERSION, **payload}
