"""The roster in the JSON API (/api/v1): clinicians, practices, segments and activities, with the
same filters, validation and permissions as the pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

import msgspec

from litestar import Controller, Request, get, patch, post
from litestar.exceptions import NotFoundException, PermissionDeniedException, ValidationException
from litestar.params import JSONBody, QueryParameter

from crm import activities, clinicians, roster, segments
from crm.access import allow, current_user, signed_in
from crm.forms import ObjectId, request_actor
from crm.roles import Role
from crm.tables import Activity, Clinician, Practice

Text = Annotated["str | None", QueryParameter(required=False)]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]


@dataclass
class ClinicianOut:
    id: int
    npi: str | None
    first_name: str
    last_name: str
    credential: str
    role: str
    taxonomy_code: str | None
    specialty: str
    practice_id: int | None
    practice_name: str | None
    city: str
    state: str
    postal_code: str
    email: str | None
    tier: str | None
    owner_id: int | None
    do_not_contact: bool
    active: bool


@dataclass
class ClinicianPage:
    items: list[ClinicianOut]
    next_cursor: str | None


@dataclass
class PracticeOut:
    id: int
    name: str
    organization_npi: str | None
    address_line1: str
    city: str
    state: str
    postal_code: str
    phone: str
    active: bool


@dataclass
class SegmentOut:
    id: int
    name: str
    description: str
    filters: dict[str, Any]
    member_count: int


class ClinicianIn(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to set; on PATCH, fields left out keep their value. Tags are comma-separated.
    An unknown field is refused (a misspelt field must not be dropped silently)."""

    npi: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None
    credential: str | None = None
    taxonomy_code: str | None = None
    email: str | None = None
    phone: str | None = None
    fax: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    tier: str | None = None
    tags: str | None = None
    consent_source: str | None = None
    do_not_contact: bool | None = None
    owner: int | None = None
    role_override: str | None = None

    def as_form(self) -> dict[str, str]:
        values = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            values[name] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        return values


class ActivityIn(msgspec.Struct, forbid_unknown_fields=True):
    """``kind``: visit, call, email, lunch_and_learn or note. Dates are YYYY-MM-DD."""

    kind: str
    outcome: str = ""
    notes: str = ""
    occurred_on: str | None = None
    follow_up_on: str | None = None


@dataclass
class ActivityOut:
    id: int
    clinician_id: int
    kind: str
    outcome: str
    notes: str
    occurred_at: datetime
    follow_up_on: date | None
    follow_up_done: bool
    author_id: int | None


def _clinician(row: dict[str, Any], specialties: dict[str, str]) -> ClinicianOut:
    return ClinicianOut(
        id=row["id"], npi=row["npi"], first_name=row["first_name"], last_name=row["last_name"],
        credential=row["credential"], role=row["role"], taxonomy_code=row["taxonomy_code"],
        specialty=specialties.get(row["taxonomy_code"] or "", ""), practice_id=row["practice"],
        practice_name=row.get("practice_name"), city=row["city"], state=row["state"],
        postal_code=row["postal_code"], email=row["email"], tier=row["tier"], owner_id=row["owner"],
        do_not_contact=bool(row["do_not_contact"]), active=bool(row["active"]),
    )


def _page(result: roster.Page) -> ClinicianPage:
    return ClinicianPage(items=[_clinician(r, result.specialties) for r in result.rows], next_cursor=result.next_cursor)


