"""The signed SendGrid Event Webhook, driven over HTTP on SQLite and PostgreSQL.

Events are signed like SendGrid signs them: ECDSA P-256 / SHA-256 over the timestamp header
followed by the raw body, the signature in base64 (DER) and the public key as base64 DER
SubjectPublicKeyInfo. Sends are made by the real pipeline (materialize + dispatch to the outbox).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from campaigns import events as webhook_events
from campaigns.outbox import OutboxBackend
from campaigns.sending import Dispatcher, materialize
from campaigns.tables import EmailEvent, Send, Suppression
from tests.campaigns.conftest import START, add_clinicians, make_campaign

URL = "/webhooks/sendgrid/events"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


# ------------------------------------------------------------------------------------------------
# Keys, signatures, events


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def encode(batch: list[dict[str, Any]]) -> bytes:
    return json.dumps(batch, separators=(",", ":")).encode("utf-8")


class Events:
    """Builds SendGrid events with the fields SendGrid sends (custom args flattened in)."""

    def __init__(self, base: float) -> None:
        self.base = int(base)

    def __call__(self, kind: str, send: dict[str, Any] | None, at: int = 0, **fields: Any) -> dict[str, Any]:
        message = f"{secrets.token_hex(6)}.filter0001.16648.5515E0B88.0"
        event: dict[str, Any] = {
            "email": send["email"] if send else "nobody@clinic.test",
            "timestamp": self.base + at,
            "smtp-id": f"<{secrets.token_hex(5)}@ismtpd-555>",
            "event": kind,
            "category": ["campaign-1"],
            "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii"),
            "sg_message_id": message,
        }
        if send is not None:
            event["send_id"] = str(send["id"])
            event["campaign_id"] = str(send["campaign"])
        if kind == "delivered":
            event.setdefault("response", "250 OK")
        elif kind in ("open", "click"):
            event.update(useragent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)", ip="203.0.113.9")
            if kind == "click":
                event["url"] = "https://cancer.test/referrals"
        elif kind == "deferred":
            event.update(response="400 try again later", attempt="1")
        elif kind == "dropped":
            event.update(reason="Bounced Address", status="5.0.0")
        event.update(fields)
        return event


@pytest.fixture
def make_event(clock) -> Events:
    return Events(clock.now - 3600)


@pytest.fixture
async def apps(settings, clock, db):
    """``http = await apps(key=..., **settings_changes)``: a client on an app built for those
    settings (the webhook key is the public half of ``key``; no key, no verification)."""
    from liaison.app import create_app

    async with AsyncExitStack() as stack:

        async def _make(key: ec.EllipticCurvePrivateKey | None = None, **changes: Any) -> httpx.AsyncClient:
            changes["sendgrid_webhook_public_key"] = public_b64(key) if key is not None else None
            app = create_app(dataclasses.replace(settings, **changes), clock=clock, engine=db.engine)
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
            return await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://liaison.test"))

        yield _make


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return new_key()


@pytest.fixture
async def webhook(apps, key):
    return await apps(key)


class Poster:
    def __init__(self, http: httpx.AsyncClient, key: ec.EllipticCurvePrivateKey, clock) -> None:
        self.http, self.key, self.clock = http, key, clock

    async def __call__(self, body: bytes | list, *, timestamp: str | None = None, **headers: str) -> httpx.Response:
        raw = encode(body) if isinstance(body, list) else body
        stamp = timestamp or str(int(self.clock.now))
        sent = {"content-type": "application/json", TIMESTAMP: stamp, SIGNATURE: sign(self.key, stamp, raw)}
        sent.update(headers)
        return await self.http.post(URL, content=raw, headers={k: v for k, v in sent.items() if v is not None})


@pytest.fixture
def post(webhook, key, clock) -> Poster:
    return Poster(webhook, key, clock)


# ------------------------------------------------------------------------------------------------
# Sends made by the pipeline


async def sent_sends(mail_config, count: int, *, start: int = 0, name: str = "Monthly referral update") -> list[dict]:
    """``count`` clinicians mailed by a new campaign (sends in state "sent")."""
    await add_clinicians(count, start=start)
    campaign = await make_campaign(mail_config, START, name=name)
    await materialize(campaign.id, START, START)
    report = await Dispatcher(mail_config, OutboxBackend(), "worker-a").run_once(START)
    assert report.sent == count
    return await sends_of(campaign.id)


async def queued_campaign(mail_config, name: str = "Quarterly survivorship update") -> int:
    """A second campaign to the same clinicians, materialized and not dispatched (sends queued)."""
    campaign = await make_campaign(mail_config, START, name=name)
    await materialize(campaign.id, START, START)
    return campaign.id


async def sends_of(campaign_id: int) -> list[dict]:
    return await Send.select().where(Send.campaign == campaign_id).order_by(Send.id).run()


async def send(send_id: int) -> dict:
    return await Send.select().where(Send.id == send_id).first().run()


async def suppressions() -> set[tuple[str, str, str]]:
    return {(r["email"], r["scope"], r["reason"]) for r in await Suppression.select().run()}


async def snapshot() -> tuple:
    """Everything the webhook may change."""
    sends = await Send.select().order_by(Send.id).run()
    event_rows = await EmailEvent.select(EmailEvent.provider_event_id, EmailEvent.send, EmailEvent.event).order_by(
        EmailEvent.id
    ).run()
    supp = await Suppression.select(Suppression.email, Suppression.scope, Suppression.reason).order_by(
        Suppression.id
    ).run()
    return sends, event_rows, supp


def utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


# ------------------------------------------------------------------------------------------------
# A valid batch


async def test_a_signed_batch_moves_sends_forward_and_stores_each_event_once(db, mail_config, post, make_event):
    a, b, c, d = await sent_sends(mail_config, 4)
    batch = [
        make_event("processed", a, 0),
        make_event("delivered", a, 10),
        make_event("open", a, 60),
        make_event("open", a, 30),  # an earlier open arriving later in the batch: the earliest wins
        make_event("click", a, 90),
        make_event("click", a, 120),
        make_event("delivered", a, 200),  # late duplicate delivery: does not move "clicked" back
        make_event("processed", b, 0),
        make_event("deferred", b, 5),
        make_event("delivered", b, 40),
        make_event("open", c, 50),  # an open before its delivery event
        make_event("delivered", c, 20),
        make_event("deferred", d, 5),
    ]

    response = await post(batch)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 13, "stored": 13, "duplicates": 0, "unknown_sends": 0, "suppressed": 0}
    assert response.headers["content-type"].startswith("application/json")
    after_a, after_b, after_c, after_d = [await send(s["id"]) for s in (a, b, c, d)]
    assert after_a["state"] == "clicked"
    assert after_a["delivered_at"] == utc(make_event.base + 10)
    assert after_a["opened_at"] == utc(make_event.base + 30)
    assert after_a["clicked_at"] == utc(make_event.base + 90)
    assert after_b["state"] == "delivered" and after_b["delivered_at"] == utc(make_event.base + 40)
    assert after_b["opened_at"] is None and after_b["clicked_at"] is None
    assert after_c["state"] == "opened" and after_c["delivered_at"] == utc(make_event.base + 20)
    assert after_d["state"] == "deferred"
    stored = await EmailEvent.select().order_by(EmailEvent.id).run()
    assert sorted(r["provider_event_id"] for r in stored) == sorted(e["sg_event_id"] for e in batch)
    by_id = {r["provider_event_id"]: r for r in stored}
    click = by_id[batch[4]["sg_event_id"]]
    assert (click["send"], click["clinician"], click["event"], click["email"]) == (
        a["id"], a["clinician"], "click", a["email"]
    )
    assert click["occurred_at"] == utc(make_event.base + 90)
    payload = click["payload"] if isinstance(click["payload"], dict) else json.loads(click["payload"])
    assert payload["url"] == "https://cancer.test/referrals" and payload["send_id"] == str(a["id"])
    assert by_id[batch[9]["sg_event_id"]]["reason"] == "250 OK"
    assert await Suppression.count().run() == 0


async def test_a_late_delivered_in_a_later_request_does_not_undo_opened(db, mail_config, post, make_event):
    (a,) = await sent_sends(mail_config, 1)

    assert (await post([make_event("open", a, 60)])).status_code == 200
    opened = await send(a["id"])
    assert opened["state"] == "opened"
    assert (await post([make_event("delivered", a, 10)])).status_code == 200
    assert (await post([make_event("deferred", a, 5), make_event("processed", a, 0)])).status_code == 200

    after = await send(a["id"])
    assert after["state"] == "opened" and after["updated_at"] == opened["updated_at"]
    assert after["delivered_at"] == utc(make_event.base + 10) and after["opened_at"] == utc(make_event.base + 60)
    assert await EmailEvent.count().run() == 4


async def test_the_sample_shapes_of_sendgrid_events_are_accepted(db, mail_config, post, make_event):
    """Shapes seen in SendGrid's documentation: category as a string or an array, a capitalised
    event name, the timestamp as a string, a dropped event without ids, nested objects."""
    (a,) = await sent_sends(mail_config, 1)
    batch = [
        {**make_event("processed", a, 0), "category": "cat facts", "pool": {"name": "new_MY_test", "id": 210}},
        {**make_event("Delivered", a, 0), "timestamp": str(make_event.base + 15)},
        {**make_event("click", a, 40), "url_offset": {"index": 0, "type": "html"}, "asm_group_id": 1},
        {"email": a["email"], "smtp-id": "<4FB29F5D.5080404@sendgrid.com>", "timestamp": make_event.base,
         "reason": "Invalid", "event": "dropped", "category": ["category1", "category2"], "send_id": str(a["id"])},
        {"category": [], "email": a["email"], "event": "processed", "marketing_campaign_id": 12345,
         "marketing_campaign_name": "campaign name", "post_type": "event", "sg_event_id": "sendgrid_internal_event_id",
         "sg_message_id": "sendgrid_internal_message_id", "sg_user_id": 12345, "smtp-id": "", "timestamp": 1442349428},
    ]

    response = await post(batch)

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 5
    after = await send(a["id"])
    assert after["delivered_at"] == utc(make_event.base + 15)
    assert after["clicked_at"] == utc(make_event.base + 40)
    kinds = sorted(r["event"] for r in await EmailEvent.select(EmailEvent.event).run())
    assert kinds == ["click", "delivered", "dropped", "processed", "processed"]


# ------------------------------------------------------------------------------------------------
# Replays


async def test_a_replayed_batch_stores_nothing_and_changes_nothing(db, mail_config, post, make_event, clock):
    a, b = await sent_sends(mail_config, 2)
    no_id = {k: v for k, v in make_event("deferred", b, 3).items() if k != "sg_event_id"}
    batch = [
        make_event("delivered", a, 10), make_event("open", a, 20), make_event("bounce", b, 30, type="bounce",
                                                                                reason="550 5.1.1 user unknown"),
        make_event("bounce", a, 40, type="blocked", reason="421 try later"), no_id,
    ]
    body = encode(batch)
    first = await post(body)
    assert first.status_code == 200 and first.json()["stored"] == 5
    before = await snapshot()

    again = await post(body)
    clock.advance(120)  # SendGrid's retry: the same body, signed again later
    retried = await post(body)

    for response in (again, retried):
        assert response.status_code == 200
        assert response.json() == {"received": 5, "stored": 0, "duplicates": 5, "unknown_sends": 0, "suppressed": 0}
    assert await snapshot() == before
    assert (await send(a["id"]))["soft_bounces"] == 1


async def test_events_without_an_id_are_stored_once(db, mail_config, post, make_event):
    (a,) = await sent_sends(mail_config, 1)
    open_event = {k: v for k, v in make_event("open", a, 20).items() if k != "sg_event_id"}
    other_open = {**open_event, "timestamp": open_event["timestamp"] + 1}

    first = await post([open_event, dict(open_event), other_open])
    # The same event re-serialised with another key order is still the same event.
    second = await post([dict(reversed(list(open_event.items())))])

    assert first.json()["stored"] == 2 and first.json()["duplicates"] == 1
    assert second.json()["stored"] == 0 and second.json()["duplicates"] == 1
    assert await EmailEvent.count().run() == 2


# ------------------------------------------------------------------------------------------------
# Suppressions


async def test_hard_bounce_spam_report_and_unsubscribe_suppress_at_once(db, mail_config, post, make_event):
    a, b, c, d = await sent_sends(mail_config, 4)
    second = await queued_campaign(mail_config)
    batch = [
        make_event("bounce", a, 10, type="bounce", reason="550 5.1.1 The email account does not exist",
                   status="5.1.1", bounce_classification="Invalid Address"),
        make_event("spamreport", b, 10),
        make_event("unsubscribe", c, 10),
        make_event("delivered", d, 10),
    ]

    response = await post(batch)

    assert response.status_code == 200 and response.json()["suppressed"] == 3
    assert await suppressions() == {
        (a["email"], "all", "hard_bounce"), (b["email"], "all", "spam_report"), (c["email"], "all", "unsubscribe")
    }
    assert [(await send(s["id"]))["state"] for s in (a, b, c, d)] == ["bounced", "spam", "unsubscribed", "delivered"]
    queued = {s["email"]: s for s in await sends_of(second)}
    for gone, reason in ((a, "hard_bounce"), (b, "spam_report"), (c, "unsubscribe")):
        assert (queued[gone["email"]]["state"], queued[gone["email"]]["skip_reason"]) == ("skipped", reason)
    assert queued[d["email"]]["state"] == "queued"
    row = await Suppression.select().where(Suppression.email == a["email"]).first().run()
    assert row["source"] == "webhook" and "does not exist" in row["detail"]


async def test_an_address_is_matched_whatever_its_case(db, mail_config, post, make_event):
    a, b = await sent_sends(mail_config, 2)
    second = await queued_campaign(mail_config)

    await post([make_event("spamreport", a, 10, email=f"  {a['email'].upper()} ")])

    assert await suppressions() == {(a["email"], "all", "spam_report")}
    assert {s["email"]: s["state"] for s in await sends_of(second)} == {a["email"]: "skipped", b["email"]: "queued"}


async def test_a_group_unsubscribe_suppresses_that_group_only(db, mail_config, post, make_event):
    a, b = await sent_sends(mail_config, 2)
    second = await queued_campaign(mail_config)

    response = await post([make_event("group_unsubscribe", a, 10, asm_group_id=10, url="https://sendgrid.test/")])

    assert response.status_code == 200
    assert await suppressions() == {(a["email"], "group:10", "group_unsubscribe")}
    assert {s["state"] for s in await sends_of(second)} == {"queued"}
    assert (await send(a["id"]))["state"] == "unsubscribed"

    await post([make_event("group_resubscribe", a, 20, asm_group_id=10)])

    assert await suppressions() == set()
    assert await EmailEvent.count().run() == 2

    # In one batch, listed out of order: what happened last counts.
    await post([make_event("group_resubscribe", b, 40, asm_group_id="10"),
                make_event("group_unsubscribe", b, 30, asm_group_id="10"),
                make_event("group_unsubscribe", a, 50, asm_group_id=20),
                make_event("group_resubscribe", a, 45, asm_group_id=20),
                make_event("group_unsubscribe", a, 50, asm_group_id=True),
                make_event("group_unsubscribe", a, 50, asm_group_id="ten")])

    assert await suppressions() == {(a["email"], "group:20", "group_unsubscribe")}


async def test_soft_bounces_suppress_at_the_threshold_and_not_before(db, mail_config, post, make_event):
    a, b = await sent_sends(mail_config, 2)
    second = await queued_campaign(mail_config)

    def blocked(at: int) -> dict:
        return make_event("bounce", a, at, type="blocked", reason="421 4.7.0 temporarily deferred", status="4.7.0")

    await post([blocked(1)])
    await post([blocked(2), make_event("delivered", b, 2)])
    assert await suppressions() == set()
    assert {s["state"] for s in await sends_of(second)} == {"queued"}
    assert (await send(a["id"]))["state"] == "sent"  # a block is not a hard bounce

    response = await post([blocked(3)])

    assert response.json()["suppressed"] == 1
    assert await suppressions() == {(a["email"], "all", "soft_bounces")}
    assert {s["email"]: s["state"] for s in await sends_of(second)} == {a["email"]: "skipped", b["email"]: "queued"}
    assert (await send(a["id"]))["soft_bounces"] == 3
    assert [r["event"] for r in await EmailEvent.select(EmailEvent.event).where(EmailEvent.send == a["id"]).run()] == [
        "blocked"
    ] * 3


async def test_soft_bounces_in_one_batch_count_each(db, mail_config, apps, key, clock, make_event):
    post = Poster(await apps(key, soft_bounce_threshold=2), key, clock)
    a, b = await sent_sends(mail_config, 2)

    await post([make_event("bounce", b, 1, type="blocked")])
    assert await suppressions() == set()
    response = await post([make_event("bounce", a, 1, type="blocked"), make_event("bounce", a, 2, type="blocked")])

    assert response.json()["suppressed"] == 1
    assert await suppressions() == {(a["email"], "all", "soft_bounces")}
    assert (await send(a["id"]))["soft_bounces"] == 2


async def test_a_drop_for_a_suppressed_address_suppresses_it(db, mail_config, post, make_event):
    a, b = await sent_sends(mail_config, 2)

    await post([make_event("dropped", a, 1, reason="Bounced Address"),
                make_event("dropped", b, 1, reason="Exceeded Rate Limit"),
                make_event("dropped", b, 2, reason="Invalid SMTPAPI header"),  # the message, not the address
                make_event("dropped", None, 1, reason="Invalid", email="not an email address")])

    assert await suppressions() == {(a["email"], "all", "dropped")}
    assert [(await send(s["id"]))["state"] for s in (a, b)] == ["dropped", "dropped"]
    assert await EmailEvent.count().run() == 4


async def test_events_never_move_sends_that_were_not_sent(db, mail_config, post, make_event):
    (a,) = await sent_sends(mail_config, 1)
    second = await queued_campaign(mail_config)
    await add_clinicians(1, start=50, do_not_contact=True)
    third = await queued_campaign(mail_config, name="Tumor board invitations")
    queued = (await sends_of(second))[0]
    skipped = next(s for s in await sends_of(third) if s["state"] == "skipped")
    before = [await send(queued["id"]), await send(skipped["id"])]

    await post([make_event(kind, s, 5) for s in (queued, skipped) for kind in ("delivered", "open", "click")])

    after = [await send(queued["id"]), await send(skipped["id"])]
    assert [s["state"] for s in after] == ["queued", "skipped"]
    assert [s["updated_at"] for s in after] == [s["updated_at"] for s in before]


async def test_concurrent_deliveries_of_the_same_events_store_them_once(db, mail_config, post, make_event):
    a, b, c = await sent_sends(mail_config, 3)
    shared = [make_event("delivered", a, 1), make_event("bounce", b, 2, type="blocked"), make_event("open", c, 3)]
    first = shared + [make_event("click", a, 4)]
    second = list(reversed(shared)) + [make_event("bounce", b, 5, type="blocked")]

    responses = await asyncio.gather(post(first), post(second), post(first))

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sum(r.json()["stored"] for r in responses) == 5
    assert await EmailEvent.count().run() == 5
    assert (await send(b["id"]))["soft_bounces"] == 2
    assert [(await send(s["id"]))["state"] for s in (a, b, c)] == ["clicked", "sent", "opened"]


# ------------------------------------------------------------------------------------------------
# Unknown events and sends


async def test_unknown_event_types_and_unknown_sends_are_stored(db, mail_config, post, make_event):
    (a,) = await sent_sends(mail_config, 1)
    batch = [
        make_event("machine_open", a, 5, sg_machine_open=True),
        make_event("delivered", None, 5, send_id="999999"),
        make_event("delivered", None, 5, send_id="99999999999"),  # beyond any database id
        make_event("open", None, 5, send_id="not-a-number"),
        make_event("bounce", None, 5, type="bounce", send_id=None),
        make_event("processed", None, 5),
        {"event": "test_event", "category": "example_payload", "message_id": "message_id"},
        {},
    ]

    response = await post(batch)

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 8 and response.json()["unknown_sends"] == 7
    assert await EmailEvent.count().run() == 8
    assert await EmailEvent.count().where(EmailEvent.send.is_null()).run() == 7
    assert (await send(a["id"]))["state"] == "sent"
    # A hard bounce for an address with no known send still suppresses the address.
    assert await suppressions() == {("nobody@clinic.test", "all", "hard_bounce")}


async def test_hostile_values_inside_events_are_stored_without_error(db, mail_config, post, make_event):
    (a,) = await sent_sends(mail_config, 1)
    batch = [
        make_event("open", a, 5, useragent="nul\x00byte", reason="x" * 10_000, email="a\x00@clinic.test"),
        make_event("click", a, 6, url="https://cancer.test/\ud800", sg_event_id="\x00" + "z" * 500),
        make_event("delivered", a, 7, timestamp=1e308),
        make_event("delivered", a, 8, timestamp=-5, send_id=str(a["id"]) + "\u0663"),
        make_event("deferred", a, 9, timestamp=True, send_id=True),
        make_event("processed", a, 9, timestamp="soon", event=["list"], email={"x": 1}),
    ]

    response = await post(encode(batch).replace(b"1e+308", b"1e999"))

    assert response.status_code == 200, response.text
    assert await EmailEvent.count().run() == 6


# ------------------------------------------------------------------------------------------------
# Refusals: nothing stored


@pytest.fixture
async def refusal_batch(mail_config, make_event):
    (a,) = await sent_sends(mail_config, 1)
    return [make_event("bounce", a, 5, type="bounce"), make_event("spamreport", a, 6), make_event("open", a, 7)]


def _one_byte_changed(body: bytes) -> bytes:
    return body.replace(b'"spamreport"', b'"spamreporu"')


REFUSALS = {
    # name: (how the request is made, status, words of the error)
    "signature of garbage": (lambda k, ts, body: (body, {SIGNATURE: base64.b64encode(b"x" * 70).decode()}), 403, "signature"),
    "signature not base64": (lambda k, ts, body: (body, {SIGNATURE: "not base64!"}), 403, "signature"),
    "signature by another key": (lambda k, ts, body: (body, {SIGNATURE: sign(new_key(), ts, body)}), 403, "signature"),
    "body changed after signing": (lambda k, ts, body: (_one_byte_changed(body), {SIGNATURE: sign(k, ts, body)}), 403, "signature"),
    "body with a trailing newline": (lambda k, ts, body: (body + b"\n", {SIGNATURE: sign(k, ts, body)}), 403, "signature"),
    "timestamp changed after signing": (
        lambda k, ts, body: (body, {SIGNATURE: sign(k, ts, body), TIMESTAMP: str(int(ts) - 1)}), 403, "signature"
    ),
    "no signature header": (lambda k, ts, body: (body, {SIGNATURE: None}), 403, "not signed"),
    "no timestamp header": (lambda k, ts, body: (body, {TIMESTAMP: None}), 403, "not signed"),
    "no headers at all": (lambda k, ts, body: (body, {SIGNATURE: None, TIMESTAMP: None}), 403, "not signed"),
    "stale timestamp": (
        lambda k, ts, body: (body, {TIMESTAMP: str(int(ts) - 601), SIGNATURE: sign(k, str(int(ts) - 601), body)}),
        403, "timestamp",
    ),
    "timestamp far in the future": (
        lambda k, ts, body: (body, {TIMESTAMP: str(int(ts) + 3601), SIGNATURE: sign(k, str(int(ts) + 3601), body)}),
        403, "timestamp",
    ),
    "timestamp not a number": (lambda k, ts, body: (body, {TIMESTAMP: "timestamp", SIGNATURE: sign(k, "timestamp", body)}), 403, "timestamp"),
    "timestamp in superscript digits": (lambda k, ts, body: (body, {TIMESTAMP: "¹²³".encode("latin-1")}), 403, "timestamp"),
}

# Bodies signed with the right key: the signature is fine, the content is not.
BAD_BODIES = {
    "not UTF-8": (b'[{"event":"bounce","email":"doc0@clinic.test","reason":"\xff\xfe"}]', "UTF-8"),
    "not JSON": (b"event=bounce&email=doc0@clinic.test", "not JSON"),
    "truncated JSON": (b'[{"event":"bounce","email":"doc0@clinic.test"', "not JSON"),
    "an object, not an array": (b'{"event":"bounce","email":"doc0@clinic.test"}', "array"),
    "an array of strings": (b'["bounce","doc0@clinic.test"]', "array"),
    "an array with one non-object": (b'[{"event":"bounce","email":"doc0@clinic.test","type":"bounce"},3]', "array"),
    "null": (b"null", "array"),
    "empty body": (b"", "not JSON"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    "a huge number": (b'[{"event":"bounce","email":"doc0@clinic.test","timestamp":' + b"9" * 5000 + b"}]", "JSON"),
    "too many events": (encode([{"event": "processed"}] * 5001), "at most"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_request_not_signed_by_our_key_is_refused_and_stores_nothing(
    db, case, post, key, clock, refusal_batch
):
    make, status, words = REFUSALS[case]
    body = encode(refusal_batch)
    stamp = str(int(clock.now))
    raw, headers = make(key, stamp, body)
    before = await snapshot()

    response = await post(raw, timestamp=stamp, **headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    assert await snapshot() == before
    assert await EmailEvent.count().run() == 0 and await Suppression.count().run() == 0


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_a_signed_body_that_is_not_a_batch_of_events_is_refused_and_stores_nothing(db, case, post):
    body, words = BAD_BODIES[case]

    response = await post(body)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    assert await EmailEvent.count().run() == 0 and await Suppression.count().run() == 0


async def test_the_tolerance_comes_from_the_settings(db, apps, key, clock, refusal_batch):
    post = Poster(await apps(key, webhook_tolerance_seconds=30), key, clock)
    body = encode(refusal_batch)

    stale = await post(body, timestamp=str(int(clock.now) - 31))
    fresh = await post(body, timestamp=str(int(clock.now) - 29))

    assert stale.status_code == 403 and fresh.status_code == 200


# ------------------------------------------------------------------------------------------------
# Without a key (development)


async def test_without_a_key_unsigned_events_are_accepted(db, mail_config, apps, make_event):
    http = await apps(None)
    (a,) = await sent_sends(mail_config, 1)

    response = await http.post(URL, content=encode([make_event("open", a, 5)]), headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text
    assert (await send(a["id"]))["state"] == "opened"
    bad = await http.post(URL, content=b"[1]", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and await EmailEvent.count().run() == 1


async def test_with_a_key_unsigned_events_are_refused(db, mail_config, webhook, make_event):
    (a,) = await sent_sends(mail_config, 1)

    response = await webhook.post(URL, content=encode([make_event("open", a, 5)]), headers={"content-type": "application/json"})

    assert response.status_code == 403 and "not signed" in response.json()["error"]
    assert (await send(a["id"]))["state"] == "sent" and await EmailEvent.count().run() == 0


def test_sendgrid_s_published_test_vector_verifies():
    """The example from SendGrid's own library: their key, timestamp, body and signature."""
    key = webhook_events.load_public_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    body = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    signature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="

    webhook_events.verify(body, signature, "1588788367", key, now=1588788367, tolerance=600)
    with pytest.raises(webhook_events.WebhookRefused):
        webhook_events.verify(body + b" ", signature, "1588788367", key, now=1588788367, tolerance=600)
