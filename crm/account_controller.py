"""A user's own account: change password, issue and revoke API tokens."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from crm import tokens, users
from crm.access import current_user, signed_in, start_session
from crm.forms import request_actor as _actor


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
        return await self._page(request, notice=notices.get(notice or ""))

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
        # A new password starts a new session: any other holder of the old id is shut out.
        start_session(request, user, request.app.state.clock())
        return Redirect("/account?notice=password", status_code=303)

    @post("/tokens")
    async def issue_token(self, request: Request) -> Template:
        form = await request.form()
        try:
            _, token = await tokens.issue_token(
                current_user(request).id, str(form.get("name", "")), actor=_actor(request)
            )
        except tokens.TokenError as error:
            return await self._page(request, status=422, errors={"token_name": str(error)})
        return await self._page(request, new_token=token)

    @post("/tokens/{token_id:int}/revoke")
    async def revoke_token(self, request: Request, token_id: FromPath[int]) -> Redirect:
        user = current_user(request)
        if not await tokens.revoke_token(user.id, token_id, actor=_actor(request)):
            raise NotFoundException("No such active token of yours.")
        return Redirect("/account?notice=revoked", status_code=303)
