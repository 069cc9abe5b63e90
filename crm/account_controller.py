"""A user's own account: change password, issue and revoke API tokens."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from crm import tokens, users
from crm.access import current_user, signed_in, start_session
from crm.forms import ObjectId
from crm.forms import request_actor as _actor


NEW_TOKEN_KEY = "new_api_token"


class AccountController(Controller):
    path = "/account"
    opt = signed_in()
    include_in_schema = False

    async def _page(self, request: Request, *, status: int = 200, errors: dict | None = None,
                    new_token: str | None = None, notice: FromQuery[str | None] = None) -> Template:
        user = current_user(request)
        return Template(
            template_name="crm/account.html",
            context={
                "tokens": await tokens.list_tokens(user.id),
                "errors": errors or {},
                "new_token": new_token,
                "notice": notice,
            },
            status_code=status,
        )

    @get("/")
    async def show(self, request: Request, notice: FromQuery[str | None] = None) -> Template:
        notices = {"password": "Your password has been changed.", "revoked": "The token was revoked."}
        # A token just issued is shown on this one page load, then forgotten.
        new_token = request.session.pop(NEW_TOKEN_KEY, None) if isinstance(request.session, dict) else None
        return await self._page(request, notice=notices.get(notice or ""), new_token=new_token)

    @post("/password")
    async def change_password(self, request: Request) -> Template | Redirect:
        form = await request.form()
        current = str(form.get("current_password", ""))
        new = str(form.get("password", ""))
        confirm = str(form.get("password_confirm", ""))
        user = current_user(request)
        if new != confirm:
            return await self._page(
                request, status=422, errors={"password_confirm": "The two new passwords differ."}
            )
        try:
            await users.change_own_password(user, current, new, actor=_actor(request))
        except users.UserError as error:
            return await self._page(request, status=422, errors={error.field: error.message})
        # Other sessions end with the old password; this one continues under a new id.
        start_session(request, await users.get_user(user.id), request.app.state.clock())
        return Redirect("/account?notice=password", status_code=303)

    @post("/tokens")
    async def issue_token(self, request: Request) -> Template | Redirect:
        form = await request.form()
        try:
            _, token = await tokens.issue_token(
                current_user(request).id, str(form.get("name", "")), actor=_actor(request)
            )
        except tokens.TokenError as error:
            return await self._page(request, status=422, errors={"token_name": str(error)})
        # Redirect, so that reloading the page cannot issue a second token.
        request.session[NEW_TOKEN_KEY] = token
        return Redirect("/account", status_code=303)

    @post("/tokens/{token_id:int}/revoke")
    async def revoke_token(self, request: Request, token_id: ObjectId) -> Redirect:
        user = current_user(request)
        if not await tokens.revoke_token(user.id, token_id, actor=_actor(request)):
            raise NotFoundException("No such active token of yours.")
        return Redirect("/account?notice=revoked", status_code=303)
