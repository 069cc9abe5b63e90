"""What the product tells a marketer: who can be mailed, what a pause does, what changed."""

from __future__ import annotations

from datetime import timedelta

import httpx

from campaigns import service, suppressions
from campaigns.outbox import OutboxBackend
from campaigns.scheduler import fire_due
from campaigns.sending import Dispatcher
from campaigns.tables import Occurrence, Send
from crm import tokens
from crm.audit import Actor
from crm.tables import Clinician
from tests.campaigns.conftest import ACTOR, START, add_clinicians, make_campaign
from tests.helpers import post_form


async def test_the_builder_says_how_many_can_be_mailed(db, client, signed_in, clock, mail_config):
    clock.now = START.timestamp()
    ids = await add_clinicians(4)
    await Clinician.update({Clinician.email: None}).where(Clinician.id.is_in(ids[:3])).run()
    campaign = await make_campaign(mail_config, START, schedule=False)
    await signed_in("marketer")
    params = {"name": "x", "segment": campaign.segment, "cadence_kind": "weekly", "cadence_weekdays": "2",
              "cadence_time": "10:00", "send_days": ["1", "2", "3", "4", "5"]}

    some = await client.get("/campaigns/preview", params=params)
    await suppressions.add("doc3@clinic.test", reason="manual", source="test", now=START)
    none = await client.get("/campaigns/preview", params=params)

    assert "<strong>4</strong> clinicians in the audience" in some.text and "<strong>1</strong> can be mailed" in some.text
    assert "<strong>0</strong> can be mailed" in none.text and "nobody in the audience can be mailed" in none.text.lower()


async def test_occurrences_during_a_pause_are_recorded_not_sent_on_resume(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START - timedelta(minutes=1))  # weekly, Tuesdays 10:00 New York
    await service.transition(campaign.id, "pause", actor=ACTOR, now=START - timedelta(seconds=30), config=mail_config)
    three_weeks = START + timedelta(days=21, hours=1)

    await service.transition(campaign.id, "resume", actor=ACTOR, now=three_weeks, config=mail_config)
    fired = await fire_due(campaign.id, three_weeks + timedelta(minutes=1))

    statuses = [r["status"] for r in await Occurrence.select(Occurrence.status).order_by(Occurrence.scheduled_for).run()]
    assert statuses == ["paused"] * 4 and fired == {"fired": 0, "missed": 0}
    assert await Send.count().run() == 0


async def test_a_step_is_changed_in_part_through_the_api_and_bad_states_are_refused(app, make_user, clock, mail_config):
    clock.now = START.timestamp()
    await add_clinicians(1)
    campaign = await make_campaign(mail_config, START, schedule=False)
    user = await make_user("marketer")
    _, token = await tokens.issue_token(user.id, "t", actor=Actor.cli())
    step = (await service.steps_of(campaign.id))[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://liaison.test",
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        changed = await api.patch(f"/api/v1/campaigns/{campaign.id}/steps/{step.id}", json={"subject": "New subject"})
        bogus = await api.get(f"/api/v1/campaigns/{campaign.id}/sends", params={"state": "bogus"})

    assert changed.status_code == 200, changed.text
    assert changed.json()["steps"][0]["subject"] == "New subject"
    assert changed.json()["steps"][0]["html_body"] == step.html_body
    assert bogus.status_code == 400 and "state" in bogus.json()["detail"]


async def test_an_unsubscribe_shows_on_the_clinician_timeline(db, client, signed_in, clock, mail_config):
    clock.now = START.timestamp()
    ids = await add_clinicians(1)
    campaign = await make_campaign(mail_config, START)
    from campaigns.sending import materialize

    await materialize(campaign.id, START, START)
    await Dispatcher(mail_config, OutboxBackend(), "w").run_once(START)
    await suppressions.add("doc0@clinic.test", reason="unsubscribe", source="link", now=START + timedelta(hours=1))
    await signed_in("liaison")

    page = await client.get(f"/clinicians/{ids[0]}")

    assert "Email sent" in page.text and "Unsubscribed" in page.text and "Unsubscribe link" in page.text
    assert "{{" not in page.text.split('id="timeline"')[1]


async def test_a_draft_can_be_archived_from_its_page(db, client, signed_in, clock, mail_config):
    clock.now = START.timestamp()
    campaign = await make_campaign(mail_config, START, schedule=False)
    await signed_in("marketer")

    page = await client.get(f"/campaigns/{campaign.id}")
    archived = await post_form(client, f"/campaigns/{campaign.id}/archive")
    again = await post_form(client, f"/campaigns/{campaign.id}/archive")

    assert f'action="/campaigns/{campaign.id}/archive"' in page.text
    assert archived.status_code == 303 and again.status_code == 422 and "already archived" in again.text


async def test_a_one_off_campaign_completes_once_its_email_went_out(db, mail_config):
    from campaigns.scheduler import complete_finished
    from campaigns.tables import Campaign

    await add_clinicians(2)
    once = {"kind": "once", "date": "2027-03-02", "time": "10:30"}  # Tuesday, inside the window
    campaign = await make_campaign(mail_config, START, name="One-off", kind="one_off", cadence=once)
    moment = START + timedelta(minutes=31)

    await fire_due(campaign.id, moment)
    before = await complete_finished(moment)
    await Dispatcher(mail_config, OutboxBackend(), "w").run_once(moment)
    after = await complete_finished(moment)

    assert before == [] and after == [campaign.id]
    assert (await Campaign.objects().get(Campaign.id == campaign.id).run()).status == "completed"


async def test_a_manager_settles_emails_in_review(db, client, signed_in, clock, mail_config):
    from campaigns.sending import claim, materialize

    clock.now = START.timestamp()
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    ids = await claim("w", START)
    await Send.update({Send.state: "review"}).where(Send.id.is_in(ids)).run()
    await signed_in("marketer")
    shown = await client.get(f"/campaigns/{campaign.id}")
    refused = await post_form(client, f"/campaigns/{campaign.id}/review", {"decision": "resend"})
    await signed_in("manager")

    bad = await post_form(client, f"/campaigns/{campaign.id}/review", {"decision": "maybe"})
    settled = await post_form(client, f"/campaigns/{campaign.id}/review", {"decision": "resend"})

    assert "emails are in review" in shown.text and "A manager settles them" in shown.text
    assert refused.status_code == 403 and bad.status_code == 422 and settled.status_code == 303
    assert {r["state"] for r in await Send.select(Send.state).run()} == {"queued"}


async def test_the_preview_takes_any_clinician_by_npi(db, client, signed_in, clock, mail_config):
    clock.now = START.timestamp()
    ids = await add_clinicians(1)
    await Clinician.update({Clinician.npi: "1234567893", Clinician.first_name: "Zoë"}).where(Clinician.id == ids[0]).run()
    campaign = await make_campaign(mail_config, START, schedule=False, state="WI")  # not in the audience
    await signed_in("marketer")
    step = {"subject": "Hi {{ first_name }}", "html_body": "<p>x</p>"}

    found = await post_form(client, f"/campaigns/{campaign.id}/steps/preview", {**step, "npi": "1234567893"})
    missing = await post_form(client, f"/campaigns/{campaign.id}/steps/preview", {**step, "npi": "1234567812"})

    assert "Hi Zoë" in found.text
    assert "No clinician has the NPI 1234567812" in missing.text
