"""The audit trail: one AuditEvent for every write, saying who, what, when, before and after."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from crm.tables import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who is making a change: a signed-in user, or the command line."""

    user_id: int | None
    label: str
    client_address: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        return cls(user_id=None, label=f"cli:{who}")

    @classmethod
    def for_user(cls, user: Any, client_address: str | None = None) -> Actor:
        return cls(user_id=user.id, label=user.email, client_address=client_address)


async def record(
    action: str,
    *,
    actor: Actor,
    object_type: str,
    object_id: Any = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Write one audit row; call it inside the transaction of the change it describes."""
    await AuditEvent.insert(
        AuditEvent(
            actor=actor.user_id,
            actor_label=actor.label,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            before=before,
            after=after,
            client_address=actor.client_address,
        )
    ).run()
