"""The PostgreSQL database under the postgres provider: where it is (the DSN, and what
of it may be shown), the pool of connections (per process, never across a ``fork``), the
one retry when a connection drops, the migrations, and messages that never carry the
password. The postgres provider's docstring says what each of these guarantees.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from autonomous.config import secrets
from autonomous.errors import ConfigError, ProviderError, StoreCorrupt
from autonomous.providers._sql import migrations

try:  # the optional extra; reported when the provider is opened, not on import
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.types.json import Jsonb as Jsonb  # re-exported: the provider writes jsonb
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = _missing
else:
    _IMPORT_ERROR = None

T = TypeVar("T")

DEFAULT_SCHEMA = "autonomous"
INSTALL_HINT = "pip install 'autonomous-runner[postgres]'"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ENV_REF = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}$")
STREAM_PAGE = 500  # rows per round trip when streaming tasks
_LOCK_CLASS = 0x4155544F  # "AUTO": first key of the migration advisory lock (second: the schema)
# MIGRATIONS[i] takes the schema from version i to i + 1, all pending ones in one
# transaction together with their schema_version rows.
MIGRATIONS: list[str] = migrations("postgres")

# Connections a forked child inherited: never used nor closed there (closing would end the
# parent's sessions); kept referenced so no finaliser closes them.
_ABANDONED: list[Any] = []


class Retry:
    """``recover`` found that the failed write did not commit: run it again."""


RETRY = Retry()


# -- the DSN: where it comes from, what may be shown of it ------------------------------------------


def resolve_dsn(dsn: str | None, environ: dict[str, str] | None = None) -> str:
    """The connection string: ``dsn`` (a ``${NAME}`` reference is read from the
    environment), else ``$DATABASE_URL``; ConfigError naming both when neither is set."""
    env = os.environ if environ is None else environ
    if dsn:
        ref = _ENV_REF.match(dsn.strip())
        if ref:
            value = env.get(ref["name"], "")
            if not value:
                raise ConfigError(f"state_provider.dsn refers to ${{{ref['name']}}}, which is not set")
            return value
        return dsn
    value = env.get("DATABASE_URL", "")
    if not value:
        raise ConfigError(
            "state_provider.dsn is not set and DATABASE_URL is empty: the postgres provider needs a "
            "connection string such as postgresql://user@host:5432/dbname"
        )
    return value


def dsn_passwords(dsn: str) -> list[str]:
    """Every password the DSN carries, to scrub from messages: what the config sees in its
    text, and what libpq reads from it."""
    found = secrets.dsn_passwords(dsn)
    try:
        parsed = conninfo_to_dict(dsn)
    except Exception:  # an invalid DSN: the regexes are all we have
        parsed = {}
    if parsed.get("password"):
        found.append(str(parsed["password"]))
    return sorted({p for p in found if p}, key=len, reverse=True)


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "(an invalid connection string)"
    host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(info.get("port") or os.environ.get("PGPORT") or "5432")
    dbname = str(info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or "")
    return f"{host}:{port}/{dbname}" if dbname else f"{host}:{port}"


class PgDatabase:
    """The store's schema in the database at ``dsn`` (see :class:`PostgresProvider` for
    the arguments). Opening it checks the DSN and the schema name, then migrates."""

    def __init__(
        self,
        dsn: str | None,
        *,
        schema: str,
        pool_min: int,
        pool_max: int,
        connect_timeout: float,
        drop_schema_on_close: bool,
    ) -> None:
        if _IMPORT_ERROR is not None:
            raise ProviderError(f"the postgres provider needs psycopg 3 and psycopg-pool: {INSTALL_HINT}")
        self._dsn = resolve_dsn(dsn)
        self._secrets = dsn_passwords(self._dsn)
        self.where = describe_dsn(self._dsn)
        try:
            conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"state_provider.dsn is not a valid PostgreSQL connection string: {self.scrub(exc)}"
            ) from None
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"state_provider.schema: {schema!r} is not a plain lower-case identifier ([a-z_][a-z0-9_]*, up to 63)"
            )
        self.schema = schema
        self._pool_min, self._pool_max = pool_min, pool_max
        self._timeout = connect_timeout
        self._drop_on_close = drop_schema_on_close
        self._kwargs = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": f"autonomous:{schema}"[:63],
            "options": f"-c search_path={schema} -c TimeZone=UTC",
        }
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pool_pid = 0
        self._closed = False
        self.migrate()
        self.get_pool()

    def scrub(self, exc: BaseException | str) -> str:
        text = " ".join(str(exc).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def error(self, exc: BaseException, doing: str = "") -> ProviderError:
        what = f" ({doing})" if doing else ""
        if isinstance(exc, PoolTimeout):
            return ProviderError(
                f"PostgreSQL at {self.where} did not answer within {self._timeout:g}s{what}: is the server running?"
            )
        if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
            reason = self.scrub(exc)
            for marker in ("failed:", "connection failed:"):
                if marker in reason:
                    reason = reason.rsplit(marker, 1)[1].strip()
            return ProviderError(f"cannot reach PostgreSQL at {self.where}{what}: {reason}")
        return ProviderError(f"PostgreSQL at {self.where}{what}: {self.scrub(exc)}")

    def connect(self) -> Any:
        try:
            return psycopg.connect(self._dsn, **self._kwargs)
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def migrate(self) -> None:
        """Bring the schema to ``len(MIGRATIONS)`` (see the module docstring)."""
        conn = self.connect()
        ident = sql.Identifier(self.schema)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, self.schema))
                exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone()
                version = 0
                if exists:
                    has_versions = conn.execute(
                        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = 'schema_version'",
                        (self.schema,),
                    ).fetchone()
                    if has_versions:
                        version = conn.execute(
                            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(ident)
                        ).fetchone()[0]
                    elif conn.execute(
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s",
                        (self.schema,),
                    ).fetchone()[0]:
                        raise StoreCorrupt(
                            f"PostgreSQL at {self.where}: schema {self.schema!r} holds objects but no "
                            "schema_version table: not an autonomous task store; it was left untouched "
                            "(choose another state_provider.schema)"
                        )
                if version > len(MIGRATIONS):
                    raise StoreCorrupt(
                        f"PostgreSQL at {self.where}: schema {self.schema!r} is at version {version}, newer than "
                        f"this version of autonomous supports ({len(MIGRATIONS)}); upgrade autonomous"
                    )
                if version == len(MIGRATIONS):
                    return
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    try:
                        with conn.transaction():  # a savepoint: report which script failed
                            conn.execute(script)
                    except psycopg.errors.OperationalError:
                        raise
                    except psycopg.Error as exc:
                        raise ProviderError(
                            f"PostgreSQL at {self.where}: schema migration to version {number} failed "
                            f"({self.scrub(exc)}); nothing was changed"
                        ) from None
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        except psycopg.Error as exc:
            raise self.error(exc, "migrating the schema") from None
        finally:
            conn.close()

    def stream(self, query: str, params: dict[str, Any], doing: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``query``, fetched a page at a time from one read-only snapshot."""
        try:
            with self.get_pool().connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                with conn.cursor(name=f"tasks_{uuid.uuid4().hex[:8]}") as cursor:
                    cursor.itersize = STREAM_PAGE
                    cursor.execute(query, params)
                    yield from cursor
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.error(exc, doing) from None

    def schema_version(self) -> int:
        return self.run(lambda c: c.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    def get_pool(self) -> Any:
        pid = os.getpid()
        if self._pool is not None and self._pool_pid == pid:
            return self._pool
        with self._lock:
            if self._closed:
                raise ProviderError(f"the postgres provider for {self.where} is closed")
            if self._pool is not None and self._pool_pid != pid:  # we are a forked child
                _ABANDONED.append(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._dsn,
                    kwargs=self._kwargs,
                    min_size=self._pool_min,
                    max_size=max(self._pool_min, self._pool_max),
                    open=True,
                    timeout=self._timeout,
                    name=f"autonomous-{self.schema}",
                    num_workers=1,
                )
                self._pool_pid = pid
            return self._pool

    def run(
        self,
        work: Callable[[Any], T],
        *,
        recover: Callable[[Any], T | Retry] | None = None,
        idempotent: bool = True,
        doing: str = "",
    ) -> T:
        """Run ``work(conn)`` on a pooled connection; when the connection drops, once more
        on a fresh one: reads and idempotent writes directly, other writes only after
        ``recover(conn)`` (run once the old backend is gone) found they did not commit."""
        pool = self.get_pool()
        lost: list[tuple[Any, int]] = []  # the connection, and its backend's pid
        try:
            with pool.connection() as conn:
                lost.append((conn, conn.info.backend_pid))
                return work(conn)
        except psycopg.OperationalError as exc:
            if not lost or not (lost[0][0].broken or lost[0][0].closed):
                raise self.error(exc, doing) from None
            old_pid = lost[0][1]
        except PoolTimeout as exc:
            raise self.error(exc, doing) from None
        # The connection dropped: discard the pool's other dead connections, then retry once.
        try:
            pool.check()
            with pool.connection() as conn:
                if recover is not None:
                    self._end_backend(conn, old_pid)
                    result = recover(conn)
                    if not isinstance(result, Retry):
                        return result
                elif not idempotent:
                    raise ProviderError(
                        f"PostgreSQL at {self.where}: the connection dropped while {doing or 'writing'}; "
                        "the write may or may not have been applied"
                    )
                return work(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self.error(exc, doing) from None

    @staticmethod
    def _end_backend(conn: Any, pid: int) -> None:
        """Make sure the backend of a dropped connection is gone (waiting up to 5 s), so a
        write it was running commits before we look, or never."""
        if pid:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE pid = %s AND application_name = current_setting('application_name')",
                (pid,),
            )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            if self._pool_pid == os.getpid():
                pool.close()
            else:
                _ABANDONED.append(pool)
        if self._drop_on_close:
            self._drop_on_close = False
            conn = self.connect()
            try:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
            finally:
                conn.close()
