"""Signing in: password check with throttling per account and per client address."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from crm import audit
from crm.audit import Actor
from crm.db import atomic
from crm.passwords import hash_password, needs_rehash, verify_password
from crm.tables import LoginFailure, User
from crm.text import single_line

Outcome = Literal["ok", "bad_credentials", "disabled", "throttled"]


@dataclass(frozen=True)
class ThrottlePolicy:
    """At most ``per_account`` failures for one email, and ``per_address`` from one client
    address, within ``window`` minutes; beyond that, sign-in is refused until the window moves."""

    per_account: int = 5
    per_address: int = 20
    window_minutes: int = 15

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)


@dataclass(frozen=True)
class SignInResult:
    outcome: Outcome
    user: User | None = None
    retry_after_seconds: int = 0


async def _blocked_until(column, key: str, limit: int, since: datetime) -> datetime | None:
    rows = (
        await LoginFailure.select(LoginFailure.at)
        .where((column == key) & (LoginFailure.at > since))
        .order_by(LoginFailure.at, ascending=False)
        .limit(limit)
        .run()
    )
    if len(rows) < limit:
        return None
    # Blocked until the oldest of the last `limit` failures leaves the window.
    return rows[-1]["at"]


async def retry_after(
    account: str, client_address: str, policy: ThrottlePolicy, now: datetime
) -> int:
    """Seconds until this account and address may try again; 0 when they may now."""
    since = now - policy.window
    waits = []
    for column, key, limit in (
        (LoginFailure.account, account, policy.per_account),
        (LoginFailure.client_address, client_address, policy.per_address),
    ):
        oldest = await _blocked_until(column, key, limit, since)
        if oldest is not None:
            waits.append((oldest + policy.window - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else 0


async def _serialise(account: str, client_address: str) -> None:
    """Make the count-and-record below atomic per account and per address. SQLite's IMMEDIATE
    transaction already is; on PostgreSQL two transaction-scoped advisory locks do it."""
    if LoginFailure._meta.db.engine_type == "postgres":
        for key in (f"login-account:{account}", f"login-address:{client_address}"):
            await LoginFailure.raw("SELECT pg_advisory_xact_lock(hashtext({}))", key).run()


async def sign_in(
    email: str,
    password: str,
    *,
    client_address: str,
    policy: ThrottlePolicy,
    now: datetime | None = None,
) -> SignInResult:
    """Check a password, counting the attempt as a failure *before* the slow check, so that
    guesses sent in parallel cannot all slip under the limit; a right password removes it."""
    now = now or datetime.now(timezone.utc)
    account = single_line(email or "").lower()[:320]
    client_address = (client_address or "unknown")[:64]
    async with atomic():
        await _serialise(account, client_address)
        wait = await retry_after(account, client_address, policy, now)
        if wait:
            return SignInResult("throttled", retry_after_seconds=wait)
        await LoginFailure.delete().where(LoginFailure.at < now - policy.window).run()
        attempt = LoginFailure(at=now, account=account, client_address=client_address)
        await attempt.save().run()

    user = await User.objects().where(User.email == account).first().run()
    if not await verify_password(user.password_hash if user else None, password):
        return SignInResult("bad_credentials")
    if not user.active:
        await LoginFailure.delete().where(LoginFailure.id == attempt.id).run()
        return SignInResult("disabled")

    new_hash = await hash_password(password) if needs_rehash(user.password_hash) else None
    async with atomic():
        await LoginFailure.delete().where(LoginFailure.account == account).run()
        values = {User.last_login_at: now}
        if new_hash:
            values[User.password_hash] = new_hash
        await User.update(values).where(User.id == user.id).run()
        await audit.record(
            "user.login",
            actor=Actor.for_user(user, client_address),
            object_type="user",
            object_id=user.id,
        )
    return SignInResult("ok", user=user)
