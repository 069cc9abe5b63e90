"""Suppressions: addresses that must not be mailed, everywhere or for one unsubscribe group.

Added at once by hard bounces, spam reports and unsubscribes (from the webhook or the unsubscribe
link), by the soft-bounce threshold, or by hand. Checked when sends are created and again when they
are dispatched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from piccolo.querystring import QueryString

from campaigns.tables import Send, Suppression

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
    email = normalise(email)
    if not email:
        return False
    inserted = await Suppression._meta.db.run_querystring(
        QueryString(
            "INSERT INTO suppression (email, scope, reason, source, detail, created_by, created_at) "
            "VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT (email, scope) DO NOTHING RETURNING id",
            email, scope, reason, source, detail[:2000], created_by, now,
        )
    )
    if scope == ALL:
        await Send.update({Send.state: "skipped", Send.skip_reason: reason, Send.updated_at: now}).where(
            Send.email == email, Send.state == "queued"
        ).run()
    return bool(inserted)


async def remove(email: str, scope: str = ALL) -> int:
    email = normalise(email)
    rows = await Suppression.delete().where(Suppression.email == email, Suppression.scope == scope).returning(Suppression.id).run()
    return len(rows)
