"""Sign-in and sign-out pages."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from crm import audit
from crm.access import current_user, public, signed_in, start_session
from crm.audit import Actor
from crm.forms import client_address
from crm.signin import ThrottlePolicy, sign_in

MESSAGES = {
    "bad_credentials": "The email or password is not right.",
    "disabled": "This account is disabled. Ask an administrator to enable it.",
}
STATUS = {"bad_credentials": 401, "disabled": 403, "throttled": 429}


def safe_next(value: str | None) -> str:
    """Only a path on this site: never another host, never a scheme-relative ``//host``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _login_page(request: Request, *, next_url: str, email: str = "", error: str | None = None,
                status: int = 200, headers: dict[str, str] | None = None) -> Template:
    return Template(
        template_name="crm/login.html",
        context={
            "next": next_url,
            "email": email,
            "error": error,
            "expired": request.query_params.get("expired") == "1",
        },
        status_code=status,
        headers=headers,
    )


class AuthController(Controller):
    include_in_schema = False

    @get("/login", opt=public())
    async def login_form(self, request: Request, next: FromQuery[str] = "/") -> Template | Redirect:
        if current_user(request) is not None:
            return Redirect(safe_next(next), status_code=303)
        return _login_page(request, next_url=safe_next(next))

    @post("/login", opt=public())
    async def login(self, request: Request) -> Template | Redirect:
        form = await request.form()
        email = str(form.get("email", ""))[:320]
        password = str(form.get("password", ""))
        next_url = safe_next(str(form.get("next", "/")))
        policy: ThrottlePolicy = request.app.state.throttle
        result = await sign_in(
            email, password, client_address=client_address(request), policy=policy
        )
        if result.outcome == "ok":
            start_session(request, result.user, request.app.state.clock())
            return Redirect(next_url, status_code=303)
        if result.outcome == "throttled":
            minutes = max(1, round(result.retry_after_seconds / 60))
            error = (
                "Too many failed sign-in attempts. "
                f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}."
            )
            return _login_page(
                request, next_url=next_url, email=email, error=error, status=429,
                headers={"Retry-After": str(result.retry_after_seconds)},
            )
        return _login_page(
            request, next_url=next_url, email=email,
            error=MESSAGES[result.outcome], status=STATUS[result.outcome],
        )

    @post("/logout", opt=signed_in())
    async def logout(self, request: Request) -> Redirect:
        user = current_user(request)
        await audit.record(
            "user.logout",
            actor=Actor.for_user(user, client_address(request)),
            object_type="user",
            object_id=user.id,
        )
        request.clear_session()
        return Redirect("/login", status_code=303)
