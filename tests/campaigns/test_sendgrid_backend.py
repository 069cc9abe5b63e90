"""SendGridBackend through the official client against the fake SendGrid server (no mocks)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
import sendgrid
from python_http_client.exceptions import BadRequestsError

from campaigns.delivery import Batch, Message
from campaigns.sendgrid_backend import SendGridBackend, SendGridError
from tests.fake_sendgrid import FakeSendGrid


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


class Sleeps(list):
    """A ``sleep`` that records the delays instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def backend_for(fake: FakeSendGrid, **kwargs: Any) -> SendGridBackend:
    kwargs.setdefault("sleep", Sleeps())
    return SendGridBackend(fake.api_key, host=fake.url, **kwargs)


def message(n: int, **overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "to_email": f"dr.{n}@clinic.example",
        "to_name": f"Dr {n}",
        "subject": f"Referral update for Dr {n}",
        "substitutions": {"-first_name-": f"Ada{n}", "-unsubscribe_url-": f"https://liaison.example/u/{n}"},
        "headers": {
            "List-Unsubscribe": f"<https://liaison.example/u/{n}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {"send_id": str(n)},
        "send_id": n,
    }
    return Message(**{**fields, **overrides})


def make_batch(count: int = 2, messages: list[Message] | None = None, **overrides: Any) -> Batch:
    fields: dict[str, Any] = {
        "from_email": "outreach@liaison.example",
        "from_name": "Oncology Outreach",
        "html": "<p>Hello -first_name-</p><a href='-unsubscribe_url-'>unsubscribe</a>",
        "text": "Hello -first_name-\nUnsubscribe: -unsubscribe_url-",
        "messages": messages if messages is not None else [message(n) for n in range(count)],
        "categories": ["campaign-7", "newsletter"],
        "reply_to": "liaison@clinic.example",
    }
    return Batch(**{**fields, **overrides})


def raw_client(fake: FakeSendGrid) -> Any:
    """The official client's fluent API, pointed at the fake."""
    return sendgrid.SendGridAPIClient(api_key=fake.api_key, host=fake.url).client


def refusal(call) -> dict:
    """SendGrid's error body of a call that the official client raised a 400 for."""
    with pytest.raises(BadRequestsError) as caught:
        call()
    return caught.value.to_dict


def refused_mail(fake: FakeSendGrid, body: dict) -> dict:
    return refusal(lambda: raw_client(fake).mail.send.post(request_body=body))


def refused_schedule(fake: FakeSendGrid, batch_id: str, status: str) -> dict:
    return refusal(
        lambda: raw_client(fake).user.scheduled_sends.post(request_body={"batch_id": batch_id, "status": status})
    )


def to(*emails: str, **extra: Any) -> dict:
    """A personalization for these addresses."""
    return {"to": [{"email": email} for email in emails], **extra}


def raw_post(fake: FakeSendGrid, path: str, data: bytes, authorization: str | None = None) -> tuple[int, dict]:
    """POST without the official client (which always sends a well-formed request)."""
    request = urllib.request.Request(fake.url + path, data=data, method="POST")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


PLAIN = {"type": "text/plain", "value": "Hi"}
HTML = {"type": "text/html", "value": "<p>Hi</p>"}


def valid_body(**overrides: Any) -> dict:
    body = {
        "from": {"email": "outreach@liaison.example"},
        "subject": "Hello",
        "personalizations": [to("a@clinic.example"), to("b@clinic.example")],
        "content": [PLAIN, HTML],
    }
    return {**body, **overrides}


def without(key: str) -> dict:
    return {name: value for name, value in valid_body().items() if name != key}


# ------------------------------------------------------------------------------------------------
# Accepted batches


async def test_batch_of_1000_is_one_request_with_every_recipient_rendered(fake_sendgrid: FakeSendGrid) -> None:
    backend = backend_for(fake_sendgrid, asm_group_id=42)
    batch_id = await backend.new_batch_id()
    batch = make_batch(1000, batch_id=batch_id)

    result = await backend.send(batch)

    assert result.status == "accepted" and result.attempts == 1 and not result.error
    send_requests = [r for r in fake_sendgrid.requests if r.path == "/v3/mail/send"]
    assert len(send_requests) == 1
    assert result.message_id == send_requests[0].response_headers["X-Message-Id"]
    body = send_requests[0].json
    assert body["from"] == {"email": "outreach@liaison.example", "name": "Oncology Outreach"}
    assert body["reply_to"] == {"email": "liaison@clinic.example"}
    assert body["asm"] == {"group_id": 42}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]

    assert fake_sendgrid.recipients() == [f"dr.{n}@clinic.example" for n in range(1000)]
    assert fake_sendgrid.duplicates() == {}
    delivery = fake_sendgrid.deliveries[737]
    assert delivery.email == "dr.737@clinic.example" and delivery.name == "Dr 737"
    assert delivery.subject == "Referral update for Dr 737"
    assert delivery.html == "<p>Hello Ada737</p><a href='https://liaison.example/u/737'>unsubscribe</a>"
    assert delivery.text == "Hello Ada737\nUnsubscribe: https://liaison.example/u/737"
    assert delivery.custom_args == {"send_id": "737"}
    assert delivery.headers == {
        "List-Unsubscribe": "<https://liaison.example/u/737>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert delivery.categories == ["campaign-7", "newsletter"]
    assert delivery.batch_id == batch_id
    assert delivery.message_id == result.message_id


async def test_overlapping_substitution_keys_render_longest_first(fake_sendgrid: FakeSendGrid) -> None:
    substitutions = {"-name-": "Ada", "-name-full-": "Ada Lovelace", "-first-": "-name-"}
    batch = make_batch(messages=[message(0, substitutions=substitutions)], html="<b>-name-full-</b> -name- -first-")

    await backend_for(fake_sendgrid).send(batch)

    assert fake_sendgrid.deliveries[0].html == "<b>Ada Lovelace</b> Ada -name-"  # one pass: values are not rescanned


async def test_optional_fields_are_left_out(fake_sendgrid: FakeSendGrid) -> None:
    bare = Message(to_email="solo@clinic.example", to_name="", subject="Hi")
    batch = make_batch(messages=[bare], from_name="", html="", categories=[], reply_to=None)

    result = await backend_for(fake_sendgrid).send(batch)


    assert result.status == "accepted"
    body = fake_sendgrid.requests[-1].json
    assert body["from"] == {"email": "outreach@liaison.example"}
    assert body["personalizations"] == [{"to": [{"email": "solo@clinic.example"}], "subject": "Hi"}]
    assert [c["type"] for c in body["content"]] == ["text/plain"]
    assert not {"reply_to", "categories", "batch_id", "asm"} & body.keys()


async def test_more_than_1000_messages_is_refused_before_sending(fake_sendgrid: FakeSendGrid) -> None:
    backend = backend_for(fake_sendgrid)
    with pytest.raises(ValueError, match="1001 messages"):
        await backend.send(make_batch(1001))
    with pytest.raises(ValueError, match="no messages"):
        await backend.send(make_batch(messages=[]))
    assert fake_sendgrid.requests == []


def test_fake_refuses_1001_personalizations(fake_sendgrid: FakeSendGrid) -> None:
    personalizations = [to(f"dr.{n}@clinic.example") for n in range(1001)]
    errors = refused_mail(fake_sendgrid, valid_body(personalizations=personalizations))
    assert errors["errors"][0]["field"] == "personalizations"
    assert fake_sendgrid.deliveries == []


async def test_event_loop_keeps_running_while_the_client_waits(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.hang(0.3)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await backend_for(fake_sendgrid, timeout=5).send(make_batch())
    ticker.cancel()
    assert result.status == "unknown" and result.attempts == 1  # the hang ends with a dropped connection
    assert ticks >= 10


# ------------------------------------------------------------------------------------------------
# Refusals (no retry)


async def test_bad_request_names_sendgrids_field_and_is_not_retried(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.respond(400, field="personalizations.0.to", message="Does not contain a valid address.")
    backend = backend_for(fake_sendgrid)

    result = await backend.send(make_batch())

    assert result.status == "failed" and result.permanent and result.attempts == 1
    assert result.error == "SendGrid refused the request: personalizations.0.to: Does not contain a valid address."
    assert len(fake_sendgrid.requests) == 1 and fake_sendgrid.deliveries == []


async def test_wrong_api_key_is_a_permanent_failure_that_does_not_show_the_key(fake_sendgrid: FakeSendGrid) -> None:
    backend = SendGridBackend("SG.wrong-key-123", host=fake_sendgrid.url, sleep=Sleeps())

    result = await backend.send(make_batch())

    assert result.status == "failed" and result.permanent and result.attempts == 1
    assert "authorization grant is invalid" in result.error
    assert "SG.wrong-key-123" not in result.error
    assert fake_sendgrid.requests[0].status == 401


def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        SendGridBackend("")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to_email": "dr.0@CLINIC.example"}, "personalizations.1.to"),  # duplicate, any case
        ({"to_email": "not-an-address"}, "personalizations.1.to.0.email"),
        ({"subject": ""}, "subject"),
        ({"custom_args": {"send_id": 7}}, "personalizations.1.custom_args.send_id"),
        ({"substitutions": {"-note-": "x" * 10_000}}, "personalizations.1.substitutions"),
    ],
)
async def test_fake_refusals_per_message_reach_the_result(
    fake_sendgrid: FakeSendGrid, change: dict, field: str
) -> None:
    batch = make_batch(messages=[message(0), message(1, **change)])

    result = await backend_for(fake_sendgrid).send(batch)

    assert result.status == "failed" and result.permanent
    assert f": {field}: " in result.error
    assert fake_sendgrid.deliveries == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"categories": [f"c{n}" for n in range(11)]}, "categories"),
        ({"categories": ["c" * 256]}, "categories.0"),
        ({"batch_id": "never-created"}, "batch_id"),
        ({"reply_to": "nobody"}, "reply_to.email"),
        ({"from_email": "outreach"}, "from.email"),
    ],
)
async def test_fake_refusals_per_batch_reach_the_result(
    fake_sendgrid: FakeSendGrid, change: dict, field: str
) -> None:
    result = await backend_for(fake_sendgrid).send(make_batch(**change))

    assert result.status == "failed" and result.permanent
    assert f": {field}: " in result.error


