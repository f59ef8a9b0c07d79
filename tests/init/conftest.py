"""The initializer tests' fixtures: an empty project and the SHOP spec in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from init_project import SPEC


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    return p


@pytest.fixture
def spec(project: Path) -> Path:
    path = project / "spec.md"
    path.write_text(SPEC)
    return path
