"""The web shell: security headers, static htmx from its package, health, schema, error pages."""

from __future__ import annotations

from pathlib import Path

import httpx
import js_lib_htmx
from litestar import get

from crm.access import public
from liaison.app import create_app
from liaison.settings import Settings


async def test_pages_carry_the_security_headers(client, db):
    for path in ("/login", "/no-such-page", "/static/app.css"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path
    assert (await client.get("/login")).headers["cache-control"] == "no-store"


async def test_htmx_comes_from_the_package_and_the_page_loads_it(client, db):
    page = await client.get("/login")
    assert '<script src="/vendor/htmx/htmx.min.js" defer></script>' in page.text
    response = await client.get("/vendor/htmx/htmx.min.js")
    assert response.status_code == 200
    packaged = Path(js_lib_htmx.__file__).parent / "static" / "htmx" / "htmx.min.js"
    assert response.content == packaged.read_bytes()
    assert b"htmx" in response.content[:2000]


async def test_no_inline_script_in_pages(client, signed_in):
    await signed_in("admin")
    for path in ("/", "/account", "/admin/users", "/admin/audit", "/login"):
        text = (await client.get(path)).text
        assert "<script>" not in text and " onclick=" not in text, path


async def test_healthz_checks_the_database(client, db):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_reports_an_unreachable_database_without_details(tmp_path):
    settings = Settings(
        env="test", var_dir=tmp_path, password_hash_profile="cheapest",
        database_url="postgresql://nobody@127.0.0.1:1/none", secret_key="k" * 40,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


async def test_schema_describes_the_json_api_only(client, signed_in):
    await signed_in("liaison")
    schema = (await client.get("/schema")).json()
    assert schema["info"]["title"] == "Liaison API"
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    assert {"/api/v1/me", "/api/v1/clinicians", "/api/v1/segments/{segment_id}/members"} <= set(schema["paths"])
    assert (await client.get("/schema/openapi.yaml")).status_code == 200


async def test_unknown_page_gets_a_friendly_404(client, db):
    response = await client.get("/no-such-page/12345")
    assert response.status_code == 404
    assert "Page not found" in response.text
    api = await client.get("/api/v1/nothing")
    assert api.status_code == 404 and api.json()["status_code"] == 404


async def test_server_errors_leak_no_internals(app, client, db):
    @get("/boom", opt=public())
    async def boom() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    @get("/api/v1/boom", opt=public())
    async def api_boom() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    app.register(boom)
    app.register(api_boom)
    page = await client.get("/boom")
    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text
    assert "hunter2" not in page.text and "Traceback" not in page.text
    assert "Reference:" in page.text
    api = await client.get("/api/v1/boom")
    assert api.status_code == 500 and "hunter2" not in api.text
    assert set(api.json()) == {"status_code", "detail", "reference"}


async def test_anonymous_visitors_get_no_server_side_session(client, settings, db):
    for _ in range(5):
        await client.get("/login")
        await client.get("/", follow_redirects=False)
    sessions = settings.sessions_dir
    assert not sessions.exists() or not any(sessions.iterdir())


async def test_static_errors_name_no_server_paths(client, db):
    for path in ("/vendor/htmx/ext/", "/static/nothing.css", "/static/%00", "/static/app.css%00.txt"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "site-packages" not in response.text and "/work/" not in response.text, path


async def test_healthz_answers_head_for_load_balancers(client, db):
    response = await client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


async def test_https_deployments_use_host_prefixed_cookies(db, tmp_path, make_user):
    from dataclasses import replace

    from tests.conftest import base_settings
    from tests.helpers import TEST_PASSWORD

    user = await make_user("liaison")
    settings = replace(base_settings(db.url, tmp_path), cookie_secure=True)
    app = create_app(settings, engine=db.engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://liaison.test") as https:
        await https.get("/login")
        token = https.cookies["__Host-liaison_csrf"]
        response = await https.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                                    "_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "__Host-liaison_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert "strict-transport-security" in response.headers
