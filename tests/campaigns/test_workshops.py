"""Workshops and RSVPs, on SQLite and PostgreSQL: validation, seats, the waitlist and promotion,
changes that invitees must hear about, and cancellation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from campaigns import workshops
from campaigns.tables import Rsvp, Workshop
from campaigns.workshops import WorkshopError, answer, cancel_workshop, counts, save_workshop
from crm.segments import save_segment
from crm.tables import AuditEvent
from tests.campaigns.conftest import ACTOR, START, add_clinicians


def form(**changes: Any) -> dict[str, Any]:
    """Form-like values for a workshop on 2027-04-14, 17:30–19:00 in New York (after START)."""
    data: dict[str, Any] = {
        "title": "Rapid-consult pathways for primary care",
        "topic": "Referral criteria",
        "date": "2027-04-14",
        "start_time": "17:30",
        "end_time": "19:00",
        "time_zone": "America/New_York",
        "venue": "Cancer Center, Room 2",
        "virtual_url": "",
        "capacity": "2",
        "credit_hours": "1.5",
    }
    data.update(changes)
    return data


async def make_workshop(**changes: Any) -> Workshop:
    workshop, promoted = await save_workshop(form(**changes), actor=ACTOR, now=START)
    assert promoted == []
    return workshop


async def stored(workshop_id: int) -> Workshop:
    return await Workshop.objects().get(Workshop.id == workshop_id).run()


async def rsvp_rows(workshop_id: int) -> dict[int, str]:
    rows = await Rsvp.select(Rsvp.clinician, Rsvp.answer).where(Rsvp.workshop == workshop_id).run()
    return {row["clinician"]: row["answer"] for row in rows}


# ------------------------------------------------------------------------------------------------
# Creating and validating


async def test_a_workshop_from_form_values_is_stored_in_utc(db):
    workshop = await make_workshop()

    row = await stored(workshop.id)
    assert row.starts_at == datetime(2027, 4, 14, 21, 30, tzinfo=timezone.utc)
    assert row.ends_at == datetime(2027, 4, 14, 23, 0, tzinfo=timezone.utc)
    assert row.starts_at.utcoffset() == timedelta(0)
    assert (row.sequence, row.status, row.capacity, row.credit_hours) == (0, "scheduled", 2, "1.5")
    assert (row.time_zone, row.venue) == ("America/New_York", "Cancer Center, Room 2")
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.create").run() == 1


async def test_a_virtual_workshop_without_venue_and_without_limit(db):
    workshop = await make_workshop(venue="", virtual_url="https://meet.example.org/abc", capacity="")

    row = await stored(workshop.id)
    assert row.capacity is None and row.virtual_url == "https://meet.example.org/abc"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end_time": "17:00"}, "end_time"),
        ({"end_time": "17:30"}, "end_time"),
        ({"date": "2027-02-30"}, "date"),
        ({"date": ""}, "date"),
        ({"start_time": "25:00"}, "start_time"),
        ({"end_time": "19:60"}, "end_time"),
        ({"start_time": "١٧:٣٠"}, "start_time"),
        ({"start_time": "٠٩:٣٠"}, "start_time"),
        ({"date": "2027-03-14", "start_time": "02:30", "end_time": "04:00"}, "start_time"),  # DST gap
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"venue": "", "virtual_url": ""}, "venue"),
        ({"venue": "   ", "virtual_url": ""}, "venue"),
        ({"virtual_url": "javascript:alert(1)"}, "virtual_url"),
        ({"virtual_url": "ftp://x"}, "virtual_url"),
        ({"capacity": "0"}, "capacity"),
        ({"capacity": "-1"}, "capacity"),
        ({"capacity": "abc"}, "capacity"),
        ({"capacity": "²"}, "capacity"),
        ({"capacity": "١٢"}, "capacity"),
        ({"capacity": "10001"}, "capacity"),
        ({"credit_hours": "abc"}, "credit_hours"),
        ({"credit_hours": "١.٥"}, "credit_hours"),
        ({"date": "2027-03-01"}, "date"),  # before START: a start in the past
        ({"host": "999999"}, "host"),
        ({"segment": "999999"}, "segment"),
        ({"host": "²"}, "host"),
        ({"segment": "abc"}, "segment"),
        ({"title": ""}, "title"),
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(db, changes, field):
    with pytest.raises(WorkshopError) as refused:
        await save_workshop(form(**changes), actor=ACTOR, now=START)

    assert refused.value.field == field and refused.value.message
    assert await Workshop.count().run() == 0
    assert await AuditEvent.count().where(AuditEvent.object_type == "workshop").run() == 0


async def test_an_existing_host_and_segment_are_accepted(db, make_user):
    host = await make_user("liaison")
    segment = await save_segment(name="Workshop invitees", filters={"state": "IL"}, actor=ACTOR)

    workshop = await make_workshop(host=str(host.id), segment=str(segment.id))

    row = await stored(workshop.id)
    assert (row.host, row.segment) == (host.id, segment.id)


# ------------------------------------------------------------------------------------------------
# Answers, seats and the waitlist


async def test_yes_takes_a_seat_and_a_third_yes_on_capacity_2_waits(db):
    workshop = await make_workshop()
    a, b, c = await add_clinicians(3)

    first = await answer(workshop.id, a, "yes", now=START)
    second = await answer(workshop.id, b, "yes", now=START + timedelta(minutes=1))
    third = await answer(workshop.id, c, "yes", now=START + timedelta(minutes=2))

    assert [(r.answer, r.changed) for r in (first, second, third)] == [("yes", True), ("yes", True), ("waitlist", True)]
    assert await rsvp_rows(workshop.id) == {a: "yes", b: "yes", c: "waitlist"}
    waiting = await Rsvp.objects().where(Rsvp.clinician == c).first().run()
    assert waiting.waitlisted_at is not None


async def test_answering_again_with_the_same_answer_is_idempotent(db):
    workshop = await make_workshop(capacity="1")
    a, b, c = await add_clinicians(3)
    await answer(workshop.id, a, "yes", now=START)
    await answer(workshop.id, b, "yes", now=START)
    await answer(workshop.id, c, "maybe", now=START)

    again = [
        await answer(workshop.id, a, "yes", now=START + timedelta(hours=1)),
        await answer(workshop.id, b, "yes", now=START + timedelta(hours=1)),
        await answer(workshop.id, c, "maybe", now=START + timedelta(hours=1)),
    ]

    assert [(r.answer, r.changed, r.promoted) for r in again] == [
        ("yes", False, []), ("waitlist", False, []), ("maybe", False, []),
    ]
    assert await Rsvp.count().where(Rsvp.workshop == workshop.id).run() == 3
    assert await rsvp_rows(workshop.id) == {a: "yes", b: "waitlist", c: "maybe"}


async def test_yes_to_no_frees_the_seat_for_the_first_waitlisted(db):
    workshop = await make_workshop(capacity="1")
    a, b, c, d = await add_clinicians(4)
    await answer(workshop.id, a, "yes", now=START)
    # Waitlisted in the order c, b, d (answer order, not id order).
    await answer(workshop.id, c, "yes", now=START + timedelta(minutes=1))
    await answer(workshop.id, b, "yes", now=START + timedelta(minutes=2))
    await answer(workshop.id, d, "yes", now=START + timedelta(minutes=3))

    freed = await answer(workshop.id, a, "no", now=START + timedelta(minutes=4))

    assert (freed.answer, freed.changed, freed.promoted) == ("no", True, [c])
    assert await rsvp_rows(workshop.id) == {a: "no", b: "waitlist", c: "yes", d: "waitlist"}
    promoted = await Rsvp.objects().where(Rsvp.clinician == c).first().run()
    assert promoted.waitlisted_at is None

    # Then c changes to maybe: b (waiting before d) gets the seat.
    maybe = await answer(workshop.id, c, "maybe", now=START + timedelta(minutes=5))
    assert maybe.promoted == [b]
    assert await rsvp_rows(workshop.id) == {a: "no", b: "yes", c: "maybe", d: "waitlist"}


async def test_a_waitlisted_clinician_who_says_no_leaves_the_waitlist(db):
    workshop = await make_workshop(capacity="1")
    a, b, c = await add_clinicians(3)
    await answer(workshop.id, a, "yes", now=START)
    await answer(workshop.id, b, "yes", now=START + timedelta(minutes=1))
    await answer(workshop.id, c, "yes", now=START + timedelta(minutes=2))

    left = await answer(workshop.id, b, "no", now=START + timedelta(minutes=3))
    freed = await answer(workshop.id, a, "no", now=START + timedelta(minutes=4))

    assert left.promoted == [] and freed.promoted == [c]
    assert await rsvp_rows(workshop.id) == {a: "no", b: "no", c: "yes"}


async def test_maybe_and_no_never_take_a_seat(db):
    workshop = await make_workshop(capacity="1")
    a, b, c = await add_clinicians(3)

    assert (await answer(workshop.id, a, "maybe", now=START)).answer == "maybe"
    assert (await answer(workshop.id, b, "no", now=START)).answer == "no"
    assert (await answer(workshop.id, c, "yes", now=START)).answer == "yes"
    assert (await answer(workshop.id, a, "yes", now=START)).answer == "waitlist"
    assert await workshops.seats_taken(workshop.id) == 1


async def test_an_unknown_answer_is_refused(db):
    workshop = await make_workshop()
    (a,) = await add_clinicians(1)

    with pytest.raises(WorkshopError) as refused:
        await answer(workshop.id, a, "YES", now=START)

    assert refused.value.field == "answer"
    assert await Rsvp.count().run() == 0


async def test_answers_for_a_cancelled_or_finished_workshop_are_refused(db):
    cancelled = await make_workshop()
    finished = await make_workshop(title="Tumor board open day")
    (a,) = await add_clinicians(1)
    await cancel_workshop(cancelled.id, actor=ACTOR, now=START)

    with pytest.raises(WorkshopError) as refused_cancelled:
        await answer(cancelled.id, a, "yes", now=START)
    with pytest.raises(WorkshopError) as refused_over:
        await answer(finished.id, a, "yes", now=datetime(2027, 4, 14, 23, 0, tzinfo=timezone.utc))

    assert "cancelled" in refused_cancelled.value.message
    assert "over" in refused_over.value.message
    assert await Rsvp.count().run() == 0
    # During the workshop, answers are still taken.
    during = await answer(finished.id, a, "yes", now=datetime(2027, 4, 14, 22, 0, tzinfo=timezone.utc))
    assert during.answer == "yes"


async def test_an_answer_for_an_unknown_workshop_is_refused(db):
    (a,) = await add_clinicians(1)

    with pytest.raises(WorkshopError):
        await answer(424242, a, "yes", now=START)


async def test_two_yes_answers_racing_for_the_last_seat(db):
    clinicians = await add_clinicians(20)
    for round_ in range(10):
        workshop = await make_workshop(capacity="1", title=f"Race {round_}")
        a, b = clinicians[2 * round_], clinicians[2 * round_ + 1]

        results = await asyncio.gather(
            answer(workshop.id, a, "yes", now=START), answer(workshop.id, b, "yes", now=START)
        )

        assert sorted(r.answer for r in results) == ["waitlist", "yes"]
        assert sorted((await rsvp_rows(workshop.id)).values()) == ["waitlist", "yes"]
        assert await workshops.seats_taken(workshop.id) == 1


# ------------------------------------------------------------------------------------------------
# Changes and cancellation


async def test_the_capacity_cannot_fall_below_the_confirmed_seats(db):
    workshop = await make_workshop(capacity="3")
    for clinician in await add_clinicians(3):
        await answer(workshop.id, clinician, "yes", now=START)

    with pytest.raises(WorkshopError) as refused:
        await save_workshop(form(capacity="2"), actor=ACTOR, now=START, workshop_id=workshop.id)

    assert refused.value.field == "capacity" and "3" in refused.value.message
    assert (await stored(workshop.id)).capacity == 3
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.update").run() == 0


async def test_raising_the_capacity_promotes_waitlisted_clinicians(db):
    workshop = await make_workshop(capacity="1")
    a, b, c, d = await add_clinicians(4)
    for minute, clinician in enumerate((a, b, c, d)):
        await answer(workshop.id, clinician, "yes", now=START + timedelta(minutes=minute))

    updated, promoted = await save_workshop(form(capacity="3"), actor=ACTOR, now=START, workshop_id=workshop.id)

    assert promoted == [b, c] and updated.capacity == 3
    assert await rsvp_rows(workshop.id) == {a: "yes", b: "yes", c: "yes", d: "waitlist"}
    assert (await stored(workshop.id)).sequence == 0  # a capacity change is not a change of time or place

    _, unlimited = await save_workshop(form(capacity=""), actor=ACTOR, now=START, workshop_id=workshop.id)
    assert unlimited == [d]
    assert await counts(workshop.id) == {"yes": 4, "waitlist": 0, "maybe": 0, "no": 0, "attended": 0}


async def test_a_change_of_time_or_place_increments_the_sequence_but_not_the_title(db):
    workshop = await make_workshop()

    async def change(**changes: Any) -> int:
        await save_workshop(form(**changes), actor=ACTOR, now=START, workshop_id=workshop.id)
        return (await stored(workshop.id)).sequence

    assert await change(title="A new title") == 0
    assert await change(title="A new title") == 0  # saving the same values again
    assert await change(title="A new title", start_time="17:00") == 1
    assert await change(title="A new title", start_time="17:00", venue="Main auditorium") == 2
    assert await change(title="A new title", start_time="17:00", venue="Main auditorium",
                        virtual_url="https://meet.example.org/x") == 3
    assert await change(title="Another title", start_time="17:00", venue="Main auditorium",
                        virtual_url="https://meet.example.org/x", topic="New topic") == 3
    row = await stored(workshop.id)
    assert row.title == "Another title" and row.starts_at == datetime(2027, 4, 14, 21, 0, tzinfo=timezone.utc)


async def test_cancel_increments_the_sequence_and_freezes_the_workshop(db):
    workshop = await make_workshop()

    cancelled = await cancel_workshop(workshop.id, actor=ACTOR, now=START)

    row = await stored(workshop.id)
    assert (cancelled.status, cancelled.sequence) == ("cancelled", 1)
    assert (row.status, row.sequence) == ("cancelled", 1)
    with pytest.raises(WorkshopError) as edit:
        await save_workshop(form(title="Renamed"), actor=ACTOR, now=START, workshop_id=workshop.id)
    with pytest.raises(WorkshopError) as again:
        await cancel_workshop(workshop.id, actor=ACTOR, now=START)
    assert edit.value.field == "status" and again.value.field == "status"
    row = await stored(workshop.id)
    assert (row.title, row.status, row.sequence) == (form()["title"], "cancelled", 1)
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.cancel").run() == 1


async def test_changing_or_cancelling_an_unknown_workshop_is_refused(db):
    with pytest.raises(WorkshopError):
        await save_workshop(form(), actor=ACTOR, now=START, workshop_id=424242)
    with pytest.raises(WorkshopError):
        await cancel_workshop(424242, actor=ACTOR, now=START)
    assert await Workshop.count().run() == 0


# ------------------------------------------------------------------------------------------------
# Counts


async def test_counts_by_answer_and_attendance(db):
    workshop = await make_workshop(capacity="2")
    other = await make_workshop(title="Another workshop")
    ids = await add_clinicians(7)
    for clinician, reply in zip(ids, ("yes", "yes", "yes", "maybe", "maybe", "no", "yes")):
        await answer(workshop.id, clinician, reply, now=START)
    await answer(other.id, ids[0], "no", now=START)
    await Rsvp.update({Rsvp.attended: True}).where(Rsvp.workshop == workshop.id, Rsvp.clinician == ids[0]).run()

    assert await counts(workshop.id) == {"yes": 2, "waitlist": 2, "maybe": 2, "no": 1, "attended": 1}
    assert await counts(other.id) == {"yes": 0, "waitlist": 0, "maybe": 0, "no": 1, "attended": 0}
    assert await counts(424242) == {"yes": 0, "waitlist": 0, "maybe": 0, "no": 0, "attended": 0}
