"""Shared fixtures.

``db`` runs a test once on SQLite (a temporary file) and once on PostgreSQL when
``LIAISON_TEST_POSTGRES_URL`` is set: the schema is built by the real migrations once per database
and test session, and every table is emptied before each test. ``LIAISON_TEST_REQUIRE`` (a comma
list of ``postgres`` and ``chromium``, set by CI) turns the skip for a missing service into a failure.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from piccolo.engine.base import Engine

import liaison  # noqa: F401  (points Piccolo at liaison.piccolo_conf)
from crm import passwords
from liaison import db as database
from liaison.settings import Settings
from tests.helpers import TEST_PASSWORD, login

POSTGRES_URL = os.environ.get("LIAISON_TEST_POSTGRES_URL", "").strip()
REQUIRED = {name.strip() for name in os.environ.get("LIAISON_TEST_REQUIRE", "").split(",") if name.strip()}

passwords.use_profile("cheapest")


def skip_or_fail(service: str, reason: str) -> None:
    if service in REQUIRED:
        pytest.fail(f"{reason} (LIAISON_TEST_REQUIRE includes {service!r})")
    pytest.skip(reason)


# ------------------------------------------------------------------------------------------------
# Databases


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_postgres_database() -> str:
    """A new, empty PostgreSQL database on the test server; returns its URL."""
    name = f"liaison_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(dsn=POSTGRES_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _with_database(POSTGRES_URL, name)


async def drop_postgres_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    connection = await asyncpg.connect(dsn=POSTGRES_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@dataclass
class TestDatabase:
    backend: str
    url: str
    engine: Engine | None = None


async def empty_database(backend: str, tmp_dir: Path) -> TestDatabase:
    if backend == "sqlite":
        return TestDatabase("sqlite", f"sqlite:///{tmp_dir / f'liaison-{secrets.token_hex(4)}.sqlite3'}")
    if not POSTGRES_URL:
        skip_or_fail("postgres", "PostgreSQL tests need LIAISON_TEST_POSTGRES_URL")
    try:
        return TestDatabase("postgres", await create_postgres_database())
    except (OSError, asyncpg.PostgresError) as error:
        skip_or_fail("postgres", f"PostgreSQL at LIAISON_TEST_POSTGRES_URL is unusable: {error}")
        raise


def base_settings(url: str, var_dir: Path) -> Settings:
    return Settings(
        env="test",
        var_dir=var_dir,
        database_url=url,
        password_hash_profile="cheapest",
        secret_key=secrets.token_urlsafe(48),
        postal_address="Cancer Center Outreach, 100 Main Street, Springfield, IL 62701",
        # The tests drive the worker's steps themselves, with their own clock.
        run_worker=False,
    )


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def migrated_database(request, tmp_path_factory) -> AsyncIterator[TestDatabase]:
    """One database per backend for the whole session, migrated by the real migrations."""
    tmp_dir = tmp_path_factory.mktemp(f"db-{request.param}")
    test_db = await empty_database(request.param, tmp_dir)
    settings = base_settings(test_db.url, tmp_dir)
    await database.check_connection(settings, create=True)
    test_db.engine = database.activate(database.engine_for(settings))
    await database.migrate()
    # The pool lives on the session's event loop; apps under test share it (see ``app``).
    await database.open_pool(test_db.engine, settings)
    yield test_db
    await database.close_pool(test_db.engine)
    if test_db.backend == "postgres":
        await drop_postgres_database(test_db.url)


async def truncate_all() -> None:
    tables = database.registered_tables()
    engine = tables[0]._meta.db
    names = [table._meta.tablename for table in tables]
    if engine.engine_type == "sqlite":
        for name in reversed(names):
            await engine.run_ddl(f'DELETE FROM "{name}"')
    else:
        quoted = ", ".join(f'"{name}"' for name in names)
        await engine.run_ddl(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


@pytest.fixture
async def db(migrated_database: TestDatabase, tmp_path: Path) -> TestDatabase:
    """The test's database, bound to every table and empty."""
    database.activate(migrated_database.engine)
    await truncate_all()
    return migrated_database


@pytest.fixture
async def fresh_database(request, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """An empty, unmigrated database on each backend (for migration and CLI tests)."""
    backend = request.param
    test_db = await empty_database(backend, tmp_path)
    yield test_db
    if backend == "postgres":
        await drop_postgres_database(test_db.url)


def pytest_generate_tests(metafunc) -> None:
    if "fresh_database" in metafunc.fixturenames:
        metafunc.parametrize("fresh_database", ["sqlite", "postgres"], indirect=True)


def pytest_collection_modifyitems(config, items) -> None:
    """``@pytest.mark.backend("postgres")`` keeps only that database's variant of a test."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("backend")
        params = getattr(getattr(item, "callspec", None), "params", {})
        backend = params.get("migrated_database") or params.get("fresh_database")
        (drop if marker and backend and backend not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# ------------------------------------------------------------------------------------------------
# The web app


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(db: TestDatabase, tmp_path: Path) -> Settings:
    return base_settings(db.url, tmp_path / "var")


@pytest.fixture
def app(settings: Settings, clock: Clock, db: TestDatabase):
    from liaison.app import create_app

    return create_app(settings, clock=clock, engine=db.engine)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in this event loop (so it shares the test's pool).

    Litestar's AsyncTestClient would run the app on a second loop in another thread, where an
    asyncpg pool opened on this loop cannot be used. The app's lifespan (which only opens the pool
    the fixture already holds) is exercised by the tests that run ``liaison serve``.
    """
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as http:
        yield http


@pytest.fixture
def make_user(db):
    """``await make_user("manager")`` creates an active user of that role."""
    from crm import users
    from crm.audit import Actor

    counter = iter(range(1, 10_000))

    async def _make(role: str = "liaison", *, email: str | None = None, name: str = "",
                     password: str = TEST_PASSWORD, active: bool = True):
        email = email or f"{role}{next(counter)}@example.org"
        user = await users.create_user(email, role=role, password=password, name=name,
                                       actor=Actor.cli())
        if not active:
            user = await users.update_user(user.id, name=name, role=role, active=False,
                                           actor=Actor.cli())
        return user

    return _make


@pytest.fixture
def signed_in(client, make_user):
    """``user = await signed_in("admin")``: a new user of that role, signed in on ``client``."""

    async def _signed_in(role: str = "liaison", **kwargs):
        user = await make_user(role, **kwargs)
        response = await login(client, user.email)
        assert response.status_code == 303, response.text
        return user

    return _signed_in