def test_fake_reports_every_problem(fake_sendgrid: FakeSendGrid) -> None:
    errors = refused_mail(fake_sendgrid, valid_body(personalizations=[to(f"bad-{n}") for n in range(5)]))
    assert len(errors["errors"]) == 5


async def test_long_refusals_are_shortened(fake_sendgrid: FakeSendGrid) -> None:
    batch = make_batch(messages=[message(n, to_email=f"bad-{n}") for n in range(50)])

    result = await backend_for(fake_sendgrid).send(batch)

    assert result.permanent and result.error.endswith("(and 47 more)")
    assert result.error.count("Does not contain a valid address.") == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (valid_body(personalizations=[]), "personalizations"),
        (valid_body(personalizations=[{"subject": "x"}]), "personalizations.0.to"),
        (valid_body(personalizations=[to("a@x.example", cc=[{"email": "A@x.example"}])]), "personalizations.0.cc"),
        (without("from"), "from"),
        (valid_body(**{"from": {"name": "No address"}}), "from.email"),
        (without("subject"), "subject"),
        (valid_body(personalizations=[to("a@x.example", subject="ok"), to("b@x.example")], subject=""), "subject"),
        (without("content"), "content"),
        (valid_body(content=[{"type": "text/plain", "value": ""}]), "content.0.value"),
        (valid_body(content=[HTML, PLAIN]), "content"),
        (valid_body(custom_args={"campaign": 7}), "custom_args.campaign"),
        (valid_body(categories=[f"c{n}" for n in range(11)]), "categories"),
    ],
)
def test_fake_validates_the_request_body(fake_sendgrid: FakeSendGrid, body: dict, field: str) -> None:
    errors = refused_mail(fake_sendgrid, body)
    assert field in [error["field"] for error in errors["errors"]]
    assert all(set(error) == {"message", "field", "help"} for error in errors["errors"])
    assert fake_sendgrid.requests[-1].status == 400 and fake_sendgrid.deliveries == []


