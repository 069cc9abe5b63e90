"""Piccolo tables of the crm app."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Boolean,
    ForeignKey,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from crm.roles import Role


class User(Table, tablename="liaison_user"):
    """A person who signs in to Liaison. Emails are stored trimmed and lower-cased."""

    email = Varchar(length=320, unique=True, index=True)
    name = Varchar(length=200, default="")
    role = Varchar(length=20, choices=Role, default=Role.liaison)
    password_hash = Text()
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)
    password_changed_at = Timestamptz(default=TimestamptzNow())


class ApiToken(Table, tablename="api_token"):
    """A per-user token for the JSON API. Only a SHA-256 digest is kept; the token is shown once."""

    owner = ForeignKey(references=User, on_delete=OnDelete.cascade, index=True, null=False)
    name = Varchar(length=100)
    prefix = Varchar(length=16)
    token_hash = Varchar(length=64, unique=True, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class AuditEvent(Table, tablename="audit_event"):
    """Who changed what and when, with the object's state before and after."""

    at = Timestamptz(default=TimestamptzNow(), index=True)
    actor = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True, index=True)
    actor_label = Varchar(length=320)
    action = Varchar(length=60, index=True)
    object_type = Varchar(length=60)
    object_id = Varchar(length=64, default="")
    before = JSON(null=True, default=None)
    after = JSON(null=True, default=None)
    client_address = Varchar(length=64, null=True, default=None)


class LoginFailure(Table, tablename="login_failure"):
    """A failed sign-in, kept for the throttling window only."""

    at = Timestamptz(default=TimestamptzNow(), index=True)
    account = Varchar(length=320, index=True)
    client_address = Varchar(length=64, index=True)
