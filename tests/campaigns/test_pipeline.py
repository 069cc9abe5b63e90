"""The pipeline that sends, on SQLite and PostgreSQL: materialize → claim → re-check → deliver.

Email goes through the real ``sendgrid`` client to the fake SendGrid server, or to the outbox.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from campaigns import suppressions
from campaigns.outbox import OutboxBackend
from campaigns.scheduler import fire_due
from campaigns.sending import Dispatcher, claim, materialize, recover
from campaigns.sendgrid_backend import SendGridBackend
from campaigns.tables import Campaign, Enrollment, Occurrence, OutboxMessage, Send
from crm.tables import Clinician
from tests.campaigns.conftest import START, add_clinicians, make_campaign


def sendgrid_for(fake, **options) -> SendGridBackend:
    return SendGridBackend(fake.api_key, host=fake.url, **options)


async def states(campaign_id: int) -> dict[str, int]:
    rows = await Send.select(Send.state).where(Send.campaign == campaign_id).run()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


async def test_an_occurrence_becomes_one_send_per_eligible_clinician_once(db, mail_config):
    ids = await add_clinicians(5)
    await Clinician.update({Clinician.email: None}).where(Clinician.id == ids[0]).run()
    await Clinician.update({Clinician.do_not_contact: True}).where(Clinician.id == ids[1]).run()
    await add_clinicians(3, state="WI", start=100)  # outside the segment
    await suppressions.add("doc2@clinic.test", reason="manual", source="test", now=START)
    campaign = await make_campaign(mail_config, START)

    first = await materialize(campaign.id, START, START)
    again = await materialize(campaign.id, START, START + timedelta(minutes=5))

    assert first.created and (first.audience, first.queued, first.skipped) == (5, 2, 3)
    assert not again.created and again.occurrence_id == first.occurrence_id
    assert await Send.count().where(Send.campaign == campaign.id).run() == 5
    reasons = {r["clinician"]: r["skip_reason"] for r in await Send.select(Send.clinician, Send.skip_reason).run()}
    assert reasons[ids[0]] == "no_email" and reasons[ids[1]] == "do_not_contact" and reasons[ids[2]] == "suppressed"
    assert (await Campaign.objects().get(Campaign.id == campaign.id).run()).status == "active"


async def test_the_audience_is_re_evaluated_at_each_occurrence(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    await add_clinicians(3, start=50)  # new clinicians who match the segment

    second = await materialize(campaign.id, START + timedelta(days=7), START + timedelta(days=7))

    assert second.audience == 5 and second.queued == 5
    assert await Enrollment.count().where(Enrollment.campaign == campaign.id).run() == 5


async def test_the_holdout_is_a_stable_share_never_mailed(db, mail_config):
    await add_clinicians(400)
    campaign = await make_campaign(mail_config, START, holdout_percent="20")

    result = await materialize(campaign.id, START, START)
    arms = {r["clinician"]: r["arm"] for r in await Enrollment.select(Enrollment.clinician, Enrollment.arm).run()}
    await materialize(campaign.id, START + timedelta(days=7), START + timedelta(days=7))
    arms_again = {r["clinician"]: r["arm"] for r in await Enrollment.select(Enrollment.clinician, Enrollment.arm).run()}

    holdout = [cid for cid, arm in arms.items() if arm == "holdout"]
    assert 40 <= len(holdout) <= 120  # 20% of 400, give or take chance
    assert result.holdout == len(holdout) and result.queued == 400 - len(holdout)
    assert arms == arms_again
    mailed = {r["clinician"] for r in await Send.select(Send.clinician).run()}
    assert not mailed & set(holdout)


async def test_dispatch_to_the_outbox_renders_each_message(db, mail_config):
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    dispatcher = Dispatcher(mail_config, OutboxBackend(), "worker-a")

    report = await dispatcher.run_once(START)
    again = await dispatcher.run_once(START)

    assert (report.claimed, report.sent) == (3, 3) and again.claimed == 0
    assert await states(campaign.id) == {"sent": 3}
    message = await OutboxMessage.objects().where(OutboxMessage.to_email == "doc1@clinic.test").first().run()
    assert message.subject == "Referral pathways for O'Neil & Sons Family Practice"
    assert "Dear Dr. O&#39;Brien-1," in message.html_body or "Dear Dr. O&#x27;Brien-1," in message.html_body
    assert "Dear Dr. O'Brien-1," in message.text_body and "100 Main Street" in message.text_body
    assert "[[lz:" not in message.html_body + message.text_body
    headers = json.loads(message.headers)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://liaison.test/p/unsubscribe/")


async def test_dispatch_through_sendgrid_batches_of_at_most_1000(db, mail_config, fake_sendgrid):
    await add_clinicians(2300)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    dispatcher = Dispatcher(mail_config, sendgrid_for(fake_sendgrid), "worker-a")

    total = 0
    while (report := await dispatcher.run_once(START)).claimed:
        total += report.sent

    assert total == 2300 and await states(campaign.id) == {"sent": 2300}
    sends = [r for r in fake_sendgrid.requests if r.path == "/v3/mail/send"]
    assert [len(r.json["personalizations"]) for r in sends] == [1000, 1000, 300]
    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 2300
    delivery = fake_sendgrid.deliveries[0]
    assert delivery.categories == [f"campaign-{campaign.id}"]
    send = await Send.objects().where(Send.email == delivery.email).first().run()
    assert delivery.custom_args["send_id"] == str(send.id)
    assert send.provider_message_id and send.batch_id == delivery.batch_id
    assert "Dear Dr. O&#39;Brien" in delivery.html or "Dear Dr. O&#x27;Brien" in delivery.html


async def test_a_400_from_sendgrid_fails_the_batch_with_its_reason(db, mail_config, fake_sendgrid):
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    fake_sendgrid.respond(400, field="from.email", message="The from email does not contain a valid address.")

    report = await Dispatcher(mail_config, sendgrid_for(fake_sendgrid), "w").run_once(START)

    assert report.failed == 3 and await states(campaign.id) == {"failed": 3}
    send = await Send.objects().first().run()
    assert "from.email" in send.last_error and "valid address" in send.last_error


async def test_an_unanswered_batch_goes_to_review_and_is_never_resent(db, mail_config, fake_sendgrid):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    fake_sendgrid.hang(3)
    dispatcher = Dispatcher(mail_config, sendgrid_for(fake_sendgrid, timeout=0.5), "w")

    await dispatcher.run_once(START)
    later = await dispatcher.run_once(START + timedelta(hours=1))

    assert await states(campaign.id) == {"review": 2} and later.claimed == 0
    assert len([r for r in fake_sendgrid.requests if r.path == "/v3/mail/send"]) == 1


async def test_the_frequency_cap_counts_every_campaign(db, mail_config):
    await add_clinicians(2)
    first = await make_campaign(mail_config, START, name="First", frequency_cap_count="1", frequency_cap_days="14")
    second = await make_campaign(mail_config, START, name="Second", frequency_cap_count="1", frequency_cap_days="14")
    dispatcher = Dispatcher(mail_config, OutboxBackend(), "w")
    await materialize(first.id, START, START)
    await dispatcher.run_once(START)

    await materialize(second.id, START, START)
    report = await dispatcher.run_once(START)
    fifteen_days = START + timedelta(days=15)
    await materialize(second.id, fifteen_days, fifteen_days)
    later = await dispatcher.run_once(fifteen_days)

    assert report.skipped == {"frequency_cap": 2}
    assert later.sent == 2


async def test_suppression_and_do_not_contact_are_checked_again_at_dispatch(db, mail_config):
    ids = await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    await suppressions.add("doc0@clinic.test", reason="spam_report", source="test", now=START)
    await Clinician.update({Clinician.do_not_contact: True}).where(Clinician.id == ids[1]).run()

    report = await Dispatcher(mail_config, OutboxBackend(), "w").run_once(START)

    assert report.sent == 1 and report.skipped == {"do_not_contact": 1}
    assert await Send.count().where(Send.skip_reason == "spam_report").run() == 1  # skipped when suppressed
    assert await OutboxMessage.count().run() == 1


async def test_outside_the_send_window_sends_wait_for_the_next_opening(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    friday_night = datetime(2027, 3, 6, 2, 0, tzinfo=timezone.utc)  # Friday 21:00 in New York

    report = await Dispatcher(mail_config, OutboxBackend(), "w").run_once(friday_night)

    assert report.deferred == 2 and report.sent == 0
    due = {r["due_at"] for r in await Send.select(Send.due_at).run()}
    assert due == {datetime(2027, 3, 8, 13, 0, tzinfo=timezone.utc)}  # Monday 08:00 EST


async def test_a_paused_campaign_keeps_its_sends_until_resumed(db, mail_config):
    from campaigns import service
    from tests.campaigns.conftest import ACTOR

    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    await service.transition(campaign.id, "pause", actor=ACTOR, now=START, config=mail_config)
    dispatcher = Dispatcher(mail_config, OutboxBackend(), "w")

    paused = await dispatcher.run_once(START)
    await service.transition(campaign.id, "resume", actor=ACTOR, now=START, config=mail_config)
    resumed = await dispatcher.run_once(START)

    assert paused.claimed == 0 and resumed.sent == 2


async def test_two_dispatchers_never_claim_the_same_send(db, mail_config, fake_sendgrid):
    await add_clinicians(1500)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    a = Dispatcher(mail_config, sendgrid_for(fake_sendgrid), "worker-a")
    b = Dispatcher(mail_config, sendgrid_for(fake_sendgrid), "worker-b")

    async def drain(dispatcher):
        while (await dispatcher.run_once(START, limit=200)).claimed:
            pass

    await asyncio.gather(drain(a), drain(b))

    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 1500
    workers = {r["claimed_by"] for r in await Send.select(Send.claimed_by).run()}
    assert await states(campaign.id) == {"sent": 1500} and workers <= {"worker-a", "worker-b"}


async def test_after_a_crash_unsent_claims_return_and_unknown_batches_go_to_review(db, mail_config):
    await add_clinicians(4)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    claimed = await claim("dead-worker", START, limit=4)
    await Send.update({Send.state: "sending", Send.batch_id: "b-1"}).where(Send.id.is_in(claimed[:2])).run()

    early = await recover(START + timedelta(minutes=1), timedelta(minutes=10))
    late = await recover(START + timedelta(minutes=11), timedelta(minutes=10))

    assert early == {"requeued": 0, "review": 0}
    assert late == {"requeued": 2, "review": 2}
    assert await states(campaign.id) == {"queued": 2, "review": 2}


async def test_occurrences_missed_beyond_the_grace_period_are_recorded_not_sent(db, mail_config):
    await add_clinicians(2)
    # Weekly on Tuesdays at 10:00 New York time, scheduled on Tuesday 2 March 2027 at 10:00.
    campaign = await make_campaign(mail_config, START - timedelta(minutes=1), grace_hours="24")
    # The scheduler was down for three weeks and comes back on Wednesday 24 March, 09:00 EDT.
    now = datetime(2027, 3, 24, 13, 0, tzinfo=timezone.utc)

    result = await fire_due(campaign.id, now)
    again = await fire_due(campaign.id, now)

    occurrences = await Occurrence.select(Occurrence.scheduled_for, Occurrence.status).order_by(
        Occurrence.scheduled_for
    ).run()
    assert result == {"fired": 1, "missed": 3} and again == {"fired": 0, "missed": 0}
    assert [o["status"] for o in occurrences] == ["missed", "missed", "missed", "materialized"]
    assert occurrences[-1]["scheduled_for"] == datetime(2027, 3, 23, 14, 0, tzinfo=timezone.utc)
    assert await Send.count().run() == 2


async def test_a_campaign_on_an_empty_segment_sends_nothing(db, mail_config):
    campaign = await make_campaign(mail_config, START, state="WY")

    result = await materialize(campaign.id, START, START)

    occurrence = await Occurrence.objects().first().run()
    assert result.queued == 0 and occurrence.status == "empty"
    assert (await Dispatcher(mail_config, OutboxBackend(), "w").run_once(START)).claimed == 0


async def test_a_sequence_queues_each_step_at_its_offset_and_records_the_address(db, mail_config):
    from campaigns import service
    from campaigns.sending import enroll_sequence
    from tests.campaigns.conftest import ACTOR

    ids = await add_clinicians(2)
    campaign = await make_campaign(mail_config, START, kind="sequence", schedule=False)
    await service.save_step(campaign.id, {"subject": "Step two", "html_body": "<p>Again</p>", "offset_days": "7"},
                            actor=ACTOR, config=mail_config, now=START)
    await service.transition(campaign.id, "schedule", actor=ACTOR, now=START, config=mail_config)

    first = await enroll_sequence(campaign.id, START)
    again = await enroll_sequence(campaign.id, START + timedelta(days=1))
    week = await enroll_sequence(campaign.id, START + timedelta(days=7))
    await Clinician.update({Clinician.email: "new.address@clinic.test"}).where(Clinician.id == ids[0]).run()
    dispatcher = Dispatcher(mail_config, OutboxBackend(), "w")
    report = await dispatcher.run_once(START + timedelta(days=7))
    an_hour_later = await dispatcher.run_once(START + timedelta(days=7, hours=1))

    assert (first, again, week) == (2, 0, 2)
    assert (report.sent, report.deferred, an_hour_later.sent) == (2, 2, 2)  # one email per address per round
    assert {r["email"] for r in await Send.select(Send.email).where(Send.clinician == ids[1]).run()} == {"doc1@clinic.test"}
    assert {r["email"] for r in await Send.select(Send.email).where(Send.clinician == ids[0]).run()} == {
        "new.address@clinic.test"}


async def test_apostrophes_arrive_as_apostrophes_in_the_from_name_and_subject(db, mail_config, fake_sendgrid):
    await add_clinicians(1)
    campaign = await make_campaign(mail_config, START, from_name="St. Mary's & O'Neil Cancer Center",
                                   subject="News from {{ practice_name }}")
    await materialize(campaign.id, START, START)

    await Dispatcher(mail_config, sendgrid_for(fake_sendgrid), "w").run_once(START)

    request = next(r for r in fake_sendgrid.requests if r.path == "/v3/mail/send")
    assert request.json["from"] == {"email": "outreach@cancer.test", "name": "St. Mary's & O'Neil Cancer Center"}
    assert fake_sendgrid.deliveries[0].subject == "News from O'Neil & Sons Family Practice"
