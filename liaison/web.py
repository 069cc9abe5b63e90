"""Pages of the composition root: the home page and the health check."""

from __future__ import annotations

import logging

from litestar import Controller, Request, get, head
from litestar.exceptions import ServiceUnavailableException
from litestar.response import Response, Template
from piccolo.apps.migrations.tables import Migration

from crm.access import current_user, public, signed_in

log = logging.getLogger("liaison.health")


class HomeController(Controller):
    include_in_schema = False

    @get("/", opt=signed_in())
    async def home(self, request: Request) -> Template:
        return Template(template_name="home.html", context={"me": current_user(request)})


async def database_answers() -> bool:
    try:
        await Migration.raw("SELECT 1").run()
    except Exception:  # noqa: BLE001 - any failure means unhealthy
        log.exception("health check: the database did not answer")
        return False
    return True


@get("/healthz", opt=public(), include_in_schema=False)
async def healthz() -> Response:
    """200 when the database answers, 503 otherwise (details stay in the server log)."""
    if await database_answers():
        return Response({"status": "ok", "database": "ok"})
    return Response({"status": "unavailable", "database": "unreachable"}, status_code=503)


@head("/healthz", opt=public(), include_in_schema=False)
async def healthz_head() -> None:
    """The same check for load balancers that probe with HEAD."""
    if not await database_answers():
        raise ServiceUnavailableException()
