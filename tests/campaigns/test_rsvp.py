"""RSVP by signed link, over HTTP on SQLite and PostgreSQL: the invitation page (GET changes
nothing), the Yes / Maybe / No buttons (no login, no CSRF token, no cookies), seats and the
waitlist, cancelled and ended workshops, refusals of links we did not make, and the RSVP on the
clinician's timeline."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from campaigns import workshop_timeline
from campaigns.rsvp_links import read_rsvp_token, rsvp_token, rsvp_url
from campaigns.tables import Rsvp, Workshop
from campaigns.tokens import TokenError, make_token
from campaigns.workshops import answer, cancel_workshop, save_workshop
from crm.tables import Clinician
from tests.campaigns.conftest import ACTOR, SECRET, START, add_clinicians

FORM = {"content-type": "application/x-www-form-urlencoded"}
TITLE = "Rapid-consult pathways for primary care"
INVALID_TITLE = "This RSVP link is not valid"
BUTTONS = re.compile(r'<form method="post" action="/p/rsvp/[^"]+"')


@pytest.fixture
def settings(settings):
    """The app signs and reads links with the secret the tests make tokens with."""
    return dataclasses.replace(settings, secret_key=SECRET)


@pytest.fixture
async def http(app, clock):
    """A client without cookies, on the app's clock set to START (a month before the workshop)."""
    clock.now = START.timestamp()
    transport = httpx.ASGITransport(app=app, client=("198.51.100.30", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as client:
        yield client


def workshop_form(**changes: Any) -> dict[str, Any]:
    """A workshop on Wednesday 2027-04-14, 17:30–19:00 in New York, 2 seats."""
    data: dict[str, Any] = {
        "title": TITLE, "topic": "Referral criteria", "date": "2027-04-14", "start_time": "17:30",
        "end_time": "19:00", "time_zone": "America/New_York", "venue": "Cancer Center, Room 2",
        "virtual_url": "https://meet.example.org/rapid-consult", "capacity": "2", "credit_hours": "1.5",
        "description": "Which patients to send the same week.\n\nBring your questions & cases.",
    }
    data.update(changes)
    return data


async def make_workshop(**changes: Any) -> Workshop:
    workshop, _ = await save_workshop(workshop_form(**changes), actor=ACTOR, now=START)
    return workshop


def link(workshop_id: int, clinician_id: int) -> str:
    return f"/p/rsvp/{rsvp_token(SECRET, workshop_id, clinician_id)}"


def text(response: httpx.Response) -> str:
    """The page as a reader sees it: entities decoded, tags and runs of white space flattened."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.text)))


async def post(http: httpx.AsyncClient, path: str, reply: str | None, **extra: str) -> httpx.Response:
    data = {"answer": reply} if reply is not None else {}
    data.update(extra)
    http.cookies.clear()
    return await http.post(path, data=data, headers=FORM)


async def rows(workshop_id: int | None = None) -> dict[int, str]:
    query = Rsvp.select(Rsvp.clinician, Rsvp.answer)
    if workshop_id is not None:
        query = query.where(Rsvp.workshop == workshop_id)
    return {row["clinician"]: row["answer"] for row in await query.run()}


async def snapshot() -> tuple:
    rsvps = await Rsvp.select().order_by(Rsvp.id).run()
    workshops = await Workshop.select().order_by(Workshop.id).run()
    clinicians = await Clinician.select(Clinician.id, Clinician.updated_at).order_by(Clinician.id).run()
    return rsvps, workshops, clinicians


def assert_no_buttons(response: httpx.Response) -> None:
    assert not BUTTONS.search(response.text)
    assert 'name="answer"' not in response.text


# ------------------------------------------------------------------------------------------------
# Links


def test_a_token_names_one_workshop_and_one_clinician():
    token = rsvp_token(SECRET, 7, 9)

    assert rsvp_url("https://liaison.test", token) == f"https://liaison.test/p/rsvp/{token}"
    assert read_rsvp_token(SECRET, token) == (7, 9)
    with pytest.raises(TokenError):
        read_rsvp_token(SECRET, make_token(SECRET, "unsubscribe", 7, 9))
    with pytest.raises(TokenError):
        read_rsvp_token("another-installation-secret-key-0123", token)


# ------------------------------------------------------------------------------------------------
# The page


async def test_the_link_shows_the_invitation_and_changes_nothing(db, http):
    workshop = await make_workshop()
    first_clinician, other = await add_clinicians(2)
    await answer(workshop.id, other, "yes", now=START)  # another clinician's answer is not shown
    before = await snapshot()

    first = await http.get(link(workshop.id, first_clinician))
    again = await http.get(link(workshop.id, first_clinician))  # a link scanner, then the person

    for response in (first, again):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        page = text(response)
        assert "Dear Dr. O'Brien-0," in page
        assert "d•••@clinic.test" in page and "doc0" not in response.text
        assert TITLE in page
        assert "Wednesday, April 14, 2027, 5:30 PM – 7:00 PM EDT" in page and "America/New_York" in page
        assert "Cancer Center, Room 2" in page
        assert 'href="https://meet.example.org/rapid-consult"' in response.text
        assert "Which patients to send the same week." in page and "Bring your questions & cases." in page
        assert "1.5 continuing-education credit hours" in page
        assert "Will you come?" in page and "You said" not in page
        actions = BUTTONS.findall(response.text)
        assert len(actions) == 3
        assert re.findall(r'name="answer" value="(\w+)"', response.text) == ["yes", "maybe", "no"]
    assert await snapshot() == before
    assert first.headers["cache-control"] == "no-store"
    assert "noindex" in first.headers["x-robots-tag"]
    assert "liaison_session" not in first.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("reply", "stored", "message"),
    [
        ("yes", "yes", "You have a seat"),
        ("maybe", "maybe", "Thanks, we noted Maybe."),
        ("no", "no", "Thanks, we noted No."),
    ],
)
async def test_a_button_records_the_answer_without_csrf_or_cookies(db, http, reply, stored, message):
    workshop = await make_workshop()
    (clinician,) = await add_clinicians(1)
    page = await http.get(link(workshop.id, clinician))
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>\s*<input type="hidden" name="answer" value="(\w+)">',
                       page.text)
    action = dict((value, path) for path, value in forms)[reply]

    response = await post(http, action, reply)

    assert response.status_code == 200, response.text
    assert message in text(response)
    row = await Rsvp.objects().where(Rsvp.workshop == workshop.id).first().run()
    assert (row.clinician, row.answer, row.source) == (clinician, stored, "link")
    assert row.answered_at == START
    shown = text(await http.get(link(workshop.id, clinician)))
    assert f"You said {stored.capitalize()}." in shown and "Change your answer" in shown


async def test_answering_again_is_idempotent(db, http, clock):
    workshop = await make_workshop()
    (clinician,) = await add_clinicians(1)

    responses = []
    for _ in range(3):
        responses.append(await post(http, link(workshop.id, clinician), "yes"))
        clock.advance(60)

    for response in responses:
        assert response.status_code == 200 and "You have a seat" in text(response)
    stored = await Rsvp.select().run()
    assert len(stored) == 1 and stored[0]["answer"] == "yes" and stored[0]["answered_at"] == START


async def test_an_answer_can_be_changed(db, http, clock):
    workshop = await make_workshop()
    (clinician,) = await add_clinicians(1)
    path = link(workshop.id, clinician)

    seen = []
    for reply in ("yes", "no", "maybe", "yes"):
        clock.advance(60)
        response = await post(http, path, reply)
        assert response.status_code == 200, response.text
        seen.append((text(response), await rows(workshop.id)))

    assert "You have a seat" in seen[0][0] and seen[0][1] == {clinician: "yes"}
    assert "Thanks, we noted No. Your seat is now free for a colleague." in seen[1][0]
    assert seen[1][1] == {clinician: "no"}
    assert "Thanks, we noted Maybe." in seen[2][0] and seen[2][1] == {clinician: "maybe"}
    assert "You have a seat" in seen[3][0] and seen[3][1] == {clinician: "yes"}
    assert await Rsvp.count().run() == 1
    row = await Rsvp.objects().first().run()
    assert row.answered_at == START + timedelta(minutes=4)


# ------------------------------------------------------------------------------------------------
# Seats and the waitlist


async def test_a_yes_to_a_full_workshop_waits_with_its_position(db, http):
    workshop = await make_workshop(capacity="2")
    a, b, c, d = await add_clinicians(4)

    answers = [await post(http, link(workshop.id, clinician), "yes") for clinician in (a, b, c, d)]

    assert [r.status_code for r in answers] == [200] * 4
    assert "You have a seat" in text(answers[0]) and "You have a seat" in text(answers[1])
    assert (
        "The workshop is full: you are on the waitlist, position 1; we will tell you if a seat frees up."
        in text(answers[2])
    )
    assert "you are on the waitlist, position 2;" in text(answers[3])
    assert await rows(workshop.id) == {a: "yes", b: "yes", c: "waitlist", d: "waitlist"}
    page = text(await http.get(link(workshop.id, d)))
    assert "You are on the waitlist (position 2)." in page
    again = await post(http, link(workshop.id, c), "yes")  # a second Yes keeps the place
    assert "you are on the waitlist, position 1;" in text(again)
    assert await rows(workshop.id) == {a: "yes", b: "yes", c: "waitlist", d: "waitlist"}


async def test_a_no_from_a_seated_clinician_promotes_the_first_waiting(db, http, clock):
    workshop = await make_workshop(capacity="2")
    a, b, c, d = await add_clinicians(4)
    for clinician in (a, b, c, d):
        await post(http, link(workshop.id, clinician), "yes")
        clock.advance(60)

    response = await post(http, link(workshop.id, a), "no")

    assert response.status_code == 200
    assert "Thanks, we noted No. Your seat is now free for a colleague." in text(response)
    assert await rows(workshop.id) == {a: "no", b: "yes", c: "yes", d: "waitlist"}
    promoted = text(await http.get(link(workshop.id, c)))
    assert "You have a seat" in promoted and "waitlist" not in promoted
    assert "You are on the waitlist (position 1)." in text(await http.get(link(workshop.id, d)))


async def test_leaving_the_waitlist_moves_the_others_up(db, http, clock):
    workshop = await make_workshop(capacity="1")
    a, b, c = await add_clinicians(3)
    for clinician in (a, b, c):
        await post(http, link(workshop.id, clinician), "yes")
        clock.advance(60)

    response = await post(http, link(workshop.id, b), "maybe")

    assert "Thanks, we noted Maybe. You are no longer on the waitlist." in text(response)
    assert await rows(workshop.id) == {a: "yes", b: "maybe", c: "waitlist"}
    assert "You are on the waitlist (position 1)." in text(await http.get(link(workshop.id, c)))


# ------------------------------------------------------------------------------------------------
# Cancelled and ended workshops


async def test_a_cancelled_workshop_shows_so_and_takes_no_answer(db, http):
    workshop = await make_workshop()
    a, b = await add_clinicians(2)
    await answer(workshop.id, a, "yes", now=START)
    await cancel_workshop(workshop.id, actor=ACTOR, now=START)
    before = await snapshot()

    page = await http.get(link(workshop.id, b))
    refused = [await post(http, link(workshop.id, clinician), "no") for clinician in (a, b)]

    assert page.status_code == 200
    assert "This workshop was cancelled" in text(page) and TITLE in text(page)
    assert_no_buttons(page)
    for response in refused:
        assert response.status_code == 409
        assert "This workshop was cancelled" in text(response) and "Nothing was recorded." in text(response)
        assert_no_buttons(response)
    assert await snapshot() == before


@pytest.mark.parametrize("ending", ["the end time passed", "marked completed"])
async def test_an_ended_workshop_s_link_says_it_is_over(db, http, clock, ending):
    workshop = await make_workshop()
    a, b = await add_clinicians(2)
    await answer(workshop.id, a, "yes", now=START)
    if ending == "the end time passed":
        clock.now = (workshop.ends_at + timedelta(seconds=1)).timestamp()
    else:
        await Workshop.update({Workshop.status: "completed"}).where(Workshop.id == workshop.id).run()
    before = await snapshot()

    pages = [await http.get(link(workshop.id, clinician)) for clinician in (a, b)]
    refused = [await post(http, link(workshop.id, clinician), reply) for clinician, reply in ((a, "no"), (b, "yes"))]

    for response in pages + refused:
        assert response.status_code == 410, response.text
        assert "This workshop is over" in text(response)
        assert_no_buttons(response)
    assert all("Nothing was recorded." in text(r) for r in refused)
    assert await snapshot() == before


async def test_the_link_works_until_the_workshop_ends(db, http, clock):
    workshop = await make_workshop()
    (a,) = await add_clinicians(1)
    clock.now = (workshop.ends_at - timedelta(minutes=1)).timestamp()  # under way: late arrivals

    response = await post(http, link(workshop.id, a), "yes")

    assert response.status_code == 200 and "You have a seat" in text(response)


# ------------------------------------------------------------------------------------------------
# Refused input


@pytest.mark.parametrize(
    "body",
    [
        "answer=", "answer=YES", "answer=attending", "answer=waitlist", "answer=yes+", "",
        "answer=yes&answer=no", '{"answer": "yes"}',
    ],
    ids=["empty", "upper-case", "unknown", "waitlist", "trailing-space", "missing", "two-answers", "json"],
)
async def test_an_invalid_answer_is_refused_and_changes_nothing(db, http, body):
    workshop = await make_workshop()
    (a,) = await add_clinicians(1)
    await answer(workshop.id, a, "maybe", now=START)
    before = await snapshot()

    response = await http.post(link(workshop.id, a), content=body.encode(), headers=FORM)

    assert response.status_code == 400
    assert "Choose Yes, Maybe or No. Nothing was changed." in text(response)
    assert len(BUTTONS.findall(response.text)) == 3
    assert await snapshot() == before


async def test_a_link_answers_only_for_its_own_clinician_and_workshop(db, http):
    workshop = await make_workshop()
    other_workshop = await make_workshop(title="Tumor board open day")
    a, b = await add_clinicians(2)

    response = await http.post(
        f"{link(workshop.id, a)}?clinician={b}&workshop={other_workshop.id}",
        data={"answer": "yes", "clinician": str(b), "clinician_id": str(b), "workshop": str(other_workshop.id)},
        headers=FORM,
    )

    assert response.status_code == 200
    stored = await Rsvp.select(Rsvp.workshop, Rsvp.clinician, Rsvp.answer).run()
    assert stored == [{"workshop": workshop.id, "clinician": a, "answer": "yes"}]


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _changed(token: str, position: int) -> str:
    """``token`` with one character changed in its high bits (a 32-byte token's last character
    also carries two spare bits, which decoding ignores)."""
    position %= len(token)
    swapped = ALPHABET[(ALPHABET.index(token[position]) + 16) % 64]
    return token[:position] + swapped + token[position + 1 :]


BAD_TOKENS = {
    "one character changed": lambda w, c: _changed(rsvp_token(SECRET, w, c), 5),
    "last character changed": lambda w, c: _changed(rsvp_token(SECRET, w, c), -1),
    "an unsubscribe token": lambda w, c: make_token(SECRET, "unsubscribe", w),
    "an unsubscribe token with two ids": lambda w, c: make_token(SECRET, "unsubscribe", w, c),
    "a token signed with another key": lambda w, c: rsvp_token("another-installation-secret-key-0123", w, c),
    "an RSVP token with one id": lambda w, c: make_token(SECRET, "rsvp", w),
    "an RSVP token with three ids": lambda w, c: make_token(SECRET, "rsvp", w, c, c),
    "garbage": lambda w, c: "hello-there",
    "not base64": lambda w, c: "!!!!%24%24%24",
    "non-ASCII": lambda w, c: "t%C3%B6k%C3%A9n",
    "over-long": lambda w, c: rsvp_token(SECRET, w, c) + "A" * 400,
    "a token cut short": lambda w, c: rsvp_token(SECRET, w, c)[:-4],
    "a workshop that does not exist": lambda w, c: rsvp_token(SECRET, w + 1_000_000, c),
    "a clinician who does not exist": lambda w, c: rsvp_token(SECRET, w, c + 1_000_000),
    "ids beyond any database id": lambda w, c: rsvp_token(SECRET, 2**40, 2**40),
    "a zero id": lambda w, c: rsvp_token(SECRET, 0, c),
}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_link_we_did_not_make_is_refused_and_changes_nothing(db, http, case, method):
    workshop = await make_workshop()
    a, b = await add_clinicians(2)
    await answer(workshop.id, b, "yes", now=START)
    token = BAD_TOKENS[case](workshop.id, a)
    before = await snapshot()

    if method == "GET":
        response = await http.get(f"/p/rsvp/{token}")
    else:
        response = await post(http, f"/p/rsvp/{token}", "no")

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert INVALID_TITLE in text(response) and "Nothing was changed." in text(response)
    assert "mailto:" in response.text
    assert TITLE not in text(response) and "clinic.test" not in response.text
    assert_no_buttons(response)
    assert await snapshot() == before


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("gone", ["clinician", "workshop"])
async def test_a_link_whose_clinician_or_workshop_was_deleted_is_refused(db, http, gone, method):
    workshop = await make_workshop()
    a, b = await add_clinicians(2)
    await answer(workshop.id, a, "yes", now=START)
    await answer(workshop.id, b, "yes", now=START)
    path = link(workshop.id, a)
    if gone == "clinician":
        await Clinician.delete().where(Clinician.id == a).run()
    else:
        await Workshop.delete().where(Workshop.id == workshop.id).run()
    before = await snapshot()

    response = await (http.get(path) if method == "GET" else post(http, path, "yes"))

    assert response.status_code == 400
    assert INVALID_TITLE in text(response) and "This link is no longer valid. Nothing was changed." in text(response)
    assert await snapshot() == before


# ------------------------------------------------------------------------------------------------
# The timeline


async def test_the_rsvp_and_the_attendance_are_on_the_clinician_s_timeline(db, app, client, signed_in, clock):
    clock.now = START.timestamp()
    workshop = await make_workshop(capacity="1")
    a, b = await add_clinicians(2)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.30", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as public:
        await post(public, link(workshop.id, a), "yes")
        clock.advance(60)
        await post(public, link(workshop.id, b), "yes")
    checked_in = workshop.starts_at + timedelta(minutes=5)
    await Rsvp.update({Rsvp.attended: True, Rsvp.checked_in_at: checked_in}).where(Rsvp.clinician == a).run()
    await signed_in("liaison")

    seated = text(await client.get(f"/clinicians/{a}"))
    waiting = text(await client.get(f"/clinicians/{b}"))

    assert f"RSVP: Yes to {TITLE}" in seated and f"Attended {TITLE}" in seated
    assert "RSVP link" in seated
    assert f"On the waitlist for {TITLE}" in waiting and f"RSVP: Yes to {TITLE}" not in waiting
    entries = await workshop_timeline.entries(a, 50)
    assert [(e.title, e.at) for e in entries] == [
        (f"RSVP: Yes to {TITLE}", START), (f"Attended {TITLE}", checked_in),
    ]
    assert entries[0].detail == "Wednesday, April 14, 2027, 5:30 PM – 7:00 PM EDT"
    assert await workshop_timeline.entries(b + 1_000, 50) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"answer": "yes"}'), ("text/plain", b"answer=yes")],
)
async def test_only_a_form_is_read(db, http, content_type, body):
    workshop = await make_workshop()
    (a,) = await add_clinicians(1)

    response = await http.post(link(workshop.id, a), content=body, headers={"content-type": content_type})

    assert response.status_code == 400 and "Choose Yes, Maybe or No." in text(response)
    assert await Rsvp.count().run() == 0


async def test_a_walk_in_shows_as_attended_only(db):
    workshop = await make_workshop()
    (a,) = await add_clinicians(1)
    came = workshop.starts_at + timedelta(minutes=10)
    await Rsvp(workshop=workshop.id, clinician=a, answer="yes", answered_at=came, source="walk_in",
               attended=True, checked_in_at=came).save().run()

    entries = await workshop_timeline.entries(a, 50)

    assert [(e.title, e.at, e.by) for e in entries] == [(f"Attended {TITLE}", came, "Check-in")]
