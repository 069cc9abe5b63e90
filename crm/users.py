"""Users: creation, editing and passwords, each write audited in its own transaction."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from crm.errors import FieldError
from crm import audit
from crm.audit import Actor
from crm.db import atomic
from crm.passwords import hash_password, password_problem, verify_password
from crm.roles import Role, parse_role
from crm.tables import ApiToken, User
from crm.text import single_line

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
PAGE_SIZE = 50


class UserError(FieldError):
    """A value for a user was refused; ``field`` names the form field, the message says why."""


def normalise_email(raw: str) -> str:
    email = " ".join((raw or "").split()).lower()
    if email != single_line(email):
        raise UserError("email", "The email holds control characters or bytes that are not text.")
    if len(email) > 320 or not EMAIL_PATTERN.match(email):
        raise UserError("email", "Enter an email address such as name@example.org.")
    return email


def _role(value: str | Role) -> Role:
    try:
        return value if isinstance(value, Role) else parse_role(value)
    except ValueError as error:
        raise UserError("role", str(error)) from None


def _name(value: str) -> str:
    name = single_line(value or "")
    if len(name) > 200:
        raise UserError("name", "Use at most 200 characters.")
    return name


def snapshot(user: User) -> dict[str, Any]:
    """The audited view of a user: never the password hash."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": str(Role(user.role).value),
        "active": bool(user.active),
    }


async def create_user(
    email: str, *, role: str | Role, password: str, name: str = "", actor: Actor
) -> User:
    email = normalise_email(email)
    role = _role(role)
    name = _name(name)
    if problem := password_problem(password):
        raise UserError("password", problem)
    password_hash = await hash_password(password)
    async with atomic():
        if await User.exists().where(User.email == email).run():
            raise UserError("email", f"A user with the email {email} already exists.")
        user = User(email=email, name=name, role=role.value, password_hash=password_hash)
        await user.save().run()
        await audit.record(
            "user.create", actor=actor, object_type="user", object_id=user.id, after=snapshot(user)
        )
    return user


async def get_user(user_id: int) -> User | None:
    return await User.objects().where(User.id == user_id).first().run()


async def get_user_by_email(email: str) -> User | None:
    return await User.objects().where(User.email == email.strip().lower()).first().run()


async def list_users(after_email: str | None = None, limit: int = PAGE_SIZE) -> list[User]:
    """A page of users ordered by email, starting after ``after_email`` (key-based pagination)."""
    query = User.objects().order_by(User.email).limit(limit)
    if after_email:
        query = query.where(User.email > after_email)
    return await query.run()


async def update_user(
    user_id: int,
    *,
    name: str,
    role: str | Role,
    active: bool,
    actor: Actor,
    new_password: str | None = None,
) -> User:
    """Change a user's name, role and status, and optionally set a new password (which ends
    their sessions and revokes their API tokens), all in one transaction."""
    role = _role(role)
    name = _name(name)
    password_hash = None
    if new_password:
        if problem := password_problem(new_password):
            raise UserError("password", problem)
        password_hash = await hash_password(new_password)
    async with atomic():
        user = await get_user(user_id)
        if user is None:
            raise UserError("id", "No such user.")
        if user.id == actor.user_id and (not active or role is not Role.admin):
            raise UserError("role", "You cannot remove your own administrator access.")
        before = snapshot(user)
        user.name, user.role, user.active = name, role.value, active
        await user.save([User.name, User.role, User.active]).run()
        await audit.record(
            "user.update",
            actor=actor,
            object_type="user",
            object_id=user.id,
            before=before,
            after=snapshot(user),
        )
        if password_hash:
            await _store_password(user_id, password_hash, actor=actor, revoke_tokens=True)
    return user


async def set_password(
    user_id: int, new_password: str, *, actor: Actor, revoke_tokens: bool = False
) -> None:
    """A new password ends the user's other sessions; ``revoke_tokens`` also ends their API
    tokens (an administrator's reset, when the account may have been taken over)."""
    if problem := password_problem(new_password):
        raise UserError("password", problem)
    password_hash = await hash_password(new_password)
    async with atomic():
        await _store_password(user_id, password_hash, actor=actor, revoke_tokens=revoke_tokens)


async def _store_password(user_id: int, password_hash: str, *, actor: Actor, revoke_tokens: bool) -> None:
    now = _now()
    updated = (
        await User.update({User.password_hash: password_hash, User.password_changed_at: now})
        .where(User.id == user_id)
        .returning(User.id)
        .run()
    )
    if not updated:
        raise UserError("id", "No such user.")
    revoked = []
    if revoke_tokens:
        revoked = (
            await ApiToken.update({ApiToken.revoked_at: now})
            .where((ApiToken.owner == user_id) & ApiToken.revoked_at.is_null())
            .returning(ApiToken.id)
            .run()
        )
    await audit.record(
        "user.password", actor=actor, object_type="user", object_id=user_id,
        after={"api_tokens_revoked": len(revoked)} if revoke_tokens else None,
    )


async def change_own_password(user: User, current: str, new: str, *, actor: Actor) -> None:
    if not await verify_password(user.password_hash, current):
        raise UserError("current_password", "That is not your current password.")
    if current == new:
        raise UserError("password", "Choose a password different from the current one.")
    await set_password(user.id, new, actor=actor)


def _now() -> datetime:
    return datetime.now(timezone.utc)
