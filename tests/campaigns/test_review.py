"""A send whose batch's fate was unknown (review) is settled by the provider's own events."""

from __future__ import annotations

from datetime import timedelta

from campaigns import events
from campaigns.sending import claim, materialize
from campaigns.tables import Send
from tests.campaigns.conftest import START, add_clinicians, make_campaign


async def test_events_for_a_send_in_review_show_that_it_went_out(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    ids = await claim("w", START)
    await Send.update({Send.state: "review", Send.last_error: "no answer"}).where(Send.id.is_in(ids)).run()
    later = START + timedelta(minutes=5)

    await events.ingest(
        [{"event": "processed", "send_id": str(ids[0]), "sg_event_id": "p1", "email": "doc0@clinic.test",
          "timestamp": int(later.timestamp())},
         {"event": "delivered", "send_id": str(ids[0]), "sg_event_id": "d1", "email": "doc0@clinic.test",
          "timestamp": int(later.timestamp())}],
        now=later, soft_bounce_threshold=3,
    )

    settled = await Send.objects().where(Send.id == ids[0]).first().run()
    untouched = await Send.objects().where(Send.id == ids[1]).first().run()
    assert settled.state == "delivered" and settled.sent_at == later and settled.last_error == ""
    assert untouched.state == "review" and untouched.sent_at is None
