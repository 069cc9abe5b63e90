"""The segment builder: the roster's filters saved by name, with a live count and sample."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.response import Redirect, Template

from crm import roster, segments
from crm.access import allow, current_user, signed_in
from crm.forms import ObjectId, request_actor
from crm.referring_roles import LABELS, ReferringRole
from crm.roles import Role
from crm.roster_controller import _groups, _owners

EDIT_ROLES = (Role.marketer, Role.manager)
FILTER_FIELDS = [f.name for f in fields(roster.RosterFilter)]
SAMPLE_SIZE = 10


def filters_from(data: Any) -> dict[str, list[str]]:
    """The filter fields present in a form or query string, with all their values."""
    return {name: data.getall(name) for name in FILTER_FIELDS if name in data}


class SegmentController(Controller):
    path = "/segments"
    opt = signed_in()
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        rows = []
        for segment in await segments.list_segments():
            rows.append({"segment": segment, "count": await segments.member_count(segment)})
        return Template(
            template_name="crm/segments.html",
            context={"rows": rows, "may_edit": current_user(request).role in ("marketer", "manager", "admin")},
        )

    @get("/new", opt=allow(*EDIT_ROLES))
    async def new(self) -> Template:
        return await self._builder(None, name="", description="", roster_filter=roster.RosterFilter())

    @post("/new", opt=allow(*EDIT_ROLES))
    async def create(self, request: Request) -> Template | Redirect:
        return await self._save(request, None)

    @get("/preview", opt=allow(*EDIT_ROLES))
    async def preview(self, request: Request) -> Template:
        """The live count and sample while the builder is edited (an htmx partial)."""
        context: dict[str, Any] = {"error": None, "count": None, "sample": None}
        try:
            roster_filter = segments.segment_filter(filters_from(request.query_params))
            context["count"] = await roster.count(roster_filter, viewer_id=None)
            context["sample"] = await roster.page(roster_filter, viewer_id=None, limit=SAMPLE_SIZE)
        except segments.SegmentError as error:
            context["error"] = f"{error.field}: {error.message}"
        context["role_labels"] = LABELS
        return Template(template_name="crm/_segment_preview.html", context=context)

    @get("/{segment_id:int}")
    async def show(self, request: Request, segment_id: ObjectId) -> Template:
        segment = await segments.get_segment(segment_id)
        if segment is None:
            raise NotFoundException("No such segment.")
        roster_filter = segments.segment_filter(segment.filters)
        may_edit = current_user(request).role in ("marketer", "manager", "admin")
        try:
            members = await segments.members(segment, after=request.query_params.get("after"))
        except roster.FilterError as error:
            raise ValidationException(f"{error.field}: {error.message}") from None
        return await self._builder(
            segment, name=segment.name, description=segment.description, roster_filter=roster_filter,
            members=members, read_only=not may_edit,
        )

    @post("/{segment_id:int}", opt=allow(*EDIT_ROLES))
    async def update(self, request: Request, segment_id: ObjectId) -> Template | Redirect:
        if await segments.get_segment(segment_id) is None:
            raise NotFoundException("No such segment.")
        return await self._save(request, segment_id)

    async def _save(self, request: Request, segment_id: int | None) -> Template | Redirect:
        form = await request.form()
        name, description = str(form.get("name", "")), str(form.get("description", ""))
        filters = filters_from(form)
        try:
            segment = await segments.save_segment(
                name=name, description=description, filters=filters, actor=request_actor(request),
                segment_id=segment_id,
            )
        except segments.SegmentError as error:
            try:
                shown = roster.RosterFilter.from_mapping(filters)
            except roster.FilterError:
                shown = roster.RosterFilter()
            segment = await segments.get_segment(segment_id) if segment_id else None
            return await self._builder(segment, name=name, description=description, roster_filter=shown,
                                       errors={error.field: error.message}, status=422)
        return Redirect(f"/segments/{segment.id}?saved=1", status_code=303)

    async def _builder(self, segment, *, name: str, description: str, roster_filter: roster.RosterFilter,
                       members: roster.Page | None = None, read_only: bool = False,
                       errors: dict | None = None, status: int = 200) -> Template:
        count = await roster.count(roster_filter, viewer_id=None) if roster_filter.owner != "me" else None
        return Template(
            template_name="crm/segment.html",
            context={
                "segment": segment, "name": name, "description": description, "filter": roster_filter,
                "members": members, "read_only": read_only, "errors": errors or {}, "count": count,
                "roles": list(ReferringRole), "role_labels": LABELS, "groups": await _groups(),
                "owners": await _owners(), "definition": roster_filter.to_dict(),
            },
            status_code=status,
        )
