"""The vendored subsets in tests/fixtures/ are what tests/fixtures/regenerate.py builds from the
full reference files. The only test allowed to skip without ``../shared/reference``: it
compares with those files, which a user's clone does not have."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", FIXTURES / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vendored_subsets_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    regenerate = _regenerate()
    if not regenerate.DEFAULT_REFERENCE.is_dir():
        pytest.skip(f"the full reference files are not at {regenerate.DEFAULT_REFERENCE} (a clone without ../shared)")
    code = regenerate.main(["--check"])
    assert code == 0, capsys.readouterr().out


def test_every_vendored_file_says_where_it_came_from() -> None:
    notes = (FIXTURES / "README.md").read_text()
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in (".graphql", ".json", ".jsonl")):
        assert path.relative_to(FIXTURES).parts[0] in notes, path
    assert "MIT" in notes
