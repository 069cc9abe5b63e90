"""Small helpers shared by the crm controllers."""

from __future__ import annotations

from litestar import Request

from crm.access import current_user
from crm.audit import Actor


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_actor(request: Request) -> Actor:
    """The signed-in user making this request, for the audit trail."""
    return Actor.for_user(current_user(request), client_address(request))
