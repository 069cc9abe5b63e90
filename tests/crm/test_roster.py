"""The roster: filters in SQL, key-based pages, the clinician page and timeline, touches,
follow-ups, practices and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from crm import roster
from crm.tables import Activity, AuditEvent, Clinician, ClinicianTag, Practice, Taxonomy
from crm.taxonomy_import import import_taxonomy
from tests.crm.importing import npi, write_nucc
from tests.helpers import post_form


@pytest.fixture
async def taxonomy(db, tmp_path):
    await import_taxonomy(write_nucc(tmp_path / "nucc.csv"))


async def add(number: int, **values) -> Clinician:
    defaults = {"npi": npi(number), "first_name": "Ann", "last_name": f"Person{number:03d}", "role": "primary_care",
                "taxonomy_code": "207Q00000X", "state": "VA", "city": "Richmond", "postal_code": "23219"}
    clinician = Clinician(**{**defaults, **values})
    await clinician.save().run()
    return clinician


async def matching(viewer_id=None, **filters) -> set[str]:
    result = await roster.page(roster.RosterFilter.from_mapping(filters), viewer_id=viewer_id, limit=500)
    return {row["last_name"] for row in result.rows}


async def test_every_filter_narrows_in_sql(taxonomy, make_user):
    owner = await make_user("liaison")
    harbor = Practice(name="Harbor Family Care", postal_code="23219")
    await harbor.save().run()
    await add(1, last_name="Smith", email="smith@clinic.org", practice=harbor.id, owner=owner.id, tier="A")
    await add(2, last_name="Lee", role="surgeon", taxonomy_code="208600000X", city="Norfolk", postal_code="23510")
    await add(3, last_name="Okafor", role="oncology_peer", taxonomy_code="207RX0202X", state="MD",
              postal_code="21201", do_not_contact=True)
    await add(4, last_name="Gone", active=False)
    nurse = await add(5, last_name="Nurse", role="advanced_practice", taxonomy_code="363L00000X")
    await ClinicianTag.insert(ClinicianTag(clinician=nurse.id, tag="vip")).run()

    assert await matching() == {"Smith", "Lee", "Okafor", "Nurse"}
    assert await matching(role=["surgeon", "oncology_peer"]) == {"Lee", "Okafor"}
    assert await matching(taxonomy="207R") == {"Okafor"}
    assert await matching(taxonomy="208600000X,363L") == {"Lee", "Nurse"}
    assert await matching(group="Physician Assistants & Advanced Practice Nursing Providers") == {"Nurse"}
    assert await matching(state="md") == {"Okafor"}
    assert await matching(city="norfolk") == {"Lee"}
    assert await matching(zip="235") == {"Lee"}
    assert await matching(owner="none") == {"Lee", "Okafor", "Nurse"}
    assert await matching(viewer_id=owner.id, owner="me") == {"Smith"}
    assert await matching(tier="a") == {"Smith"}
    assert await matching(tag="VIP") == {"Nurse"}
    assert await matching(dnc="yes") == {"Okafor"}
    assert await matching(dnc="no") == {"Smith", "Lee", "Nurse"}
    assert await matching(status="inactive") == {"Gone"}
    assert await matching(status="all") == {"Smith", "Lee", "Okafor", "Nurse", "Gone"}
    assert await matching(q="smi") == {"Smith"}
    assert await matching(q="harbor") == {"Smith"}           # practice name
    assert await matching(q="SMITH@CLINIC") == {"Smith"}     # email
    assert await matching(q=npi(2)) == {"Lee"}
    assert await matching(q="100% _x") == set()              # LIKE wildcards typed by a person are literal


@pytest.mark.parametrize(
    "data, field",
    [({"colour": "blue"}, "colour"), ({"role": "wizard"}, "role"), ({"state": "Virginia"}, "state"),
     ({"zip": "2321A"}, "zip"), ({"tier": "D"}, "tier"), ({"owner": "someone"}, "owner"),
     ({"status": "gone"}, "status"), ({"taxonomy": "207Q'--"}, "taxonomy")],
)
def test_bad_filters_name_the_field(data, field):
    with pytest.raises(roster.FilterError) as error:
        roster.RosterFilter.from_mapping(data, strict=True)
    assert error.value.field == field


async def test_pages_follow_a_key_not_an_offset(taxonomy):
    for n in range(1, 121):
        await add(n, last_name=f"Name{n % 7}")  # many equal names: the id breaks ties
    seen, cursor, sizes = [], None, []
    while True:
        result = await roster.page(roster.RosterFilter(), viewer_id=None, after=cursor, limit=50)
        sizes.append(len(result.rows))
        seen += [row["id"] for row in result.rows]
        if result.next_cursor is None:
            break
        cursor = result.next_cursor
    assert sizes == [50, 50, 20]
    assert len(seen) == len(set(seen)) == 120
    names = [row["last_name"] for row in await Clinician.select(Clinician.last_name).order_by(
        Clinician.last_name).order_by(Clinician.id).run()]
    assert names == sorted(names)

    newest = await roster.page(roster.RosterFilter(), viewer_id=None, sort="updated", limit=50)
    again = await roster.page(roster.RosterFilter(), viewer_id=None, sort="updated", after=newest.next_cursor, limit=50)
    assert not {r["id"] for r in newest.rows} & {r["id"] for r in again.rows}
    with pytest.raises(roster.FilterError, match="damaged"):
        await roster.page(roster.RosterFilter(), viewer_id=None, after="not-a-cursor")


async def test_list_page_live_search_partial_and_bad_filters(client, signed_in, taxonomy):
    await signed_in("marketer")
    await add(1, last_name="O'Donnell", first_name="Mary")
    await add(2, last_name="Lee")
    page = await client.get("/clinicians")
    assert page.status_code == 200 and "O&#39;Donnell, Mary" in page.text and 'id="roster-filters"' in page.text
    partial = await client.get("/clinicians?q=o%27don", headers={"HX-Request": "true", "HX-Target": "roster-results"})
    assert partial.status_code == 200 and "<html" not in partial.text
    assert "O&#39;Donnell" in partial.text and "Lee" not in partial.text
    bad = await client.get("/clinicians?state=Virginia")
    assert bad.status_code == 400 and "two-letter state code" in bad.text
    assert (await client.get("/clinicians?after=%00%00")).status_code == 400


async def test_clinician_page_shows_details_and_a_logged_touch_on_the_timeline(client, signed_in, taxonomy):
    liaison = await signed_in("liaison", name="Lia Son")
    practice = Practice(name="Harbor Family Care")
    await practice.save().run()
    clinician = await add(1, last_name="Okafor", practice=practice.id, taxonomy_code="207RX0202X", role="oncology_peer")
    page = await client.get(f"/clinicians/{clinician.id}")
    assert "Medical Oncology Physician" in page.text and "Harbor Family Care" in page.text
    follow_up = (date.today() + timedelta(days=7)).isoformat()
    response = await post_form(client, f"/clinicians/{clinician.id}/activities", {
        "kind": "lunch_and_learn", "outcome": "referral_discussed", "notes": "Rapid-consult pathway",
        "follow_up_on": follow_up})
    assert response.status_code == 303
    page = await client.get(f"/clinicians/{clinician.id}")
    assert "Lunch-and-learn" in page.text and "Rapid-consult pathway" in page.text and "Lia Son" in page.text
    activity = await Activity.objects().first().run()
    assert (activity.author, activity.kind, str(activity.follow_up_on)) == (liaison.id, "lunch_and_learn", follow_up)
    assert await AuditEvent.exists().where(AuditEvent.action == "activity.create").run()


@pytest.mark.parametrize(
    "values, message",
    [({"kind": "smoke-signal"}, "choose one of"),
     ({"kind": "call", "occurred_on": (date.today() + timedelta(days=2)).isoformat()}, "cannot happen in the future"),
     ({"kind": "call", "follow_up_on": (date.today() - timedelta(days=1)).isoformat()}, "cannot be in the past"),
     ({"kind": "call", "follow_up_on": "next tuesday"}, "is not a date")],
)
async def test_bad_touches_are_refused_with_the_reason(client, signed_in, taxonomy, values, message):
    await signed_in("liaison")
    clinician = await add(1)
    response = await post_form(client, f"/clinicians/{clinician.id}/activities", values)
    assert response.status_code == 422 and message in response.text
    assert await Activity.count().run() == 0


async def test_marketers_read_the_roster_but_do_not_log_touches(client, signed_in, taxonomy):
    await signed_in("marketer")
    clinician = await add(1)
    assert (await client.get(f"/clinicians/{clinician.id}")).status_code == 200
    assert (await post_form(client, f"/clinicians/{clinician.id}/activities", {"kind": "call"})).status_code == 403
    assert (await client.get("/clinicians/999999")).status_code == 404


async def test_follow_ups_overdue_first_and_only_their_people_close_them(client, signed_in, make_user, taxonomy):
    from crm import activities
    from crm.audit import Actor

    me = await signed_in("liaison")
    other = await make_user("liaison")
    mine = await add(1, last_name="Mine", owner=me.id)
    theirs = await add(2, last_name="Theirs")
    soon = await activities.log_touch(mine.id, kind="call", follow_up_on=(date.today() + timedelta(days=3)).isoformat(),
                                      actor=Actor.for_user(me))
    overdue = Activity(clinician=mine.id, kind="visit", follow_up_on=date.today() - timedelta(days=2), author=other.id)
    await overdue.save().run()
    foreign = await activities.log_touch(theirs.id, kind="call", follow_up_on=date.today().isoformat(),
                                         actor=Actor.for_user(other))
    page = (await client.get("/follow-ups")).text
    assert page.index("overdue") < page.index((date.today() + timedelta(days=3)).isoformat())
    assert "Theirs" not in page
    assert (await post_form(client, f"/follow-ups/{foreign.id}/done")).status_code == 404
    assert (await post_form(client, f"/follow-ups/{soon.id}/done")).status_code == 303
    assert (await Activity.objects().get(Activity.id == soon.id).run()).follow_up_done


async def test_practice_page_lists_its_clinicians(client, signed_in, taxonomy):
    await signed_in("liaison")
    practice = Practice(name="Blue Ridge Internal Medicine", organization_npi=npi(90))
    await practice.save().run()
    await add(1, last_name="Here", practice=practice.id)
    await add(2, last_name="Elsewhere")
    page = await client.get(f"/practices/{practice.id}")
    assert "Blue Ridge Internal Medicine" in page.text and "Here" in page.text and "Elsewhere" not in page.text
    assert (await client.get("/practices/424242")).status_code == 404
    listed = await client.get("/practices?q=blue+ridge")
    assert "Blue Ridge Internal Medicine" in listed.text and "<td>1</td>" in listed.text


async def test_csv_export_follows_the_filters_and_defuses_formulas(client, signed_in, taxonomy):
    await signed_in("manager")
    await add(1, last_name="=HYPERLINK(\"http://evil.example\",\"x\")", first_name="@SUM(A1)", state="VA")
    await add(2, last_name="Müller-O'Brien", first_name="+1", state="VA")
    await add(3, last_name="Outside", state="MD")
    response = await client.get("/clinicians/export.csv?state=VA")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert {r["Last name"] for r in rows} == {"'=HYPERLINK(\"http://evil.example\",\"x\")", "Müller-O'Brien"}
    assert {r["First name"] for r in rows} == {"'@SUM(A1)", "'+1"}
    assert all(r["Specialty"] == "Family Medicine Physician" for r in rows)


async def test_specialty_names_come_from_the_nucc_display_names(taxonomy):
    rows = [{"taxonomy_code": "207RX0202X"}, {"taxonomy_code": None}]
    assert await roster.specialty_names(rows) == {"207RX0202X": "Medical Oncology Physician"}
    assert await Taxonomy.count().run() > 0


async def test_damaged_cursors_and_underscores(client, signed_in, taxonomy):
    from crm import segments
    from crm.audit import Actor

    await signed_in("manager")
    await add(1, last_name="Under", email="first_last@clinic.org")
    segment = await segments.save_segment(name="All", filters={}, actor=Actor.cli())
    assert (await client.get(f"/segments/{segment.id}?after=!!!")).status_code == 400
    surrogate = "WyJcdWQ4MDAiLCAxXQ"  # ["\ud800", 1]
    assert (await client.get(f"/clinicians?after={surrogate}")).status_code == 400
    assert await matching(q="first_last") == {"Under"}
