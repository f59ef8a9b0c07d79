"""``autonomous dashboard``: a local web board of a project's tasks, live events and workers.

Read-mostly by design: tasks are read through the provider interface (so every store
works, whether or not a runner is running), the live status through
:func:`autonomous.progress.build_status` (``/api/status`` is exactly ``status --json``),
and events by following ``events.jsonl``. The few actions (retry, cancel, priority) call
:mod:`autonomous.actions`, as the command line does.

Security: loopback by default, where the ``Host`` header must name loopback too (a web
page elsewhere cannot reach it by DNS rebinding); any other address needs a token on
every request. Changes are POST only, with a CSRF token the page carries, and none at all
with ``--read-only``. Everything served passes through the config's redactor.

Needs the ``dashboard`` extra (Starlette, uvicorn); the static assets ship in the package.
"""

from autonomous.dashboard.app import create_app
from autonomous.dashboard.server import serve

__all__ = ["create_app", "serve"]