class RosterApi(Controller):
    path = "/api/v1"
    opt = signed_in()
    tags = ["roster"]

    @get("/clinicians", summary="Clinicians matching the roster filters, a page at a time")
    async def clinicians(
        self,
        request: Request,
        q: Text = None, role: Annotated["list[str] | None", QueryParameter(required=False)] = None,
        taxonomy: Text = None, group: Text = None,
        state_code: Annotated["str | None", QueryParameter(name="state", required=False)] = None,
        city: Text = None,
        zip: Text = None, owner: Text = None, tier: Text = None, tag: Text = None, dnc: Text = None,
        status: Text = None, sort: Annotated[str, QueryParameter()] = "name", after: Text = None,
        limit: Limit = roster.PAGE_SIZE,
    ) -> ClinicianPage:
        """Filters as on the clinician list: ``role`` repeats; ``taxonomy`` takes codes or
        prefixes, comma-separated; ``owner`` is ``me``, ``none`` or a user id. Follow
        ``next_cursor`` with ``after``."""
        data = {k: v for k, v in dict(q=q, role=role, taxonomy=taxonomy, group=group, state=state_code, city=city,
                                      zip=zip, owner=owner, tier=tier, tag=tag, dnc=dnc, status=status).items()
                if v is not None}
        try:
            result = await roster.page(roster.RosterFilter.from_mapping(data), viewer_id=current_user(request).id,
                                       sort=sort, after=after, limit=limit)
        except roster.FilterError as error:
            raise ValidationException(f"{error.field}: {error.message}") from None
        return _page(result)

    @get("/clinicians/{clinician_id:int}", summary="One clinician")
    async def clinician(self, clinician_id: ObjectId) -> ClinicianOut:
        row = await Clinician.select(*roster.LIST_COLUMNS).where(Clinician.id == clinician_id).first().run()
        if row is None:
            raise NotFoundException("No such clinician.")
        return _clinician(row, await roster.specialty_names([row]))

    @post("/clinicians", summary="Add a clinician", opt=allow(Role.liaison, Role.manager))
    async def create_clinician(self, request: Request, data: JSONBody[ClinicianIn]) -> ClinicianOut:
        return await _save_api(request, data, None)

    @patch("/clinicians/{clinician_id:int}", summary="Change a clinician (fields left out are kept)",
           opt=allow(Role.liaison, Role.manager))
    async def update_clinician(self, request: Request, clinician_id: ObjectId,
                               data: JSONBody[ClinicianIn]) -> ClinicianOut:
        return await _save_api(request, data, clinician_id)

    @get("/clinicians/{clinician_id:int}/activities", summary="A clinician's logged touches, newest first")
    async def activities(self, clinician_id: ObjectId) -> list[ActivityOut]:
        if not await Clinician.exists().where(Clinician.id == clinician_id).run():
            raise NotFoundException("No such clinician.")
        rows = await Activity.select().where(Activity.clinician == clinician_id).order_by(
            Activity.occurred_at, ascending=False).limit(500).run()
        return [_activity(row) for row in rows]

    @post("/clinicians/{clinician_id:int}/activities", summary="Log a touch",
          opt=allow(Role.liaison, Role.manager))
    async def log_touch(self, request: Request, clinician_id: ObjectId, data: JSONBody[ActivityIn]) -> ActivityOut:
        try:
            activity = await activities.log_touch(
                clinician_id, kind=data.kind, outcome=data.outcome, notes=data.notes,
                occurred_on=data.occurred_on, follow_up_on=data.follow_up_on, actor=request_actor(request),
            )
        except activities.ActivityError as error:
            if error.field == "clinician":
                raise NotFoundException("No such clinician.") from None
            raise ValidationException(f"{error.field}: {error.message}") from None
        row = await Activity.select().where(Activity.id == activity.id).first().run()
        return _activity(row)

    @get("/practices/{practice_id:int}", summary="One practice")
    async def practice(self, practice_id: ObjectId) -> PracticeOut:
        p = await Practice.select().where(Practice.id == practice_id).first().run()
        if p is None:
            raise NotFoundException("No such practice.")
        return PracticeOut(id=p["id"], name=p["name"], organization_npi=p["organization_npi"],
                           address_line1=p["address_line1"], city=p["city"], state=p["state"],
                           postal_code=p["postal_code"], phone=p["phone"], active=bool(p["active"]))

    @get("/segments", summary="Saved segments with their current member counts")
    async def segments(self) -> list[SegmentOut]:
        return [await _segment(s) for s in await segments.list_segments()]

    @get("/segments/{segment_id:int}", summary="One segment")
    async def segment(self, segment_id: ObjectId) -> SegmentOut:
        found = await segments.get_segment(segment_id)
        if found is None:
            raise NotFoundException("No such segment.")
        return await _segment(found)

    @get("/segments/{segment_id:int}/members", summary="The clinicians in a segment now, a page at a time")
    async def members(self, segment_id: ObjectId, after: Text = None, limit: Limit = roster.PAGE_SIZE) -> ClinicianPage:
        found = await segments.get_segment(segment_id)
        if found is None:
            raise NotFoundException("No such segment.")
        try:
            return _page(await segments.members(found, after=after, limit=limit))
        except roster.FilterError as error:
            raise ValidationException(f"{error.field}: {error.message}") from None


async def _save_api(request: Request, data: ClinicianIn, clinician_id: int | None) -> ClinicianOut:
    try:
        saved = await clinicians.save_clinician(data.as_form(), user=current_user(request),
                                                actor=request_actor(request), clinician_id=clinician_id)
    except PermissionError as error:
        raise PermissionDeniedException(str(error)) from None
    except clinicians.ClinicianError as error:
        if error.field == "id":
            raise NotFoundException("No such clinician.") from None
        raise ValidationException(f"{error.field}: {error.message}") from None
    row = await Clinician.select(*roster.LIST_COLUMNS).where(Clinician.id == saved.id).first().run()
    return _clinician(row, await roster.specialty_names([row]))


async def _segment(segment) -> SegmentOut:
    return SegmentOut(id=segment.id, name=segment.name, description=segment.description,
                      filters=segments.definition(segment), member_count=await segments.member_count(segment))


def _activity(row: dict[str, Any]) -> ActivityOut:
    return ActivityOut(id=row["id"], clinician_id=row["clinician"], kind=row["kind"], outcome=row["outcome"],
                       notes=row["notes"], occurred_at=row["occurred_at"], follow_up_on=row["follow_up_on"],
                       follow_up_done=bool(row["follow_up_done"]), author_id=row["author"])
