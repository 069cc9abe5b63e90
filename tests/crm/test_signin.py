"""Signing in and out: credentials, disabled users, throttling, session rotation and timeouts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from crm.tables import AuditEvent, LoginFailure
from tests.helpers import TEST_PASSWORD, fetch_csrf, login, post_form


async def test_login_page_has_a_csrf_field_and_no_session(client, db):
    response = await client.get("/login")
    assert response.status_code == 200
    assert 'name="_csrf_token"' in response.text
    assert "liaison_session" not in response.headers.get("set-cookie", "")


async def test_anonymous_home_redirects_to_login_with_next(client, db):
    response = await client.get("/admin/users?after=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fadmin%2Fusers%3Fafter%3Dx"


async def test_login_with_right_password_signs_in_and_goes_to_next(client, make_user):
    user = await make_user("manager", email="Maria.O'Neil@Example.org", name="Maria O'Neil")
    response = await login(client, "  MARIA.O'NEIL@example.org ", next_url="/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    home = await client.get("/")
    assert home.status_code == 200
    assert "Maria O&#39;Neil" in home.text
    events = await AuditEvent.select().where(AuditEvent.action == "user.login").run()
    assert [e["actor"] for e in events] == [user.id]


async def test_wrong_password_and_unknown_user_get_the_same_401(client, make_user):
    await make_user("liaison", email="lee@example.org")
    wrong = await login(client, "lee@example.org", "not-the-password!")
    unknown = await login(client, "nobody@example.org", "not-the-password!")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "The email or password is not right." in response.text
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_disabled_user_is_refused_with_a_clear_message(client, make_user):
    await make_user("liaison", email="gone@example.org", active=False)
    response = await login(client, "gone@example.org")
    assert response.status_code == 403
    assert "This account is disabled" in response.text


async def test_disabling_a_user_ends_their_session_at_once(client, signed_in):
    from crm import users
    from crm.audit import Actor

    user = await signed_in("liaison")
    assert (await client.get("/", follow_redirects=False)).status_code == 200
    await users.update_user(user.id, name="", role="liaison", active=False, actor=Actor.cli())
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_open_redirect_through_next_is_refused(client, make_user):
    user = await make_user("liaison")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await login(client, user.email, next_url=target)
        assert response.headers["location"] == "/", target


async def test_account_is_throttled_after_repeated_failures(client, make_user, app):
    user = await make_user("liaison")
    limit = app.state.throttle.per_account
    for _ in range(limit):
        assert (await login(client, user.email, "wrong-password-xx")).status_code == 401
    # Even the right password is refused while the account is throttled.
    blocked = await login(client, user.email)
    assert blocked.status_code == 429
    assert "Too many failed sign-in attempts" in blocked.text
    assert 0 < int(blocked.headers["retry-after"]) <= app.state.throttle.window_minutes * 60

    # Once the failures are older than the window, the right password works again.
    old = datetime.now(timezone.utc) - timedelta(minutes=app.state.throttle.window_minutes + 1)
    await LoginFailure.update({LoginFailure.at: old}, force=True).run()
    assert (await login(client, user.email)).status_code == 303


async def test_client_address_is_throttled_across_accounts(client, make_user, app):
    user = await make_user("liaison")
    for n in range(app.state.throttle.per_address):
        await login(client, f"guess{n}@example.org", "wrong-password-xx")
    response = await login(client, user.email)
    assert response.status_code == 429


async def test_successful_login_clears_the_account_failures(client, make_user):
    user = await make_user("liaison")
    for _ in range(3):
        await login(client, user.email, "wrong-password-xx")
    assert (await login(client, user.email)).status_code == 303
    assert await LoginFailure.count().where(LoginFailure.account == user.email).run() == 0


async def test_session_id_is_replaced_at_login(client, make_user):
    """A session id planted before sign-in (session fixation) is not the one that gets signed in."""
    user = await make_user("liaison")
    planted = "a" * 64
    client.cookies.set("liaison_session", planted, domain="liaison.test")
    response = await login(client, user.email)
    assert response.status_code == 303
    new_id = response.cookies.get("liaison_session")
    assert new_id and new_id != planted
    client.cookies.clear()
    client.cookies.set("liaison_session", planted, domain="liaison.test")
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_logout_destroys_the_session_on_the_server(client, signed_in):
    await signed_in("liaison")
    session_id = client.cookies.get("liaison_session")
    response = await post_form(client, "/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    client.cookies.clear()
    client.cookies.set("liaison_session", session_id, domain="liaison.test")
    assert (await client.get("/", follow_redirects=False)).status_code == 303
    assert await AuditEvent.exists().where(AuditEvent.action == "user.logout").run()


async def test_idle_session_expires(client, signed_in, clock, settings):
    await signed_in("liaison")
    clock.advance(settings.session_idle_minutes * 60 - 5)
    assert (await client.get("/", follow_redirects=False)).status_code == 200
    clock.advance(settings.session_idle_minutes * 60 + 1)
    response = await client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith("&expired=1")
    page = await client.get(response.headers["location"])
    assert "Your session expired" in page.text


async def test_active_session_still_ends_at_the_absolute_limit(client, signed_in, clock, settings):
    await signed_in("liaison")
    step = settings.session_idle_minutes * 60 // 2
    elapsed = 0
    while elapsed + step < settings.session_absolute_hours * 3600:
        clock.advance(step)
        elapsed += step
        assert (await client.get("/", follow_redirects=False)).status_code == 200
    clock.advance(step)
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_login_without_csrf_token_is_refused(client, make_user):
    user = await make_user("liaison")
    await fetch_csrf(client)
    response = await client.post(
        "/login", data={"email": user.email, "password": TEST_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_forged_csrf_token_is_refused(client, signed_in):
    await signed_in("liaison")
    forged = "0" * 64 + "f" * 64
    response = await client.post("/logout", data={"_csrf_token": forged}, follow_redirects=False)
    assert response.status_code == 403
    assert "form" in response.text.lower()
    assert (await client.get("/", follow_redirects=False)).status_code == 200


async def test_htmx_requests_pass_csrf_in_a_header(client, signed_in):
    await signed_in("liaison")
    token = client.cookies.get("liaison_csrf")
    response = await client.post(
        "/logout", headers={"x-csrftoken": token, "hx-request": "true"}, follow_redirects=False
    )
    assert response.status_code == 303


async def test_parallel_guesses_cannot_slip_under_the_throttle(client, make_user, app):
    """Each attempt counts before the slow password check, so a burst gets exactly the limit."""
    import asyncio

    user = await make_user("liaison")
    token = await fetch_csrf(client)
    form = {"email": user.email, "password": "wrong-password-xx", "_csrf_token": token}
    responses = await asyncio.gather(
        *(client.post("/login", data=form, follow_redirects=False) for _ in range(25))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(401) == app.state.throttle.per_account
    assert codes.count(429) == 25 - app.state.throttle.per_account


async def test_nul_and_control_characters_in_the_email_are_not_a_server_error(client, make_user):
    user = await make_user("liaison")
    assert (await login(client, user.email + "\x00")).status_code == 303
    assert (await login(client, "x\x00\x07@example.org", "whatever-password")).status_code in (401, 303)


async def test_changing_your_password_ends_your_other_sessions(app, client, signed_in):
    import httpx

    user = await signed_in("liaison")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as other:
        assert (await login(other, user.email)).status_code == 303
        assert (await other.get("/", follow_redirects=False)).status_code == 200
        response = await post_form(client, "/account/password", {
            "current_password": TEST_PASSWORD, "password": "a different long one",
            "password_confirm": "a different long one"})
        assert response.status_code == 303
        assert (await other.get("/", follow_redirects=False)).status_code == 303
    # The session that made the change carries on.
    assert (await client.get("/", follow_redirects=False)).status_code == 200


async def test_an_admin_password_reset_ends_sessions_and_revokes_tokens(app, client, make_user, signed_in):
    import httpx

    from crm import tokens
    from crm.audit import Actor

    victim = await make_user("marketer")
    _, token = await tokens.issue_token(victim.id, "script", actor=Actor.cli())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as theirs:
        assert (await login(theirs, victim.email)).status_code == 303
        await signed_in("admin")
        response = await post_form(client, f"/admin/users/{victim.id}", {
            "name": "", "role": "marketer", "active": "on", "password": "reset by the admin"})
        assert response.status_code == 303
        assert (await theirs.get("/", follow_redirects=False)).status_code == 303
        api = await theirs.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 401
