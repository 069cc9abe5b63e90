"""The Jinja environment: template folder, navigation by role and display filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from crm.roles import Role, role_allows
from liaison.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    roles: frozenset[Role]


NAVIGATION = (
    NavItem("Home", "/", frozenset(Role)),
    NavItem("Clinicians", "/clinicians", frozenset(Role)),
    NavItem("Practices", "/practices", frozenset(Role)),
    NavItem("Segments", "/segments", frozenset(Role)),
    NavItem("Campaigns", "/campaigns", frozenset(Role)),
    NavItem("Workshops", "/workshops", frozenset(Role)),
    NavItem("Outbox", "/outbox", frozenset({Role.marketer, Role.manager})),
    NavItem("Suppressions", "/suppressions", frozenset({Role.marketer, Role.manager})),
    NavItem("My follow-ups", "/follow-ups", frozenset({Role.liaison, Role.manager})),
    NavItem("Import", "/imports", frozenset({Role.manager})),
    NavItem("Users", "/admin/users", frozenset({Role.admin})),
    NavItem("Audit log", "/admin/audit", frozenset({Role.admin})),
    NavItem("Account", "/account", frozenset(Role)),
)


def nav_for(user) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAVIGATION if role_allows(user.role, item.roles)]


def role_label(value: str) -> str:
    try:
        return Role(value).label
    except ValueError:
        return value


def when(value: datetime | None) -> str:
    """A timestamp as people read it, in UTC until users have a time zone setting."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def zoned(value: datetime | None, time_zone: str) -> str:
    """A timestamp on the wall clock of ``time_zone`` (a campaign's or a workshop's), with the zone."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        zone = ZoneInfo(time_zone)
    except (ValueError, KeyError):
        zone = timezone.utc
    return value.astimezone(zone).strftime("%a %d %b %Y, %H:%M %Z")


def _configure(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.globals.update(nav_for=nav_for, role_label=role_label)
    env.filters["when"] = when
    env.filters["zoned"] = zoned
    env.trim_blocks = True
    env.lstrip_blocks = True


def template_config() -> TemplateConfig:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_configure)
