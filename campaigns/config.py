"""What the sending pipeline needs to know about the program and the deployment.

The composition root builds it from the ``LIAISON_*`` settings; the campaigns package never reads
the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MailConfig:
    base_url: str
    secret_key: str
    from_email: str = "outreach@example.org"
    from_name: str = "Cancer Center Outreach"
    reply_to: str = ""
    program_name: str = "Cancer Center"
    postal_address: str = ""
    backend: str = "outbox"
    soft_bounce_threshold: int = 3
    claim_timeout_seconds: int = 600
    webhook_tolerance_seconds: int = 600

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.base_url}/p/unsubscribe/{token}"

    @property
    def footer_address(self) -> str:
        """The postal address every email shows (required before real sending; the outbox shows
        a reminder instead)."""
        return self.postal_address.strip() or "(postal address: set LIAISON_POSTAL_ADDRESS)"

    @property
    def reply_address(self) -> str:
        return self.reply_to or self.from_email
