"""Unsubscribe by signed link: the confirmation page and the one-click POST (RFC 8058).

Both work without login. The token names one send; unsubscribing suppresses that send's address
everywhere, marks the send, and skips every send to the address not yet dispatched. Repeating it
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from campaigns import suppressions
from campaigns.sending import UNSUBSCRIBE_PURPOSE
from campaigns.tables import Send, Suppression
from campaigns.tokens import TokenError, read_token
from crm.db import atomic

MAX_ID = 2**31 - 1  # ids are SERIAL columns: a larger id names no send


@dataclass(frozen=True)
class Subscription:
    send_id: int
    email: str
    campaign_name: str
    unsubscribed: bool


async def lookup(secret_key: str, token: str) -> Subscription:
    """The address a token speaks for; TokenError for a forged or unknown token."""
    (send_id,) = read_token(secret_key, UNSUBSCRIBE_PURPOSE, token)
    if not 0 < send_id <= MAX_ID:
        raise TokenError("this link is no longer valid")
    row = await Send.select(
        Send.id, Send.email, Send.clinician.email.as_alias("clinician_email"),
        Send.campaign.name.as_alias("campaign_name"),
    ).where(Send.id == send_id).first().run()
    if row is None:
        raise TokenError("this link is no longer valid")
    # The address the email went to; sends queued by a sequence carry none: their clinician's.
    email = suppressions.normalise(row["email"] or row["clinician_email"] or "")
    if not email:
        raise TokenError("this link is no longer valid")
    done = await Suppression.exists().where(Suppression.email == email, Suppression.scope == suppressions.ALL).run()
    return Subscription(send_id, email, row["campaign_name"] or "", done)


async def unsubscribe(secret_key: str, token: str, *, now: datetime, source: str) -> Subscription:
    subscription = await lookup(secret_key, token)
    async with atomic():
        await suppressions.add(
            subscription.email, reason="unsubscribe", source=source, now=now,
            detail=f"send {subscription.send_id} ({subscription.campaign_name})",
        )
        await Send.update({Send.state: "unsubscribed", Send.updated_at: now}).where(
            Send.id == subscription.send_id,
            Send.state.is_in(["sending", "sent", "delivered", "opened", "clicked", "deferred"]),
        ).run()
    return Subscription(subscription.send_id, subscription.email, subscription.campaign_name, True)


def mask(email: str) -> str:
    """j•••@example.org: enough for the reader to recognise the address, not to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "your address"

