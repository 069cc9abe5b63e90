"""Segments: saved filters evaluated in SQL each time, with a live count and sample."""

from __future__ import annotations

import pytest

from crm import segments
from crm.audit import Actor
from crm.tables import AuditEvent, Clinician, Segment
from tests.crm.test_roster import add, taxonomy  # noqa: F401 (fixture)
from tests.helpers import post_form


async def test_a_segment_is_evaluated_afresh_not_copied(taxonomy):  # noqa: F811
    await add(1, last_name="Lee", role="surgeon")
    segment = await segments.save_segment(name="Surgeons", filters={"role": ["surgeon"]}, actor=Actor.cli())
    assert await segments.member_count(segment) == 1
    await add(2, last_name="Kim", role="surgeon")
    await add(3, last_name="Park", role="primary_care")
    assert await segments.member_count(segment) == 2
    assert {r["last_name"] for r in (await segments.members(segment)).rows} == {"Lee", "Kim"}


@pytest.mark.parametrize(
    "filters, field",
    [({"specialty_colour": "blue"}, "specialty_colour"), ({"role": ["wizard"]}, "role"),
     ({"owner": "me"}, "owner"), ({"zip": "ABCDE"}, "zip")],
)
async def test_unknown_fields_and_bad_values_are_refused(db, filters, field):
    with pytest.raises(segments.SegmentError) as error:
        await segments.save_segment(name="Bad", filters=filters, actor=Actor.cli())
    assert error.value.field == field
    assert await Segment.count().run() == 0


async def test_marketer_builds_a_segment_with_a_live_count(client, signed_in, taxonomy):  # noqa: F811
    await signed_in("marketer")
    for n in range(1, 6):
        await add(n, last_name=f"Surgeon{n}", role="surgeon", state="VA" if n < 4 else "MD")
    preview = await client.get("/segments/preview?role=surgeon&state=VA", headers={"HX-Request": "true"})
    assert "<strong>3</strong> clinicians match now" in preview.text and "Surgeon1" in preview.text
    bad = await client.get("/segments/preview?role=wizard", headers={"HX-Request": "true"})
    assert "unknown role" in bad.text
    response = await post_form(client, "/segments/new", {"name": "VA surgeons", "role": "surgeon", "state": "VA"})
    assert response.status_code == 303
    segment = await Segment.objects().output(load_json=True).first().run()
    assert segment.filters == {"role": ["surgeon"], "state": "VA"}
    page = await client.get(f"/segments/{segment.id}")
    assert "Surgeon1" in page.text and "Surgeon5" not in page.text
    duplicate = await post_form(client, "/segments/new", {"name": "VA surgeons", "role": "surgeon"})
    assert duplicate.status_code == 422 and "already exists" in duplicate.text
    updated = await post_form(client, f"/segments/{segment.id}", {"name": "All surgeons", "role": "surgeon"})
    assert updated.status_code == 303
    assert await segments.member_count(await segments.get_segment(segment.id)) == 5
    assert await AuditEvent.count().where(AuditEvent.object_type == "segment").run() == 2


async def test_liaisons_read_segments_but_do_not_edit_them(client, signed_in, taxonomy):  # noqa: F811
    segment = await segments.save_segment(name="Everyone", filters={}, actor=Actor.cli())
    await signed_in("liaison")
    assert (await client.get(f"/segments/{segment.id}")).status_code == 200
    assert (await client.get("/segments/new")).status_code == 403
    assert (await post_form(client, f"/segments/{segment.id}", {"name": "Mine"})).status_code == 403
    assert (await segments.get_segment(segment.id)).name == "Everyone"
    assert await Clinician.count().run() == 0
