"""Touches a liaison logs on a clinician (visits, calls, emails, lunch-and-learns, notes), their
follow-ups, and the clinician's timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from crm.errors import FieldError
from crm import audit
from crm.audit import Actor
from crm.db import atomic
from crm.tables import Activity, Clinician
from crm.text import plain_text

KINDS = {
    "visit": "Visit",
    "call": "Call",
    "email": "Email",
    "lunch_and_learn": "Lunch-and-learn",
    "note": "Note",
}
OUTCOMES = {
    "": "—",
    "connected": "Connected",
    "left_message": "Left a message",
    "no_answer": "No answer",
    "meeting_scheduled": "Meeting scheduled",
    "referral_discussed": "Referral pathway discussed",
    "materials_left": "Materials left",
    "not_interested": "Not interested",
}
MAX_NOTES = 4000


class ActivityError(FieldError):
    pass


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened with a clinician; later modules add sends, RSVPs and referrals."""

    at: datetime
    kind: str
    title: str
    detail: str
    by: str
    follow_up_on: date | None = None
    follow_up_done: bool = False
    activity_id: int | None = None


def _parse_date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ActivityError(field, f"{value!r} is not a date (YYYY-MM-DD)") from None


async def log_touch(
    clinician_id: int,
    *,
    kind: str,
    outcome: str = "",
    notes: str = "",
    occurred_on: str | None = None,
    follow_up_on: str | None = None,
    actor: Actor,
    today: date | None = None,
) -> Activity:
    """Record a touch. ``occurred_on`` defaults to now; a follow-up date may not be in the past."""
    today = today or datetime.now(timezone.utc).date()
    if kind not in KINDS:
        raise ActivityError("kind", f"choose one of: {', '.join(KINDS)}")
    if outcome not in OUTCOMES:
        raise ActivityError("outcome", f"{outcome!r} is not a known outcome")
    notes = plain_text(notes or "").strip()
    if len(notes) > MAX_NOTES:
        raise ActivityError("notes", f"keep notes under {MAX_NOTES} characters")
    if kind == "note" and not notes:
        raise ActivityError("notes", "a note needs some text")
    when = datetime.now(timezone.utc)
    occurred = _parse_date(occurred_on, "occurred_on")
    if occurred is not None:
        if occurred > today:
            raise ActivityError("occurred_on", "a touch cannot happen in the future")
        if occurred < today - timedelta(days=366):
            raise ActivityError("occurred_on", "log touches within a year of today")
        if occurred != today:
            when = datetime(occurred.year, occurred.month, occurred.day, 12, tzinfo=timezone.utc)
    follow_up = _parse_date(follow_up_on, "follow_up_on")
    if follow_up is not None and follow_up < today:
        raise ActivityError("follow_up_on", "a follow-up date cannot be in the past")
    async with atomic():
        if not await Clinician.exists().where(Clinician.id == clinician_id).run():
            raise ActivityError("clinician", "no such clinician")
        activity = Activity(
            clinician=clinician_id, kind=kind, outcome=outcome, notes=notes, occurred_at=when,
            follow_up_on=follow_up, author=actor.user_id,
        )
        await activity.save().run()
        await audit.record(
            "activity.create", actor=actor, object_type="activity", object_id=activity.id,
            after={"clinician": clinician_id, "kind": kind, "outcome": outcome,
                   "follow_up_on": follow_up.isoformat() if follow_up else None},
        )
    return activity


# Other packages add their own entries (sends and email events, RSVPs, referrals) without crm
# importing them: the composition root registers one source per package.
TimelineSource = Callable[[int, int], Awaitable[list[TimelineEntry]]]
TIMELINE_SOURCES: list[TimelineSource] = []


def register_timeline_source(source: TimelineSource) -> None:
    if source not in TIMELINE_SOURCES:
        TIMELINE_SOURCES.append(source)


async def timeline(clinician_id: int, limit: int = 200) -> list[TimelineEntry]:
    """Everything that happened with a clinician, newest first: logged touches and the entries of
    every registered source."""
    entries = await _touches(clinician_id, limit)
    for source in TIMELINE_SOURCES:
        entries += await source(clinician_id, limit)
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


async def _touches(clinician_id: int, limit: int) -> list[TimelineEntry]:
    rows = (
        await Activity.select(
            Activity.id, Activity.kind, Activity.outcome, Activity.notes, Activity.occurred_at,
            Activity.follow_up_on, Activity.follow_up_done,
            Activity.author._.name.as_alias("author_name"), Activity.author._.email.as_alias("author_email"),
        )
        .where(Activity.clinician == clinician_id)
        .order_by(Activity.occurred_at, ascending=False)
        .order_by(Activity.id, ascending=False)
        .limit(limit)
        .run()
    )
    return [
        TimelineEntry(
            at=row["occurred_at"], kind=row["kind"], title=KINDS.get(row["kind"], row["kind"]),
            detail=" · ".join(part for part in (OUTCOMES.get(row["outcome"], "") if row["outcome"] else "", row["notes"]) if part),
            by=row["author_name"] or row["author_email"] or "—",
            follow_up_on=row["follow_up_on"], follow_up_done=row["follow_up_done"], activity_id=row["id"],
        )
        for row in rows
    ]


async def follow_ups(user_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Open follow-ups the user logged or on clinicians they own, overdue first, then by date."""
    return (
        await Activity.select(
            Activity.id, Activity.kind, Activity.outcome, Activity.notes, Activity.follow_up_on,
            Activity.occurred_at, Activity.clinician,
            Activity.clinician._.first_name.as_alias("first_name"),
            Activity.clinician._.last_name.as_alias("last_name"),
            Activity.clinician._.credential.as_alias("credential"),
        )
        .where(
            Activity.follow_up_on.is_not_null()
            & (Activity.follow_up_done == False)  # noqa: E712
            & ((Activity.author == user_id) | (Activity.clinician._.owner == user_id))
        )
        .order_by(Activity.follow_up_on)
        .order_by(Activity.id)
        .limit(limit)
        .run()
    )


async def complete_follow_up(activity_id: int, *, actor: Actor, may_complete_any: bool) -> bool:
    """Mark a follow-up done: its author, the clinician's owner, or a manager may."""
    async with atomic():
        row = (
            await Activity.select(Activity.id, Activity.author, Activity.clinician._.owner.as_alias("owner"),
                                  Activity.follow_up_done)
            .where(Activity.id == activity_id).first().run()
        )
        if row is None or row["follow_up_done"]:
            return False
        if not may_complete_any and actor.user_id not in (row["author"], row["owner"]):
            return False
        await Activity.update({Activity.follow_up_done: True}).where(Activity.id == activity_id).run()
        await audit.record("activity.follow_up_done", actor=actor, object_type="activity", object_id=activity_id)
    return True