def test_fake_refuses_a_body_that_is_not_json(fake_sendgrid: FakeSendGrid) -> None:
    status, body = raw_post(fake_sendgrid, "/v3/mail/send", b"{not json", f"Bearer {fake_sendgrid.api_key}")
    assert status == 400 and body["errors"][0]["message"]


def test_fake_requires_a_bearer_token(fake_sendgrid: FakeSendGrid) -> None:
    payload = json.dumps(valid_body()).encode()
    assert raw_post(fake_sendgrid, "/v3/mail/send", payload)[0] == 401
    assert raw_post(fake_sendgrid, "/v3/mail/send", payload, fake_sendgrid.api_key)[0] == 401
    status, body = raw_post(fake_sendgrid, "/v3/mail/send", payload, "Bearer SG.other")
    assert status == 401 and body["errors"][0]["field"] is None
    assert fake_sendgrid.deliveries == []


def test_fake_answers_404_elsewhere(fake_sendgrid: FakeSendGrid) -> None:
    status, body = raw_post(fake_sendgrid, "/v3/templates", b"{}", f"Bearer {fake_sendgrid.api_key}")
    assert status == 404 and body["errors"]


# ------------------------------------------------------------------------------------------------
# Rate limits, server errors and timeouts


async def test_rate_limit_waits_until_the_reset_time(fake_sendgrid: FakeSendGrid, clock) -> None:
    fake_sendgrid.respond(429, reset_in=2)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps, clock=clock).send(make_batch())

    assert result.status == "accepted" and result.attempts == 2
    limited = fake_sendgrid.requests[0].response_headers
    assert limited["X-RateLimit-Remaining"] == "0" and limited["X-RateLimit-Limit"]
    assert sleeps == [pytest.approx(int(limited["X-RateLimit-Reset"]) - clock.now)]
    assert 1 < sleeps[0] <= 3
    assert len(fake_sendgrid.deliveries) == 2


