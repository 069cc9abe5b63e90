"""Campaign emails on a clinician's timeline: each send and each email event."""

from __future__ import annotations

from crm.activities import TimelineEntry
from campaigns.tables import EmailEvent, Send

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


async def entries(clinician_id: int, limit: int) -> list[TimelineEntry]:
    sends = await Send.select(
        Send.id, Send.state, Send.skip_reason, Send.due_at, Send.sent_at, Send.last_error,
        Send.campaign.name.as_alias("campaign_name"), Send.step.subject.as_alias("subject"),
    ).where(Send.clinician == clinician_id).order_by(Send.id, ascending=False).limit(limit).run()
    result = [
        TimelineEntry(
            at=row["sent_at"] or row["due_at"], kind="campaign-email",
            title=SEND_TITLES.get(row["state"], row["state"]),
            detail=" · ".join(
                part for part in (
                    row["campaign_name"], row["subject"],
                    f"skipped: {row['skip_reason'].replace('_', ' ')}" if row["state"] == "skipped" else "",
                    row["last_error"] if row["state"] in ("failed", "review") else "",
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
    return result
