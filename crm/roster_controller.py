"""Roster pages: the clinician list with filters and live search, a clinician's page with the
timeline and "log a touch", adding and editing clinicians, bulk edits, practices, follow-ups, and
CSV export."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, urlencode

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException, ValidationException
from litestar.response import Redirect, Stream, Template
from piccolo.query.functions.aggregate import Count

from crm import activities, clinicians, roster
from crm.access import allow, current_user, signed_in
from crm.auth_controller import safe_next
from crm.csv_output import csv_chunk
from crm.forms import ObjectId, request_actor
from crm.referring_roles import LABELS, ReferringRole, role_label
from crm.roles import Role
from crm.tables import Clinician, ClinicianTag, Practice, Taxonomy, User
from crm.text import single_line

EXPORT_COLUMNS = [
    ("NPI", "npi"), ("First name", "first_name"), ("Last name", "last_name"), ("Credential", "credential"),
    ("Role", "role"), ("Specialty", "specialty"), ("Taxonomy", "taxonomy_code"), ("Practice", "practice_name"),
    ("City", "city"), ("State", "state"), ("ZIP", "postal_code"), ("Email", "email"), ("Tier", "tier"),
    ("Owner", "owner_email"), ("Do not contact", "do_not_contact"), ("Active", "active"),
]
TOUCH_ROLES = (Role.liaison, Role.manager)


def read_filter(request: Request) -> roster.RosterFilter:
    data = {key: request.query_params.getall(key) for key in request.query_params}
    try:
        return roster.RosterFilter.from_mapping(data)
    except roster.FilterError as error:
        raise ValidationException(f"Filter {error.field}: {error.message}") from None


def query_without(request: Request, *names: str) -> str:
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in names]
    return urlencode(pairs)


class ClinicianController(Controller):
    path = "/clinicians"
    opt = signed_in()
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        user = current_user(request)
        partial = request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == "roster-results"
        sort = request.query_params.get("sort", "name")
        error, total = None, None
        try:
            roster_filter = roster.RosterFilter.from_mapping(
                {key: request.query_params.getall(key) for key in request.query_params}
            )
            result = await roster.page(
                roster_filter, viewer_id=user.id, sort=sort, after=request.query_params.get("after")
            )
            if user.role in ("manager", "admin") and not request.query_params.get("after"):
                # Managers see how many a bulk change would touch; the count costs a second pass,
                # so the list others use every day does without it.
                total = await roster.count(roster_filter, viewer_id=user.id)
        except roster.FilterError as problem:
            # Shown where the results go, with the form still there to fix the value.
            error = f"Filter {problem.field}: {problem.message}"
            roster_filter, result = roster.RosterFilter(), roster.Page(rows=[], next_cursor=None, sort="name")
        context = {
            "page": result,
            "error": error,
            "total": total,
            "after": request.query_params.get("after"),
            "filter": roster_filter,
            "roles": list(ReferringRole),
            "role_labels": LABELS,
            "query": query_without(request, "after"),
            "export_query": query_without(request, "after", "sort"),
            "groups": await _groups(),
            "manager": user.role in ("manager", "admin"),
            "bulk_owners": await _owners() if user.role in ("manager", "admin") else [],
            "changed": request.query_params.get("changed"),
            "may_add": user.role in ("liaison", "manager", "admin"),
        }
        # htmx asks for the results only (live search); everything else gets the whole page. A bad
        # filter value is a 400 for a page load, but htmx swaps only 2xx answers.
        if partial:
            return Template(template_name="crm/_clinician_results.html", context=context)
        return Template(template_name="crm/clinicians.html", context=context, status_code=400 if error else 200)

    @get("/export.csv")
    async def export(self, request: Request) -> Stream:
        user = current_user(request)
        roster_filter = read_filter(request)

        async def body() -> AsyncIterator[str]:
            yield csv_chunk([], header=[label for label, _ in EXPORT_COLUMNS])
            batch = []
            async for row in roster.all_rows(roster_filter, viewer_id=user.id):
                batch.append([_export_value(row, key) for _, key in EXPORT_COLUMNS])
                if len(batch) >= 500:
                    yield csv_chunk(batch)
                    batch = []
            if batch:
                yield csv_chunk(batch)

        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
        return Stream(
            body(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="clinicians-{stamp}.csv"'},
        )

    @get("/{clinician_id:int}")
    async def show(self, request: Request, clinician_id: ObjectId) -> Template:
        return await self._page(request, clinician_id)

    # Create and edit ------------------------------------------------------------------------
    @get("/new", opt=allow(*TOUCH_ROLES))
    async def new(self, request: Request) -> Template:
        return await _form(request, None, {}, {})

    @post("/new", opt=allow(*TOUCH_ROLES))
    async def create(self, request: Request) -> Template | Redirect:
        return await _save(request, None)

    @get("/{clinician_id:int}/edit", opt=allow(*TOUCH_ROLES))
    async def edit(self, request: Request, clinician_id: ObjectId) -> Template:
        clinician = await Clinician.objects().where(Clinician.id == clinician_id).first().run()
        if clinician is None:
            raise NotFoundException("No such clinician.")
        if not clinicians.may_edit(current_user(request), clinician):
            raise PermissionDeniedException("You may edit the clinicians you own; ask a manager for this one.")
        tags = await ClinicianTag.select(ClinicianTag.tag).where(ClinicianTag.clinician == clinician_id).run()
        values = {**clinician.to_dict(), "tags": ", ".join(t["tag"] for t in tags)}
        return await _form(request, clinician, values, {})

    @post("/{clinician_id:int}/edit", opt=allow(*TOUCH_ROLES))
    async def update(self, request: Request, clinician_id: ObjectId) -> Template | Redirect:
        return await _save(request, clinician_id)

    @post("/validate", opt=allow(*TOUCH_ROLES), status_code=200)
    async def validate(self, request: Request) -> Response:
        """Inline validation: the message for the one field that changed, or nothing."""
        form = await request.form()
        name = str(form.get("field", ""))
        _, problem = clinicians.check_field(name, str(form.get(name, "")))
        return Response(html.escape(problem or ""), media_type=MediaType.HTML)

    @post("/bulk", opt=allow(Role.manager))
    async def bulk(self, request: Request) -> Redirect:
        form = await request.form()
        query = str(form.get("query", ""))
        data = parse_qs(query)
        try:
            roster_filter = roster.RosterFilter.from_mapping(data)
            changed = await clinicians.bulk_update(
                roster_filter.where(current_user(request).id), action=str(form.get("action", "")),
                value=str(form.get("value", "")), actor=request_actor(request),
            )
        except (roster.FilterError, clinicians.ClinicianError) as error:
            raise ValidationException(f"{error.field}: {error.message}") from None
        separator = "&" if query else ""
        return Redirect(f"/clinicians?{query}{separator}changed={changed}", status_code=303)

    async def _page(self, request: Request, clinician_id: int, *, errors: dict | None = None,
                    values: dict | None = None, status: int = 200) -> Template:
        row = await Clinician.select(
            *Clinician.all_columns(), Clinician.practice._.name.as_alias("practice_name"),
            Clinician.owner._.name.as_alias("owner_name"), Clinician.owner._.email.as_alias("owner_email"),
        ).where(Clinician.id == clinician_id).first().run()
        if row is None:
            raise NotFoundException("No such clinician.")
        taxonomy = None
        if row["taxonomy_code"]:
            taxonomy = await Taxonomy.select().where(Taxonomy.code == row["taxonomy_code"]).first().run()
        tags = await ClinicianTag.select(ClinicianTag.tag).where(ClinicianTag.clinician == clinician_id).order_by(
            ClinicianTag.tag).run()
        user = current_user(request)
        return Template(
            template_name="crm/clinician.html",
            context={
                "c": row,
                "taxonomy": taxonomy,
                "tags": [t["tag"] for t in tags],
                "timeline": await activities.timeline(clinician_id),
                "kinds": activities.KINDS,
                "outcomes": activities.OUTCOMES,
                "role_labels": LABELS,
                "may_log": user.role in ("liaison", "manager", "admin"),
                "may_edit": clinicians.may_edit(user, row),
                "errors": errors or {},
                "values": values or {},
                "today": datetime.now(timezone.utc).date().isoformat(),
            },
            status_code=status,
        )

    @post("/{clinician_id:int}/activities", opt=allow(*TOUCH_ROLES))
    async def log_touch(self, request: Request, clinician_id: ObjectId) -> Template | Redirect:
        form = await request.form()
        values = {k: str(form.get(k, "")) for k in ("kind", "outcome", "notes", "occurred_on", "follow_up_on")}
        try:
            await activities.log_touch(clinician_id, actor=request_actor(request), **values)
        except activities.ActivityError as error:
            if error.field == "clinician":
                raise NotFoundException("No such clinician.") from None
            return await self._page(request, clinician_id, errors={error.field: error.message},
                                    values=values, status=422)
        return Redirect(f"/clinicians/{clinician_id}#timeline", status_code=303)


async def _owners() -> list[dict]:
    return await User.select(User.id, User.name, User.email).where(
        (User.active == True) & User.role.is_in(["liaison", "manager"])  # noqa: E712
    ).order_by(User.name).order_by(User.email).run()


async def _form(request: Request, clinician, values: dict, errors: dict, status: int = 200) -> Template:
    user = current_user(request)
    return Template(
        template_name="crm/clinician_form.html",
        context={"clinician": clinician, "values": values, "errors": errors, "manager": user.role in ("manager", "admin"),
                 "owners": await _owners(), "roles": list(ReferringRole)},
        status_code=status,
    )


async def _save(request: Request, clinician_id: int | None) -> Template | Redirect:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "_csrf_token"}
    # An unticked checkbox sends nothing: on this form, that means "no".
    values["do_not_contact"] = "on" if form.get("do_not_contact") == "on" else "off"
    try:
        clinician = await clinicians.save_clinician(values, user=current_user(request), actor=request_actor(request),
                                                    clinician_id=clinician_id)
    except PermissionError as error:
        raise PermissionDeniedException(str(error)) from None
    except clinicians.ClinicianError as error:
        if error.field == "id":
            raise NotFoundException("No such clinician.") from None
        existing = await Clinician.objects().where(Clinician.id == clinician_id).first().run() if clinician_id else None
        return await _form(request, existing, values, {error.field: error.message}, status=422)
    return Redirect(f"/clinicians/{clinician.id}", status_code=303)


def _export_value(row: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    if key == "role":
        return role_label(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


async def _groups() -> list[str]:
    rows = await Taxonomy.select(Taxonomy.grouping).distinct().order_by(Taxonomy.grouping).run()
    return [row["grouping"] for row in rows if row["grouping"]]


class PracticeController(Controller):
    path = "/practices"
    opt = signed_in()
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        """Practices by name, searchable by name or city, a page of 100 at a time."""
        q = single_line(request.query_params.get("q", ""))[:100]
        after = single_line(request.query_params.get("after", ""))[:300]
        query = Practice.select(Practice.id, Practice.name, Practice.city, Practice.state, Practice.postal_code,
                                Practice.active).order_by(Practice.name).order_by(Practice.id).limit(101)
        if q:
            like = f"%{roster.escape_like(q)}%"
            query = query.where(roster.contains(Practice.name, like) | roster.contains(Practice.city, like))
        if after:
            query = query.where(Practice.name > after)
        rows = await query.run()
        counts = {}
        if rows:
            found = await Clinician.select(Clinician.practice, Count(Clinician.id, alias="n")).where(
                Clinician.practice.is_in([r["id"] for r in rows[:100]]) & (Clinician.active == True)  # noqa: E712
            ).group_by(Clinician.practice).run()
            counts = {row["practice"]: row["n"] for row in found}
        return Template(template_name="crm/practices.html", context={
            "rows": rows[:100], "counts": counts, "q": q,
            "next_after": rows[99]["name"] if len(rows) > 100 else None})

    @get("/{practice_id:int}")
    async def show(self, practice_id: ObjectId) -> Template:
        practice = await Practice.objects().where(Practice.id == practice_id).first().run()
        if practice is None:
            raise NotFoundException("No such practice.")
        clinicians = await Clinician.select(
            Clinician.id, Clinician.first_name, Clinician.last_name, Clinician.credential, Clinician.role,
            Clinician.taxonomy_code, Clinician.active,
        ).where(Clinician.practice == practice_id).order_by(Clinician.last_name).order_by(Clinician.id).limit(500).run()
        return Template(
            template_name="crm/practice.html",
            context={"p": practice, "clinicians": clinicians, "role_labels": LABELS,
                     "specialties": await roster.specialty_names(clinicians)},
        )


class FollowUpController(Controller):
    path = "/follow-ups"
    opt = allow(*TOUCH_ROLES)
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        user = current_user(request)
        today = datetime.now(timezone.utc).date()
        return Template(
            template_name="crm/follow_ups.html",
            context={"items": await activities.follow_ups(user.id), "today": today, "kinds": activities.KINDS},
        )

    @post("/{activity_id:int}/done")
    async def done(self, request: Request, activity_id: ObjectId) -> Redirect:
        user = current_user(request)
        if not await activities.complete_follow_up(
            activity_id, actor=request_actor(request), may_complete_any=user.role in ("manager", "admin")
        ):
            raise NotFoundException("No such open follow-up of yours.")
        form = await request.form()
        return Redirect(safe_next(str(form.get("next", "/follow-ups"))), status_code=303)
