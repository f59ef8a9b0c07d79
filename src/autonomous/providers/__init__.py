"""State providers: where tasks live (see DESIGN.md, "Contracts"). :mod:`.base` is the
contract every provider passes, :mod:`.registry` the names and ``get_provider``, which
opens the configured one.
"""

from autonomous.providers.registry import PROVIDER_NAMES, get_provider

__all__ = ["PROVIDER_NAMES", "get_provider"]
