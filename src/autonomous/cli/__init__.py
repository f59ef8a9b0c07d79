"""The command line. Thin on purpose: parse, call the library, render.

``app.py`` holds the ``autonomous`` group and what every command shares (options,
loading the configuration, one-line errors); ``render.py`` the JSON envelope; one
module per group of commands: ``tasks.py``, ``review.py`` (retry, approve, reject,
diff), ``read.py`` (next, status, logs, resume, dashboard), ``init.py`` (init,
export) and ``run.py`` (start, stop, demo, model-server).
"""

from autonomous.cli import init, read, review, run, tasks  # noqa: F401 - each registers its commands
from autonomous.cli.app import main

__all__ = ["main"]
