"""Piccolo tables of the campaigns app: campaigns and their steps, enrollments, occurrences, sends,
email events, suppressions, the outbox, and the scheduler lease.

Every time is stored in UTC. A send's ``key`` (campaign, step, occurrence, clinician) is unique, so
materializing an occurrence twice cannot create a second email.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from crm.tables import Clinician, Segment, User


class Campaign(Table, tablename="campaign"):
    """Outreach to a segment: one-off, on a recurring cadence, or a sequence of steps at offsets
    from each clinician's enrollment.

    ``cadence`` is the cadence in words (see ``campaigns.cadence``); ``send_days`` holds the ISO
    weekdays of the send window ("12345" is Monday to Friday) and the window runs from
    ``send_start_hour`` to ``send_end_hour`` in ``time_zone``. The frequency cap counts emails sent
    to a clinician by every campaign. ``holdout_percent`` of the audience is enrolled as control
    and never mailed."""

    name = Varchar(length=200, unique=True)
    goal = Text(default="")
    kind = Varchar(length=20, default="recurring")
    segment = ForeignKey(references=Segment, on_delete=OnDelete.set_null, null=True, index=True)
    time_zone = Varchar(length=64, default="America/New_York")
    cadence = JSON(default="{}")
    send_days = Varchar(length=7, default="12345")
    send_start_hour = Integer(default=8)
    send_end_hour = Integer(default=17)
    frequency_cap_count = Integer(default=2)
    frequency_cap_days = Integer(default=14)
    holdout_percent = Integer(default=0)
    holdout_salt = Varchar(length=32, default="")
    service_line = Varchar(length=60, default="")
    from_name = Varchar(length=200, default="")
    grace_hours = Integer(default=24)
    status = Varchar(length=20, default="draft", index=True)
    starts_at = Timestamptz(null=True, default=None)
    ends_at = Timestamptz(null=True, default=None)
    last_fired_at = Timestamptz(null=True, default=None)
    paused_at = Timestamptz(null=True, default=None)
    created_by = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    version = Integer(default=1)


class CampaignStep(Table, tablename="campaign_step"):
    """One email of a campaign. One-off and recurring campaigns have one step; a sequence has
    several, each ``offset_days`` after the clinician's enrollment."""

    campaign = ForeignKey(references=Campaign, on_delete=OnDelete.cascade, index=True, null=False)
    position = Integer(default=1)
    offset_days = Integer(default=0)
    subject = Varchar(length=300, default="")
    html_body = Text(default="")
    text_body = Text(default="")
    updated_at = Timestamptz(default=TimestamptzNow())


class Enrollment(Table, tablename="enrollment"):
    """A clinician in a campaign's audience: ``treatment`` (mailed) or ``holdout`` (never mailed,
    kept as control for attribution). Unique per campaign and clinician (made by the migration)."""

    campaign = ForeignKey(references=Campaign, on_delete=OnDelete.cascade, index=True, null=False)
    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.cascade, index=True, null=False)
    arm = Varchar(length=10, default="treatment")
    enrolled_at = Timestamptz(default=TimestamptzNow(), index=True)


class Occurrence(Table, tablename="occurrence"):
    """One firing of a campaign's cadence (or one daily run of a sequence), unique per campaign
    and scheduled time. ``status``: materialized, missed (after downtime beyond the grace period),
    empty (nobody eligible)."""

    campaign = ForeignKey(references=Campaign, on_delete=OnDelete.cascade, index=True, null=False)
    scheduled_for = Timestamptz()
    fired_at = Timestamptz(default=TimestamptzNow())
    status = Varchar(length=20, default="materialized")
    audience = Integer(default=0)
    queued = Integer(default=0)
    skipped = Integer(default=0)
    holdout = Integer(default=0)
    note = Text(default="")


