"""Workshops and RSVPs through the JSON API, with an API token, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from campaigns.tables import Rsvp, Workshop
from tests.campaigns.conftest import add_clinicians
from tests.campaigns.test_campaign_api import api_client, token_for

NOW = datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc)


def payload(**changes: Any) -> dict[str, Any]:
    """A workshop on 2027-04-14, 17:30–19:00 in New York (EDT, UTC−4), two seats."""
    data: dict[str, Any] = {
        "title": "Rapid-consult pathways for primary care", "topic": "Referral criteria",
        "date": "2027-04-14", "start_time": "17:30", "end_time": "19:00", "time_zone": "America/New_York",
        "venue": "Cancer Center, Room 2", "capacity": 2, "credit_hours": "1.5",
    }
    data.update(changes)
    return data


async def test_a_workshop_is_planned_read_changed_and_cancelled(app, make_user, clock):
    clock.now = NOW.timestamp()
    async with api_client(app, await token_for(make_user, "marketer")) as api:
        created = await api.post("/api/v1/workshops", json=payload())
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["starts_at"] == "2027-04-14T21:30:00Z" and body["ends_at"] == "2027-04-14T23:00:00Z"
        assert (body["date"], body["start_time"], body["end_time"]) == ("2027-04-14", "17:30", "19:00")
        assert body["status"] == "scheduled" and body["sequence"] == 0 and body["capacity"] == 2
        assert body["counts"] == {"yes": 0, "waitlist": 0, "maybe": 0, "no": 0, "attended": 0}
        workshop_id = body["id"]

        read = await api.get(f"/api/v1/workshops/{workshop_id}")
        assert read.status_code == 200 and read.json()["title"] == "Rapid-consult pathways for primary care"
        assert (await api.get("/api/v1/workshops/999999")).status_code == 404

        # A change that nobody must hear about keeps the sequence; fields left out keep their value.
        retitled = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"title": "Pathways, revised"})
        assert retitled.status_code == 200, retitled.text
        assert retitled.json()["title"] == "Pathways, revised" and retitled.json()["sequence"] == 0
        assert retitled.json()["start_time"] == "17:30" and retitled.json()["capacity"] == 2
        assert retitled.json()["venue"] == "Cancer Center, Room 2" and retitled.json()["credit_hours"] == "1.5"

        moved = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"start_time": "18:00", "end_time": "19:30"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["sequence"] == 1 and moved.json()["starts_at"] == "2027-04-14T22:00:00Z"
        assert moved.json()["title"] == "Pathways, revised"
        no_limit = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"capacity": None})
        assert no_limit.status_code == 200 and no_limit.json()["capacity"] is None
        assert no_limit.json()["sequence"] == 1
        assert (await api.patch("/api/v1/workshops/999999", json={"title": "x"})).status_code == 404

        later = await api.post("/api/v1/workshops", json=payload(date="2027-05-20", title="Tumor board open day"))
        assert later.status_code == 201
        upcoming = (await api.get("/api/v1/workshops")).json()
        assert [w["id"] for w in upcoming] == [workshop_id, later.json()["id"]]
        assert (await api.get("/api/v1/workshops", params={"when": "past"})).json() == []
        assert len((await api.get("/api/v1/workshops", params={"when": "all"})).json()) == 2
        clock.now = datetime(2027, 5, 1, tzinfo=timezone.utc).timestamp()
        assert [w["id"] for w in (await api.get("/api/v1/workshops", params={"when": "past"})).json()] == [workshop_id]
        assert [w["id"] for w in (await api.get("/api/v1/workshops")).json()] == [later.json()["id"]]
        bad_when = await api.get("/api/v1/workshops", params={"when": "someday"})
        assert bad_when.status_code == 400 and "when:" in bad_when.json()["detail"]

        cancelled = await api.post(f"/api/v1/workshops/{later.json()['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["sequence"] == 1
        again = await api.post(f"/api/v1/workshops/{later.json()['id']}/cancel")
        assert again.status_code == 400 and again.json()["detail"].startswith("status: ")
        changed = await api.patch(f"/api/v1/workshops/{later.json()['id']}", json={"title": "x"})
        assert changed.status_code == 400 and changed.json()["detail"].startswith("status: ")
        assert (await api.post("/api/v1/workshops/999999/cancel")).status_code == 404


async def test_answers_through_the_api_fill_seats_then_the_waitlist(app, make_user, clock):
    clock.now = NOW.timestamp()
    first, second, third, fourth = await add_clinicians(4)
    async with api_client(app, await token_for(make_user, "manager")) as api:
        workshop_id = (await api.post("/api/v1/workshops", json=payload(capacity=2))).json()["id"]
        url = f"/api/v1/workshops/{workshop_id}/rsvps"

        answers = [(await api.put(f"{url}/{c}", json={"answer": "yes"})).json() for c in (first, second, third, fourth)]
        assert [a["answer"] for a in answers] == ["yes", "yes", "waitlist", "waitlist"]
        assert [a["waitlist_position"] for a in answers] == [None, None, 1, 2]
        assert all(a["changed"] and a["promoted"] == [] for a in answers)
        repeated = await api.put(f"{url}/{third}", json={"answer": "yes"})
        assert repeated.status_code == 200 and repeated.json()["changed"] is False
        assert repeated.json()["answer"] == "waitlist"

        declined = await api.put(f"{url}/{first}", json={"answer": "no"})
        assert declined.status_code == 200, declined.text
        assert declined.json()["answer"] == "no" and declined.json()["promoted"] == [third]

        listed = (await api.get(url)).json()
        assert [(r["clinician_id"], r["answer"], r["waitlist_position"]) for r in listed] == [
            (second, "yes", None), (third, "yes", None), (fourth, "waitlist", 1), (first, "no", None),
        ]
        assert {r["source"] for r in listed} == {"api"}
        assert all(r["attended"] is False and r["checked_in_at"] is None for r in listed)
        assert listed[0]["answered_at"] == "2027-03-01T14:00:00Z"

        counts = (await api.get(f"/api/v1/workshops/{workshop_id}")).json()["counts"]
        assert counts == {"yes": 2, "waitlist": 1, "maybe": 0, "no": 1, "attended": 0}

        # A capacity below the confirmed seats is refused; a larger one promotes the waitlist.
        too_small = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"capacity": 1})
        assert too_small.status_code == 400 and too_small.json()["detail"].startswith("capacity: ")
        grown = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"capacity": 3})
        assert grown.status_code == 200 and grown.json()["promoted"] == [fourth]
        assert grown.json()["counts"]["yes"] == 3 and grown.json()["sequence"] == 0

        perhaps = await api.put(f"{url}/{first}", json={"answer": "perhaps"})
        assert perhaps.status_code == 400 and perhaps.json()["detail"].startswith("answer: ")
        extra = await api.put(f"{url}/{first}", json={"answer": "yes", "note": "by phone"})
        assert extra.status_code == 400
        assert (await api.put(f"{url}/999999", json={"answer": "yes"})).status_code == 404
        assert (await api.put(f"/api/v1/workshops/999999/rsvps/{first}", json={"answer": "yes"})).status_code == 404
        assert (await api.get("/api/v1/workshops/999999/rsvps")).status_code == 404

        clock.now = datetime(2027, 4, 15, tzinfo=timezone.utc).timestamp()
        over = await api.put(f"{url}/{first}", json={"answer": "yes"})
        assert over.status_code == 400 and over.json()["detail"] == "status: this workshop is over"
    assert await Rsvp.count().where(Rsvp.workshop == workshop_id).run() == 4


async def test_bad_workshops_are_refused_with_the_field(app, make_user, clock):
    clock.now = NOW.timestamp()
    async with api_client(app, await token_for(make_user, "marketer")) as api:
        cases = {
            "end_time": payload(end_time="17:00"),
            "capacity": payload(capacity=0),
            "time_zone": payload(time_zone="Mars/Olympus"),
            "title": payload(title=""),
            "venue": payload(venue=None),
            "date": payload(date="2027-02-30"),
            "virtual_url": payload(virtual_url="javascript:alert(1)"),
            "host": payload(host_id=999999),
        }
        for field, data in cases.items():
            response = await api.post("/api/v1/workshops", json=data)
            assert response.status_code == 400, (field, response.text)
            assert response.json()["detail"].startswith(f"{field}: "), (field, response.json())
        past = await api.post("/api/v1/workshops", json=payload(date="2027-02-01"))
        assert past.status_code == 400 and past.json()["detail"].startswith("date: ")

        unknown = await api.post("/api/v1/workshops", json=payload(seats=10))
        assert unknown.status_code == 400 and "seats" in unknown.text
        wrong_type = await api.post("/api/v1/workshops", json=payload(capacity="many"))
        assert wrong_type.status_code == 400

        workshop_id = (await api.post("/api/v1/workshops", json=payload())).json()["id"]
        backwards = await api.patch(f"/api/v1/workshops/{workshop_id}", json={"end_time": "16:00"})
        assert backwards.status_code == 400 and backwards.json()["detail"].startswith("end_time: ")
        assert (await api.patch(f"/api/v1/workshops/{workshop_id}", json={"room": "2"})).status_code == 400
    row = await Workshop.objects().get(Workshop.id == workshop_id).run()
    assert row.sequence == 0 and row.title == "Rapid-consult pathways for primary care"
    assert await Workshop.count().run() == 1


async def test_liaisons_read_workshops_but_do_not_change_them(app, make_user, clock):
    clock.now = NOW.timestamp()
    [clinician] = await add_clinicians(1)
    async with api_client(app, await token_for(make_user, "marketer")) as api:
        workshop_id = (await api.post("/api/v1/workshops", json=payload())).json()["id"]
    async with api_client(app, await token_for(make_user, "liaison")) as api:
        assert (await api.get("/api/v1/workshops")).status_code == 200
        assert (await api.get(f"/api/v1/workshops/{workshop_id}")).status_code == 200
        assert (await api.get(f"/api/v1/workshops/{workshop_id}/rsvps")).status_code == 200
        assert (await api.post("/api/v1/workshops", json=payload())).status_code == 403
        assert (await api.patch(f"/api/v1/workshops/{workshop_id}", json={"title": "x"})).status_code == 403
        assert (await api.post(f"/api/v1/workshops/{workshop_id}/cancel")).status_code == 403
        answered = await api.put(f"/api/v1/workshops/{workshop_id}/rsvps/{clinician}", json={"answer": "yes"})
        assert answered.status_code == 403
    async with api_client(app, "not-a-token") as api:
        assert (await api.get("/api/v1/workshops")).status_code == 401
    row = await Workshop.objects().get(Workshop.id == workshop_id).run()
    assert row.status == "scheduled" and row.title == "Rapid-consult pathways for primary care"
    assert await Rsvp.count().run() == 0
