"""Model backends: how the runner talks to Claude.

:mod:`~autonomous.backends.base` holds the contract (one abstract streaming method, a final
``run()``), :mod:`~autonomous.backends.registry` the names. Importing this package stays
light (the config and the CLI read the names from it); the backends themselves are
imported only when asked for, so a missing optional SDK fails with an install hint.
"""

from __future__ import annotations

from autonomous.backends.registry import BACKEND_NAMES, BACKENDS, get_backend

__all__ = ["BACKENDS", "BACKEND_NAMES", "get_backend"]
