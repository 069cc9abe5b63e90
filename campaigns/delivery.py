"""Email backends behind one interface.

A dispatcher hands a backend one ``Batch``: up to 1,000 messages that share a From address, the
HTML and text bodies (skeletons holding substitution tokens) and the categories; each message has
its own recipient, rendered subject, substitutions, headers and custom arguments. The backend makes
one attempt-with-retries and answers with a ``BatchResult``; it never raises for an HTTP error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

MAX_BATCH = 1000


@dataclass(frozen=True)
class Message:
    to_email: str
    to_name: str
    subject: str
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)
    send_id: int | None = None


@dataclass(frozen=True)
class Batch:
    from_email: str
    from_name: str
    html: str
    text: str
    messages: list[Message]
    categories: list[str] = field(default_factory=list)
    reply_to: str | None = None
    batch_id: str = ""


@dataclass(frozen=True)
class BatchResult:
    """``accepted``: the provider took the batch (``message_id`` is its id for the request).
    ``failed``: it refused the batch or kept failing; ``error`` says why (naming the field when the
    provider did) and ``permanent`` is true when retrying the same request cannot succeed.
    ``unknown``: the request went out but no answer came back, so the provider may have taken
    it: it must not be sent again blindly."""

    status: Literal["accepted", "failed", "unknown"]
    message_id: str = ""
    error: str = ""
    permanent: bool = False
    attempts: int = 1


class EmailBackend(Protocol):
    name: str

    async def new_batch_id(self) -> str:
        """An id for the next batch, recorded on its sends before ``send`` is called."""

    async def send(self, batch: Batch) -> BatchResult:
        """Deliver the batch (retrying transient failures a bounded number of times)."""


def apply_substitutions(text: str, substitutions: dict[str, str]) -> str:
    """Replace every substitution key in ``text`` by its value, in one pass, as SendGrid does."""
    if not substitutions:
        return text
    import re

    pattern = re.compile("|".join(re.escape(key) for key in sorted(substitutions, key=len, reverse=True)))
    return pattern.sub(lambda match: substitutions[match.group(0)], text)
