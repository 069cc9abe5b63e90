"""The campaign pages through the web app: build, preview, write the email, schedule, watch it go."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from campaigns.outbox import OutboxBackend
from campaigns.scheduler import fire_due
from campaigns.sending import Dispatcher
from campaigns.tables import Campaign, CampaignStep, OutboxMessage, Send, Suppression
from crm.audit import Actor
from crm.segments import save_segment
from tests.campaigns.conftest import add_clinicians
from tests.helpers import post_form

# Monday 1 March 2027, 14:00 UTC (09:00 in New York).
NOW = datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc)

BUILDER = {
    "name": "Monthly referral pathway update", "goal": "Remind primary care of the rapid-consult pathway",
    "kind": "recurring", "time_zone": "America/New_York", "cadence_kind": "monthly_weekday",
    "cadence_ordinal": "1", "cadence_weekday": "2", "cadence_time": "09:00", "cadence_every_months": "1",
    "cadence_start_month": "1", "send_days": ["1", "2", "3", "4", "5"], "send_start_hour": "8",
    "send_end_hour": "17", "frequency_cap_count": "2", "frequency_cap_days": "14", "holdout_percent": "10",
    "service_line": "medical oncology", "grace_hours": "24",
}


async def il_segment() -> int:
    segment = await save_segment(name="Illinois primary care", filters={"state": "IL"}, actor=Actor(None, "test"))
    return segment.id


def at_now(clock) -> None:
    clock.now = NOW.timestamp()


async def test_a_marketer_builds_previews_writes_and_schedules_a_campaign(db, client, signed_in, clock, app):
    at_now(clock)
    ids = await add_clinicians(30)
    segment_id = await il_segment()
    await signed_in("marketer")

    preview = await client.get("/campaigns/preview", params={**BUILDER, "segment": segment_id})
    assert preview.status_code == 200
    times = re.findall(r"<li>([^<]+)</li>", preview.text)
    assert len(times) == 10 and times[0].startswith("Tue 02 Mar 2027, 09:00 EST")
    assert times[1].startswith("Tue 06 Apr 2027, 09:00 EDT")
    assert "<strong>30</strong> clinicians" in preview.text

    created = await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id)})
    assert created.status_code == 303
    campaign = await Campaign.objects().first().run()
    assert created.headers["location"] == f"/campaigns/{campaign.id}/steps/new"

    step = {"subject": "Referrals for {{ practice_name }}",
            "html_body": "<p>Dear {{ salutation }},</p><p>Our {{ service_line }} team is here.</p>", "text_body": ""}
    shown = await post_form(client, f"/campaigns/{campaign.id}/steps/preview", {**step, "clinician": str(ids[1])})
    assert "Referrals for O&#39;Neil &amp; Sons Family Practice" in shown.text
    body_url = re.search(r'<iframe[^>]* src="([^"]+)"', shown.text).group(1)
    body = await client.get(body_url)
    assert "Dear Dr. O&#39;Brien-1," in body.text and "sandbox" in body.headers["content-security-policy"]
    saved = await post_form(client, f"/campaigns/{campaign.id}/steps/new", step)
    assert saved.status_code == 303

    scheduled = await post_form(client, f"/campaigns/{campaign.id}/schedule")
    assert scheduled.status_code == 303 and "done=schedule" in scheduled.headers["location"]
    page = await client.get(f"/campaigns/{campaign.id}")
    assert "Every month on the first Tuesday at 09:00" in page.text and "scheduled" in page.text

    # The worker's turn: the first occurrence (Tuesday 2 March, 09:00 EST) fires and is sent.
    tuesday = datetime(2027, 3, 2, 14, 0, tzinfo=timezone.utc)
    assert (await fire_due(campaign.id, tuesday))["fired"] == 1
    report = await Dispatcher(app.state["mail"], OutboxBackend(), "w").run_once(tuesday)
    held_out = 30 - report.claimed
    assert report.sent == report.claimed and 0 <= held_out <= 10

    page = await client.get(f"/campaigns/{campaign.id}")
    assert "active" in page.text
    assert f'?state=sent">{report.sent}</a>' in page.text
    outbox = await client.get("/outbox/")
    assert outbox.text.count("Referrals for O&#39;Neil &amp; Sons Family Practice") == report.sent
    message = await OutboxMessage.objects().first().run()
    shown = await client.get(f"/outbox/{message.id}")
    assert shown.status_code == 200 and "List-Unsubscribe" in shown.text
    assert f'sandbox src="/outbox/{message.id}/body"' in shown.text
    body = await client.get(f"/outbox/{message.id}/body")
    assert body.text == message.html_body and "script-src" not in body.headers["content-security-policy"]
    assert "default-src 'none'" in body.headers["content-security-policy"]


async def test_the_builder_refuses_what_cannot_work(db, client, signed_in, clock):
    at_now(clock)
    segment_id = await il_segment()
    await signed_in("marketer")

    no_hours = await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id), "send_start_hour": "17", "send_end_hour": "9"})
    no_days = await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id), "send_days": []})
    bad_cron = await post_form(client, "/campaigns/new", {**BUILDER, "cadence_kind": "cron", "cadence_expression": "61 9 * * *"})
    empty = await client.get("/campaigns/preview", params={**BUILDER, "segment": segment_id})

    assert no_hours.status_code == 422 and no_days.status_code == 422 and bad_cron.status_code == 422
    assert 'role="alert"' in no_hours.text and await Campaign.count().run() == 0
    assert "matches nobody" in empty.text


async def test_a_cadence_that_never_fires_cannot_be_scheduled(db, client, signed_in, clock):
    at_now(clock)
    await add_clinicians(2)
    segment_id = await il_segment()
    await signed_in("marketer")
    once_in_the_past = {**BUILDER, "kind": "one_off", "cadence_kind": "once", "cadence_date": "2026-01-05",
                        "segment": str(segment_id)}
    await post_form(client, "/campaigns/new", once_in_the_past)
    campaign = await Campaign.objects().first().run()
    await post_form(client, f"/campaigns/{campaign.id}/steps/new", {"subject": "Hello", "html_body": "<p>Hi</p>"})

    refused = await post_form(client, f"/campaigns/{campaign.id}/schedule")

    assert refused.status_code == 422 and "never" in refused.text and 'role="alert"' in refused.text
    assert (await Campaign.objects().first().run()).status == "draft"


async def test_a_template_with_an_unknown_field_or_bad_syntax_is_refused_with_its_line(db, client, signed_in, clock):
    at_now(clock)
    segment_id = await il_segment()
    await signed_in("marketer")
    await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id)})
    campaign = await Campaign.objects().first().run()

    unknown = await post_form(client, f"/campaigns/{campaign.id}/steps/new",
                              {"subject": "Hi", "html_body": "<p>Hello</p>\n<p>{{ frist_name }}</p>"})
    broken = await post_form(client, f"/campaigns/{campaign.id}/steps/new",
                             {"subject": "Hi", "html_body": "<p>{{ first_name </p>"})

    assert unknown.status_code == 422 and "line 2" in unknown.text and "frist_name" in unknown.text
    assert broken.status_code == 422 and "line 1" in broken.text
    assert await CampaignStep.count().run() == 0


async def test_a_test_send_goes_to_the_signed_in_user(db, client, signed_in, clock):
    at_now(clock)
    await add_clinicians(1)
    segment_id = await il_segment()
    user = await signed_in("marketer")
    await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id)})
    campaign = await Campaign.objects().first().run()

    result = await post_form(client, f"/campaigns/{campaign.id}/steps/test-send",
                             {"subject": "Hello {{ first_name }}", "html_body": "<p>Hi {{ salutation }}</p>"})

    assert f"Test email sent to {user.email}" in result.text
    message = await OutboxMessage.objects().first().run()
    assert message.to_email == user.email and message.subject.startswith("[Test] Hello ")
    assert await Send.count().run() == 0  # a test is not a campaign send


async def test_only_marketers_and_managers_change_campaigns(db, client, signed_in, clock):
    at_now(clock)
    segment_id = await il_segment()
    await signed_in("liaison")

    listing = await client.get("/campaigns/")
    refused = await post_form(client, "/campaigns/new", {**BUILDER, "segment": str(segment_id)})
    outbox = await client.get("/outbox/")

    assert listing.status_code == 200 and refused.status_code == 403 and outbox.status_code == 403
    assert await Campaign.count().run() == 0


async def test_suppressions_are_added_and_removed_by_hand(db, client, signed_in, clock):
    at_now(clock)
    await signed_in("manager")

    added = await post_form(client, "/suppressions/", {"email": " Doc@Clinic.TEST ", "detail": "asked by phone"})
    again = await post_form(client, "/suppressions/", {"email": "doc@clinic.test"})
    bad = await post_form(client, "/suppressions/", {"email": "not an address"})
    page = await client.get("/suppressions/")
    row = await Suppression.objects().first().run()
    removed = await post_form(client, f"/suppressions/{row.id}/remove")

    assert added.status_code == 303 and again.status_code == 303 and bad.status_code == 422
    assert "doc@clinic.test" in page.text and "asked by phone" in page.text
    assert removed.status_code == 303 and await Suppression.count().run() == 0


async def test_sends_appear_on_the_clinician_timeline(db, client, signed_in, clock, app, mail_config):
    from tests.campaigns.conftest import make_campaign

    at_now(clock)
    ids = await add_clinicians(1)
    campaign = await make_campaign(mail_config, NOW)
    from campaigns.sending import materialize

    await materialize(campaign.id, NOW, NOW)
    await Dispatcher(mail_config, OutboxBackend(), "w").run_once(NOW)
    await signed_in("liaison")

    page = await client.get(f"/clinicians/{ids[0]}")

    assert "Email sent" in page.text and "Monthly referral update" in page.text
