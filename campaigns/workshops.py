"""Workshops and RSVPs: the rules, without pages.

Seats are given in answer order: a Yes takes a seat while there is one, and waits on the waitlist
otherwise; when a seat frees (a Yes becomes No or Maybe, or the capacity grows), the first waiting
clinician is promoted. Answers for one workshop are serialised (an IMMEDIATE transaction on SQLite,
a row lock on PostgreSQL), so two Yes answers racing for the last seat cannot both win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from piccolo.querystring import QueryString

from campaigns.cadence import CadenceError, check_time_zone
from campaigns.tables import Rsvp, Workshop
from crm import audit
from crm.audit import Actor
from crm.db import atomic, lock_row
from crm.errors import FieldError
from crm.tables import Clinician, Segment, User
from crm.text import plain_text, single_line

ANSWERS = ("yes", "maybe", "no")
STATUSES = ("scheduled", "cancelled", "completed")
MAX_CAPACITY = 10_000
# Changes that invitees must hear about (a new calendar SEQUENCE).
NOTIFIED_FIELDS = ("starts_at", "ends_at", "time_zone", "venue", "virtual_url")


class WorkshopError(FieldError):
    pass


def _local(day: str, clock: str, zone: ZoneInfo, field_name: str) -> datetime:
    try:
        parsed_day = date.fromisoformat(day.strip())
    except ValueError:
        raise WorkshopError("date", "enter the date as YYYY-MM-DD, a day that exists") from None
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", clock.strip())
    if not match:
        raise WorkshopError(field_name, "enter the time as HH:MM, like 17:30")
    local = datetime.combine(parsed_day, time(int(match[1]), int(match[2])), tzinfo=zone)
    # A wall-clock time skipped by a daylight-saving change does not exist: it would silently move.
    if local.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise WorkshopError(field_name, "that time does not exist on that day (the clocks change)")
    return local


@dataclass(frozen=True)
class WorkshopInput:
    title: str
    topic: str
    service_line: str
    description: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    venue: str
    virtual_url: str
    capacity: int | None
    credit_hours: str
    host: int | None
    segment: int | None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> WorkshopInput:
        title = single_line(str(data.get("title") or ""))
        if not 1 <= len(title) <= 200:
            raise WorkshopError("title", "give the workshop a title of 1 to 200 characters")
        time_zone = str(data.get("time_zone") or "America/New_York").strip()
        try:
            zone = check_time_zone(time_zone)
        except CadenceError as error:
            raise WorkshopError("time_zone", error.message) from None
        day = str(data.get("date") or "")
        starts_at = _local(day, str(data.get("start_time") or ""), zone, "start_time")
        ends_at = _local(day, str(data.get("end_time") or ""), zone, "end_time")
        # Compared in UTC: datetimes sharing a tzinfo compare by wall clock, ignoring the offset.
        starts_at, ends_at = starts_at.astimezone(timezone.utc), ends_at.astimezone(timezone.utc)
        if ends_at <= starts_at:
            raise WorkshopError("end_time", "the workshop must end after it starts")
        venue = single_line(str(data.get("venue") or ""))[:300]
        virtual_url = str(data.get("virtual_url") or "").strip()
        if virtual_url:
            parts = urlsplit(virtual_url)
            if parts.scheme not in ("https", "http") or not parts.hostname or len(virtual_url) > 500:
                raise WorkshopError("virtual_url", "the virtual link must be an https:// address")
        if not venue and not virtual_url:
            raise WorkshopError("venue", "give a venue, a virtual link, or both")
        raw_capacity = str(data.get("capacity") or "").strip()
        capacity = None
        if raw_capacity:
            # ASCII digits only: str.isdigit() accepts "²", which int() then rejects.
            if not re.fullmatch(r"[0-9]{1,6}", raw_capacity) or not 1 <= int(raw_capacity) <= MAX_CAPACITY:
                raise WorkshopError("capacity", f"the capacity is a number of seats from 1 to {MAX_CAPACITY} (empty: no limit)")
            capacity = int(raw_capacity)
        credit = str(data.get("credit_hours") or "").strip()
        if credit and not re.fullmatch(r"([0-9]{1,2})(\.[0-9]{1,2})?", credit):
            raise WorkshopError("credit_hours", "continuing-education credit is a number of hours, like 1.5")
        ids = {}
        for name in ("host", "segment"):
            raw = str(data.get(name) or "").strip()
            if raw and not re.fullmatch(r"[0-9]{1,9}", raw):
                raise WorkshopError(name, f"choose the {name} from the list")
            ids[name] = int(raw) if raw else None
        return cls(
            title=title, topic=single_line(str(data.get("topic") or ""))[:200],
            service_line=single_line(str(data.get("service_line") or ""))[:60],
            description=plain_text(str(data.get("description") or "")).strip()[:5000],
            starts_at=starts_at, ends_at=ends_at,
            time_zone=time_zone, venue=venue, virtual_url=virtual_url, capacity=capacity, credit_hours=credit,
            host=ids["host"], segment=ids["segment"],
        )


async def get_workshop(workshop_id: int) -> Workshop | None:
    return await Workshop.objects().where(Workshop.id == workshop_id).first().run()


async def lock_workshop(workshop_id: int) -> Workshop | None:
    """The workshop, locked until the transaction ends: answers and check-ins queue behind it."""
    await lock_row(Workshop, workshop_id)
    return await get_workshop(workshop_id)


async def seats_taken(workshop_id: int) -> int:
    return await Rsvp.count().where(Rsvp.workshop == workshop_id, Rsvp.answer == "yes").run()


async def save_workshop(
    data: Mapping[str, Any], *, actor: Actor, now: datetime, workshop_id: int | None = None
) -> tuple[Workshop, list[int]]:
    """Create or change a workshop; returns it and the clinicians promoted from the waitlist
    (when the capacity grew). A change of time or place increments ``sequence``."""
    checked = WorkshopInput.from_mapping(data)
    async with atomic():
        for name, table in (("host", User), ("segment", Segment)):
            value = getattr(checked, name)
            if value is not None and not await table.exists().where(table.id == value).run():
                raise WorkshopError(name, f"that {name} does not exist")
        values = {k: getattr(checked, k) for k in checked.__dataclass_fields__}
        promoted: list[int] = []
        if workshop_id is None:
            if checked.starts_at <= now:
                raise WorkshopError("date", "a new workshop must start in the future")
            workshop = Workshop(**values, created_by=actor.user_id, created_at=now, updated_at=now)
            await workshop.save().run()
            before = None
        else:
            workshop = await lock_workshop(workshop_id)
            if workshop is None:
                raise WorkshopError("id", "no such workshop")
            if workshop.status != "scheduled":
                raise WorkshopError("status", f"a {workshop.status} workshop cannot be changed")
            taken = await seats_taken(workshop_id)
            if checked.capacity is not None and checked.capacity < taken:
                raise WorkshopError(
                    "capacity", f"{taken} clinicians already have a seat: the capacity cannot be below {taken}"
                )
            before = {name: str(getattr(workshop, name)) for name in NOTIFIED_FIELDS + ("capacity", "title")}
            changed = any(getattr(workshop, name) != values[name] for name in NOTIFIED_FIELDS)
            for name, value in values.items():
                setattr(workshop, name, value)
            workshop.updated_at = now
            if changed:
                workshop.sequence += 1
            await workshop.save().run()
            promoted = await _promote(workshop, now)
        await audit.record(
            "workshop.update" if before else "workshop.create", actor=actor, object_type="workshop",
            object_id=workshop.id, before=before,
            after={name: str(getattr(workshop, name)) for name in NOTIFIED_FIELDS + ("capacity", "title")},
        )
    return workshop, promoted


async def cancel_workshop(workshop_id: int, *, actor: Actor, now: datetime) -> Workshop:
    async with atomic():
        workshop = await lock_workshop(workshop_id)
        if workshop is None:
            raise WorkshopError("id", "no such workshop")
        if workshop.status != "scheduled":
            raise WorkshopError("status", f"the workshop is already {workshop.status}")
        workshop.status, workshop.sequence, workshop.updated_at = "cancelled", workshop.sequence + 1, now
        await workshop.save([Workshop.status, Workshop.sequence, Workshop.updated_at]).run()
        await audit.record("workshop.cancel", actor=actor, object_type="workshop", object_id=workshop_id,
                           before={"status": "scheduled"}, after={"status": "cancelled"})
    return workshop


@dataclass
class AnswerResult:
    answer: str  # what is recorded now: yes, waitlist, maybe or no
    changed: bool
    promoted: list[int] = field(default_factory=list)


async def answer(
    workshop_id: int, clinician_id: int, reply: str, *, now: datetime, source: str = "link"
) -> AnswerResult:
    """Record a clinician's answer; answering again is idempotent and may change the answer."""
    if reply not in ANSWERS:
        raise WorkshopError("answer", "answer yes, maybe or no")
    async with atomic():
        workshop = await lock_workshop(workshop_id)
        if workshop is None:
            raise WorkshopError("id", "no such workshop")
        if workshop.status == "cancelled":
            raise WorkshopError("status", "this workshop was cancelled")
        if now >= workshop.ends_at or workshop.status == "completed":
            raise WorkshopError("status", "this workshop is over")
        if not await Clinician.exists().where(Clinician.id == clinician_id).run():
            raise WorkshopError("clinician", "this invitation is no longer valid")
        current = await Rsvp.objects().where(Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id).first().run()
        previous = current.answer if current else None
        if reply == "yes" and previous in ("yes", "waitlist"):
            return AnswerResult(previous, False)
        if reply != "yes" and previous == reply:
            return AnswerResult(reply, False)
        recorded = reply
        if reply == "yes" and workshop.capacity is not None and await seats_taken(workshop_id) >= workshop.capacity:
            recorded = "waitlist"
        if current is None:
            current = Rsvp(workshop=workshop_id, clinician=clinician_id)
        current.answer, current.answered_at, current.source = recorded, now, source
        current.waitlisted_at = now if recorded == "waitlist" else None
        await current.save().run()
        promoted = await _promote(workshop, now) if previous == "yes" else []
    return AnswerResult(recorded, True, promoted)


