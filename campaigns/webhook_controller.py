"""``POST /webhooks/sendgrid/events``: SendGrid's signed Event Webhook (no login, no CSRF)."""

from __future__ import annotations

from datetime import datetime, timezone

from litestar import Controller, Request, Response, post

from campaigns import events
from crm.access import public

MAX_BODY = 16 * 1024 * 1024


class SendGridWebhookController(Controller):
    path = "/webhooks/sendgrid"
    opt = public()
    include_in_schema = False

    @post("/events", status_code=200, request_max_body_size=MAX_BODY)
    async def receive(self, request: Request) -> Response:
        state = request.app.state
        raw = await request.body()
        now = state["clock"]()
        key = state.get("webhook_key")
        if key is None and state["settings"].production:
            return Response({"error": "the webhook is not configured: set LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY"},
                            status_code=403)
        try:
            if key is not None:
                events.verify(
                    raw, request.headers.get(events.SIGNATURE_HEADER), request.headers.get(events.TIMESTAMP_HEADER),
                    key, now=now, tolerance=state["mail"].webhook_tolerance_seconds,
                )
            batch = events.parse(raw)
        except events.WebhookRefused as refused:
            return Response({"error": refused.message}, status_code=refused.status)
        report = await events.ingest(
            batch, now=datetime.fromtimestamp(now, timezone.utc),
            soft_bounce_threshold=state["mail"].soft_bounce_threshold,
        )
        return Response(
            {"received": report.received, "stored": report.stored, "duplicates": report.duplicates,
             "unknown_sends": report.unknown_sends, "suppressed": report.suppressed}
        )
