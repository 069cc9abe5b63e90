"""The public RSVP page, reached by the signed link in a workshop invitation (no login, no CSRF
token: the token in the link is the proof).

GET shows the invitation and changes nothing (link scanners open links); each of the page's three
buttons POSTs one answer. The token names one workshop and one clinician: nothing in the request
can make the page answer for anyone else. A link we did not make, or whose workshop or clinician
is gone, gets the 400 page and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import PathParameter
from litestar.response import Template

from campaigns import workshops
from campaigns.rendering import merge_values
from campaigns.rsvp_links import Invitation, invitation, schedule_text, waitlist_position
from campaigns.tokens import TokenError
from campaigns.unsubscribe import mask
from campaigns.workshops import WorkshopError
from crm.forms import request_now
from crm.access import public

# Search engines and link previews have no business with a personal invitation.
HEADERS = {"x-robots-tag": "noindex, nofollow"}
ANSWER_LABELS = {"yes": "Yes", "maybe": "Maybe", "no": "No"}
# A cancelled workshop still has a page (200); answering it conflicts with its state (409). An
# ended workshop's link has expired (410).
STATUS_BY_STATE = {"open": 200, "cancelled": 200, "over": 410}
REFUSED_STATUS = {"cancelled": 409, "over": 410}



# No length limit here: a refused token gets the page that says so (``read_token`` checks it).
Token = Annotated[str, PathParameter()]


class RsvpController(Controller):
    path = "/p/rsvp"
    opt = public()
    include_in_schema = False

    @get("/{token:str}")
    async def show(self, request: Request, token: Token) -> Template:
        try:
            invited = await invitation(request.app.state["mail"].secret_key, token)
        except TokenError as error:
            return _invalid(request, str(error))
        state = invited.state(request_now(request))
        return _page(request, invited, token, state, status_code=STATUS_BY_STATE[state])

    @post("/{token:str}", status_code=200)
    async def answer(self, request: Request, token: Token) -> Template:
        try:
            invited = await invitation(request.app.state["mail"].secret_key, token)
        except TokenError as error:
            return _invalid(request, str(error))
        now = request_now(request)
        state = invited.state(now)
        if state != "open":
            return _page(request, invited, token, state, refused=True, status_code=REFUSED_STATUS[state])
        # Only ``answer`` is read: ids in the body (or the query) are ignored, the token's are used.
        form = await request.form()
        replies = form.getall("answer") if "answer" in form else []
        if len(replies) != 1 or replies[0] not in workshops.ANSWERS:
            return _page(request, invited, token, state, error="Choose Yes, Maybe or No.", status_code=400)
        reply = replies[0]
        try:
            result = await workshops.answer(
                invited.workshop.id, invited.clinician_id, reply, now=now, source="link"
            )
        except WorkshopError as error:
            if error.field == "status":  # cancelled or ended since the page was read
                closed = "cancelled" if "cancelled" in error.message else "over"
                return _page(request, invited, token, closed, refused=True, status_code=REFUSED_STATUS[closed])
            return _invalid(request, "this link is no longer valid")
        # ``result.promoted``: clinicians given a seat from the waitlist; telling them is the
        # invitation emails' work, not this page's.
        position = None
        if result.answer == "waitlist":
            position = await waitlist_position(invited.workshop.id, invited.clinician_id)
        return _page(
            request, invited, token, state, answer=result.answer, position=position,
            outcome=_outcome(result.answer, position, invited.answer if result.changed else None),
        )


def _outcome(answer: str, position: int | None, previous: str | None) -> str:
    if answer == "yes":
        return "You have a seat. We look forward to seeing you."
    if answer == "waitlist":
        return (
            f"The workshop is full: you are on the waitlist, position {position}; "
            "we will tell you if a seat frees up."
        )
    text = f"Thanks, we noted {ANSWER_LABELS[answer]}."
    if previous == "yes":
        text += " Your seat is now free for a colleague."
    elif previous == "waitlist":
        text += " You are no longer on the waitlist."
    return text


def _salutation(invited: Invitation, reply_to: str) -> str:
    try:
        return merge_values(
            first_name=invited.first_name, middle_name=invited.middle_name, last_name=invited.last_name,
            credential=invited.credential, program_name="", campaign_name="", unsubscribe_url="",
            reply_to=reply_to,
        ).salutation
    except ValueError:
        return "Colleague"


def _page(
    request: Request, invited: Invitation, token: str, state: str, *, answer: Any = ..., position: Any = ...,
    outcome: str = "", error: str = "", refused: bool = False, status_code: int = 200,
) -> Template:
    settings, mail = request.app.state["settings"], request.app.state["mail"]
    workshop = invited.workshop
    return Template(
        template_name="workshops/rsvp.html",
        context={
            "program": settings.program_name, "reply_to": mail.reply_address, "token": token,
            "salutation": _salutation(invited, mail.reply_address),
            "masked": mask(invited.email) if invited.email else "",
            "workshop": workshop,
            "schedule": schedule_text(workshop.starts_at, workshop.ends_at, workshop.time_zone),
            "state": state,
            "answer": invited.answer if answer is ... else answer,
            "position": invited.position if position is ... else position,
            "labels": ANSWER_LABELS, "outcome": outcome, "error": error, "refused": refused,
        },
        status_code=status_code,
        headers=HEADERS,
    )


def _invalid(request: Request, reason: str) -> Template:
    settings, mail = request.app.state["settings"], request.app.state["mail"]
    return Template(
        template_name="workshops/rsvp_invalid.html",
        context={"reason": reason, "program": settings.program_name, "reply_to": mail.reply_address},
        status_code=400,
        headers=HEADERS,
    )
