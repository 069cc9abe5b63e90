"""Campaign emails on a clinician's timeline: each send and each email event."""

from __future__ import annotations

from crm.activities import TimelineEntry
from campaigns.tables import EmailEvent, Send, Suppression
from crm.tables import Clinician

SEND_TITLES = {
    "queued": "Email queued", "claimed": "Email being sent", "sending": "Email being sent", "sent": "Email sent",
    "delivered": "Email sent", "opened": "Email sent", "clicked": "Email sent", "bounced": "Email sent",
    "dropped": "Email sent", "deferred": "Email sent", "spam": "Email sent", "unsubscribed": "Email sent",
    "skipped": "Email not sent", "failed": "Email failed", "review": "Email in doubt",
}
EVENT_TITLES = {
    "delivered": "Email delivered", "open": "Email opened", "click": "Link clicked", "bounce": "Email bounced",
    "blocked": "Email soft-bounced", "dropped": "Email dropped", "deferred": "Email deferred",
    "spamreport": "Marked as spam", "unsubscribe": "Unsubscribed", "group_unsubscribe": "Unsubscribed from a group",
    "group_resubscribe": "Resubscribed to a group",
}
QUIET_EVENTS = ("processed",)
REASON_TITLES = {
    "unsubscribe": "Unsubscribed", "group_unsubscribe": "Unsubscribed from a group", "hard_bounce": "Address bounced",
    "soft_bounces": "Address suppressed after soft bounces", "spam_report": "Marked as spam",
    "dropped": "Address dropped by SendGrid", "manual": "Suppressed by hand",
}


async def entries(clinician_id: int, limit: int) -> list[TimelineEntry]:
    # What went out (or failed, or is in doubt): queued and skipped sends belong on the campaign page.
    sends = await Send.select(
        Send.id, Send.state, Send.skip_reason, Send.due_at, Send.sent_at, Send.last_error,
        Send.campaign.name.as_alias("campaign_name"),
    ).where(Send.clinician == clinician_id, Send.state.not_in(["queued", "claimed", "sending", "skipped"])).order_by(
        Send.id, ascending=False
    ).limit(limit).run()
    result = [
        TimelineEntry(
            at=row["sent_at"] or row["due_at"], kind="campaign-email",
            title=SEND_TITLES.get(row["state"], row["state"]),
            detail=" · ".join(
                part for part in (
                    row["campaign_name"], row["last_error"] if row["state"] in ("failed", "review") else "",
                ) if part
            ),
            by="Campaign",
        )
        for row in sends
    ]
    events = await EmailEvent.select(
        EmailEvent.event, EmailEvent.occurred_at, EmailEvent.reason,
        EmailEvent.send.campaign.name.as_alias("campaign_name"),
    ).where(EmailEvent.clinician == clinician_id, EmailEvent.event.not_in(list(QUIET_EVENTS))).order_by(
        EmailEvent.occurred_at, ascending=False
    ).limit(limit).run()
    result += [
        TimelineEntry(
            at=row["occurred_at"], kind="email-event", title=EVENT_TITLES.get(row["event"], row["event"]),
            detail=" · ".join(p for p in (row["campaign_name"], row["reason"]) if p), by="SendGrid",
        )
        for row in events
    ]
    email = await Clinician.select(Clinician.email).where(Clinician.id == clinician_id).first().run()
    if email and email["email"]:
        for row in await Suppression.select().where(Suppression.email == email["email"]).run():
            result.append(TimelineEntry(
                at=row["created_at"], kind="suppression", title=REASON_TITLES.get(row["reason"], "Suppressed"),
                detail=f"no more outreach email to {row['email']}" + (
                    f" ({row['scope']})" if row["scope"] != "all" else ""),
                by={"link": "Unsubscribe link", "one_click": "Unsubscribe link", "webhook": "SendGrid"}.get(
                    row["source"], "Liaison"),
            ))
    return result
