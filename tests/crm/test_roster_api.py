"""The roster's JSON API: same filters, validation and permissions as the pages; tokens work."""

from __future__ import annotations

from datetime import date, timedelta

import httpx

from crm import segments, tokens
from crm.audit import Actor
from crm.tables import Activity, Practice
from tests.crm.test_roster import add, taxonomy  # noqa: F401 (fixture)


def api_client(app, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://liaison.test",
                             headers={"Authorization": f"Bearer {token}"})


async def test_clinicians_filters_and_cursor_pages(app, make_user, taxonomy):  # noqa: F811
    user = await make_user("marketer")
    _, token = await tokens.issue_token(user.id, "script", actor=Actor.cli())
    practice = Practice(name="Harbor Family Care")
    await practice.save().run()
    for n in range(1, 8):
        await add(n, last_name=f"Doc{n}", role="surgeon" if n % 2 else "primary_care", practice=practice.id)
    async with api_client(app, token) as api:
        first = (await api.get("/api/v1/clinicians", params={"role": "surgeon", "limit": 2})).json()
        assert [c["last_name"] for c in first["items"]] == ["Doc1", "Doc3"]
        assert first["items"][0]["specialty"] == "Family Medicine Physician"
        assert first["items"][0]["practice_name"] == "Harbor Family Care"
        second = (await api.get("/api/v1/clinicians", params={"role": "surgeon", "limit": 2,
                                                              "after": first["next_cursor"]})).json()
        assert [c["last_name"] for c in second["items"]] == ["Doc5", "Doc7"] and second["next_cursor"] is None
        bad = await api.get("/api/v1/clinicians", params={"state": "Virginia"})
        assert bad.status_code == 400 and "two-letter" in bad.json()["detail"]
        assert (await api.get("/api/v1/clinicians", params={"limit": 100000})).status_code == 400
        one = await api.get(f"/api/v1/clinicians/{first['items'][0]['id']}")
        assert one.status_code == 200 and one.json()["npi"] == first["items"][0]["npi"]
        assert (await api.get("/api/v1/clinicians/99999")).status_code == 404
        assert (await api.get(f"/api/v1/practices/{practice.id}")).json()["name"] == "Harbor Family Care"


async def test_logging_a_touch_through_the_api_follows_the_page_rules(app, make_user, taxonomy):  # noqa: F811
    clinician = await add(1)
    liaison = await make_user("liaison")
    marketer = await make_user("marketer")
    _, liaison_token = await tokens.issue_token(liaison.id, "phone app", actor=Actor.cli())
    _, marketer_token = await tokens.issue_token(marketer.id, "script", actor=Actor.cli())
    path = f"/api/v1/clinicians/{clinician.id}/activities"
    async with api_client(app, liaison_token) as api:
        created = await api.post(path, json={"kind": "call", "outcome": "left_message", "notes": "Voicemail",
                                             "follow_up_on": (date.today() + timedelta(days=2)).isoformat()})
        assert created.status_code == 201, created.text
        assert created.json()["author_id"] == liaison.id
        refused = await api.post(path, json={"kind": "call",
                                             "follow_up_on": (date.today() - timedelta(days=2)).isoformat()})
        assert refused.status_code == 400 and "cannot be in the past" in refused.json()["detail"]
        listed = (await api.get(path)).json()
        assert [a["notes"] for a in listed] == ["Voicemail"]
    async with api_client(app, marketer_token) as api:
        assert (await api.post(path, json={"kind": "call"})).status_code == 403
    assert await Activity.count().run() == 1


async def test_segments_with_members(app, make_user, taxonomy):  # noqa: F811
    user = await make_user("manager")
    _, token = await tokens.issue_token(user.id, "bi", actor=Actor.cli())
    await add(1, last_name="Cut", role="surgeon")
    await add(2, last_name="Care", role="primary_care")
    segment = await segments.save_segment(name="Surgeons", filters={"role": ["surgeon"]}, actor=Actor.cli())
    async with api_client(app, token) as api:
        listed = (await api.get("/api/v1/segments")).json()
        assert listed == [{"id": segment.id, "name": "Surgeons", "description": "",
                           "filters": {"role": ["surgeon"]}, "member_count": 1}]
        members = (await api.get(f"/api/v1/segments/{segment.id}/members")).json()
        assert [m["last_name"] for m in members["items"]] == ["Cut"]
        assert (await api.get("/api/v1/segments/4242")).status_code == 404


async def test_clinicians_are_added_and_changed_with_the_page_rules(app, make_user, taxonomy):  # noqa: F811
    liaison = await make_user("liaison")
    other = await make_user("liaison")
    _, token = await tokens.issue_token(liaison.id, "crm sync", actor=Actor.cli())
    theirs = await add(9, owner=other.id, last_name="Theirs")
    async with api_client(app, token) as api:
        created = await api.post("/api/v1/clinicians", json={
            "npi": "1234567893", "first_name": "Ana", "last_name": "D'Souza", "email": "ANA@clinic.org",
            "taxonomy_code": "207RX0202X", "do_not_contact": True})
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["email"], body["role"], body["owner_id"], body["do_not_contact"]) == (
            "ana@clinic.org", "oncology_peer", liaison.id, True)
        patched = await api.patch(f"/api/v1/clinicians/{body['id']}", json={"tier": "A"})
        assert patched.status_code == 200
        assert (patched.json()["tier"], patched.json()["last_name"], patched.json()["do_not_contact"]) == (
            "A", "D'Souza", True)
        cleared = await api.patch(f"/api/v1/clinicians/{body['id']}", json={"do_not_contact": False})
        assert cleared.status_code == 400 and "Only a manager" in cleared.json()["detail"]
        bad = await api.post("/api/v1/clinicians", json={"npi": "1234567890", "last_name": "X"})
        assert bad.status_code == 400 and "check digit" in bad.json()["detail"]
        foreign = await api.patch(f"/api/v1/clinicians/{theirs.id}", json={"last_name": "Mine now"})
        assert foreign.status_code == 403


async def test_unknown_or_misspelt_fields_are_refused(app, make_user, taxonomy):  # noqa: F811
    clinician = await add(1)
    user = await make_user("liaison")
    _, token = await tokens.issue_token(user.id, "app", actor=Actor.cli())
    async with api_client(app, token) as api:
        response = await api.post(f"/api/v1/clinicians/{clinician.id}/activities",
                                  json={"kind": "visit", "occurred_at": "2026-12-01T10:30:00-05:00"})
        assert response.status_code == 400 and "occurred_at" in response.text
        wrong_kind = await api.post(f"/api/v1/clinicians/{clinician.id}/activities", json={"kind": "meeting"})
        assert wrong_kind.status_code == 400 and "lunch_and_learn" in wrong_kind.json()["detail"]
    assert await Activity.count().run() == 0
