"""The email backend and the worker, built from the settings."""

from __future__ import annotations

from campaigns.delivery import EmailBackend
from campaigns.outbox import OutboxBackend
from liaison.settings import Settings


def make_backend(settings: Settings) -> EmailBackend:
    if settings.email_backend == "sendgrid":
        from campaigns.sendgrid_backend import SendGridBackend

        return SendGridBackend(
            api_key=settings.sendgrid_api_key or "", host=settings.sendgrid_host,
            timeout=float(settings.sendgrid_timeout_seconds), asm_group_id=settings.sendgrid_asm_group_id,
        )
    return OutboxBackend()


def webhook_key(settings: Settings):
    if not settings.sendgrid_webhook_public_key:
        return None
    from campaigns.events import load_public_key

    return load_public_key(settings.sendgrid_webhook_public_key)
