"""What the app does at start and stop: the PostgreSQL pool, SQLite's WAL mode, Redis sessions."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from litestar.testing import TestClient

from crm.tables import User
from liaison import db as database
from liaison.app import create_app
from tests.conftest import skip_or_fail
from tests.helpers import TEST_PASSWORD

REDIS_URL = "redis://127.0.0.1:6379/15"


def sign_in(client: TestClient, email: str) -> None:
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": TEST_PASSWORD, "_csrf_token": client.cookies["liaison_csrf"]},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


@pytest.mark.backend("sqlite")
async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db, settings):
    engine = database.engine_for(settings)
    assert engine.connection_kwargs["timeout"] == settings.sqlite_busy_timeout_seconds
    rows = await engine.run_ddl("PRAGMA journal_mode")
    assert rows[0]["journal_mode"] == "wal"


@pytest.mark.backend("postgres")
def test_postgres_pool_is_opened_and_closed_by_the_app_lifespan(db, settings):
    app = create_app(settings)  # its own engine, so its own pool
    engine = User._meta.db
    assert engine is not db.engine and engine.pool is None
    with TestClient(app) as client:
        assert engine.pool is not None
        assert client.get("/healthz").json()["database"] == "ok"
    assert engine.pool is None


@pytest.fixture
def redis_settings(settings):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.exceptions.ConnectionError as error:
        skip_or_fail("redis", f"Redis is not reachable at {REDIS_URL}: {error}")
    return replace(settings, redis_url=REDIS_URL)


# The session store does not depend on the database; SQLite keeps the two apps simple.
@pytest.mark.backend("sqlite")
async def test_sessions_live_in_redis_and_are_shared_by_web_replicas(db, redis_settings, make_user, tmp_path):
    import redis

    user = await make_user("liaison", email=f"replica-{secrets.token_hex(3)}@example.org")
    first_app = create_app(replace(redis_settings, var_dir=tmp_path / "one"))
    second_app = create_app(replace(redis_settings, var_dir=tmp_path / "two"))
    with TestClient(first_app) as first, TestClient(second_app) as second:
        sign_in(first, user.email)
        session_id = first.cookies["liaison_session"]
        keys = [key.decode() for key in redis.Redis.from_url(REDIS_URL).keys("liaison-sessions*")]
        assert any(session_id in key for key in keys), keys
        # A login on one web replica is valid on the other.
        second.cookies.set("liaison_session", session_id)
        assert second.get("/", follow_redirects=False).status_code == 200
    assert not (tmp_path / "one" / "sessions").exists()