async def _promote(workshop: Workshop, now: datetime) -> list[int]:
    """Give free seats to the waitlist, first come first served; returns the promoted clinicians."""
    waiting = Rsvp.objects().where(Rsvp.workshop == workshop.id, Rsvp.answer == "waitlist").order_by(
        Rsvp.waitlisted_at
    ).order_by(Rsvp.id)
    if workshop.capacity is not None:
        free = workshop.capacity - await seats_taken(workshop.id)
        if free <= 0:
            return []
        waiting = waiting.limit(free)
    promoted = []
    for rsvp in await waiting.run():
        rsvp.answer, rsvp.waitlisted_at = "yes", None
        await rsvp.save([Rsvp.answer, Rsvp.waitlisted_at]).run()
        promoted.append(rsvp.clinician)
    return promoted


async def counts(workshop_id: int) -> dict[str, int]:
    return (await counts_by_workshop([workshop_id]))[workshop_id]


async def counts_by_workshop(ids: list[int]) -> dict[int, dict[str, int]]:
    """Answers (yes, waitlist, maybe, no) and attendance of each workshop, in one query."""
    result = {i: {name: 0 for name in ("yes", "waitlist", "maybe", "no", "attended")} for i in ids}
    if not ids:
        return result
    marks = ", ".join("{}" for _ in ids)
    rows = await Rsvp._meta.db.run_querystring(
        QueryString(
            "SELECT workshop, answer, COUNT(*) AS n, SUM(CASE WHEN attended THEN 1 ELSE 0 END) AS came "
            f"FROM rsvp WHERE workshop IN ({marks}) GROUP BY workshop, answer", *ids,
        )
    )
    for row in rows:
        tally = result[row["workshop"]]
        tally[row["answer"]] = row["n"]
        tally["attended"] += row["came"] or 0
    return result


