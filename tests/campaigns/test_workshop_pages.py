"""The workshop pages through the web app, on SQLite and PostgreSQL: plan, change and cancel a
workshop, the list and the workshop's page with their counts, the roster as CSV, and check-in."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Any

from campaigns.tables import Rsvp, Workshop
from campaigns.workshops import answer, check_in, save_workshop
from crm.audit import Actor
from crm.segments import save_segment
from crm.tables import AuditEvent, Clinician
from tests.campaigns.conftest import add_clinicians
from tests.helpers import csrf_token, post_form

# Monday 1 March 2027, 14:00 UTC (09:00 in New York).
NOW = datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc)
ACTOR = Actor(user_id=None, label="test")


def values(**changes: Any) -> dict[str, Any]:
    """The form for a workshop on Wednesday 14 April 2027, 17:30–19:00 in New York (EDT)."""
    data: dict[str, Any] = {
        "title": "Rapid-consult pathways for primary care", "topic": "Referral criteria",
        "service_line": "medical oncology", "description": "Who to refer, and how fast.\nDinner served.",
        "date": "2027-04-14", "start_time": "17:30", "end_time": "19:00", "time_zone": "America/New_York",
        "venue": "Cancer Center, Room 2", "virtual_url": "", "capacity": "3", "credit_hours": "1.5",
        "host": "", "segment": "",
    }
    data.update(changes)
    return data


def at_now(clock) -> None:
    clock.now = NOW.timestamp()


async def make_workshop(now: datetime = NOW, **changes: Any) -> Workshop:
    workshop, _ = await save_workshop(values(**changes), actor=ACTOR, now=now)
    return workshop


async def stored(workshop_id: int) -> Workshop:
    return await Workshop.objects().get(Workshop.id == workshop_id).run()


async def rsvp_of(workshop_id: int, clinician_id: int) -> Rsvp:
    return await Rsvp.objects().get((Rsvp.workshop == workshop_id) & (Rsvp.clinician == clinician_id)).run()


async def answered_workshop() -> tuple[Workshop, list[int]]:
    """A workshop of 1 seat: clinician 0 has it, 1 waits, 2 said maybe, 3 said no."""
    workshop = await make_workshop(capacity="1")
    ids = await add_clinicians(4)
    for clinician, reply in zip(ids, ("yes", "yes", "maybe", "no")):
        await answer(workshop.id, clinician, reply, now=NOW)
    return workshop, ids


# ------------------------------------------------------------------------------------------------
# Planning, changing, cancelling


async def test_a_marketer_plans_a_workshop_through_the_form(db, client, signed_in, clock, make_user):
    at_now(clock)
    marketer = await signed_in("marketer")
    host = await make_user("liaison", name="Dana Host")
    segment = await save_segment(name="Illinois primary care", filters={"state": "IL"}, actor=ACTOR)

    form = await client.get("/workshops/new")
    assert form.status_code == 200
    assert "<option selected>America/New_York</option>" in form.text and "Pacific/Honolulu" in form.text
    assert "Dana Host" in form.text and "Illinois primary care" in form.text

    created = await post_form(client, "/workshops/new", values(host=str(host.id), segment=str(segment.id)))

    assert created.status_code == 303
    workshop = await Workshop.objects().first().run()
    assert created.headers["location"] == f"/workshops/{workshop.id}?done=created"
    assert workshop.starts_at == datetime(2027, 4, 14, 21, 30, tzinfo=timezone.utc)
    assert (workshop.host, workshop.segment, workshop.created_by) == (host.id, segment.id, marketer.id)
    page = await client.get(created.headers["location"])
    assert "Wed 14 Apr 2027, 17:30–19:00 EDT" in page.text and "America/New_York" in page.text
    assert "Invitations to the segment are sent in a later step" in page.text
    assert "Dana Host" in page.text and "3 seats, 3 left" in page.text and "1.5 hours" in page.text
    listing = await client.get("/workshops")
    assert 'href="/workshops/new"' in listing.text and f'href="/workshops/{workshop.id}"' in listing.text
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.create").run() == 1


async def test_the_form_refuses_bad_values_next_to_the_field_and_saves_nothing(db, client, signed_in, clock):
    at_now(clock)
    await signed_in("manager")

    backwards = await post_form(client, "/workshops/new", values(start_time="18:00", end_time="17:00"))
    no_place = await post_form(client, "/workshops/new", values(venue="", virtual_url=""))
    seats = await post_form(client, "/workshops/new", values(capacity="²"))
    past = await post_form(client, "/workshops/new", values(date="2027-02-01"))

    assert backwards.status_code == 422
    assert re.search(r'id="end_time"[^>]*aria-invalid="true"', backwards.text)
    assert '<p class="error field-error" id="end_time-error">the workshop must end after it starts</p>' in backwards.text
    assert 'value="Rapid-consult pathways for primary care"' in backwards.text and 'value="18:00"' in backwards.text
    assert no_place.status_code == 422 and 'id="venue-error"' in no_place.text
    assert seats.status_code == 422 and 'id="capacity-error"' in seats.text
    assert past.status_code == 422 and "must start in the future" in past.text
    assert await Workshop.count().run() == 0


async def test_editing_refuses_a_capacity_below_the_seats_taken_and_shows_the_count(db, client, signed_in, clock):
    at_now(clock)
    workshop = await make_workshop(capacity="3")
    for clinician in await add_clinicians(2):
        await answer(workshop.id, clinician, "yes", now=NOW)
    await signed_in("marketer")

    form = await client.get(f"/workshops/{workshop.id}/edit")
    assert form.status_code == 200 and 'value="17:30"' in form.text and 'value="2027-04-14"' in form.text
    refused = await post_form(client, f"/workshops/{workshop.id}/edit", values(capacity="1"))

    assert refused.status_code == 422
    assert "2 clinicians already have a seat: the capacity cannot be below 2" in refused.text
    assert 'id="capacity-error"' in refused.text
    assert (await stored(workshop.id)).capacity == 3


async def test_a_change_of_time_or_place_asks_first_then_notifies(db, client, signed_in, clock):
    at_now(clock)
    workshop = await make_workshop()
    await answer(workshop.id, (await add_clinicians(1))[0], "yes", now=NOW)
    await signed_in("marketer")

    renamed = await post_form(client, f"/workshops/{workshop.id}/edit", values(title="Referral criteria, 2027"))
    assert renamed.status_code == 303 and renamed.headers["location"].endswith("?done=saved")
    assert (await stored(workshop.id)).sequence == 0

    moved = values(title="Referral criteria, 2027", start_time="18:00", end_time="19:30")
    asked = await post_form(client, f"/workshops/{workshop.id}/edit", moved)
    assert asked.status_code == 200
    assert "This change will notify invitees" in asked.text and "the date or time" in asked.text
    assert "1 clinician answered" in asked.text
    row = await stored(workshop.id)
    assert (row.sequence, row.starts_at) == (0, datetime(2027, 4, 14, 21, 30, tzinfo=timezone.utc))

    # Changing the values again on the confirmation page asks again.
    confirm = re.search(r'name="confirm_notify" value="([^"]+)"', asked.text).group(1)
    other = await post_form(client, f"/workshops/{workshop.id}/edit", {**moved, "venue": "Room 3",
                                                                        "confirm_notify": confirm})
    assert other.status_code == 200 and "the venue" in other.text and (await stored(workshop.id)).sequence == 0

    confirmed = await post_form(client, f"/workshops/{workshop.id}/edit", {**moved, "confirm_notify": confirm})
    assert confirmed.status_code == 303 and confirmed.headers["location"].endswith("?done=notified")
    row = await stored(workshop.id)
    assert (row.sequence, row.starts_at) == (1, datetime(2027, 4, 14, 22, 0, tzinfo=timezone.utc))
    page = await client.get(confirmed.headers["location"])
    assert "invitees will get the updated invitation" in page.text and "18:00–19:30 EDT" in page.text


async def test_a_larger_capacity_seats_the_waitlist_and_says_so(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    await signed_in("marketer")

    grown = await post_form(client, f"/workshops/{workshop.id}/edit", values(capacity="2"))

    assert grown.status_code == 303 and grown.headers["location"].endswith("?done=saved&promoted=1")
    assert (await rsvp_of(workshop.id, ids[1])).answer == "yes"
    page = await client.get(grown.headers["location"])
    assert "1 clinician moved from the waitlist to a seat" in page.text


async def test_cancelling_takes_a_confirmation(db, client, signed_in, clock):
    at_now(clock)
    workshop, _ = await answered_workshop()
    await signed_in("manager")

    confirm = await client.get(f"/workshops/{workshop.id}/cancel")
    assert confirm.status_code == 200 and "Cancel this workshop?" in confirm.text
    assert "1 clinician answered Yes, 1 is on the waitlist" in confirm.text
    unconfirmed = await post_form(client, f"/workshops/{workshop.id}/cancel")
    assert unconfirmed.status_code == 200 and "Cancel this workshop?" in unconfirmed.text
    assert (await stored(workshop.id)).status == "scheduled"

    cancelled = await post_form(client, f"/workshops/{workshop.id}/cancel", {"confirm": "yes"})

    assert cancelled.status_code == 303 and cancelled.headers["location"].endswith("?done=cancelled")
    row = await stored(workshop.id)
    assert (row.status, row.sequence) == ("cancelled", 1)
    page = await client.get(cancelled.headers["location"])
    assert "Workshop cancelled" in page.text and f'href="/workshops/{workshop.id}/edit"' not in page.text
    again = await post_form(client, f"/workshops/{workshop.id}/cancel", {"confirm": "yes"})
    assert again.status_code == 422 and "already cancelled" in again.text
    edit = await client.get(f"/workshops/{workshop.id}/edit")
    assert edit.status_code == 409 and "cannot be changed" in edit.text
    changed = await post_form(client, f"/workshops/{workshop.id}/edit", values(title="Back on"))
    assert changed.status_code == 422 and (await stored(workshop.id)).title != "Back on"


# ------------------------------------------------------------------------------------------------
# The list, the workshop's page and the roster


async def test_the_list_shows_upcoming_and_past_with_their_counts(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    await check_in(workshop.id, (await rsvp_of(workshop.id, ids[0])).id, True, NOW, ACTOR)
    past = await make_workshop(now=datetime(2027, 1, 1, tzinfo=timezone.utc), title="Tumor board open day",
                               date="2027-02-10", start_time="12:00", end_time="13:00",
                               time_zone="America/Los_Angeles", venue="", virtual_url="https://meet.example.org/tb",
                               capacity="")
    await signed_in("liaison")

    page = await client.get("/workshops")

    assert page.status_code == 200
    text = page.text
    assert text.index("Rapid-consult pathways") < text.index("Past</h2>") < text.index("Tumor board open day")
    assert "Wed 14 Apr 2027" in text and "17:30–19:00 EDT" in text
    assert "Wed 10 Feb 2027" in text and "12:00–13:00 PST" in text and "America/Los_Angeles" in text
    upcoming_row = text[text.index(f'href="/workshops/{workshop.id}"'):text.index("Past</h2>")]
    assert "1 yes" in upcoming_row and "1 waitlist" in upcoming_row and "1 maybe" in upcoming_row
    assert "1 no" in upcoming_row and "<td>1</td>" in upcoming_row and "Cancer Center, Room 2" in upcoming_row
    past_row = text[text.index(f'href="/workshops/{past.id}"'):]
    assert "virtual" in past_row and "no limit" in past_row and "0 yes" in past_row
    assert 'href="/workshops/new"' not in text  # a liaison plans no workshop


async def test_the_workshop_page_shows_counts_and_the_roster(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    extra = (await add_clinicians(1, start=10))[0]
    await answer(workshop.id, extra, "yes", now=NOW)  # second on the waitlist
    await check_in(workshop.id, (await rsvp_of(workshop.id, ids[0])).id, True, NOW, ACTOR)
    await signed_in("liaison")

    page = await client.get(f"/workshops/{workshop.id}")

    assert page.status_code == 200
    for key, n in (("invited", 0), ("opened", 0), ("yes", 1), ("no", 1), ("maybe", 1), ("waitlist", 2), ("attended", 1)):
        assert re.search(rf'count-{key}"><dt>[^<]+</dt><dd>{n}</dd>', page.text), key
    rows = re.findall(r'<tr id="rsvp-\d+">(.*?)</tr>', page.text, re.S)
    assert len(rows) == 5
    assert "O&#39;Brien-0" in rows[0] and "Yes" in rows[0] and "01 Mar 2027, 09:00 EST" in rows[0]
    assert "O&#39;Brien-1" in rows[1] and "#1" in rows[1]
    assert "O&#39;Brien-10" in rows[2] and "#2" in rows[2]
    assert "Maybe" in rows[3] and "No" in rows[4]
    assert f'href="/workshops/{workshop.id}/check-in"' in page.text
    assert f'href="/workshops/{workshop.id}/edit"' not in page.text


async def test_the_roster_csv_defuses_formulas(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    await Clinician.update({Clinician.first_name: "=cmd()", Clinician.last_name: "@SUM(A1)"}).where(
        Clinician.id == ids[0]
    ).run()
    await signed_in("liaison")

    response = await client.get(f"/workshops/{workshop.id}/roster.csv")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert f'filename="workshop-{workshop.id}-roster.csv"' in response.headers["content-disposition"]
    assert response.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert [r["Answer"] for r in rows] == ["yes", "waitlist", "maybe", "no"]
    first = rows[0]
    assert (first["First name"], first["Last name"]) == ("'=cmd()", "'@SUM(A1)")
    assert first["Answered at"] == "2027-03-01T09:00-05:00" and first["Attended"] == "no"
    assert rows[1]["Waitlist position"] == "1" and rows[1]["Email"] == "doc1@clinic.test"
    assert "=cmd()" not in response.text.replace("'=cmd()", "")


async def test_an_unknown_workshop_is_a_404(db, client, signed_in):
    await signed_in("manager")
    for path in ("/workshops/999", "/workshops/999/roster.csv", "/workshops/999/check-in", "/workshops/999/edit",
                 "/workshops/999/cancel"):
        assert (await client.get(path)).status_code == 404, path


# ------------------------------------------------------------------------------------------------
# Check-in


async def test_a_liaison_checks_people_in_and_out(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    clock.now = datetime(2027, 4, 14, 21, 25, tzinfo=timezone.utc).timestamp()  # the evening itself
    user = await signed_in("liaison")
    seated = await rsvp_of(workshop.id, ids[0])

    listing = await client.get(f"/workshops/{workshop.id}/check-in")
    assert listing.status_code == 200
    assert listing.text.count('class="check-in-row') == 3  # yes, waitlist, maybe: not the No
    assert "O&#39;Brien-3" not in listing.text
    assert "<strong>0</strong> of 3 checked in" in listing.text

    done = await post_form(client, f"/workshops/{workshop.id}/check-in/{seated.id}", {"attended": "1"})
    assert done.status_code == 303 and done.headers["location"].endswith(f"/check-in#rsvp-{seated.id}")
    row = await rsvp_of(workshop.id, ids[0])
    assert row.attended and row.checked_in_at == datetime(2027, 4, 14, 21, 25, tzinfo=timezone.utc)
    event = await AuditEvent.objects().where(AuditEvent.action == "workshop.check_in").first().run()
    assert (event.actor, event.object_id) == (user.id, str(seated.id))
    again = await post_form(client, f"/workshops/{workshop.id}/check-in/{seated.id}", {"attended": "1"})
    assert again.status_code == 303  # a second tap changes nothing
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.check_in").run() == 1
    assert "<strong>1</strong> of 3 checked in" in (await client.get(f"/workshops/{workshop.id}/check-in")).text

    # With htmx, the row comes back in place; without a value, the button toggles.
    undone = await client.post(f"/workshops/{workshop.id}/check-in/{seated.id}",
                               data={"_csrf_token": csrf_token(client)}, headers={"hx-request": "true"})
    assert undone.status_code == 200 and undone.text.lstrip().startswith(f'<li id="rsvp-{seated.id}"')
    assert ">Check in</button>" in undone.text
    row = await rsvp_of(workshop.id, ids[0])
    assert not row.attended and row.checked_in_at is None
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.check_in_undo").run() == 1


async def test_checking_in_refuses_an_answer_to_another_workshop(db, client, signed_in, clock):
    at_now(clock)
    workshop, _ = await answered_workshop()
    other = await make_workshop(title="Another workshop")
    stranger = (await add_clinicians(1, start=20))[0]
    await answer(other.id, stranger, "yes", now=NOW)
    foreign = await rsvp_of(other.id, stranger)
    await signed_in("marketer")

    refused = await post_form(client, f"/workshops/{workshop.id}/check-in/{foreign.id}", {"attended": "1"})
    missing = await post_form(client, f"/workshops/{workshop.id}/check-in/999999", {"attended": "1"})

    assert refused.status_code == 404 and missing.status_code == 404
    assert not (await rsvp_of(other.id, stranger)).attended
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.check_in").run() == 0


async def test_a_walk_in_is_found_by_name_and_checked_in(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    walker = Clinician(first_name="Wanda", last_name="Walker", credential="NP", state="IL", email="wanda@clinic.test")
    await walker.save().run()
    await signed_in("liaison")

    found = await client.get(f"/workshops/{workshop.id}/check-in", params={"q": "walk"})
    assert found.status_code == 200 and "Walker, Wanda" in found.text and "Add and check in" in found.text
    listed = await client.get(f"/workshops/{workshop.id}/check-in", params={"q": "O'Brien-0"})
    assert "already on the list" in listed.text

    added = await post_form(client, f"/workshops/{workshop.id}/walk-ins", {"clinician": str(walker.id)})

    assert added.status_code == 303 and "done=walk_in" in added.headers["location"]
    row = await rsvp_of(workshop.id, walker.id)
    assert (row.answer, row.source, row.attended) == ("yes", "walk_in", True)
    page = await client.get(f"/workshops/{workshop.id}/check-in?done=walk_in")
    assert "Walk-in checked in" in page.text and "<strong>1</strong> of 4 checked in" in page.text
    # Who said No but came anyway is checked in, their answer kept.
    came = await post_form(client, f"/workshops/{workshop.id}/walk-ins", {"clinician": str(ids[3])})
    assert came.status_code == 303
    row = await rsvp_of(workshop.id, ids[3])
    assert (row.answer, row.attended) == ("no", True)
    bad = await post_form(client, f"/workshops/{workshop.id}/walk-ins", {"clinician": "999999"})
    assert bad.status_code == 422 and "choose the clinician" in bad.text.lower()


async def test_a_cancelled_workshop_takes_no_check_in(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    await signed_in("manager")
    await post_form(client, f"/workshops/{workshop.id}/cancel", {"confirm": "yes"})
    seated = await rsvp_of(workshop.id, ids[0])

    refused = await post_form(client, f"/workshops/{workshop.id}/check-in/{seated.id}", {"attended": "1"})

    assert refused.status_code == 422 and "was cancelled" in refused.text
    assert not (await rsvp_of(workshop.id, ids[0])).attended


# ------------------------------------------------------------------------------------------------
# Who may do what


async def test_a_liaison_views_and_checks_in_but_cannot_plan_change_or_cancel(db, client, signed_in, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    await signed_in("liaison")

    for path in ("/workshops", f"/workshops/{workshop.id}", f"/workshops/{workshop.id}/roster.csv",
                 f"/workshops/{workshop.id}/check-in"):
        assert (await client.get(path)).status_code == 200, path
    for path in ("/workshops/new", f"/workshops/{workshop.id}/edit", f"/workshops/{workshop.id}/cancel"):
        assert (await client.get(path)).status_code == 403, path
    assert (await post_form(client, "/workshops/new", values(title="Sneaky"))).status_code == 403
    assert (await post_form(client, f"/workshops/{workshop.id}/edit", values(title="Sneaky"))).status_code == 403
    assert (await post_form(client, f"/workshops/{workshop.id}/cancel", {"confirm": "yes"})).status_code == 403

    row = await stored(workshop.id)
    assert (row.title, row.status, await Workshop.count().run()) == (values()["title"], "scheduled", 1)
    seated = await rsvp_of(workshop.id, ids[0])
    assert (await post_form(client, f"/workshops/{workshop.id}/check-in/{seated.id}", {"attended": "1"})).status_code == 303


async def test_anonymous_visitors_are_sent_to_sign_in(db, client, clock):
    at_now(clock)
    workshop, ids = await answered_workshop()
    seated = await rsvp_of(workshop.id, ids[0])

    for path in ("/workshops", f"/workshops/{workshop.id}", f"/workshops/{workshop.id}/roster.csv",
                 f"/workshops/{workshop.id}/check-in", "/workshops/new"):
        response = await client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    posted = await post_form(client, f"/workshops/{workshop.id}/check-in/{seated.id}", {"attended": "1"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")
    assert not (await rsvp_of(workshop.id, ids[0])).attended
