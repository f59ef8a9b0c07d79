"""A small JSON-over-HTTP todo list service, standard library only."""

__version__ = "0.1.0"