class Send(Table, tablename="send"):
    """One email to one clinician. ``state`` moves queued → claimed → sent → delivered → opened →
    clicked, or ends skipped (with ``skip_reason``), failed (with ``last_error``), bounced, dropped,
    spam, unsubscribed, or review (outcome unknown after a crash: never resent blindly)."""

    key = Varchar(length=120, unique=True)
    campaign = ForeignKey(references=Campaign, on_delete=OnDelete.cascade, index=True, null=False)
    step = ForeignKey(references=CampaignStep, on_delete=OnDelete.cascade, null=True)
    occurrence = ForeignKey(references=Occurrence, on_delete=OnDelete.set_null, null=True, index=True)
    # Indexed with the time it was sent (the frequency cap), by the migration.
    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.cascade, null=False)
    email = Varchar(length=320, default="", index=True)
    # (state, due_at) is one index, made by the migration: the dispatchers' claim reads it.
    state = Varchar(length=20, default="queued")
    skip_reason = Varchar(length=60, default="")
    due_at = Timestamptz()
    claimed_at = Timestamptz(null=True, default=None)
    claimed_by = Varchar(length=64, default="")
    batch_id = Varchar(length=64, default="", index=True)
    provider_message_id = Varchar(length=120, default="")
    sent_at = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    opened_at = Timestamptz(null=True, default=None)
    clicked_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)
    soft_bounces = Integer(default=0)
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class EmailEvent(Table, tablename="email_event"):
    """An event from the email provider's webhook, stored as received (replays are ignored by the
    unique ``provider_event_id``); ``send`` is null for events about unknown sends."""

    provider_event_id = Varchar(length=120, unique=True)
    send = ForeignKey(references=Send, on_delete=OnDelete.set_null, null=True, index=True)
    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.set_null, null=True, index=True)
    event = Varchar(length=40, index=True)
    email = Varchar(length=320, default="")
    occurred_at = Timestamptz(index=True)
    received_at = Timestamptz(default=TimestamptzNow())
    reason = Text(default="")
    payload = JSON(default="{}")


class Suppression(Table, tablename="suppression"):
    """An address that must not be mailed: everywhere (``scope`` "all") or for one unsubscribe
    group ("group:<id>"). Unique per address and scope (made by the migration)."""

    email = Varchar(length=320, index=True)
    scope = Varchar(length=60, default="all")
    reason = Varchar(length=40)
    source = Varchar(length=40)
    detail = Text(default="")
    created_by = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True)
    created_at = Timestamptz(default=TimestamptzNow())


class OutboxMessage(Table, tablename="outbox_message"):
    """An email as the ``outbox`` backend stored it instead of sending it (the embedded default)."""

    send = ForeignKey(references=Send, on_delete=OnDelete.set_null, null=True, index=True)
    batch_id = Varchar(length=64, default="")
    message_id = Varchar(length=120, default="")
    to_email = Varchar(length=320)
    to_name = Varchar(length=300, default="")
    from_email = Varchar(length=320)
    from_name = Varchar(length=200, default="")
    subject = Varchar(length=400)
    html_body = Text(default="")
    text_body = Text(default="")
    headers = JSON(default="{}")
    categories = JSON(default="[]")
    created_at = Timestamptz(default=TimestamptzNow(), index=True)


class SchedulerLease(Table, tablename="scheduler_lease"):
    """Who may fire campaign triggers: one row per lease name; a holder renews ``expires_at`` and a
    standby takes the lease once it has expired."""

    name = Varchar(length=40, unique=True)
    holder = Varchar(length=100, default="")
    acquired_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(default=TimestamptzNow())


class Workshop(Table, tablename="workshop"):
    """A clinician workshop (referral criteria, rapid-consult pathways, tumor-board open days…).
    ``sequence`` counts the changes of time, place or status that invitees were told about (the
    calendar invitation's SEQUENCE). ``capacity`` null means no limit."""

    title = Varchar(length=200)
    topic = Varchar(length=200, default="")
    service_line = Varchar(length=60, default="")
    description = Text(default="")
    starts_at = Timestamptz(index=True)
    ends_at = Timestamptz()
    time_zone = Varchar(length=64, default="America/New_York")
    venue = Varchar(length=300, default="")
    virtual_url = Varchar(length=500, default="")
    capacity = Integer(null=True, default=None)
    host = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True)
    status = Varchar(length=20, default="scheduled", index=True)
    credit_hours = Varchar(length=8, default="")
    sequence = Integer(default=0)
    segment = ForeignKey(references=Segment, on_delete=OnDelete.set_null, null=True)
    created_by = ForeignKey(references=User, on_delete=OnDelete.set_null, null=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Rsvp(Table, tablename="rsvp"):
    """A clinician's answer to a workshop invitation: ``yes`` (a seat), ``waitlist`` (yes, but the
    workshop was full; promoted in answer order when a seat frees), ``maybe`` or ``no``. Unique per
    workshop and clinician (made by the migration)."""

    workshop = ForeignKey(references=Workshop, on_delete=OnDelete.cascade, index=True, null=False)
    clinician = ForeignKey(references=Clinician, on_delete=OnDelete.cascade, index=True, null=False)
    answer = Varchar(length=10)
    answered_at = Timestamptz(default=TimestamptzNow())
    waitlisted_at = Timestamptz(null=True, default=None)
    source = Varchar(length=20, default="link")
    attended = Boolean(default=False)
    checked_in_at = Timestamptz(null=True, default=None)
