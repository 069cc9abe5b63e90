"""Every route states who may use it, and the server enforces it for every role."""

from __future__ import annotations

import re

import pytest
from litestar.routes import HTTPRoute

from crm.roles import Role
from tests.helpers import fetch_csrf, login

PUBLIC_ROUTES = {
    "/login",
    "/healthz",
    "/static/{file_path:path}",
    "/vendor/htmx/{file_path:path}",
    # Signed by their own means: the token in the link, the provider's ECDSA signature.
    "/p/unsubscribe/{token:str}",
    "/p/rsvp/{token:str}",
    "/webhooks/sendgrid/events",
}

# The pages a person opens, and which roles may open them (admins may open everything).
PAGE_ACCESS = {
    "/": set(Role),
    "/account": set(Role),
    "/admin/users": {Role.admin},
    "/admin/users/new": {Role.admin},
    "/admin/audit": {Role.admin},
    "/api/v1/me": set(Role),
    "/schema": set(Role),
    "/clinicians": set(Role),
    "/clinicians/export.csv": set(Role),
    "/segments": set(Role),
    "/practices": set(Role),
    "/segments/new": {Role.marketer, Role.manager},
    "/follow-ups": {Role.liaison, Role.manager},
    "/imports": {Role.manager},
    "/imports/review": {Role.manager},
    "/api/v1/clinicians": set(Role),
    "/api/v1/segments": set(Role),
    "/campaigns": set(Role),
    "/api/v1/campaigns": set(Role),
    "/api/v1/suppressions": {Role.marketer, Role.manager},
    "/campaigns/new": {Role.marketer, Role.manager},
    "/outbox": {Role.marketer, Role.manager},
    "/suppressions": {Role.marketer, Role.manager},
    "/workshops": set(Role),
    "/api/v1/workshops": set(Role),
    "/workshops/new": {Role.marketer, Role.manager},
}


def http_handlers(app):
    """Every (path, method, handler) of the app, without the OPTIONS handlers Litestar adds
    itself (they state no rule, so the guard refuses them: closed by default)."""
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    if method != "OPTIONS":
                        yield route.path, method, handler


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_states_an_access_rule(app):
    missing = [
        (path, method)
        for path, method, handler in http_handlers(app)
        if not handler.opt.get("public") and not handler.opt.get("roles")
    ]
    assert missing == []


def test_only_the_expected_routes_are_public(app):
    public = {path for path, _, handler in http_handlers(app) if handler.opt.get("public")}
    assert public == PUBLIC_ROUTES


async def test_anonymous_requests_to_every_protected_route_are_refused(app, client, db):
    await fetch_csrf(client)
    token = client.cookies.get("liaison_csrf")
    checked = 0
    for path, method, handler in http_handlers(app):
        if handler.opt.get("public") or method == "HEAD":
            continue
        url = concrete(path)
        response = await client.request(
            method, url, data={"_csrf_token": token} if method != "GET" else None,
            follow_redirects=False,
        )
        if url.startswith(("/api/", "/schema")):
            assert response.status_code == 401, (method, url)
        else:
            assert response.status_code == 303, (method, url)
            assert response.headers["location"].startswith("/login?next="), (method, url)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("role", [role.value for role in Role])
async def test_each_role_reaches_exactly_its_pages(client, make_user, role):
    user = await make_user(role)
    assert (await login(client, user.email)).status_code == 303
    for path, allowed in PAGE_ACCESS.items():
        response = await client.get(path, follow_redirects=False)
        expected = 200 if Role(role) in allowed or role == "admin" else 403
        assert response.status_code == expected, (role, path, response.status_code)


async def test_wrong_role_gets_a_friendly_403_page(client, signed_in):
    await signed_in("marketer")
    response = await client.get("/admin/users")
    assert response.status_code == 403
    assert "You do not have access to this page" in response.text
    assert "Marketer" in response.text
    assert "Traceback" not in response.text


async def test_wrong_role_cannot_write_either(client, signed_in, db):
    from crm.tables import User

    await signed_in("manager")
    token = client.cookies.get("liaison_csrf")
    response = await client.post(
        "/admin/users/new",
        data={"email": "sneaky@example.org", "role": "admin", "password": "x" * 20,
              "_csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert not await User.exists().where(User.email == "sneaky@example.org").run()


async def test_navigation_shows_only_the_pages_of_the_role(client, signed_in):
    await signed_in("liaison")
    page = (await client.get("/")).text
    assert 'href="/account"' in page
    assert 'href="/admin/users"' not in page
