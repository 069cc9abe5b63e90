"""RSVP links: the signed token naming one workshop and one clinician, the link's URL, and what a
token speaks for (the invitation the public RSVP page shows).

A token is made with ``make_token`` for the purpose "rsvp" and carries two ids, the workshop's and
the clinician's, so a link answers for exactly one clinician and one workshop; an unsubscribe token,
a changed byte or a token of another installation is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.tables import Rsvp, Workshop
from campaigns.tokens import TokenError, make_token, read_token
from crm.tables import Clinician

RSVP_PURPOSE = "rsvp"
MAX_ID = 2**31 - 1  # ids are SERIAL columns: a larger id names no row
NO_LONGER_VALID = "this link is no longer valid"


def rsvp_token(secret_key: str, workshop_id: int, clinician_id: int) -> str:
    return make_token(secret_key, RSVP_PURPOSE, workshop_id, clinician_id)


def rsvp_url(base_url: str, token: str) -> str:
    return f"{base_url}/p/rsvp/{token}"


def read_rsvp_token(secret_key: str, token: str) -> tuple[int, int]:
    """(workshop id, clinician id) of a token made by ``rsvp_token``; TokenError otherwise."""
    workshop_id, clinician_id = read_token(secret_key, RSVP_PURPOSE, token, count=2)
    if not (0 < workshop_id <= MAX_ID and 0 < clinician_id <= MAX_ID):
        raise TokenError(NO_LONGER_VALID)
    return workshop_id, clinician_id


@dataclass(frozen=True)
class Invitation:
    """What an RSVP link speaks for: the workshop, the invited clinician and their answer so far
    (None, yes, waitlist, maybe or no; ``position`` on the waitlist counts from 1)."""

    workshop: Workshop
    clinician_id: int
    first_name: str
    middle_name: str
    last_name: str
    credential: str
    email: str
    answer: str | None
    position: int | None

    def state(self, now: datetime) -> str:
        """open, cancelled or over (the order ``workshops.answer`` checks them in)."""
        if self.workshop.status == "cancelled":
            return "cancelled"
        if self.workshop.status == "completed" or now >= self.workshop.ends_at:
            return "over"
        return "open"


async def invitation(secret_key: str, token: str) -> Invitation:
    """The invitation behind ``token``; TokenError for a forged token or one whose workshop or
    clinician no longer exists."""
    workshop_id, clinician_id = read_rsvp_token(secret_key, token)
    workshop = await Workshop.objects().where(Workshop.id == workshop_id).first().run()
    clinician = await Clinician.select(
        Clinician.first_name, Clinician.middle_name, Clinician.last_name, Clinician.credential, Clinician.email,
    ).where(Clinician.id == clinician_id).first().run()
    if workshop is None or clinician is None:
        raise TokenError(NO_LONGER_VALID)
    rsvp = await Rsvp.select(Rsvp.answer).where(Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id).first().run()
    answer = rsvp["answer"] if rsvp else None
    position = await waitlist_position(workshop_id, clinician_id) if answer == "waitlist" else None
    return Invitation(
        workshop=workshop, clinician_id=clinician_id, first_name=clinician["first_name"] or "",
        middle_name=clinician["middle_name"] or "", last_name=clinician["last_name"] or "",
        credential=clinician["credential"] or "", email=clinician["email"] or "", answer=answer, position=position,
    )


async def waitlist_position(workshop_id: int, clinician_id: int) -> int | None:
    """The clinician's place on the waitlist, from 1, in the order seats are given (the time they
    were waitlisted, then the answer's id); None when they are not waiting."""
    mine = await Rsvp.select(Rsvp.id, Rsvp.waitlisted_at).where(
        Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id, Rsvp.answer == "waitlist"
    ).first().run()
    if mine is None:
        return None
    waiting = await Rsvp.select(Rsvp.id, Rsvp.waitlisted_at).where(
        Rsvp.workshop == workshop_id, Rsvp.answer == "waitlist"
    ).run()
    earliest = datetime.min.replace(tzinfo=timezone.utc)
    key = lambda row: (row["waitlisted_at"] or earliest, row["id"])  # noqa: E731
    return 1 + sum(1 for row in waiting if key(row) < key(mine))


def schedule_text(starts_at: datetime, ends_at: datetime, time_zone: str) -> str:
    """'Wednesday, April 14, 2027, 5:30 PM – 7:00 PM EDT': in the workshop's own time zone."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)

    def day(moment: datetime) -> str:
        return f"{moment:%A}, {moment:%B} {moment.day}, {moment.year}"

    def clock(moment: datetime) -> str:
        return f"{moment.hour % 12 or 12}:{moment:%M} {'AM' if moment.hour < 12 else 'PM'}"

    if start.date() == end.date():
        if start.tzname() == end.tzname():
            return f"{day(start)}, {clock(start)} – {clock(end)} {end.tzname()}"
        return f"{day(start)}, {clock(start)} {start.tzname()} – {clock(end)} {end.tzname()}"
    return f"{day(start)}, {clock(start)} {start.tzname()} – {day(end)}, {clock(end)} {end.tzname()}"
