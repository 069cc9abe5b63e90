"""Workshops and their RSVPs in the JSON API (/api/v1), with the same rules and roles as the pages.

Dates and times go in as the form takes them: ``date`` "YYYY-MM-DD", ``start_time`` and
``end_time`` "HH:MM", in the workshop's ``time_zone``. Every rule lives in ``campaigns.workshops``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, get, patch, post, put
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import JSONBody, QueryParameter

from campaigns import workshops
from campaigns.tables import Rsvp, Workshop
from campaigns.workshops import WorkshopError
from crm.access import allow, signed_in
from crm.forms import ObjectId, request_actor, request_now
from crm.roles import Role
from crm.tables import Clinician

EDIT = allow(Role.marketer, Role.manager)
WHEN = ("upcoming", "past", "all")
ANSWER_ORDER = {"yes": 0, "waitlist": 1, "maybe": 2, "no": 3}
LISTED = 500
When = Annotated["str | None", QueryParameter(required=False)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET



class WorkshopIn(msgspec.Struct, forbid_unknown_fields=True):
    """A workshop's settings. On POST, ``title``, ``date``, ``start_time``, ``end_time`` and a
    ``venue`` or ``virtual_url`` are needed; on PATCH, fields left out keep their value and null
    clears one (``capacity`` null: no limit). ``time_zone`` defaults to America/New_York."""

    title: str | None | Unset = UNSET
    topic: str | None | Unset = UNSET
    service_line: str | None | Unset = UNSET
    description: str | None | Unset = UNSET
    date: str | None | Unset = UNSET
    start_time: str | None | Unset = UNSET
    end_time: str | None | Unset = UNSET
    time_zone: str | None | Unset = UNSET
    venue: str | None | Unset = UNSET
    virtual_url: str | None | Unset = UNSET
    capacity: int | None | Unset = UNSET
    credit_hours: str | float | None | Unset = UNSET
    host_id: int | None | Unset = UNSET
    segment_id: int | None | Unset = UNSET


class AnswerIn(msgspec.Struct, forbid_unknown_fields=True):
    """``yes``, ``maybe`` or ``no``."""

    answer: str


@dataclass
class WorkshopOut:
    id: int
    title: str
    topic: str
    service_line: str
    description: str
    status: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    date: str
    start_time: str
    end_time: str
    venue: str
    virtual_url: str
    capacity: int | None
    credit_hours: str
    host_id: int | None
    segment_id: int | None
    sequence: int
    counts: dict[str, int]
    created_at: datetime
    updated_at: datetime
    promoted: list[int] = field(default_factory=list)


@dataclass
class RsvpOut:
    id: int
    clinician_id: int
    answer: str
    answered_at: datetime
    waitlist_position: int | None
    attended: bool
    checked_in_at: datetime | None
    source: str


@dataclass
class AnswerOut:
    workshop_id: int
    clinician_id: int
    answer: str  # what is recorded: yes, waitlist, maybe or no
    changed: bool
    waitlist_position: int | None
    promoted: list[int]


def _zone(workshop: Workshop) -> ZoneInfo:
    try:
        return ZoneInfo(workshop.time_zone)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _form_of(workshop: Workshop) -> dict[str, str]:
    """The stored workshop as the form-like strings ``WorkshopInput.from_mapping`` takes."""
    zone = _zone(workshop)
    starts, ends = _utc(workshop.starts_at).astimezone(zone), _utc(workshop.ends_at).astimezone(zone)
    return {
        "title": workshop.title, "topic": workshop.topic, "service_line": workshop.service_line,
        "description": workshop.description, "date": starts.date().isoformat(), "start_time": f"{starts:%H:%M}",
        "end_time": f"{ends:%H:%M}", "time_zone": workshop.time_zone, "venue": workshop.venue,
        "virtual_url": workshop.virtual_url, "capacity": "" if workshop.capacity is None else str(workshop.capacity),
        "credit_hours": workshop.credit_hours, "host": str(workshop.host or ""),
        "segment": str(workshop.segment or ""),
    }


def _merged(data: WorkshopIn, base: dict[str, str]) -> dict[str, str]:
    values = dict(base)
    for name in data.__struct_fields__:
        value = getattr(data, name)
        if value is UNSET:
            continue
        values[name.removesuffix("_id")] = "" if value is None else str(value)
    return values



def _out(workshop: Workshop, tally: dict[str, int], promoted: list[int] | None = None) -> WorkshopOut:
    zone = _zone(workshop)
    starts, ends = _utc(workshop.starts_at), _utc(workshop.ends_at)
    local_start, local_end = starts.astimezone(zone), ends.astimezone(zone)
    return WorkshopOut(
        id=workshop.id, title=workshop.title, topic=workshop.topic, service_line=workshop.service_line,
        description=workshop.description, status=workshop.status, starts_at=starts, ends_at=ends,
        time_zone=workshop.time_zone, date=local_start.date().isoformat(), start_time=f"{local_start:%H:%M}",
        end_time=f"{local_end:%H:%M}", venue=workshop.venue, virtual_url=workshop.virtual_url,
        capacity=workshop.capacity, credit_hours=workshop.credit_hours, host_id=workshop.host,
        segment_id=workshop.segment, sequence=workshop.sequence, counts=tally,
        created_at=_utc(workshop.created_at), updated_at=_utc(workshop.updated_at), promoted=list(promoted or []),
    )


async def _one(workshop: Workshop, promoted: list[int] | None = None) -> WorkshopOut:
    return _out(workshop, (await workshops.counts_by_workshop([workshop.id]))[workshop.id], promoted)


async def _workshop(workshop_id: int) -> Workshop:
    workshop = await workshops.get_workshop(workshop_id)
    if workshop is None:
        raise NotFoundException("No such workshop.")
    return workshop


def _refuse(error: WorkshopError) -> NotFoundException | ValidationException:
    if error.field == "id":
        return NotFoundException("No such workshop.")
    return ValidationException(f"{error.field}: {error.message}")


async def _waitlist_positions(workshop_id: int) -> dict[int, int]:
    """Waitlist position (from 1) of each waiting RSVP id, in promotion order."""
    rows = await Rsvp.select(Rsvp.id, Rsvp.waitlisted_at, Rsvp.answered_at).where(
        Rsvp.workshop == workshop_id, Rsvp.answer == "waitlist"
    ).run()
    waiting = sorted(rows, key=lambda r: (_utc(r["waitlisted_at"] or r["answered_at"]), r["id"]))
    return {row["id"]: n for n, row in enumerate(waiting, start=1)}


class WorkshopApi(Controller):
    path = "/api/v1"
    opt = signed_in()
    tags = ["workshops"]

    @get("/workshops", summary="Workshops with their answer counts")
    async def workshops(self, request: Request, when: When = None) -> list[WorkshopOut]:
        """``when``: ``upcoming`` (not yet ended, soonest first; the default), ``past`` (ended, most
        recent first) or ``all`` (most recent start first)."""
        when = when or "upcoming"
        if when not in WHEN:
            raise ValidationException(f"when: use one of {', '.join(WHEN)}")
        now = request_now(request)
        query = Workshop.objects().limit(LISTED)
        if when == "upcoming":
            query = query.where(Workshop.ends_at > now).order_by(Workshop.starts_at).order_by(Workshop.id)
        elif when == "past":
            query = query.where(Workshop.ends_at <= now).order_by(Workshop.starts_at, ascending=False).order_by(
                Workshop.id, ascending=False
            )
        else:
            query = query.order_by(Workshop.starts_at, ascending=False).order_by(Workshop.id, ascending=False)
        rows = await query.run()
        tallies = await workshops.counts_by_workshop([w.id for w in rows])
        return [_out(w, tallies[w.id]) for w in rows]

    @post("/workshops", summary="Plan a workshop", opt=EDIT)
    async def create(self, request: Request, data: JSONBody[WorkshopIn]) -> WorkshopOut:
        try:
            workshop, promoted = await workshops.save_workshop(
                _merged(data, {}), actor=request_actor(request), now=request_now(request)
            )
        except WorkshopError as error:
            raise _refuse(error) from None
        return await _one(workshop, promoted)

    @get("/workshops/{workshop_id:int}", summary="One workshop with its answer counts")
    async def workshop(self, workshop_id: ObjectId) -> WorkshopOut:
        return await _one(await _workshop(workshop_id))

    @patch("/workshops/{workshop_id:int}", opt=EDIT,
           summary="Change a workshop (fields left out are kept; a change of time or place increments sequence)")
    async def update(self, request: Request, workshop_id: ObjectId, data: JSONBody[WorkshopIn]) -> WorkshopOut:
        """``promoted`` lists the clinicians given a seat from the waitlist (the capacity grew)."""
        workshop = await _workshop(workshop_id)
        try:
            workshop, promoted = await workshops.save_workshop(
                _merged(data, _form_of(workshop)), actor=request_actor(request), now=request_now(request),
                workshop_id=workshop_id,
            )
        except WorkshopError as error:
            raise _refuse(error) from None
        return await _one(workshop, promoted)

    @post("/workshops/{workshop_id:int}/cancel", status_code=200, opt=EDIT, summary="Cancel a workshop")
    async def cancel(self, request: Request, workshop_id: ObjectId) -> WorkshopOut:
        await _workshop(workshop_id)
        try:
            workshop = await workshops.cancel_workshop(workshop_id, actor=request_actor(request), now=request_now(request))
        except WorkshopError as error:
            raise _refuse(error) from None
        return await _one(workshop)

    @get("/workshops/{workshop_id:int}/rsvps", summary="The answers to a workshop")
    async def rsvps(self, workshop_id: ObjectId) -> list[RsvpOut]:
        """Yes first, then the waitlist in its order, Maybe and No."""
        await _workshop(workshop_id)
        rows = await Rsvp.select(
            Rsvp.id, Rsvp.clinician, Rsvp.answer, Rsvp.answered_at, Rsvp.waitlisted_at, Rsvp.attended,
            Rsvp.checked_in_at, Rsvp.source,
        ).where(Rsvp.workshop == workshop_id).run()
        positions = await _waitlist_positions(workshop_id)
        rows.sort(key=lambda r: (ANSWER_ORDER.get(r["answer"], 9), positions.get(r["id"], 0), r["id"]))
        return [
            RsvpOut(
                id=r["id"], clinician_id=r["clinician"], answer=r["answer"], answered_at=_utc(r["answered_at"]),
                waitlist_position=positions.get(r["id"]), attended=bool(r["attended"]),
                checked_in_at=_utc(r["checked_in_at"]) if r["checked_in_at"] else None, source=r["source"],
            )
            for r in rows
        ]

    @put("/workshops/{workshop_id:int}/rsvps/{clinician_id:int}", opt=EDIT,
         summary="Record a clinician's answer (given by phone, say)")
    async def record_answer(
        self, request: Request, workshop_id: ObjectId, clinician_id: ObjectId, data: JSONBody[AnswerIn]
    ) -> AnswerOut:
        """A Yes takes a seat while there is one and waits on the waitlist otherwise; a Yes that
        becomes Maybe or No frees its seat for the first waiting clinician (``promoted``)."""
        await _workshop(workshop_id)
        if not await Clinician.exists().where(Clinician.id == clinician_id).run():
            raise NotFoundException("No such clinician.")
        try:
            result = await workshops.answer(workshop_id, clinician_id, data.answer, now=request_now(request), source="api")
        except WorkshopError as error:
            if error.field == "clinician":
                raise NotFoundException("No such clinician.") from None
            raise _refuse(error) from None
        position = None
        if result.answer == "waitlist":
            row = await Rsvp.select(Rsvp.id).where(
                Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id
            ).first().run()
            position = (await _waitlist_positions(workshop_id)).get(row["id"]) if row else None
        return AnswerOut(workshop_id, clinician_id, result.answer, result.changed, position, result.promoted)
