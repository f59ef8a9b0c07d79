"""The SQLite file under the file provider: opening it (lazily, per process and thread,
never across a ``fork``), checking that it is ours before anything is written to it,
migrating it, and the two kinds of transaction every provider method runs in. The file
provider's docstring says what each setting buys.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from autonomous.errors import ProviderError, StoreCorrupt
from autonomous.providers._sql import migrations

APPLICATION_ID = 0x4155544F  # "AUTO": marks the file as ours (PRAGMA application_id)
# MIGRATIONS[i] takes the schema from version i to i + 1. The version is ``PRAGMA
# user_version``; all pending scripts run in one transaction with it.
MIGRATIONS: list[str] = migrations("sqlite")

# Connections a forked child inherited: never used nor closed there (closing would run
# SQLite's cleanup on the parent's files); kept referenced so no finaliser closes them.
_ABANDONED: list[sqlite3.Connection] = []


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    leftover = [line for line in buf.splitlines() if line.strip() and not line.strip().startswith("--")]
    if leftover:
        raise ValueError(f"incomplete SQL statement in a migration: {leftover[0]!r}")


class SqliteFile:
    """The store's file at ``path``; ``busy_timeout`` is how long a write waits for another
    process's write lock."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[int, sqlite3.Connection]] = []

    def db(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        with self._lock:
            if any(p != pid for p, _ in self._connections):  # we are a forked child
                _ABANDONED.extend(c for p, c in self._connections if p != pid)
                self._connections = [(p, c) for p, c in self._connections if p == pid]
            conn = self._connect()
            self._connections.append((pid, conn))
        self._local.conn, self._local.pid = conn, pid
        return conn

    def _open(self) -> sqlite3.Connection:
        """A plain connection to the store (checked and migrated by :meth:`_connect`)."""
        try:
            return sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProviderError(f"{self.path}: cannot open the task store: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._open()
        try:
            self._check_and_migrate(conn)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA cache_size = -32768")  # up to 32 MiB, used only by big stores
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise
        return conn

    def _inspect(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects), read-only."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(f"not a SQLite database ({exc})") from exc
        return app_id, version, objects

    def _verdict(self, app_id: int, version: int, objects: int) -> bool:
        """True when the file is empty (a new store); raises when it is not ours."""
        if app_id == 0 and objects == 0 and version == 0:
            return True
        if app_id != APPLICATION_ID:
            if app_id == 0:
                raise self._corrupt("a SQLite database without the autonomous marker: not an autonomous task store")
            raise self._corrupt(f"a SQLite database of another application (application_id 0x{app_id:08x})")
        if version > len(MIGRATIONS):
            raise self._corrupt(
                f"schema version {version} is newer than this version of autonomous supports "
                f"({len(MIGRATIONS)}); upgrade autonomous"
            )
        return False

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        fresh = self._verdict(*self._inspect(conn))
        if not fresh and conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return
        # Ours (or empty) and behind: only now may anything be written.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id, version, objects = self._inspect(conn)  # again, under the write lock
            if self._verdict(app_id, version, objects):
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                try:
                    for statement in _statements(script):
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    raise ProviderError(
                        f"{self.path}: schema migration to version {number} failed ({exc}); nothing was changed"
                    ) from exc
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _corrupt(self, what: str) -> StoreCorrupt:
        return StoreCorrupt(f"{self.path}: {what}; the file was left untouched")

    def translate(self, exc: sqlite3.Error) -> ProviderError:
        message = str(exc)
        if "malformed" in message or "not a database" in message:
            return StoreCorrupt(f"{self.path}: the task store is damaged ({message})")
        if "locked" in message or "busy" in message:
            return ProviderError(
                f"{self.path}: the task store stayed locked by another process for {self._busy_timeout:g}s"
            )
        return ProviderError(f"{self.path}: {message}")

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        db = self.db()
        try:
            db.execute(begin)
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise

    def write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction, holding the store's write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One consistent snapshot (WAL readers never block writers nor wait for them)."""
        return self._transaction("BEGIN")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read-only snapshot on a connection of its own, closed at the end: the store
        stays usable (from this thread too) while the snapshot is read."""
        db = self._open()
        try:
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")
            yield db
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        finally:
            db.close()

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            mine = [c for p, c in self._connections if p == pid]
            _ABANDONED.extend(c for p, c in self._connections if p != pid)
            self._connections = []
        for conn in mine:
            conn.close()
        self._local = threading.local()