async def test_rate_limit_wait_is_capped(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.respond(429, reset_in=3600)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps).send(make_batch())

    assert result.status == "accepted" and sleeps == [60.0]


async def test_rate_limit_without_reset_header_backs_off(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.respond(429)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps).send(make_batch())

    assert result.status == "accepted" and len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5


async def test_server_errors_are_retried_with_backoff(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.respond(500)
    fake_sendgrid.respond(503)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps).send(make_batch())

    assert result.status == "accepted" and result.attempts == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
    assert [r.status for r in fake_sendgrid.requests] == [500, 503, 202]
    assert len(fake_sendgrid.deliveries) == 2  # scripted answers deliver nothing


async def test_server_errors_until_the_last_attempt_fail_transiently(fake_sendgrid: FakeSendGrid) -> None:
    for _ in range(5):
        fake_sendgrid.respond(503)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps).send(make_batch())

    assert result.status == "failed" and not result.permanent and result.attempts == 5
    assert result.error == "SendGrid answered 503 after 5 attempts"
    assert len(sleeps) == 4 and all(0 <= delay <= 0.5 * 2**n for n, delay in enumerate(sleeps))
    assert fake_sendgrid.deliveries == []


async def test_backoff_is_capped(fake_sendgrid: FakeSendGrid) -> None:
    for _ in range(9):
        fake_sendgrid.respond(500)
    sleeps = Sleeps()

    result = await backend_for(fake_sendgrid, sleep=sleeps, max_attempts=10).send(make_batch())

    assert result.attempts == 10 and max(sleeps) <= 30.0