# ------------------------------------------------------------------------------------------------
# On the day: check-in and walk-ins


async def check_in(workshop_id: int, rsvp_id: int, attended: bool, now: datetime, actor: Actor) -> Rsvp:
    """Record that the clinician of ``rsvp_id`` came (or undo it); recording what is already
    recorded changes nothing. An answer to another workshop is refused (field ``rsvp``)."""
    async with atomic():
        workshop = await lock_workshop(workshop_id)
        if workshop is None:
            raise WorkshopError("id", "no such workshop")
        rsvp = await Rsvp.objects().where(Rsvp.id == rsvp_id, Rsvp.workshop == workshop_id).first().run()
        if rsvp is None:
            raise WorkshopError("rsvp", "no such answer to this workshop")
        if workshop.status == "cancelled":
            raise WorkshopError("status", "this workshop was cancelled")
        await set_attended(rsvp, attended, now=now, actor=actor)
    return rsvp


async def walk_in(workshop_id: int, clinician_id: int, now: datetime, actor: Actor) -> Rsvp:
    """Check in a clinician who came without answering: recorded as a Yes from ``walk_in`` (even
    beyond the capacity: they are in the room). One who had answered is checked in, answer kept."""
    async with atomic():
        workshop = await lock_workshop(workshop_id)
        if workshop is None:
            raise WorkshopError("id", "no such workshop")
        if workshop.status == "cancelled":
            raise WorkshopError("status", "this workshop was cancelled")
        if not await Clinician.exists().where(Clinician.id == clinician_id).run():
            raise WorkshopError("clinician", "choose the clinician from the list")
        rsvp = await Rsvp.objects().where(Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id).first().run()
        if rsvp is None:
            return await add_walk_in(workshop_id, clinician_id, now=now, actor=actor)
        await set_attended(rsvp, True, now=now, actor=actor)
    return rsvp


