"""Adding and editing clinicians by hand, inline validation, object-level permissions, bulk edits."""

from __future__ import annotations

import pytest

from crm.tables import AuditEvent, Clinician, ClinicianTag
from tests.crm.importing import npi
from tests.crm.test_roster import add, taxonomy  # noqa: F401 (fixture)
from tests.helpers import post_form


async def test_liaison_adds_a_clinician_and_owns_it(client, signed_in, taxonomy):  # noqa: F811
    me = await signed_in("liaison")
    response = await post_form(client, "/clinicians/new", {
        "npi": npi(1), "first_name": "Siobhán", "last_name": "O'Brien-Ng", "email": " SOB@Clinic.org ",
        "taxonomy_code": "207rx0202x", "postal_code": "02134", "state": "ma", "tags": "VIP, tumor board"})
    assert response.status_code == 303, response.text
    c = await Clinician.objects().get(Clinician.npi == npi(1)).run()
    assert (c.first_name, c.last_name, c.email, c.owner) == ("Siobhán", "O'Brien-Ng", "sob@clinic.org", me.id)
    assert (c.role, c.postal_code, c.state) == ("oncology_peer", "02134", "MA")
    tags = await ClinicianTag.select(ClinicianTag.tag).where(ClinicianTag.clinician == c.id).run()
    assert sorted(t["tag"] for t in tags) == ["tumor board", "vip"]
    assert await AuditEvent.exists().where(AuditEvent.action == "clinician.create").run()


@pytest.mark.parametrize(
    "values, field, message",
    [({"npi": "1234567890"}, "npi", "wrong check digit"), ({"email": "nope"}, "email", "Enter an email"),
     ({"state": "Virginia"}, "state", "two-letter"), ({"postal_code": "2134"}, "postal_code", "leading zeros"),
     ({"tier": "Z"}, "tier", "A, B or C"), ({"last_name": ""}, "last_name", "needs a last name"),
     ({"taxonomy_code": "999999999X"}, "taxonomy_code", "Unknown taxonomy code")],
)
async def test_bad_values_are_refused_on_the_form(client, signed_in, taxonomy, values, field, message):  # noqa: F811
    await signed_in("manager")
    form = {"last_name": "Lee", **values}
    response = await post_form(client, "/clinicians/new", form)
    assert response.status_code == 422 and message in response.text
    assert await Clinician.count().run() == 0


async def test_inline_validation_answers_with_just_the_message(client, signed_in):
    await signed_in("liaison")
    bad = await post_form(client, "/clinicians/validate", {"field": "npi", "npi": "1.23457E+09"})
    assert bad.status_code == 200 and "scientific notation" in bad.text and "<html" not in bad.text
    good = await post_form(client, "/clinicians/validate", {"field": "npi", "npi": npi(4)})
    assert good.text == ""


async def test_liaisons_edit_only_the_clinicians_they_own(client, signed_in, make_user, taxonomy):  # noqa: F811
    me = await signed_in("liaison")
    other = await make_user("liaison")
    mine = await add(1, owner=me.id)
    theirs = await add(2, owner=other.id, last_name="Theirs")
    assert (await client.get(f"/clinicians/{mine.id}/edit")).status_code == 200
    assert (await client.get(f"/clinicians/{theirs.id}/edit")).status_code == 403
    refused = await post_form(client, f"/clinicians/{theirs.id}/edit", {"last_name": "Hijacked"})
    assert refused.status_code == 403
    assert (await Clinician.objects().get(Clinician.id == theirs.id).run()).last_name == "Theirs"
    # A liaison cannot take ownership or override the role through the form.
    await post_form(client, f"/clinicians/{mine.id}/edit", {"last_name": "Mine", "owner": str(other.id),
                                                             "role_override": "surgeon"})
    after = await Clinician.objects().get(Clinician.id == mine.id).run()
    assert (after.last_name, after.owner, after.role_override) == ("Mine", me.id, None)


async def test_manager_overrides_the_role_and_only_a_manager_clears_do_not_contact(
        client, signed_in, make_user, taxonomy):  # noqa: F811
    liaison = await make_user("liaison")
    c = await add(1, owner=liaison.id, do_not_contact=True)
    await signed_in("manager")
    response = await post_form(client, f"/clinicians/{c.id}/edit", {
        "last_name": "Lee", "taxonomy_code": "207Q00000X", "role_override": "oncology_peer", "owner": str(liaison.id)})
    assert response.status_code == 303
    after = await Clinician.objects().get(Clinician.id == c.id).run()
    assert (after.role, after.role_override, after.do_not_contact) == ("oncology_peer", "oncology_peer", False)
    event = await AuditEvent.objects().output(load_json=True).get(AuditEvent.action == "clinician.update").run()
    assert event.before["do_not_contact"] is True and event.after["do_not_contact"] is False


async def test_a_liaison_cannot_clear_do_not_contact(client, signed_in, taxonomy):  # noqa: F811
    me = await signed_in("liaison")
    c = await add(1, owner=me.id, do_not_contact=True)
    response = await post_form(client, f"/clinicians/{c.id}/edit", {"last_name": "Lee"})
    assert response.status_code == 422 and "Only a manager can clear do-not-contact" in response.text
    assert (await Clinician.objects().get(Clinician.id == c.id).run()).do_not_contact


async def test_manager_bulk_edits_the_filtered_list(client, signed_in, make_user, taxonomy):  # noqa: F811
    liaison = await make_user("liaison")
    for n in range(1, 5):
        await add(n, role="surgeon" if n < 3 else "primary_care")
    await signed_in("manager")
    response = await post_form(client, "/clinicians/bulk", {"query": "role=surgeon", "action": "assign_owner",
                                                            "value": str(liaison.id)})
    assert response.status_code == 303 and "changed=2" in response.headers["location"]
    owned = await Clinician.select(Clinician.last_name).where(Clinician.owner == liaison.id).run()
    assert len(owned) == 2
    await post_form(client, "/clinicians/bulk", {"query": "", "action": "add_tag", "value": "Q1 Visits"})
    assert await ClinicianTag.count().where(ClinicianTag.tag == "q1 visits").run() == 4
    bad = await post_form(client, "/clinicians/bulk", {"query": "", "action": "set_tier", "value": "Z"})
    assert bad.status_code == 400
    assert await Clinician.count().where(Clinician.tier.is_not_null()).run() == 0


async def test_only_managers_bulk_edit(client, signed_in, taxonomy):  # noqa: F811
    await signed_in("liaison")
    await add(1)
    response = await post_form(client, "/clinicians/bulk", {"query": "", "action": "set_tier", "value": "A"})
    assert response.status_code == 403
