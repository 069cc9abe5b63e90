"""The ``outbox`` backend: stores each rendered message in a table instead of sending it.

The embedded default. Messages are rendered exactly as SendGrid would render the batch (the
substitutions applied to the shared bodies), so what the outbox shows is what would have gone out.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Callable

from campaigns.delivery import Batch, BatchResult, apply_substitutions
from campaigns.tables import OutboxMessage
from crm import bulk
from crm.db import atomic

COLUMNS = [
    "send", "batch_id", "message_id", "to_email", "to_name", "from_email", "from_name", "subject",
    "html_body", "text_body", "headers", "categories", "created_at",
]


class OutboxBackend:
    name = "outbox"

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.clock = clock

    async def new_batch_id(self) -> str:
        return "outbox-" + secrets.token_hex(12)

    async def send(self, batch: Batch) -> BatchResult:
        message_id = "outbox-" + secrets.token_hex(8)
        now = self.clock()
        categories = json.dumps(batch.categories)
        rows = [
            (
                m.send_id, batch.batch_id, message_id, m.to_email, m.to_name, batch.from_email, batch.from_name,
                m.subject, apply_substitutions(batch.html, m.substitutions),
                apply_substitutions(batch.text, m.substitutions), json.dumps(m.headers), categories, now,
            )
            for m in batch.messages
        ]
        async with atomic():
            await bulk.upsert(OutboxMessage, COLUMNS, rows)
        return BatchResult("accepted", message_id=message_id)