# The steps that check-in, walk-ins and the attendance import share. They run inside the
# caller's transaction, with the workshop locked.


async def set_attended(rsvp: Rsvp, attended: bool, *, now: datetime, actor: Actor, source: str = "") -> bool:
    """Record that the clinician came (or undo it), with the audit trail; False when it was so."""
    if bool(rsvp.attended) == attended:
        return False
    before = {"attended": rsvp.attended, "checked_in_at": str(rsvp.checked_in_at)}
    rsvp.attended, rsvp.checked_in_at = attended, (now if attended else None)
    await rsvp.save([Rsvp.attended, Rsvp.checked_in_at]).run()
    after = {"workshop": rsvp.workshop, "clinician": rsvp.clinician, "attended": attended,
             "checked_in_at": str(rsvp.checked_in_at)}
    await audit.record(
        "workshop.check_in" if attended else "workshop.check_in_undo", actor=actor, object_type="rsvp",
        object_id=rsvp.id, before=before, after={**after, "source": source} if source else after,
    )
    return True


async def add_walk_in(workshop_id: int, clinician_id: int, *, now: datetime, actor: Actor,
                      source: str = "walk_in") -> Rsvp:
    """A clinician who came without answering: a Yes, checked in (even beyond the capacity: they
    are in the room)."""
    rsvp = Rsvp(workshop=workshop_id, clinician=clinician_id, answer="yes", answered_at=now, source=source,
                attended=True, checked_in_at=now)
    await rsvp.save().run()
    after = {"workshop": workshop_id, "clinician": clinician_id, "answer": "yes", "attended": True}
    await audit.record(
        "workshop.walk_in", actor=actor, object_type="rsvp", object_id=rsvp.id, before=None,
        after={**after, "source": source} if source != "walk_in" else after,
    )
    return rsvp
