"""What the initializer's tests share: the SHOP spec, a real configuration rooted in the project, the store."""

from __future__ import annotations

from pathlib import Path

from autonomous.config import Config, parse_config
from autonomous.init.apply import ProjectInitializer
from autonomous.providers.file import FileProvider

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SPEC = """\
# Shop

## Phase 1: Catalogue
- [SHOP-1.1] Create the product model
  - Priority: high
  - Acceptance criteria:
    - a product has a name and a price in cents
  - Test steps:
    - pytest tests/test_product.py
- [SHOP-1.2] List products
  - Depends on: SHOP-1.1
- [SHOP-1.2a] Paginate the list

## Phase 2: Checkout
- [SHOP-2.1] Add a cart
  - Depends on: SHOP-1.2
- [SHOP-2.2] Pay with a card
"""


def make_config(project: Path, **sections: dict) -> Config:
    """A real configuration rooted in ``project`` (no file), with these sections."""
    return parse_config({"autonomous": {"backend": "claude-code", "model": "opus"}, **sections}, root=project)


def state_dir(project: Path) -> Path:
    return project / ".ai-agents" / "state"


def open_store(project: Path) -> FileProvider:
    return FileProvider(state_dir(project))


def keys_in_store(project: Path) -> list[str]:
    with open_store(project) as p:
        return sorted(t.key for t in p.list_tasks())


def initialize(project: Path, spec: Path, **kw):
    name = kw.pop("project_name", None)
    return ProjectInitializer(make_config(project), backend=kw.pop("backend", None)).initialize(spec, name, **kw)
