"""Administering users: create, edit role and status, passwords; every write audited."""

from __future__ import annotations

import pytest

from crm import users
from crm.audit import Actor
from crm.passwords import verify_password
from crm.tables import AuditEvent, User
from tests.helpers import login, post_form


async def test_admin_creates_a_user_and_the_audit_names_who(client, signed_in):
    admin = await signed_in("admin")
    response = await post_form(
        client, "/admin/users/new",
        {"email": " Dana.Van-Houten@Example.ORG ", "name": "Dana Van Houten-Sauter",
         "role": "liaison", "password": "correct horse battery"},
    )
    assert response.status_code == 303
    user = await User.objects().get(User.email == "dana.van-houten@example.org").run()
    assert (user.role, user.name, user.active) == ("liaison", "Dana Van Houten-Sauter", True)
    assert user.password_hash.startswith("$argon2id$")
    event = await AuditEvent.objects().output(load_json=True).get(
        (AuditEvent.action == "user.create") & (AuditEvent.object_id == str(user.id))
    ).run()
    assert event.actor == admin.id and event.actor_label == admin.email
    assert event.after["email"] == "dana.van-houten@example.org"
    assert "password_hash" not in event.after and "$argon2" not in str(event.after)
    assert event.client_address == "203.0.113.7"


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"email": "not-an-email"}, "email", "Enter an email address"),
        ({"password": "short"}, "password", "at least 12 characters"),
        ({"role": "superuser"}, "role", "unknown role"),
    ],
)
async def test_bad_values_are_refused_with_the_field_named(client, signed_in, values, field, message):
    await signed_in("admin")
    form = {"email": "new@example.org", "name": "", "role": "marketer", "password": "long enough pass"}
    form.update(values)
    response = await post_form(client, "/admin/users/new", form)
    assert response.status_code == 422
    assert message in response.text
    assert await User.count().run() == 1  # only the admin


async def test_duplicate_email_is_refused(client, signed_in, make_user):
    await make_user("liaison", email="taken@example.org")
    await signed_in("admin")
    response = await post_form(
        client, "/admin/users/new",
        {"email": "TAKEN@example.org", "role": "liaison", "password": "long enough pass"},
    )
    assert response.status_code == 422
    assert "already exists" in response.text


async def test_admin_changes_role_and_disables_with_before_and_after_audited(client, signed_in, make_user):
    target = await make_user("liaison", name="Pat")
    await signed_in("admin")
    response = await post_form(client, f"/admin/users/{target.id}", {"name": "Pat Quinn", "role": "manager"})
    assert response.status_code == 303
    updated = await users.get_user(target.id)
    assert (updated.name, updated.role, updated.active) == ("Pat Quinn", "manager", False)
    event = await AuditEvent.objects().output(load_json=True).get(AuditEvent.action == "user.update").run()
    assert event.before["role"] == "liaison" and event.after["role"] == "manager"
    assert event.before["active"] is True and event.after["active"] is False


async def test_admin_sets_a_new_password_for_a_user(client, signed_in, make_user):
    target = await make_user("liaison")
    await signed_in("admin")
    await post_form(client, f"/admin/users/{target.id}",
                    {"name": "", "role": "liaison", "active": "on", "password": "brand new password"})
    user = await users.get_user(target.id)
    assert await verify_password(user.password_hash, "brand new password")
    assert await AuditEvent.exists().where(AuditEvent.action == "user.password").run()


async def test_admin_cannot_remove_their_own_admin_access(client, signed_in):
    admin = await signed_in("admin")
    response = await post_form(client, f"/admin/users/{admin.id}", {"name": "", "role": "liaison", "active": "on"})
    assert response.status_code == 422
    assert "cannot remove your own administrator access" in response.text
    assert (await users.get_user(admin.id)).role == "admin"


async def test_editing_an_unknown_user_is_404(client, signed_in):
    await signed_in("admin")
    assert (await client.get("/admin/users/999999")).status_code == 404


async def test_user_changes_own_password_and_old_one_stops_working(client, signed_in, app):
    user = await signed_in("liaison")
    session_before = client.cookies.get("liaison_session")
    response = await post_form(client, "/account/password", {
        "current_password": "a-long-test-password", "password": "another long password",
        "password_confirm": "another long password"})
    assert response.status_code == 303
    assert client.cookies.get("liaison_session") != session_before
    client.cookies.clear()
    assert (await login(client, user.email)).status_code == 401
    assert (await login(client, user.email, "another long password")).status_code == 303


async def test_password_change_needs_the_current_password(client, signed_in):
    await signed_in("liaison")
    response = await post_form(client, "/account/password", {
        "current_password": "wrong wrong wrong", "password": "another long password",
        "password_confirm": "another long password"})
    assert response.status_code == 422
    assert "not your current password" in response.text


async def test_users_list_pages_by_email(client, signed_in, make_user):
    await signed_in("admin", email="a-admin@example.org")
    for n in range(users.PAGE_SIZE + 3):
        await make_user("liaison", email=f"user{n:03d}@example.org")
    first = await client.get("/admin/users")
    assert first.text.count('href="/admin/users/') - first.text.count('href="/admin/users/new"') == users.PAGE_SIZE
    assert "Next page" in first.text
    second = await client.get("/admin/users?after=user048%40example.org")
    assert "user049@example.org" in second.text and "user048@example.org" not in second.text


async def test_create_user_service_refuses_a_duplicate_inside_its_transaction(db):
    await users.create_user("one@example.org", role="liaison", password="long enough pass", actor=Actor.cli())
    with pytest.raises(users.UserError) as error:
        await users.create_user("ONE@example.org", role="admin", password="long enough pass", actor=Actor.cli())
    assert error.value.field == "email"
    assert await AuditEvent.count().where(AuditEvent.action == "user.create").run() == 1


async def test_audit_log_page_lists_events_newest_first(client, signed_in, make_user):
    await make_user("liaison", email="first@example.org")
    await signed_in("admin")
    page = (await client.get("/admin/audit")).text
    assert page.index("user.login") < page.index("user.create")
    assert "first@example.org" in page


async def test_a_refused_edit_changes_nothing(client, signed_in, make_user):
    target = await make_user("liaison", name="Kept")
    await signed_in("admin")
    response = await post_form(client, f"/admin/users/{target.id}",
                               {"name": "Renamed", "role": "manager", "active": "on", "password": "short"})
    assert response.status_code == 422
    user = await users.get_user(target.id)
    assert (user.name, user.role) == ("Kept", "liaison")
    assert not await AuditEvent.exists().where(AuditEvent.action == "user.update").run()


async def test_control_characters_are_removed_from_names_and_refused_in_emails(client, signed_in):
    await signed_in("admin")
    refused = await post_form(client, "/admin/users/new", {
        "email": "nul\x00@example.org", "name": "", "role": "liaison", "password": "long enough pass"})
    assert refused.status_code == 422 and "control characters" in refused.text
    response = await post_form(client, "/admin/users/new", {
        "email": "ana@example.org", "name": "Ana\x00 D'Souza\x07", "role": "liaison",
        "password": "long enough pass"})
    assert response.status_code == 303
    user = await User.objects().get(User.email == "ana@example.org").run()
    assert user.name == "Ana D'Souza"
    assert (await client.get("/admin/users?after=a%00")).status_code == 200
