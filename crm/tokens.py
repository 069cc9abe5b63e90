"""Per-user API tokens: shown once when issued, kept only as a SHA-256 digest.

Tokens carry 256 bits of randomness, so a fast digest is enough (unlike passwords).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from crm import audit
from crm.audit import Actor
from crm.db import atomic
from crm.tables import ApiToken, User
from crm.text import single_line

TOKEN_PREFIX = "lsn_"
# last_used_at is refreshed at most this often, so API calls do not each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def issue_token(user_id: int, name: str, *, actor: Actor) -> tuple[ApiToken, str]:
    """Create a token for ``user_id``; returns the row and the token text (shown once)."""
    name = single_line(name or "")
    if not name or len(name) > 100:
        raise TokenError("Give the token a name of 1 to 100 characters, such as 'intake system'.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(owner=user_id, name=name, prefix=token[:10], token_hash=digest(token))
    async with atomic():
        await row.save().run()
        await audit.record(
            "api_token.create",
            actor=actor,
            object_type="api_token",
            object_id=row.id,
            after={"user_id": user_id, "name": name, "prefix": row.prefix},
        )
    return row, token


async def list_tokens(user_id: int) -> list[ApiToken]:
    return (
        await ApiToken.objects()
        .where(ApiToken.owner == user_id)
        .order_by(ApiToken.created_at, ascending=False)
        .run()
    )


async def revoke_token(user_id: int, token_id: int, *, actor: Actor) -> bool:
    """Revoke one of ``user_id``'s own tokens; False when no such token of theirs is active."""
    now = datetime.now(timezone.utc)
    async with atomic():
        revoked = (
            await ApiToken.update({ApiToken.revoked_at: now})
            .where(
                (ApiToken.id == token_id)
                & (ApiToken.owner == user_id)
                & ApiToken.revoked_at.is_null()
            )
            .returning(ApiToken.id, ApiToken.name)
            .run()
        )
        if not revoked:
            return False
        await audit.record(
            "api_token.revoke",
            actor=actor,
            object_type="api_token",
            object_id=token_id,
            before={"name": revoked[0]["name"]},
        )
    return True


async def user_for_token(token: str) -> User | None:
    """The active user owning this unrevoked token, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = (
        await ApiToken.select(ApiToken.id, ApiToken.owner, ApiToken.last_used_at)
        .where((ApiToken.token_hash == digest(token)) & ApiToken.revoked_at.is_null())
        .first()
        .run()
    )
    if row is None:
        return None
    user = await User.objects().where((User.id == row["owner"]) & (User.active == True)).first().run()  # noqa: E712
    if user is None:
        return None
    now = datetime.now(timezone.utc)
    if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_RESOLUTION:
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == row["id"]).run()
    return user
