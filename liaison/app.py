"""The application factory: the one place that wires Liaison together."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable

import asyncpg
import js_lib_htmx
from litestar import Litestar, Request, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.redis import RedisStore
from litestar.types import Message, Scope
from piccolo.engine.base import Engine

from campaigns import timeline as campaign_timeline
from campaigns.api import CampaignApi, SuppressionApi
from campaigns.workshop_api import WorkshopApi
from campaigns.campaign_controller import CampaignController, OutboxController, SuppressionController
from campaigns import workshop_timeline
from campaigns.public_controller import UnsubscribeController
from campaigns.rsvp_controller import RsvpController
from campaigns.workshop_controller import WorkshopController
from campaigns.scheduler import Worker
from campaigns.webhook_controller import SendGridWebhookController
from crm import activities, passwords
from crm.access import (
    AuthenticationMiddleware,
    BearerAwareCSRFMiddleware,
    RotatingSessionConfig,
    SessionLimits,
    access_guard,
    public,
    signed_in,
)
from crm.account_controller import AccountController
from crm.admin_controller import AuditController, UserAdminController
from crm.api import MeController
from crm.auth_controller import AuthController
from crm.db import DatabaseBusy
from crm.roster_controller import ClinicianController, FollowUpController, PracticeController
from crm.import_controller import ImportController
from crm.roster_api import RosterApi
from crm.segment_controller import SegmentController
from crm.signin import ThrottlePolicy
from liaison import db
from liaison.mail import make_backend, webhook_key
from liaison.errors import (
    http_exception_handler,
    internal_error_handler,
    busy_handler,
    nested_input_handler,
    unstorable_input_handler,
)
from liaison.settings import PROJECT_ROOT, Settings
from liaison.templating import template_config
from liaison.web import HomeController, healthz, healthz_head

STATIC = PROJECT_ROOT / "liaison" / "static"
HTMX = Path(js_lib_htmx.__file__).resolve().parent / "static" / "htmx"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)


def security_headers(settings: Settings):
    fixed = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
    }
    if settings.cookie_secure:
        fixed["strict-transport-security"] = "max-age=63072000; includeSubDomains"

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        for name, value in fixed.items():
            if name not in headers:
                headers[name] = value
        path = scope.get("path", "")
        # Pages show roster and referral data: keep them out of shared and back-button caches.
        if not path.startswith(("/static/", "/vendor/")) and "cache-control" not in headers:
            headers["cache-control"] = "no-store"

    return add_headers


def refuse_odd_paths(request: Request) -> None:
    """A NUL byte in a file path is never a real file (and the OS would refuse it)."""
    if "\x00" in request.scope.get("path", ""):
        raise NotFoundException()


def cookie_name(settings: Settings, name: str) -> str:
    """With HTTPS-only cookies, the ``__Host-`` prefix also stops a sibling subdomain from
    planting its own session or CSRF cookie."""
    return f"__Host-{name}" if settings.cookie_secure else name


def session_store(settings: Settings) -> Store:
    if settings.redis_url:
        return RedisStore.with_client(
            settings.redis_url, namespace="liaison-sessions"
        )
    settings.sessions_dir.mkdir(parents=True, exist_ok=True)
    return FileStore(settings.sessions_dir)


def preview_store(settings: Settings) -> Store:
    """Rendered email previews, kept for minutes and shared by every web replica."""
    if settings.redis_url:
        return RedisStore.with_client(settings.redis_url, namespace="liaison-previews")
    folder = settings.var_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    return FileStore(folder)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    engine: Engine | None = None,
) -> Litestar:
    """Build the web application for ``settings`` (read from the environment when omitted).

    ``engine`` lets a caller share an engine whose pool it manages (the tests do); by default the
    app builds its own from the settings and opens and closes its pool in the lifespan.
    """
    settings = settings or Settings.from_env()
    passwords.use_profile(settings.password_hash_profile)
    secret_key = settings.resolve_secret_key()
    engine = db.activate(engine or db.engine_for(settings))
    store = session_store(settings)
    previews = preview_store(settings)
    activities.register_timeline_source(campaign_timeline.entries)
    activities.register_timeline_source(workshop_timeline.entries)
    mail = settings.mail_config()
    backend = make_backend(settings)

    @asynccontextmanager
    async def database_lifespan(app: Litestar) -> AsyncIterator[None]:
        owns_pool = await db.open_pool(engine, settings)
        if isinstance(store, FileStore):
            await store.delete_expired()
        worker = Worker(mail, backend) if settings.run_worker else None
        app.state["worker"] = worker
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if owns_pool:
                await db.close_pool(engine)
            for each in (store, previews):
                if isinstance(each, RedisStore):
                    await each.__aexit__(None, None, None)  # closes the client it made
                elif isinstance(each, FileStore):
                    await each.delete_expired()

    sessions = RotatingSessionConfig(
        store="sessions",
        key=cookie_name(settings, "liaison_session"),
        max_age=settings.session_idle_minutes * 60,
        renew_on_access=True,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    csrf = CSRFConfig(
        secret=secret_key,
        cookie_name=cookie_name(settings, "liaison_csrf"),
        cookie_secure=settings.cookie_secure,
        cookie_samesite="lax",
        header_name="x-csrftoken",
        # Signed by their own means: the provider's signature, or the token in the link.
        exclude=["/webhooks/", "/p/unsubscribe/", "/p/rsvp/"],
    )
    limits = SessionLimits(
        idle_seconds=settings.session_idle_minutes * 60,
        absolute_seconds=settings.session_absolute_hours * 3600,
    )
    openapi = OpenAPIConfig(
        title="Liaison API",
        version="1",
        description="JSON API of Liaison. Authenticate with a session or an API token "
        "(Authorization: Bearer lsn_…) issued on your account page.",
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"]), YamlRenderPlugin()],
        openapi_router=Router(
            path="/schema", route_handlers=[], opt=signed_in(), include_in_schema=False
        ),
    )
    return Litestar(
        route_handlers=[
            HomeController,
            healthz,
            healthz_head,
            AuthController,
            AccountController,
            UserAdminController,
            AuditController,
            MeController,
            ClinicianController,
            PracticeController,
            FollowUpController,
            SegmentController,
            RosterApi,
            ImportController,
            UnsubscribeController,
            RsvpController,
            WorkshopController,
            CampaignController,
            CampaignApi,
            SuppressionApi,
            WorkshopApi,
            OutboxController,
            SuppressionController,
            SendGridWebhookController,
            create_static_files_router(
                path="/static", directories=[STATIC], opt=public(), include_in_schema=False,
                name="static", before_request=refuse_odd_paths,
            ),
            create_static_files_router(
                path="/vendor/htmx", directories=[HTMX], opt=public(), include_in_schema=False,
                name="htmx", before_request=refuse_odd_paths,
            ),
        ],
        guards=[access_guard],
        middleware=[
            sessions.middleware,
            AuthenticationMiddleware(limits, clock),
            DefineMiddleware(BearerAwareCSRFMiddleware, config=csrf),
        ],
        stores={"sessions": store, "previews": previews},
        plugins=[HTMXPlugin()],
        template_config=template_config(),
        openapi_config=openapi,
        exception_handlers={
            HTTPException: http_exception_handler,
            asyncpg.exceptions.DataError: unstorable_input_handler,
            DatabaseBusy: busy_handler,
            RecursionError: nested_input_handler,
            Exception: internal_error_handler,
        },
        before_send=[security_headers(settings)],
        lifespan=[database_lifespan],
        state=State(
            {
                "settings": settings,
                "clock": clock,
                "mail": mail,
                "backend": backend,
                "webhook_key": webhook_key(settings),
                "worker": None,
                "throttle": ThrottlePolicy(
                    per_account=settings.login_max_failures_per_account,
                    per_address=settings.login_max_failures_per_address,
                    window_minutes=settings.login_failure_window_minutes,
                ),
            }
        ),
        debug=False,
    )
