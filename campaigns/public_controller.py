"""Public pages (no login), reached by signed links in emails: unsubscribe."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.params import PathParameter
from litestar.response import Template

from campaigns import unsubscribe as unsubscribing
from campaigns.tokens import TokenError
from crm.forms import request_now
from crm.access import public


# No length limit here: a refused token gets the page that says so (``read_token`` checks it).
Token = Annotated[str, PathParameter()]


class UnsubscribeController(Controller):
    path = "/p/unsubscribe"
    opt = public()
    include_in_schema = False

    @get("/{token:str}")
    async def confirm(self, request: Request, token: Token) -> Template:
        """Asks before acting: link scanners open links, only a person presses the button."""
        settings = request.app.state["settings"]
        try:
            subscription = await unsubscribing.lookup(request.app.state["mail"].secret_key, token)
        except TokenError as error:
            return _invalid(settings, str(error))
        return Template(
            template_name="campaigns/unsubscribe.html",
            context={"subscription": subscription, "masked": unsubscribing.mask(subscription.email),
                     "program": settings.program_name, "token": token, "done": subscription.unsubscribed},
        )

    @post("/{token:str}", status_code=200)
    async def unsubscribe(self, request: Request, token: Token) -> Template:
        """The button on the page and the one-click POST of mail clients (RFC 8058)."""
        settings = request.app.state["settings"]
        body = (await request.body())[:200]
        source = "one_click" if b"List-Unsubscribe=One-Click" in body else "link"
        try:
            subscription = await unsubscribing.unsubscribe(
                request.app.state["mail"].secret_key, token, now=request_now(request), source=source
            )
        except TokenError as error:
            return _invalid(settings, str(error))
        return Template(
            template_name="campaigns/unsubscribe.html",
            context={"subscription": subscription, "masked": unsubscribing.mask(subscription.email),
                     "program": settings.program_name, "token": token, "done": True},
        )


def _invalid(settings, reason: str) -> Template:
    return Template(
        template_name="campaigns/unsubscribe_invalid.html",
        context={"reason": reason, "program": settings.program_name, "reply_to": settings.reply_to or settings.from_email},
        status_code=400,
    )
