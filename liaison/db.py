"""The database engine: built from ``LIAISON_DATABASE_URL``, bound to every Piccolo table, migrated.

Piccolo finds its engine through ``liaison.piccolo_conf``; ``activate`` makes that and every table of
the registered apps use one engine, so the web app, the CLI and the tests all talk to the same place.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import Finder
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.table import Table

from liaison.settings import Settings, check_database_url, redact_url


class DatabaseUnavailable(RuntimeError):
    """The database named by the configuration cannot be reached."""


class QuietPostgresEngine(PostgresEngine):
    """PostgresEngine without the version probe at construction: reachability is checked by
    ``check_connection`` with a clear message instead of a warning printed to stdout."""

    async def check_version(self) -> None:  # noqa: D102
        return None


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL: ``sqlite:///var/x.db`` is relative, ``sqlite:////srv/x.db`` absolute."""
    return Path(unquote(urlsplit(url).path)[1:])


def engine_for(settings: Settings) -> Engine:
    """A Piccolo engine for the configured URL; nothing is connected yet."""
    url = settings.database_url
    check_database_url(url)
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SQLiteEngine(
            path=str(sqlite_path(url)),
            timeout=float(settings.sqlite_busy_timeout_seconds),
        )
    return QuietPostgresEngine(config={"dsn": url}, extensions=())


def registered_tables() -> list[type[Table]]:
    """Every table of the registered Piccolo apps, in dependency order."""
    return Finder().get_table_classes()


def activate(engine: Engine) -> Engine:
    """Bind ``engine`` to Piccolo's configuration, its migration table and every app table."""
    from liaison import piccolo_conf

    piccolo_conf.use_engine(engine)
    Migration._meta.db = engine
    for table in registered_tables():
        table._meta.db = engine
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.engine_type == "sqlite"


async def check_connection(settings: Settings, *, create: bool = False) -> None:
    """Connect once and run a trivial query; DatabaseUnavailable says what went wrong.

    A SQLite file is created only when ``create`` (``db migrate``, ``demo``), and a missing folder
    only when it is Liaison's own ``var/``: a mistyped path is an error, not a new empty database.
    """
    url = settings.database_url
    if urlsplit(url).scheme == "sqlite":
        path = sqlite_path(url)
        if not path.exists():
            if not create:
                raise DatabaseUnavailable(
                    f"there is no SQLite database at {path}: run `liaison db migrate` to create it"
                )
            if path.parent.resolve() == settings.var_dir:
                settings.var_dir.mkdir(parents=True, exist_ok=True)
            elif not path.parent.is_dir():
                raise DatabaseUnavailable(
                    f"cannot create the SQLite database {path}: the folder {path.parent} does not exist"
                )
        try:
            connection = sqlite3.connect(path, timeout=settings.sqlite_busy_timeout_seconds)
            try:
                # WAL lets readers proceed while one writer commits; the mode is kept in the file.
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("SELECT 1")
            finally:
                connection.close()
        except (OSError, sqlite3.Error) as error:
            raise DatabaseUnavailable(f"cannot open the SQLite database {path}: {error}") from None
        return
    try:
        connection = await asyncio.wait_for(asyncpg.connect(dsn=url), timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, ValueError) as error:
        reason = str(error) or type(error).__name__
        raise DatabaseUnavailable(
            f"cannot reach the database at {redact_url(url)}: {reason}"
        ) from None
    await connection.close()


async def open_pool(engine: Engine, settings: Settings) -> bool:
    """Open the PostgreSQL connection pool; True when this call opened it (and should close it)."""
    if isinstance(engine, PostgresEngine) and engine.pool is None:
        await engine.start_connection_pool(min_size=1, max_size=settings.database_pool_max)
        return True
    return False


async def close_pool(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()


@dataclass(frozen=True)
class PendingMigration:
    app_name: str
    migration_id: str


async def pending_migrations() -> list[PendingMigration]:
    """Migrations present in ``migrations/<app>/`` but not recorded as applied in this database."""
    manager = BaseMigrationManager()
    if not await Migration.table_exists().run():
        applied: dict[str, set[str]] = {}
    else:
        rows = await Migration.select(Migration.app_name, Migration.name).run()
        applied = {}
        for row in rows:
            applied.setdefault(row["app_name"], set()).add(row["name"])
    pending = []
    for app_config in Finder().get_app_configs():
        modules = manager.get_migration_modules(app_config.resolved_migrations_folder_path)
        for migration_id in sorted(modules):
            if migration_id not in applied.get(app_config.app_name, set()):
                pending.append(PendingMigration(app_config.app_name, migration_id))
    return pending


async def migrate() -> list[PendingMigration]:
    """Apply every pending migration of every app; returns what was applied. Idempotent."""
    pending = await pending_migrations()
    if not pending:
        return []
    # Piccolo prints its progress with emoji; the CLI prints its own summary instead.
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}\n{captured.getvalue()}")
    return pending
