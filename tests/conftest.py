"""Shared fixtures. One section per concern; keep each self-contained."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from autonomous.providers.base import StateProvider
from autonomous.tasks import utcnow

# -- state providers: the contract suite's fixtures ------------------------------------------
#
# Every provider kind registers one ProviderKit; ``provider`` and ``make_provider`` are
# parametrised over all of them, so ``tests/providers/test_provider_contract.py`` runs against each.
# Adding a kind (postgres, linear, github) is one more entry in PROVIDER_KITS (with
# ``marks=`` for kinds that need a server).


class FakeClock:
    """The provider's clock in tests: time moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class ProviderKit:
    # a fresh, empty store in the given directory, reading time from the clock
    make: Callable[[Path, FakeClock], StateProvider]
    # test-only backdoor: store a dependency on an id no task has (what a tracker shows when
    # a linked issue was deleted); None where the store cannot express it
    add_dangling_dependency: Callable[[StateProvider, str, str], None] | None = None
    marks: tuple[pytest.MarkDecorator, ...] = ()  # e.g. the server a kind needs


def _file_provider(path: Path, clock: FakeClock) -> StateProvider:
    from autonomous.providers.file import FileProvider

    return FileProvider(path / "state", now=clock)


def _file_dangling_dependency(provider: StateProvider, task_id: str, ghost_id: str) -> None:
    with provider._file.write() as db:  # type: ignore[attr-defined]
        pos = db.execute("SELECT count(*) FROM dependencies WHERE task_id = ?", (task_id,)).fetchone()[0]
        db.execute("INSERT INTO dependencies (task_id, depends_on, pos) VALUES (?, ?, ?)", (task_id, ghost_id, pos))


# postgres: a fresh schema per store on the test server (dropped on close); a server that
# does not answer fails the test with the provider's own message, it is never skipped
POSTGRES_TEST_DSN = os.environ.get("AUTONOMOUS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_provider(path: Path, clock: FakeClock) -> StateProvider:
    from autonomous.providers.postgres import PostgresProvider

    schema = f"t_{uuid.uuid4().hex[:16]}"
    return PostgresProvider(POSTGRES_TEST_DSN, schema=schema, now=clock, drop_schema_on_close=True)


def _postgres_dangling_dependency(provider: StateProvider, task_id: str, ghost_id: str) -> None:
    provider._sql(  # type: ignore[attr-defined]
        "INSERT INTO dependencies (task_id, depends_on, pos) "
        "SELECT %s, %s, count(*) FROM dependencies WHERE task_id = %s",
        (task_id, ghost_id, task_id),
    )


# github: a provider on its own fake GitHub server (autonomous.testing.fake_github), stopped on close
def _github_provider(path: Path, clock: FakeClock) -> StateProvider:
    from autonomous.testing.fake_github import open_test_provider

    return open_test_provider(clock)


def _github_dangling_dependency(provider: StateProvider, task_id: str, ghost_id: str) -> None:
    provider.fake.add_blocker_line(int(task_id), 999_999)  # type: ignore[attr-defined]  # no such issue


# linear: a fresh workspace per store on one shared fake Linear server (autonomous.testing.fake_linear)
def _linear_provider(path: Path, clock: FakeClock) -> StateProvider:
    from autonomous.testing.fake_linear import open_test_provider

    return open_test_provider(clock, path)


def _linear_dangling_dependency(provider: StateProvider, task_id: str, ghost_id: str) -> None:
    provider.fake.workspace(provider.fake_key).add_dangling_blocker(task_id, ghost_id)  # type: ignore[attr-defined]


PROVIDER_KITS = {
    "file": ProviderKit(_file_provider, _file_dangling_dependency),
    "github": ProviderKit(_github_provider, _github_dangling_dependency),
    "linear": ProviderKit(_linear_provider, _linear_dangling_dependency),
    "postgres": ProviderKit(_postgres_provider, _postgres_dangling_dependency, marks=(pytest.mark.postgres,)),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[pytest.param(kind, id=kind, marks=kit.marks) for kind, kit in PROVIDER_KITS.items()])
def provider_kit(request: pytest.FixtureRequest) -> ProviderKit:
    return PROVIDER_KITS[request.param]


@pytest.fixture
def make_provider(provider_kit: ProviderKit, tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[], StateProvider]]:
    """A factory of fresh, empty stores (all on the test's clock), closed at teardown."""
    opened: list[StateProvider] = []

    def make() -> StateProvider:
        store = provider_kit.make(tmp_path / f"store-{len(opened)}", clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def provider(make_provider: Callable[[], StateProvider]) -> StateProvider:
    return make_provider()


# -- the reading commands' config cache (autonomous.config_view) ---------------------------------


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The config cache of every command the tests run (in process or as a child) goes to
    a folder of this test session, not the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
