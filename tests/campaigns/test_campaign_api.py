"""Campaigns, sends and suppressions through the JSON API, with an API token."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx

from campaigns.outbox import OutboxBackend
from campaigns.scheduler import fire_due
from campaigns.sending import Dispatcher
from crm import tokens
from crm.audit import Actor
from crm.segments import save_segment
from tests.campaigns.conftest import add_clinicians

NOW = datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc)


def api_client(app, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://liaison.test",
                             headers={"Authorization": f"Bearer {token}"})


async def token_for(make_user, role: str) -> str:
    user = await make_user(role)
    _, token = await tokens.issue_token(user.id, "script", actor=Actor.cli())
    return token


async def test_a_campaign_is_built_scheduled_and_followed_through_the_api(app, make_user, clock):
    clock.now = NOW.timestamp()
    await add_clinicians(12)
    segment = await save_segment(name="IL", filters={"state": "IL"}, actor=Actor(None, "t"))
    token = await token_for(make_user, "marketer")
    async with api_client(app, token) as api:
        created = await api.post("/api/v1/campaigns", json={
            "name": "Quarterly survivorship newsletter", "kind": "recurring", "segment_id": segment.id,
            "time_zone": "America/Chicago", "cadence": {"kind": "quarterly", "day": 31, "time": "10:00", "start_month": 3},
        })
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "draft" and body["cadence_description"].startswith("Every quarter")
        assert body["next_send_times"][0] == "2027-03-31T15:00:00Z"
        assert body["next_send_times"][1] == "2027-06-30T15:00:00Z"  # day 31 → the last day of June
        campaign_id = body["id"]

        unknown = await api.post("/api/v1/campaigns", json={"name": "x", "cadense": {}})
        bad_zone = await api.patch(f"/api/v1/campaigns/{campaign_id}", json={"time_zone": "Mars/Olympus"})
        bad_template = await api.post(f"/api/v1/campaigns/{campaign_id}/steps",
                                      json={"subject": "Hi {{ nme }}", "html_body": "<p>Hi</p>"})
        assert unknown.status_code == 400 and bad_zone.status_code == 400 and "time_zone" in bad_zone.json()["detail"]
        assert bad_template.status_code == 400 and "nme" in bad_template.json()["detail"]

        step = await api.post(f"/api/v1/campaigns/{campaign_id}/steps",
                              json={"subject": "News for {{ practice_name }}", "html_body": "<p>Dear {{ salutation }}</p>"})
        assert step.status_code == 201 and step.json()["steps"][0]["subject"] == "News for {{ practice_name }}"
        scheduled = await api.post(f"/api/v1/campaigns/{campaign_id}/actions/schedule")
        assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
        again = await api.post(f"/api/v1/campaigns/{campaign_id}/actions/schedule")
        assert again.status_code == 400 and "only a draft" in again.json()["detail"]
        assert (await api.post(f"/api/v1/campaigns/{campaign_id}/actions/explode")).status_code in (400, 404)

        occurrence = datetime(2027, 3, 31, 15, 0, tzinfo=timezone.utc)
        await fire_due(campaign_id, occurrence)
        await Dispatcher(app.state["mail"], OutboxBackend(), "w").run_once(occurrence)
        first = (await api.get(f"/api/v1/campaigns/{campaign_id}/sends", params={"limit": 5})).json()
        rest = (await api.get(f"/api/v1/campaigns/{campaign_id}/sends",
                              params={"limit": 100, "after": first["next_after"]})).json()
        assert len(first["items"]) == 5 and len(rest["items"]) == 7 and rest["next_after"] is None
        assert {s["state"] for s in first["items"] + rest["items"]} == {"sent"}
        assert (await api.get(f"/api/v1/campaigns/{campaign_id}")).json()["funnel"] == {"sent": 12}


async def test_liaisons_read_campaigns_but_do_not_change_them(app, make_user, clock):
    clock.now = NOW.timestamp()
    token = await token_for(make_user, "liaison")
    async with api_client(app, token) as api:
        assert (await api.get("/api/v1/campaigns")).status_code == 200
        assert (await api.post("/api/v1/campaigns", json={"name": "x"})).status_code == 403
        assert (await api.get("/api/v1/suppressions/")).status_code == 403


async def test_suppressions_through_the_api(app, make_user, clock):
    clock.now = NOW.timestamp()
    token = await token_for(make_user, "manager")
    async with api_client(app, token) as api:
        added = await api.post("/api/v1/suppressions/", json={"email": " Doc@Clinic.test", "detail": "by phone"})
        assert added.status_code == 201 and added.json()["email"] == "doc@clinic.test"
        assert (await api.post("/api/v1/suppressions/", json={"email": "no address"})).status_code == 400
        listed = (await api.get("/api/v1/suppressions/", params={"q": "DOC@clinic.test"})).json()
        assert [s["reason"] for s in listed] == ["manual"]
        assert (await api.delete(f"/api/v1/suppressions/{added.json()['id']}")).status_code == 204
        assert (await api.get("/api/v1/suppressions/")).json() == []
