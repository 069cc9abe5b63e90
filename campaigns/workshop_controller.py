"""Workshop pages: the list (upcoming and past), the form to plan or change a workshop (with a
confirmation when the change will notify invitees), the workshop's page with its counts and roster,
the roster as CSV, cancellation with a confirmation step, and the check-in list for the day
(tablet-friendly, with walk-ins). Every rule lives in ``campaigns.workshops``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template

from campaigns.attendance_import import import_attendance
from campaigns.campaign_controller import TIME_ZONES
from campaigns.tables import Rsvp, Workshop
from campaigns.workshops import (
    NOTIFIED_FIELDS,
    WorkshopError,
    WorkshopInput,
    cancel_workshop,
    check_in,
    counts,
    counts_by_workshop,
    get_workshop,
    save_workshop,
    walk_in,
)
from crm.access import allow, current_user, signed_in
from crm.csv_input import InputRefused
from crm.csv_output import csv_chunk
from crm.forms import ObjectId, request_actor, request_now
from crm.roles import Role, role_allows
from crm.roster import contains, escape_like
from crm.tables import Clinician, Segment, User
from crm.text import single_line

EDIT_ROLES = (Role.marketer, Role.manager)
CHECK_IN_ROLES = (Role.liaison, Role.marketer, Role.manager)
FORM_FIELDS = (
    "title", "topic", "service_line", "description", "date", "start_time", "end_time", "time_zone", "venue",
    "virtual_url", "capacity", "credit_hours", "host", "segment",
)
ANSWER_ORDER = {"yes": 0, "waitlist": 1, "maybe": 2, "no": 3}
ANSWER_LABELS = {"yes": "Yes", "waitlist": "Waitlist", "maybe": "Maybe", "no": "No"}
CHECK_IN_ANSWERS = ("yes", "waitlist", "maybe")
# What a change of each notified field is called in the confirmation.
CHANGE_LABELS = {"starts_at": "the date or time", "ends_at": "the date or time", "time_zone": "the time zone",
                 "venue": "the venue", "virtual_url": "the virtual link"}
PAST_SHOWN = 50
ATTENDANCE_MAX_BYTES = 5 * 1024 * 1024
ATTENDANCE_SHOWN_ERRORS = 500
WALK_IN_MATCHES = 20
DONE = {
    "created": "Workshop saved. Invitations to the segment are sent in a later step.",
    "saved": "Saved.",
    "notified": "Saved. The time or place changed: invitees will get the updated invitation.",
    "cancelled": "Workshop cancelled. Invitees will be told.",
}


def _zone(workshop: Workshop) -> ZoneInfo:
    try:
        return ZoneInfo(workshop.time_zone)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(zone)


def _stamp(value: datetime | None, zone: ZoneInfo) -> str:
    local = _local(value, zone)
    return local.strftime("%d %b %Y, %H:%M %Z") if local else ""


def _view(workshop: Workshop) -> dict[str, Any]:
    """A workshop as the pages show it: its date and times in its own time zone."""
    zone = _zone(workshop)
    starts, ends = _local(workshop.starts_at, zone), _local(workshop.ends_at, zone)
    same_day = starts.date() == ends.date()
    span = f"{starts:%H:%M}–{ends:%H:%M %Z}" if same_day else f"{starts:%H:%M %Z} – {ends:%a %d %b %Y, %H:%M %Z}"
    return {"w": workshop, "day": f"{starts:%a %d %b %Y}", "span": span, "zone": workshop.time_zone,
            "when": f"{starts:%a %d %b %Y}, {span}"}


async def _get(workshop_id: int) -> Workshop:
    workshop = await get_workshop(workshop_id)
    if workshop is None:
        raise NotFoundException("No such workshop.")
    return workshop


def _may(request: Request, roles: tuple[Role, ...]) -> bool:
    return role_allows(current_user(request).role, frozenset(roles))


def _form_data(form: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(form.get(name) or "") for name in FORM_FIELDS}


def form_values(workshop: Workshop | None) -> dict[str, str]:
    """What the form shows for an existing workshop (or the defaults of a new one)."""
    if workshop is None:
        values = {name: "" for name in FORM_FIELDS}
        values["time_zone"] = "America/New_York"
        return values
    zone = _zone(workshop)
    starts, ends = _local(workshop.starts_at, zone), _local(workshop.ends_at, zone)
    return {
        "title": workshop.title, "topic": workshop.topic, "service_line": workshop.service_line,
        "description": workshop.description, "date": starts.date().isoformat(), "start_time": f"{starts:%H:%M}",
        "end_time": f"{ends:%H:%M}", "time_zone": workshop.time_zone, "venue": workshop.venue,
        "virtual_url": workshop.virtual_url, "capacity": "" if workshop.capacity is None else str(workshop.capacity),
        "credit_hours": workshop.credit_hours, "host": str(workshop.host or ""), "segment": str(workshop.segment or ""),
    }


def _changes(workshop: Workshop, checked: WorkshopInput) -> list[str]:
    """What invitees must hear about in this change, in words (none: nobody is notified)."""
    labels: list[str] = []
    for name in NOTIFIED_FIELDS:
        if getattr(workshop, name) != getattr(checked, name) and CHANGE_LABELS[name] not in labels:
            labels.append(CHANGE_LABELS[name])
    return labels


def _fingerprint(checked: WorkshopInput) -> str:
    """The notified values that a confirmation was given for (changing them again asks again)."""
    return "|".join(str(getattr(checked, name)) for name in NOTIFIED_FIELDS)



async def _roster(workshop: Workshop) -> list[dict[str, Any]]:
    """Every clinician who answered, Yes first, then the waitlist in its order, Maybe and No;
    each with the answer time (in the workshop's time zone) and waitlist position."""
    rows = await Rsvp.select(
        Rsvp.id, Rsvp.answer, Rsvp.answered_at, Rsvp.waitlisted_at, Rsvp.source, Rsvp.attended, Rsvp.checked_in_at,
        Rsvp.clinician.id.as_alias("clinician_id"), Rsvp.clinician.first_name.as_alias("first_name"),
        Rsvp.clinician.last_name.as_alias("last_name"), Rsvp.clinician.credential.as_alias("credential"),
        Rsvp.clinician.email.as_alias("email"), Rsvp.clinician.practice.name.as_alias("practice_name"),
    ).where(Rsvp.workshop == workshop.id).run()
    zone = _zone(workshop)
    waiting = sorted((r for r in rows if r["answer"] == "waitlist"),
                     key=lambda r: (r["waitlisted_at"] or r["answered_at"], r["id"]))
    position = {r["id"]: n for n, r in enumerate(waiting, start=1)}
    for row in rows:
        row["position"] = position.get(row["id"])
        row["answer_label"] = ANSWER_LABELS.get(row["answer"], row["answer"])
        row["answered"] = _stamp(row["answered_at"], zone)
        row["checked_in"] = _stamp(row["checked_in_at"], zone)
        row["name"] = ", ".join(part for part in (row["last_name"], row["first_name"]) if part) or "(no name)"
    return sorted(rows, key=lambda r: (ANSWER_ORDER.get(r["answer"], 9), r["position"] or 0,
                                       (r["last_name"] or "").lower(), (r["first_name"] or "").lower(), r["id"]))


async def _hosts(current: int | None) -> list[dict[str, Any]]:
    query = User.select(User.id, User.name, User.email).order_by(User.name).order_by(User.email).limit(500)
    query = query.where((User.active == True) | (User.id == (current or -1)))  # noqa: E712
    return await query.run()


async def _segments() -> list[dict[str, Any]]:
    return await Segment.select(Segment.id, Segment.name).order_by(Segment.name).limit(500).run()


def _int(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 9 else None


class WorkshopController(Controller):
    path = "/workshops"
    opt = signed_in()
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        now = request_now(request)
        upcoming = await Workshop.objects().where(Workshop.ends_at > now).order_by(Workshop.starts_at).limit(500).run()
        past = await Workshop.objects().where(Workshop.ends_at <= now).order_by(
            Workshop.starts_at, ascending=False
        ).limit(PAST_SHOWN).run()
        tallies = await counts_by_workshop([w.id for w in upcoming + past])
        return Template(
            template_name="workshops/workshops.html",
            context={
                "upcoming": [{**_view(w), "counts": tallies[w.id]} for w in upcoming],
                "past": [{**_view(w), "counts": tallies[w.id]} for w in past],
                "past_shown": PAST_SHOWN, "may_edit": _may(request, EDIT_ROLES),
            },
        )

    @get("/new", opt=allow(*EDIT_ROLES))
    async def new(self) -> Template:
        return await self._form(None, form_values(None))

    @post("/new", opt=allow(*EDIT_ROLES))
    async def create(self, request: Request) -> Template | Redirect:
        data = _form_data(await request.form())
        try:
            workshop, _ = await save_workshop(data, actor=request_actor(request), now=request_now(request))
        except WorkshopError as error:
            return await self._form(None, data, errors={error.field: error.message}, status=422)
        return Redirect(f"/workshops/{workshop.id}?done=created", status_code=303)

    @get("/{workshop_id:int}")
    async def show(self, request: Request, workshop_id: ObjectId) -> Template:
        return await self._page(request, workshop_id)

    @get("/{workshop_id:int}/roster.csv")
    async def roster_csv(self, workshop_id: ObjectId) -> Response:
        workshop = await _get(workshop_id)
        rows = await _roster(workshop)
        zone = _zone(workshop)

        def iso(value: datetime | None) -> str:
            local = _local(value, zone)
            return local.isoformat(timespec="minutes") if local else ""

        header = ["Last name", "First name", "Credential", "Email", "Practice", "Answer", "Answered at",
                  "Waitlist position", "Attended", "Checked in at", "Source"]
        body = csv_chunk(
            ([r["last_name"], r["first_name"], r["credential"], r["email"] or "", r["practice_name"] or "",
              r["answer"], iso(r["answered_at"]), r["position"] or "", "yes" if r["attended"] else "no",
              iso(r["checked_in_at"]), r["source"]] for r in rows),
            header=header,
        )
        return Response(
            body, media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="workshop-{workshop.id}-roster.csv"'},
        )

    @get("/{workshop_id:int}/edit", opt=allow(*EDIT_ROLES))
    async def edit(self, request: Request, workshop_id: ObjectId) -> Template:
        workshop = await _get(workshop_id)
        if workshop.status != "scheduled":
            return await self._page(request, workshop_id, error=f"A {workshop.status} workshop cannot be changed.",
                                    status=409)
        return await self._form(workshop, form_values(workshop))

    @post("/{workshop_id:int}/edit", opt=allow(*EDIT_ROLES))
    async def update(self, request: Request, workshop_id: ObjectId) -> Template | Redirect:
        workshop = await _get(workshop_id)
        form = await request.form()
        data = _form_data(form)
        if workshop.status == "scheduled":
            try:
                checked = WorkshopInput.from_mapping(data)
            except WorkshopError as error:
                return await self._form(workshop, data, errors={error.field: error.message}, status=422)
            changes = _changes(workshop, checked)
            if changes and str(form.get("confirm_notify") or "") != _fingerprint(checked):
                # Saving will tell invitees: say so, and save only when asked again.
                return await self._form(workshop, data, notify={"changes": changes,
                                                                "confirm": _fingerprint(checked)})
        try:
            saved, promoted = await save_workshop(data, actor=request_actor(request), now=request_now(request),
                                                  workshop_id=workshop_id)
        except WorkshopError as error:
            return await self._form(workshop, data, errors={error.field: error.message}, status=422)
        done = "notified" if saved.sequence != workshop.sequence else "saved"
        extra = f"&promoted={len(promoted)}" if promoted else ""
        return Redirect(f"/workshops/{workshop_id}?done={done}{extra}", status_code=303)

    @get("/{workshop_id:int}/cancel", opt=allow(*EDIT_ROLES))
    async def confirm_cancel(self, workshop_id: ObjectId) -> Template:
        return await self._cancel_page(workshop_id)

    @post("/{workshop_id:int}/cancel", opt=allow(*EDIT_ROLES))
    async def cancel(self, request: Request, workshop_id: ObjectId) -> Template | Redirect:
        await _get(workshop_id)
        if str((await request.form()).get("confirm") or "") != "yes":
            return await self._cancel_page(workshop_id)
        try:
            await cancel_workshop(workshop_id, actor=request_actor(request), now=request_now(request))
        except WorkshopError as error:
            return await self._page(request, workshop_id, error=f"{error.message[:1].upper()}{error.message[1:]}.",
                                    status=422)
        return Redirect(f"/workshops/{workshop_id}?done=cancelled", status_code=303)

    # -- check-in ---------------------------------------------------------------------------------

    @get("/{workshop_id:int}/check-in", opt=allow(*CHECK_IN_ROLES))
    async def check_in_list(self, request: Request, workshop_id: ObjectId) -> Template:
        return await self._check_in_page(request, workshop_id)

    @post("/{workshop_id:int}/check-in/{rsvp_id:int}", opt=allow(*CHECK_IN_ROLES))
    async def toggle(self, request: Request, workshop_id: ObjectId, rsvp_id: ObjectId) -> Template | Redirect:
        workshop = await _get(workshop_id)
        row = await Rsvp.select(Rsvp.attended).where(Rsvp.id == rsvp_id, Rsvp.workshop == workshop_id).first().run()
        if row is None:
            raise NotFoundException("No such answer to this workshop.")
        wanted = str((await request.form()).get("attended") or "")
        attended = wanted == "1" if wanted in ("0", "1") else not row["attended"]
        try:
            await check_in(workshop_id, rsvp_id, attended, request_now(request), request_actor(request))
        except WorkshopError as error:
            if error.field in ("id", "rsvp"):
                raise NotFoundException("No such answer to this workshop.") from None
            return await self._check_in_page(request, workshop_id, error=error.message, status=422)
        if request.headers.get("hx-request") == "true":
            person = next(r for r in await _roster(workshop) if r["id"] == rsvp_id)
            return Template(template_name="workshops/_check_in_row.html",
                            context={"r": person, "w": workshop, "may_check_in": True})
        return Redirect(f"/workshops/{workshop_id}/check-in#rsvp-{rsvp_id}", status_code=303)

    @post("/{workshop_id:int}/walk-ins", opt=allow(*CHECK_IN_ROLES))
    async def add_walk_in(self, request: Request, workshop_id: ObjectId) -> Template | Redirect:
        await _get(workshop_id)
        clinician_id = _int((await request.form()).get("clinician"))
        try:
            if clinician_id is None:
                raise WorkshopError("clinician", "choose the clinician from the list")
            rsvp = await walk_in(workshop_id, clinician_id, request_now(request), request_actor(request))
        except WorkshopError as error:
            return await self._check_in_page(request, workshop_id, error=error.message, status=422)
        return Redirect(f"/workshops/{workshop_id}/check-in?done=walk_in#rsvp-{rsvp.id}", status_code=303)

    # -- attendance import ------------------------------------------------------------------------

    @get("/{workshop_id:int}/attendance", opt=allow(*EDIT_ROLES))
    async def attendance_form(self, workshop_id: ObjectId) -> Template:
        workshop = await _get(workshop_id)
        return Template(template_name="workshops/attendance.html",
                        context={**_view(workshop), "error": None, "report": None,
                                 "limit_mb": ATTENDANCE_MAX_BYTES // 2**20})

    @post("/{workshop_id:int}/attendance", opt=allow(*EDIT_ROLES), request_max_body_size=ATTENDANCE_MAX_BYTES)
    async def attendance_upload(self, request: Request, workshop_id: ObjectId) -> Template:
        workshop = await _get(workshop_id)
        upload = (await request.form()).get("file")
        context: dict[str, Any] = {**_view(workshop), "error": None, "report": None,
                                   "limit_mb": ATTENDANCE_MAX_BYTES // 2**20}
        if not isinstance(upload, UploadFile) or not upload.filename:
            return Template(template_name="workshops/attendance.html", status_code=422,
                            context={**context, "error": "Choose a file to upload."})
        upload.file.seek(0)
        content = upload.file.read(ATTENDANCE_MAX_BYTES + 1)
        try:
            report = await import_attendance(workshop_id, content, actor=request_actor(request), now=request_now(request),
                                             display_name=PurePath(upload.filename).name[:200])
        except InputRefused as refused:
            return Template(template_name="workshops/attendance.html", status_code=422,
                            context={**context, "error": f"Refused, nothing was recorded: {refused}"})
        return Template(template_name="workshops/attendance.html",
                        context={**context, "report": report, "errors": report.rejected[:ATTENDANCE_SHOWN_ERRORS]})

    # -- pages ------------------------------------------------------------------------------------

    async def _page(self, request: Request, workshop_id: int, error: str | None = None, status: int = 200) -> Template:
        workshop = await _get(workshop_id)
        tally = await counts(workshop_id)
        host = await User.select(User.name, User.email).where(User.id == workshop.host).first().run() if workshop.host else None
        segment = (await Segment.select(Segment.id, Segment.name).where(Segment.id == workshop.segment).first().run()
                   if workshop.segment else None)
        promoted = _int(request.query_params.get("promoted"))
        return Template(
            template_name="workshops/workshop.html",
            context={
                **_view(workshop), "counts": {"invited": 0, "opened": 0, **tally}, "roster": await _roster(workshop),
                "host": host, "segment": segment, "error": error,
                "done": None if error else DONE.get(request.query_params.get("done") or ""),
                "promoted": None if error else promoted,
                "may_edit": _may(request, EDIT_ROLES), "may_check_in": _may(request, CHECK_IN_ROLES),
                "seats_left": None if workshop.capacity is None else max(workshop.capacity - tally["yes"], 0),
            },
            status_code=status,
        )

    async def _cancel_page(self, workshop_id: int) -> Template:
        workshop = await _get(workshop_id)
        return Template(template_name="workshops/cancel.html",
                        context={**_view(workshop), "counts": await counts(workshop_id)})

    async def _check_in_page(self, request: Request, workshop_id: int, error: str | None = None,
                             status: int = 200) -> Template:
        workshop = await _get(workshop_id)
        everyone = await _roster(workshop)
        expected = sorted((r for r in everyone if r["answer"] in CHECK_IN_ANSWERS or r["attended"]),
                          key=lambda r: ((r["last_name"] or "").lower(), (r["first_name"] or "").lower(), r["id"]))
        q = single_line(request.query_params.get("q") or "")[:100]
        matches: list[dict[str, Any]] = []
        if q:
            listed = {r["clinician_id"] for r in expected}
            query = Clinician.select(
                Clinician.id, Clinician.first_name, Clinician.last_name, Clinician.credential,
                Clinician.city, Clinician.state, Clinician.practice.name.as_alias("practice_name"),
            ).where(Clinician.active == True).order_by(Clinician.last_name).order_by(  # noqa: E712
                Clinician.first_name
            ).limit(WALK_IN_MATCHES)
            for token in q.replace(",", " ").split()[:4]:
                like = escape_like(token)
                if like:
                    query = query.where(contains(Clinician.last_name, f"{like}%") | contains(Clinician.first_name, f"{like}%"))
            matches = [{**m, "listed": m["id"] in listed} for m in await query.run()]
        return Template(
            template_name="workshops/check_in.html",
            context={**_view(workshop), "people": expected, "q": q, "matches": matches, "error": error,
                     "checked_in": sum(1 for r in expected if r["attended"]), "may_check_in": True,
                     "done": "Walk-in checked in." if request.query_params.get("done") == "walk_in" and not error else None},
            status_code=status,
        )

    async def _form(self, workshop: Workshop | None, values: Mapping[str, Any], errors: dict | None = None,
                    status: int = 200, notify: dict | None = None) -> Template:
        answered = 0
        if workshop is not None and notify:
            answered = await Rsvp.count().where(Rsvp.workshop == workshop.id, Rsvp.answer != "no").run()
        return Template(
            template_name="workshops/workshop_form.html",
            context={
                "w": workshop, "v": values, "errors": errors or {}, "notify": notify, "answered": answered,
                "time_zones": TIME_ZONES, "hosts": await _hosts(_int(values.get("host"))),
                "segments": await _segments(),
            },
            status_code=status,
        )
