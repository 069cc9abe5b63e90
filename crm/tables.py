"""Piccolo tables of the crm app."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Date,
    Integer,
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


# ------------------------------------------------------------------------------------------------
# The roster: specialties, practices, referring clinicians, and what liaisons do with them.


class Taxonomy(Table, tablename="taxonomy"):
    """A NUCC Health Care Provider Taxonomy code, with the referring role it implies."""

    code = Varchar(length=10, unique=True, index=True)
    grouping = Varchar(length=200, default="")
    classification = Varchar(length=200, default="")
    specialization = Varchar(length=200, default="")
    display_name = Varchar(length=300, default="")
    section = Varchar(length=30, default="")
    referring_role = Varchar(length=30, default="other", index=True)
    updated_at = Timestamptz(default=TimestamptzNow())


class Practice(Table, tablename="practice"):
    """A place and organisation where referring clinicians work (an NPPES organisation or a
    practice named in an import). ``address_key`` (street line and 5-digit ZIP, normalised) links
    individual clinicians to the organisation at their practice location."""

    name = Varchar(length=300, index=True)
    organization_npi = Varchar(length=10, null=True, default=None, unique=True)
    taxonomy_code = Varchar(length=10, null=True, default=None)
    address_line1 = Varchar(length=200, default="")
    address_line2 = Varchar(length=200, default="")
    city = Varchar(length=100, default="")
    state = Varchar(length=2, default="", index=True)
    postal_code = Varchar(length=10, default="")
    address_key = Varchar(length=120, default="", index=True)
    phone = Varchar(length=30, default="")
    fax = Varchar(length=30, default="")
    time_zone = Varchar(length=64, null=True, default=None)
    active = Boolean(default=True)
    source = Varchar(length=20, default="manual")
    import_run = Varchar(length=32, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Clinician(Table, tablename="clinician"):
    """A referring clinician. ``role`` is the effective referring role: derived from the primary
    taxonomy, unless a manager set ``role_override`` (which imports never change). Emails are
    trimmed and lower-cased, and unique among active clinicians (a partial index made by the
    migration)."""

    npi = Varchar(length=10, null=True, default=None, unique=True)
    first_name = Varchar(length=100, default="")
    middle_name = Varchar(length=100, default="")
    last_name = Varchar(length=100, default="", index=True)
    name_suffix = Varchar(length=20, default="")
    credential = Varchar(length=60, default="")
    taxonomy_code = Varchar(length=10, null=True, default=None, index=True)
    role = Varchar(length=30, default="other", index=True)
    role_override = Varchar(length=30, null=True, default=None)
    practice = ForeignKey(references=Practice, on_delete=OnDelete.set_null, null=True, index=True)
    address_line1 = Varchar(length=200, default="")
    address_line2 = Varchar(length=200, default="")
    city = Varchar(length=100, default="", index=True)
    state = Varchar(length=2, default="", index=True)
    postal_code = Varchar(length=10, default="", index=True)
    address_key = Varchar(length=120, default="")
    phone = Varchar(length=30, default="")
    fax = Varchar(length=30, default="")
    email = Varchar(length=320, null=True, default=None, index=True)
    owner = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True, index=True)
    tier = Varchar(length=1, null=True, default=None, index=True)
    do_not_contact = Boolean(default=False)
    consent_source = Varchar(length=100, default="")
    active = Boolean(default=True)
    deactivated_on = Date(null=True, default=None)
    source = Varchar(length=20, default="manual")
    import_run = Varchar(length=32, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ClinicianTag(Table, tablename="clinician_tag"):
    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.cascade, index=True, null=False)
    tag = Varchar(length=50, index=True)


class Activity(Table, tablename="activity"):
    """A touch logged by a liaison: a visit, call, email, lunch-and-learn or note."""

    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.cascade, index=True, null=False)
    kind = Varchar(length=20)
    occurred_at = Timestamptz(default=TimestamptzNow(), index=True)
    outcome = Varchar(length=40, default="")
    notes = Text(default="")
    follow_up_on = Date(null=True, default=None, index=True)
    follow_up_done = Boolean(default=False)
    author = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True, index=True)
    created_at = Timestamptz(default=TimestamptzNow())


class Segment(Table, tablename="segment"):
    """A saved filter over the roster, evaluated in SQL whenever it is used (never a copy)."""

    name = Varchar(length=120, unique=True)
    description = Text(default="")
    filters = JSON(default="{}")
    created_by = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ImportReview(Table, tablename="import_review"):
    """An imported row that was not applied because it needs a person's decision."""

    kind = Varchar(length=30)
    source = Varchar(length=300, default="")
    row_number = Integer(default=0)
    reason = Text(default="")
    data = JSON(default="{}")
    resolved = Boolean(default=False, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
