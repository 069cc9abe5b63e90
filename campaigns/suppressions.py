"""Suppressions: addresses that must not be mailed, everywhere or for one unsubscribe group.

Added at once by hard bounces, spam reports and unsubscribes (from the webhook or the unsubscribe
link), by the soft-bounce threshold, or by hand. Checked when sends are created and again when they
are dispatched.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Iterable

from piccolo.querystring import QueryString

from campaigns.tables import Send, Suppression
from crm import audit
from crm.audit import Actor
from crm.db import atomic
from crm.text import single_line

REASONS = {
    "unsubscribe": "Unsubscribed",
    "group_unsubscribe": "Unsubscribed from a group",
    "hard_bounce": "Hard bounce",
    "soft_bounces": "Repeated soft bounces",
    "spam_report": "Marked as spam",
    "dropped": "Dropped by the provider",
    "manual": "Added by hand",
}
ALL = "all"

# Sends that have not left Liaison yet and that a new suppression must stop.
UNSENT_STATES = ("queued", "claimed")


_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"\\]{1,64}@[^\s@<>()\[\],;:\"\\]+\.[^\s@<>()\[\],;:\"\\]+")


def checked_address(email: str) -> str:
    """A normalised address to suppress by hand; ValueError names what is wrong."""
    address = normalise(email)
    if not address:
        raise ValueError("enter the email address to suppress")
    if len(address) > 320 or not _ADDRESS.fullmatch(address) or not address.isprintable():
        raise ValueError(f"{address[:80]!r} is not an email address")
    return address


def normalise(email: str) -> str:
    return (email or "").strip().lower()


async def suppressed(emails: Iterable[str], scope: str = ALL) -> set[str]:
    """Which of ``emails`` may not be mailed in ``scope`` (a global suppression covers every scope)."""
    wanted = sorted({normalise(e) for e in emails if e})
    if not wanted:
        return set()
    scopes = [ALL] if scope == ALL else [ALL, scope]
    found: set[str] = set()
    for start in range(0, len(wanted), 900):
        rows = await (
            Suppression.select(Suppression.email)
            .where(Suppression.email.is_in(wanted[start : start + 900]), Suppression.scope.is_in(scopes))
            .run()
        )
        found.update(row["email"] for row in rows)
    return found


async def add(
    email: str, *, reason: str, source: str, now: datetime, scope: str = ALL, detail: str = "",
    created_by: int | None = None,
) -> bool:
    """Suppress ``email`` (idempotent) and skip its sends that have not been dispatched; True when
    the suppression is new. Run inside a transaction."""
    return bool(await add_many([(email, scope, reason, detail)], source=source, now=now, created_by=created_by))


async def add_many(
    entries: Iterable[tuple[str, str, str, str]], *, source: str, now: datetime, created_by: int | None = None
) -> int:
    """Suppress each (email, scope, reason, detail) (idempotent: the first reason stays) and skip
    the queued sends of the addresses suppressed everywhere; returns how many suppressions are new.
    Run inside a transaction."""
    rows: dict[tuple[str, str], tuple] = {}
    for email, scope, reason, detail in entries:
        email = normalise(email)
        if email:
            rows.setdefault((email, scope), (email, scope, reason, source, (detail or "")[:2000], created_by, now))
    values = list(rows.values())
    added = 0
    for start in range(0, len(values), 400):
        chunk = values[start : start + 400]
        inserted = await Suppression._meta.db.run_querystring(
            QueryString(
                "INSERT INTO suppression (email, scope, reason, source, detail, created_by, created_at) VALUES "
                + ", ".join("({}, {}, {}, {}, {}, {}, {})" for _ in chunk)
                + " ON CONFLICT (email, scope) DO NOTHING RETURNING id",
                *[value for row in chunk for value in row],
            )
        )
        added += len(inserted)
    by_reason: dict[str, list[str]] = {}
    for email, scope, reason, *_ in values:
        if scope == ALL:
            by_reason.setdefault(reason, []).append(email)
    for reason, emails in by_reason.items():
        await skip_queued(emails, reason, now)
    return added


async def skip_queued(emails: list[str], reason: str, now: datetime) -> None:
    """Skip the queued sends to ``emails`` (normalised): by the send's address, or, for sends queued
    without one (a sequence's), by their clinician's."""
    for start in range(0, len(emails), 400):
        chunk = emails[start : start + 400]
        marks = ", ".join("{}" for _ in chunk)
        await Send._meta.db.run_querystring(
            QueryString(
                "UPDATE send SET state = 'skipped', skip_reason = {}, updated_at = {} WHERE state = 'queued' "
                f"AND (email IN ({marks}) OR (email = '' AND clinician IN "
                f"(SELECT id FROM clinician WHERE email IN ({marks}))))",
                reason, now, *chunk, *chunk,
            )
        )


async def remove(email: str, scope: str = ALL) -> int:
    email = normalise(email)
    rows = await Suppression.delete().where(Suppression.email == email, Suppression.scope == scope).returning(Suppression.id).run()
    return len(rows)


async def add_by_hand(email: str, *, detail: str, source: str, actor: Actor, now: datetime) -> Suppression:
    """A suppression added by a person (page or API), with the audit trail; ValueError for a bad address."""
    address = checked_address(email)
    detail = single_line(detail)[:500]
    async with atomic():
        await add(address, reason="manual", source=source, now=now, detail=detail, created_by=actor.user_id)
        row = await Suppression.objects().where(Suppression.email == address, Suppression.scope == ALL).first().run()
        await audit.record("suppression.add", actor=actor, object_type="suppression", object_id=row.id,
                           before=None, after={"email": address, "detail": detail})
    return row


async def remove_by_hand(suppression_id: int, *, actor: Actor) -> bool:
    """Allow an address again; False when there is no such suppression."""
    async with atomic():
        row = await Suppression.objects().where(Suppression.id == suppression_id).first().run()
        if row is None:
            return False
        await remove(row.email, row.scope)
        await audit.record("suppression.remove", actor=actor, object_type="suppression", object_id=suppression_id,
                           before={"email": row.email, "reason": row.reason}, after=None)
    return True
