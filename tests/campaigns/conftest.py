"""Fixtures for the sending pipeline: a roster, campaigns built through the service, the fake
SendGrid server and a simulated clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import pytest

from campaigns import service
from campaigns.config import MailConfig
from campaigns.tables import Campaign
from crm.audit import Actor
from crm.segments import save_segment
from crm.tables import Clinician, Practice, User
from tests.fake_sendgrid import FakeSendGrid

SECRET = "s" * 20 + "-campaign-test-secret"
# A Tuesday, 15:00 UTC = 10:00 in New York: inside the default window (Mon–Fri, 08:00–17:00).
START = datetime(2027, 3, 2, 15, 0, tzinfo=timezone.utc)


class SimClock:
    """A UTC clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def mail_config() -> MailConfig:
    return MailConfig(
        base_url="https://liaison.test", secret_key=SECRET, from_email="outreach@cancer.test",
        from_name="Springfield Cancer Center", reply_to="outreach@cancer.test",
        program_name="Springfield Cancer Center", postal_address="100 Main Street\nSpringfield, IL 62701",
    )


@pytest.fixture
def fake_sendgrid() -> AsyncIterator[FakeSendGrid]:
    server = FakeSendGrid().start()
    yield server
    server.stop()


ACTOR = Actor(user_id=None, label="test")


async def add_clinicians(count: int, *, state: str = "IL", start: int = 0, **fields: Any) -> list[int]:
    """``count`` active clinicians with unique emails; returns their ids."""
    practice = Practice(name="O'Neil & Sons Family Practice", state=state)
    await practice.save().run()
    rows = [
        Clinician(
            first_name="Siobhán" if n % 2 else "JOHN", last_name=f"O'Brien-{n}", credential="MD",
            state=state, email=f"doc{n}@clinic.test", practice=practice.id, role="primary_care", **fields,
        )
        for n in range(start, start + count)
    ]
    ids = []
    for begin in range(0, len(rows), 500):
        result = await Clinician.insert(*rows[begin : begin + 500]).returning(Clinician.id).run()
        ids += [r["id"] for r in result]
    return ids


async def make_campaign(
    config: MailConfig, now: datetime, *, name: str = "Monthly referral update", state: str = "IL",
    schedule: bool = True, subject: str = "Referral pathways for {{ practice_name }}",
    html_body: str = "<p>Dear {{ salutation }},</p><p>Our {{ service_line }} team welcomes referrals.</p>",
    text_body: str = "", **settings: Any,
) -> Campaign:
    segment = await save_segment(name=f"{name} audience", filters={"state": state}, actor=ACTOR)
    data: dict[str, Any] = {
        "name": name, "kind": "recurring", "segment": str(segment.id), "time_zone": "America/New_York",
        "cadence": {"kind": "weekly", "weekdays": [2], "time": "10:00"}, "send_days": "12345",
        "send_start_hour": "8", "send_end_hour": "17", "service_line": "medical oncology",
    }
    data.update(settings)
    campaign = await service.save_campaign(data, actor=ACTOR, now=now)
    await service.save_step(
        campaign.id, {"subject": subject, "html_body": html_body, "text_body": text_body},
        actor=ACTOR, config=config, now=now,
    )
    if schedule:
        campaign = await service.transition(campaign.id, "schedule", actor=ACTOR, now=now, config=config)
    return campaign


async def first_user() -> User | None:
    return await User.objects().first().run()
