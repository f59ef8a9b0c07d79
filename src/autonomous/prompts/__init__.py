"""Prompt templates, shipped as package data (``string.Template`` syntax: ``$name``)."""

from __future__ import annotations

from importlib import resources
from string import Template


def load(name: str) -> Template:
    """The template ``name`` (e.g. ``"task.md"``) from this package."""
    return Template(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
