"""Unsubscribe by signed link, over HTTP on SQLite and PostgreSQL: the confirmation page (GET
changes nothing: link scanners open links), the page's button and the RFC 8058 one-click POST
(no login, no CSRF token, no cookies), and refusals of links we did not make."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from campaigns.outbox import OutboxBackend
from campaigns.sending import Dispatcher, enroll_sequence, materialize
from campaigns.tables import OutboxMessage, Send, Suppression
from campaigns.tokens import make_token
from tests.campaigns.conftest import SECRET, START, add_clinicians, make_campaign

ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}
INVALID_TITLE = "This unsubscribe link is not valid"


@pytest.fixture
async def http(settings, clock, db):
    """A client without cookies on an app whose secret key is the one the dispatcher signs with."""
    from liaison.app import create_app

    app = create_app(dataclasses.replace(settings, secret_key=SECRET), clock=clock, engine=db.engine)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as client:
        yield client


def token_for(send_id: int, purpose: str = "unsubscribe", secret: str = SECRET) -> str:
    return make_token(secret, purpose, send_id)


async def mailed(mail_config, count: int = 3) -> tuple[list[dict], int]:
    """``count`` clinicians mailed by one campaign (sends "sent"), and a second campaign whose
    sends to the same clinicians are still queued."""
    await add_clinicians(count)
    first = await make_campaign(mail_config, START)
    await materialize(first.id, START, START)
    assert (await Dispatcher(mail_config, OutboxBackend(), "worker-a").run_once(START)).sent == count
    second = await make_campaign(mail_config, START, name="Quarterly survivorship update")
    await materialize(second.id, START, START)
    sends = await Send.select().where(Send.campaign == first.id).order_by(Send.id).run()
    return sends, second.id


async def snapshot() -> tuple:
    sends = await Send.select(Send.id, Send.state, Send.skip_reason, Send.updated_at).order_by(Send.id).run()
    suppressions = await Suppression.select(Suppression.email, Suppression.scope).order_by(Suppression.id).run()
    return sends, suppressions


async def states_by_email(campaign_id: int) -> dict[str, tuple[str, str]]:
    rows = await Send.select(Send.email, Send.state, Send.skip_reason).where(Send.campaign == campaign_id).run()
    return {r["email"]: (r["state"], r["skip_reason"]) for r in rows}


def text_of(response: httpx.Response) -> str:
    return response.text


def assert_no_address(response: httpx.Response, *emails: str) -> None:
    for email in emails:
        assert email not in response.text
        assert email.split("@")[0] not in response.text


# ------------------------------------------------------------------------------------------------
# The page


async def test_the_link_shows_a_confirmation_page_and_changes_nothing(db, mail_config, http):
    sends, second = await mailed(mail_config)
    target = sends[1]
    token = token_for(target["id"])
    before = await snapshot()

    first = await http.get(f"/p/unsubscribe/{token}")
    again = await http.get(f"/p/unsubscribe/{token}")  # a link scanner, then the person

    for response in (first, again):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "Unsubscribe from" in response.text
        assert f'<form method="post" action="/p/unsubscribe/{token}">' in response.text
        assert "d•••@clinic.test" in response.text
        assert_no_address(response, target["email"])
        assert "Monthly referral update" not in response.text  # internal campaign names stay internal
    assert await snapshot() == before
    assert first.headers["cache-control"] == "no-store"
    assert "set-cookie" not in first.headers or "liaison_session" not in first.headers["set-cookie"]


async def test_the_page_s_button_unsubscribes_the_address_everywhere(db, mail_config, http):
    sends, second = await mailed(mail_config)
    target, other = sends[1], sends[2]
    token = token_for(target["id"])
    page = await http.get(f"/p/unsubscribe/{token}")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)

    # The form has only a button: an empty urlencoded body, no CSRF field, no cookies.
    http.cookies.clear()
    response = await http.post(action, content=b"", headers=ONE_CLICK)

    assert response.status_code == 200, response.text
    assert "You are unsubscribed" in response.text and "<form" not in response.text
    assert_no_address(response, target["email"])
    rows = await Suppression.select().run()
    assert [(r["email"], r["scope"], r["reason"], r["source"]) for r in rows] == [
        (target["email"], "all", "unsubscribe", "link")
    ]
    after = await Send.select().where(Send.id.is_in([s["id"] for s in sends])).order_by(Send.id).run()
    assert [s["state"] for s in after] == ["sent", "unsubscribed", "sent"]
    queued = await states_by_email(second)
    assert queued[target["email"]] == ("skipped", "unsubscribe")
    assert queued[other["email"]] == ("queued", "") and queued[sends[0]["email"]] == ("queued", "")

    shown = await http.get(f"/p/unsubscribe/{token}")
    assert shown.status_code == 200 and "You are unsubscribed" in shown.text and "<form" not in shown.text


async def test_the_one_click_post_of_mail_clients_unsubscribes_once(db, mail_config, http):
    sends, second = await mailed(mail_config)
    target = sends[0]
    token = token_for(target["id"])

    responses = [
        await http.post(f"/p/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        for _ in range(3)
    ]

    for response in responses:
        assert response.status_code == 200, response.text
        assert "You are unsubscribed" in response.text
        assert_no_address(response, target["email"])
    rows = await Suppression.select().run()
    assert [(r["email"], r["scope"], r["reason"], r["source"]) for r in rows] == [
        (target["email"], "all", "unsubscribe", "one_click")
    ]
    assert (await Send.select(Send.state).where(Send.id == target["id"]).first().run())["state"] == "unsubscribed"
    assert (await states_by_email(second))[target["email"]] == ("skipped", "unsubscribe")


async def test_the_link_in_the_email_works(db, mail_config, http):
    sends, second = await mailed(mail_config, 2)
    message = await OutboxMessage.objects().where(OutboxMessage.to_email == sends[1]["email"]).first().run()
    headers = json.loads(message.headers) if isinstance(message.headers, str) else message.headers
    link = headers["List-Unsubscribe"].strip("<>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    response = await http.post(urlsplit(link).path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert response.status_code == 200, response.text
    assert {r["email"] for r in await Suppression.select(Suppression.email).run()} == {sends[1]["email"]}
    assert (await states_by_email(second))[sends[1]["email"]] == ("skipped", "unsubscribe")


async def test_unsubscribing_stops_queued_sends_of_every_campaign(db, mail_config, http):
    sends, second = await mailed(mail_config, 2)
    third = await make_campaign(mail_config, START, name="Tumor board invitations")
    await materialize(third.id, START, START)

    await http.post(f"/p/unsubscribe/{token_for(sends[0]['id'])}", content=b"", headers=ONE_CLICK)

    for campaign_id in (second, third.id):
        states = await states_by_email(campaign_id)
        assert states[sends[0]["email"]] == ("skipped", "unsubscribe")
        assert states[sends[1]["email"]] == ("queued", "")


async def test_a_sequence_send_unsubscribes_its_clinician_s_address(db, mail_config, http):
    """Sends of a sequence are queued per enrollment; their link names the clinician's address."""
    await add_clinicians(2)
    sequence = await make_campaign(mail_config, START, name="New physician welcome", kind="sequence")
    await enroll_sequence(sequence.id, START)
    assert (await Dispatcher(mail_config, OutboxBackend(), "worker-a").run_once(START)).sent == 2
    later = await make_campaign(mail_config, START, name="Quarterly survivorship update")
    await materialize(later.id, START, START)
    target = await Send.select(Send.id, Send.clinician.email.as_alias("address")).where(
        Send.campaign == sequence.id
    ).order_by(Send.id).first().run()

    page = await http.get(f"/p/unsubscribe/{token_for(target['id'])}")
    response = await http.post(f"/p/unsubscribe/{token_for(target['id'])}", content=b"", headers=ONE_CLICK)

    assert page.status_code == 200 and "d•••@clinic.test" in page.text
    assert response.status_code == 200 and "d•••@clinic.test" in response.text
    assert {r["email"] for r in await Suppression.select(Suppression.email).run()} == {target["address"]}
    assert (await states_by_email(later))[target["address"]] == ("skipped", "unsubscribe")
    assert (await Send.select(Send.state).where(Send.id == target["id"]).first().run())["state"] == "unsubscribed"


