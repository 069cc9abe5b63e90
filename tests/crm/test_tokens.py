"""Per-user API tokens: shown once, stored hashed, usable as Bearer, revocable, owner-only."""

from __future__ import annotations

import re

from crm import tokens
from crm.audit import Actor
from crm.tables import ApiToken, AuditEvent
from tests.helpers import post_form


async def issue_through_page(client, name: str = "intake system") -> str:
    response = await post_form(client, "/account/tokens", {"name": name})
    assert response.status_code == 303 and response.headers["location"] == "/account"
    page = await client.get("/account")
    match = re.search(r'<code id="new-token">(lsn_[^<]+)</code>', page.text)
    assert match, page.text
    return match.group(1)


async def test_token_is_shown_once_and_stored_only_as_a_digest(client, signed_in):
    await signed_in("manager")
    token = await issue_through_page(client)
    rows = await ApiToken.select().run()
    assert len(rows) == 1
    assert token not in str(rows[0])
    assert rows[0]["token_hash"] == tokens.digest(token)
    again = await client.get("/account")
    assert token not in again.text
    assert rows[0]["prefix"] in again.text
    assert await AuditEvent.exists().where(AuditEvent.action == "api_token.create").run()


async def test_bearer_token_authenticates_the_api_without_a_session(client, signed_in, app):
    import httpx

    user = await signed_in("marketer")
    token = await issue_through_page(client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as api:
        response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert response.json() == {"id": user.id, "email": user.email, "name": "", "role": "marketer"}
        schema = await api.get("/schema", headers={"Authorization": f"Bearer {token}"})
        assert schema.status_code == 200
        assert "/api/v1/me" in schema.json()["paths"]


async def test_forged_or_revoked_tokens_get_401(client, signed_in, app):
    import httpx

    await signed_in("manager")
    token = await issue_through_page(client)
    row = await ApiToken.objects().first().run()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as api:
        for bad in ("lsn_" + "A" * 43, token[:-1] + ("B" if token[-1] != "B" else "C"), "nonsense"):
            response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401
            assert "not valid" in response.json()["detail"]
        assert (await post_form(client, f"/account/tokens/{row.id}/revoke")).status_code == 303
        response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


async def test_an_authorization_header_disables_the_session_cookie(client, signed_in):
    """A request carrying a bad token is not rescued by the session cookie (and skips CSRF)."""
    await signed_in("admin")
    response = await client.get("/api/v1/me", headers={"Authorization": "Bearer lsn_wrong"})
    assert response.status_code == 401


async def test_tokens_of_a_disabled_user_stop_working(client, make_user, app):
    import httpx

    from crm import users

    user = await make_user("liaison")
    _, token = await tokens.issue_token(user.id, "script", actor=Actor.cli())
    await users.update_user(user.id, name="", role="liaison", active=False, actor=Actor.cli())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as api:
        response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_nobody_can_revoke_another_users_token_by_guessing_its_id(client, make_user, signed_in):
    owner = await make_user("manager")
    row, _ = await tokens.issue_token(owner.id, "owner's", actor=Actor.cli())
    await signed_in("admin")
    response = await post_form(client, f"/account/tokens/{row.id}/revoke")
    assert response.status_code == 404
    assert (await ApiToken.objects().get(ApiToken.id == row.id).run()).revoked_at is None


async def test_token_needs_a_name(client, signed_in):
    await signed_in("liaison")
    response = await post_form(client, "/account/tokens", {"name": "   "})
    assert response.status_code == 422
    assert "Give the token a name" in response.text
    assert await ApiToken.count().run() == 0


async def test_tokens_open_the_json_api_only(client, signed_in, app):
    """A leaked token cannot mint more tokens, change the password or read the pages."""
    import httpx

    await signed_in("admin")
    token = await issue_through_page(client)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as api:
        page = await api.get("/account", headers={**headers, "Accept": "application/json"})
        assert page.status_code == 401
        assert "JSON API" in page.json()["detail"]
        minted = await api.post("/account/tokens", data={"name": "more"}, headers=headers, follow_redirects=False)
        assert minted.status_code in (303, 401)
        assert await ApiToken.count().run() == 1
        admin = await api.get("/admin/users", headers=headers, follow_redirects=False)
        assert admin.status_code == 303 and admin.headers["location"].startswith("/login")


async def test_wrong_scheme_and_missing_token_say_how_to_authenticate(client, signed_in, app):
    import httpx

    await signed_in("manager")
    token = await issue_through_page(client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as api:
        wrong = await api.get("/api/v1/me", headers={"Authorization": f"Token {token}"})
        assert wrong.status_code == 401 and "Bearer" in wrong.json()["detail"]
        anonymous = await api.get("/api/v1/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")


async def test_reloading_after_issuing_does_not_issue_again_nor_show_the_token_again(client, signed_in):
    await signed_in("liaison")
    token = await issue_through_page(client)
    again = await client.get("/account")
    assert token not in again.text
    assert await ApiToken.count().run() == 1


async def test_absurd_ids_are_refused_not_a_server_error(client, signed_in):
    await signed_in("admin")
    for path in ("/admin/users/99999999999", "/admin/users/0", "/admin/audit?before=99999999999999999999"):
        assert (await client.get(path)).status_code == 400, path
    assert (await post_form(client, "/account/tokens/99999999999/revoke")).status_code == 400
