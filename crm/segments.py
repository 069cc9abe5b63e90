"""Segments: named, saved roster filters, evaluated in SQL every time they are used.

A segment never holds a copy of its members: a campaign that mails a segment next month reaches
the clinicians who match it next month.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from crm.errors import FieldError
from crm import audit, roster
from crm.audit import Actor
from crm.db import atomic
from crm.tables import Segment
from crm.text import plain_text, single_line


class SegmentError(FieldError):
    pass


def segment_filter(filters: dict[str, Any] | str) -> roster.RosterFilter:
    """The roster filter of a segment definition; SegmentError names a bad or unknown field.

    A segment has no viewer, so ``owner=me`` is refused: name the liaison instead."""
    if isinstance(filters, str):
        filters = json.loads(filters or "{}")
    if not isinstance(filters, dict):
        raise SegmentError("filters", "the filters must be an object of field: value")
    try:
        result = roster.RosterFilter.from_mapping(filters, strict=True)
    except roster.FilterError as error:
        raise SegmentError(error.field, error.message) from None
    if result.owner == "me":
        raise SegmentError("owner", "a segment cannot use 'me'; choose the liaison by name")
    return result


def _clean(name: str, description: str) -> tuple[str, str]:
    name = single_line(name or "")
    if not name or len(name) > 120:
        raise SegmentError("name", "give the segment a name of 1 to 120 characters")
    return name, plain_text(description or "").strip()[:2000]


async def save_segment(
    *, name: str, description: str = "", filters: dict[str, Any], actor: Actor, segment_id: int | None = None
) -> Segment:
    """Create a segment, or update ``segment_id``; names are unique."""
    name, description = _clean(name, description)
    definition = segment_filter(filters).to_dict()
    async with atomic():
        clash = Segment.exists().where(Segment.name == name)
        if segment_id is not None:
            clash = clash.where(Segment.id != segment_id)
        if await clash.run():
            raise SegmentError("name", f"a segment called {name!r} already exists")
        if segment_id is None:
            segment = Segment(name=name, description=description, filters=definition, created_by=actor.user_id)
            await segment.save().run()
            before = None
        else:
            segment = await Segment.objects().where(Segment.id == segment_id).first().run()
            if segment is None:
                raise SegmentError("id", "no such segment")
            before = {"name": segment.name, "filters": _loaded(segment.filters)}
            segment.name, segment.description, segment.filters = name, description, definition
            segment.updated_at = datetime.now(timezone.utc)
            await segment.save([Segment.name, Segment.description, Segment.filters, Segment.updated_at]).run()
        await audit.record(
            "segment.update" if before else "segment.create", actor=actor, object_type="segment",
            object_id=segment.id, before=before, after={"name": name, "filters": definition},
        )
    return segment


def _loaded(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


async def get_segment(segment_id: int) -> Segment | None:
    return await Segment.objects().where(Segment.id == segment_id).first().run()


async def list_segments() -> list[Segment]:
    return await Segment.objects().order_by(Segment.name).limit(500).run()


def definition(segment: Segment) -> dict[str, Any]:
    return _loaded(segment.filters)


async def member_count(segment: Segment) -> int:
    return await roster.count(segment_filter(segment.filters), viewer_id=None)


async def members(segment: Segment, *, after: str | None = None, limit: int = roster.PAGE_SIZE) -> roster.Page:
    return await roster.page(segment_filter(segment.filters), viewer_id=None, after=after, limit=limit)