# ------------------------------------------------------------------------------------------------
# Links we did not make


def _tampered(token: str) -> str:
    position = 5
    swapped = "B" if token[position] != "B" else "C"
    return token[:position] + swapped + token[position + 1 :]


BAD_TOKENS = {
    "one character changed": lambda sid: _tampered(token_for(sid)),
    "last character changed": lambda sid: token_for(sid)[:-1] + ("A" if token_for(sid)[-1] != "A" else "B"),
    "a token for another purpose": lambda sid: token_for(sid, "rsvp"),
    "a token signed with another key": lambda sid: token_for(sid, secret="another-installation-secret-key-0123"),
    "garbage": lambda sid: "hello-there",
    "not base64": lambda sid: "!!!!%24%24%24",
    "non-ASCII": lambda sid: "t%C3%B6k%C3%A9n",
    "over-long": lambda sid: token_for(sid) + "A" * 400,
    "a token cut short": lambda sid: token_for(sid)[:-4],
    "a send that does not exist": lambda sid: token_for(sid + 1_000_000),
    "a send id beyond any database id": lambda sid: token_for(2**40),
}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_link_we_did_not_make_is_refused_and_changes_nothing(db, mail_config, http, case, method):
    sends, second = await mailed(mail_config, 2)
    token = BAD_TOKENS[case](sends[0]["id"])
    before = await snapshot()

    if method == "GET":
        response = await http.get(f"/p/unsubscribe/{token}")
    else:
        response = await http.post(f"/p/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert INVALID_TITLE in response.text and "Nothing was changed" in response.text
    assert "mailto:outreach@" in response.text or "mailto:" in response.text
    assert_no_address(response, *(s["email"] for s in sends))
    assert await snapshot() == before