async def test_a_send_without_answer_is_unknown_and_never_repeated(fake_sendgrid: FakeSendGrid) -> None:
    """SendGrid may have accepted a request it did not answer: sending it again could mail twice."""
    fake_sendgrid.hang(5)
    started = time.monotonic()

    result = await backend_for(fake_sendgrid, timeout=0.5, max_attempts=3).send(make_batch())

    assert time.monotonic() - started < 3
    assert result.status == "unknown" and result.attempts == 1
    assert "no answer within 0.5 s" in result.error and "not sent again" in result.error
    assert len([r for r in fake_sendgrid.requests if r.path == "/v3/mail/send"]) == 1


async def test_batch_ids_are_requested_again_after_a_timeout(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.hang(5, path="/v3/mail/batch")

    batch_id = await backend_for(fake_sendgrid, timeout=0.5).new_batch_id()

    assert batch_id and fake_sendgrid.batches[batch_id] == "created"


async def test_unreachable_server_fails_transiently() -> None:
    with FakeSendGrid() as fake:
        url = fake.url
    backend = SendGridBackend("SG.key", host=url, max_attempts=2, sleep=Sleeps())

    result = await backend.send(make_batch())

    assert result.status == "failed" and not result.permanent and result.attempts == 2
    assert result.error.startswith("the connection to SendGrid failed (")
    assert result.error.endswith("after 2 attempts")


async def test_api_key_stays_out_of_the_logs(fake_sendgrid: FakeSendGrid, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake_sendgrid.respond(503)
    backend = backend_for(fake_sendgrid)

    await backend.send(make_batch())

    assert "HEADERS" in caplog.text and "Bearer [redacted]" in caplog.text
    assert "SendGrid answered 503 (attempt 1 of 5); retrying" in caplog.text
    assert fake_sendgrid.api_key not in caplog.text


# ------------------------------------------------------------------------------------------------
# Batch ids


async def test_new_batch_id_and_cancelling_the_batch(fake_sendgrid: FakeSendGrid) -> None:
    first = await backend_for(fake_sendgrid).new_batch_id()
    second = await backend_for(fake_sendgrid).new_batch_id()
    assert first and first != second
    assert fake_sendgrid.batches == {first: "created", second: "created"}

    cancel = {"batch_id": first, "status": "cancel"}
    response = raw_client(fake_sendgrid).user.scheduled_sends.post(request_body=cancel)

    assert response.status_code == 201
    assert response.to_dict == cancel
    assert fake_sendgrid.batches[first] == "cancel"
    assert refused_schedule(fake_sendgrid, "never-created", "cancel")["errors"][0]["field"] == "batch_id"
    assert refused_schedule(fake_sendgrid, second, "stop")["errors"][0]["field"] == "status"


async def test_new_batch_id_retries_then_raises(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.respond(500, path="/v3/mail/batch")
    assert await backend_for(fake_sendgrid).new_batch_id()

    fake_sendgrid.respond(403, path="/v3/mail/batch", message="access forbidden")
    with pytest.raises(SendGridError, match="access forbidden") as caught:
        await backend_for(fake_sendgrid).new_batch_id()
    assert caught.value.permanent and caught.value.attempts == 1


# ------------------------------------------------------------------------------------------------
# The fake's log helpers


async def test_fake_counts_repeat_deliveries_and_clears(fake_sendgrid: FakeSendGrid) -> None:
    backend = backend_for(fake_sendgrid)
    await backend.send(make_batch(3))
    await backend.send(make_batch(messages=[message(1, to_email="DR.1@clinic.example")]))

    assert fake_sendgrid.recipients() == [f"dr.{n}@clinic.example" for n in range(3)] + ["DR.1@clinic.example"]
    assert fake_sendgrid.count_by_email()["dr.1@clinic.example"] == 2
    assert fake_sendgrid.duplicates() == {"dr.1@clinic.example": 2}

    fake_sendgrid.clear()
    assert fake_sendgrid.deliveries == [] and fake_sendgrid.requests == []
