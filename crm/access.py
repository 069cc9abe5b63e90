"""Who is asking, and may they: authentication middleware, session rotation and the role guard.

Every route states its rule in ``opt``: ``public()`` (no sign-in) or ``allow(*roles)``. The guard is
installed once for the whole app and refuses any route that states no rule, so a forgotten rule
fails closed.

A request with an ``Authorization: Bearer`` header is judged by that token alone; the session cookie
is then ignored, which is why such requests need no CSRF token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from litestar.connection import ASGIConnection
from litestar.datastructures import Headers
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import ASGIApp, Empty, Receive, Scope, Send

from crm.roles import ALL_ROLES, Role, role_allows
from crm.tables import User
from crm.tokens import user_for_token

ROTATE_SESSION = "liaison.rotate_session"
NEW_SESSION_ID = "liaison.new_session_id"
SESSION_EXPIRED = "liaison.session_expired"
AUTH_METHOD = "liaison.auth_method"
TOKEN_PATHS = ("/api/", "/schema")


def public() -> dict[str, Any]:
    """Route option: reachable without signing in."""
    return {"public": True}


def allow(*roles: Role) -> dict[str, Any]:
    """Route option: signed-in users with one of ``roles`` (admins always pass)."""
    return {"roles": frozenset(roles) if roles else ALL_ROLES}


def signed_in() -> dict[str, Any]:
    """Route option: any signed-in user, whatever the role."""
    return {"roles": ALL_ROLES}


def current_user(connection: ASGIConnection) -> User | None:
    return connection.scope.get("user")


def access_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    opt = handler.opt
    if opt.get("public"):
        return
    user = current_user(connection)
    if user is None:
        method = connection.scope.get(AUTH_METHOD)
        if method == "invalid-token":
            path = connection.scope.get("path", "")
            if not path.startswith(TOKEN_PATHS):
                raise NotAuthorizedException("API tokens open the JSON API (/api/…) only; sign in for the pages.")
            raise NotAuthorizedException("The API token is not valid or has been revoked.")
        if method == "bad-scheme":
            raise NotAuthorizedException("Send the API token as 'Authorization: Bearer <token>'.")
        raise NotAuthorizedException("Sign in to continue.")
    roles = opt.get("roles")
    if roles is None:
        raise PermissionDeniedException("This page has no access rule, so it is closed.")
    if not role_allows(user.role, roles):
        raise PermissionDeniedException(
            f"Your role ({Role(user.role).label}) does not give access to this page."
        )


@dataclass(frozen=True)
class SessionLimits:
    idle_seconds: int
    absolute_seconds: int


class AuthenticationMiddleware(ASGIMiddleware):
    """Puts the signed-in ``User`` (or None) in ``scope["user"]`` from a bearer token or the session.

    The session holds the user id, when they signed in and when they were last seen; a session idle
    or older than the limits is cleared and the request treated as anonymous.
    """

    def __init__(self, limits: SessionLimits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        scope["auth"] = None
        authorization = Headers.from_scope(scope).get("authorization")
        if authorization is not None:
            # Tokens open the JSON API only: never the pages (a leaked token cannot mint more
            # tokens or change a password). The session cookie is ignored either way.
            scheme, _, credential = authorization.partition(" ")
            user = None
            if scheme.lower() == "bearer" and scope.get("path", "").startswith(TOKEN_PATHS):
                user = await user_for_token(credential.strip())
            scope["user"] = user
            scope[AUTH_METHOD] = "token" if user else (
                "invalid-token" if scheme.lower() == "bearer" else "bad-scheme"
            )
        else:
            await self._from_session(scope)
        await next_app(scope, receive, send)

    async def _from_session(self, scope: Scope) -> None:
        session = scope.get("session")
        if not isinstance(session, dict) or "user_id" not in session:
            return
        now = self.clock()
        try:
            auth_at = float(session["auth_at"])
            seen_at = float(session["seen_at"])
            user_id = int(session["user_id"])
        except (KeyError, TypeError, ValueError):
            scope["session"] = {}
            return
        if (
            now - auth_at >= self.limits.absolute_seconds
            or now - seen_at >= self.limits.idle_seconds
        ):
            scope["session"] = {}
            scope[SESSION_EXPIRED] = True
            return
        user = await User.objects().where(User.id == user_id).first().run()
        if user is None or not user.active or session.get("pw") != password_stamp(user):
            # Disabled, deleted or given a new password since sign-in: the session ends at once.
            scope["session"] = {}
            return
        session["seen_at"] = now
        scope["user"] = user
        scope[AUTH_METHOD] = "session"


def password_stamp(user: User) -> str:
    """Changes whenever the user's password does, ending the sessions made with the old one."""
    changed = user.password_changed_at
    return changed.isoformat() if changed else ""


def start_session(connection: ASGIConnection, user: User, now: float) -> None:
    """Sign ``user`` in on this connection under a new session id (the old one is destroyed)."""
    connection.scope[ROTATE_SESSION] = True
    connection.set_session(
        {"user_id": user.id, "auth_at": now, "seen_at": now, "pw": password_stamp(user)}
    )


class RotatingSessionBackend(ServerSideSessionBackend):
    """Server-side sessions whose id is replaced at sign-in, against session fixation."""

    def get_session_id(self, connection: ASGIConnection) -> str:
        return connection.scope.get(NEW_SESSION_ID) or super().get_session_id(connection)

    async def store_in_message(self, scope_session, message, connection) -> None:  # type: ignore[override]
        if not scope_session:
            # Nothing to keep: anonymous visitors get no session (and no file or Redis key);
            # a session emptied by expiry or sign-out is destroyed.
            if connection.cookies.get(self.config.key) not in (None, "null"):
                await super().store_in_message(Empty, message, connection)
            return
        if connection.scope.get(ROTATE_SESSION) and NEW_SESSION_ID not in connection.scope:
            old_id = connection.cookies.get(self.config.key)
            if old_id and old_id != "null":
                await self.delete(old_id, store=self.config.get_store_from_app(connection.scope["app"]))
            connection.scope[NEW_SESSION_ID] = self.generate_session_id()
        await super().store_in_message(scope_session, message, connection)


@dataclass
class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend  # type: ignore[assignment]


class BearerAwareCSRFMiddleware(CSRFMiddleware):
    """Litestar's CSRF check, skipped for requests that carry an Authorization header.

    Such requests are authenticated by the header alone (the cookie is ignored), and a browser
    cannot add that header to a cross-site request, so there is no ambient credential to forge.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and Headers.from_scope(scope).get("authorization") is not None:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
