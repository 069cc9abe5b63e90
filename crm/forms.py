"""Small helpers shared by the crm controllers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from litestar import Request
from litestar.params import PathParameter, QueryParameter

from crm.access import current_user
from crm.audit import Actor

# Row ids as they may appear in a URL: positive and within a 32-bit integer column, so that an
# absurd id is a 400 rather than a database error.
MAX_ID = 2**31 - 1
ObjectId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
OptionalId = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)]


def request_now(request: Request) -> datetime:
    """The time of this request on the app's clock (the tests move it by hand)."""
    return datetime.fromtimestamp(request.app.state["clock"](), timezone.utc)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_actor(request: Request) -> Actor:
    """The signed-in user making this request, for the audit trail."""
    return Actor.for_user(current_user(request), client_address(request))
