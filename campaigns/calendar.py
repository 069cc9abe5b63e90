"""Calendar invitations (iTIP REQUEST / CANCEL, RFC 5545 and 5546) for clinician workshops.

Everything is built with ``icalendar``, which escapes text, quotes parameters and folds lines at
75 octets. Times are written as local times with the workshop's TZID plus a matching VTIMEZONE
(Outlook, Google and Apple Calendar all read that). The one exception is the second pass through a
repeated hour at the end of daylight saving time: a TZID local time always means the first pass,
so those instants are written in UTC to keep them exact.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, Timezone, vCalAddress

PRODID = "-//Liaison//Workshops//EN"
METHODS = frozenset({"PUBLISH", "REQUEST", "REPLY", "ADD", "CANCEL", "REFRESH", "COUNTER", "DECLINECOUNTER"})
PARTSTAT_BY_RSVP = {None: "NEEDS-ACTION", "yes": "ACCEPTED", "no": "DECLINED", "maybe": "TENTATIVE"}
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# C0 controls except tab and line feed, and DEL: not allowed in iCalendar text.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
FILENAME_LENGTH = 60


def content_type(method: str) -> str:
    """The MIME type of an iCalendar attachment or body for the iTIP ``method``."""
    name = method.strip().upper()
    if name not in METHODS:
        raise ValueError(f"unknown iTIP method {method!r}")
    return f'text/calendar; charset="utf-8"; method={name}'


ICS_CONTENT_TYPE = content_type("REQUEST")


def _zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}: expected an IANA name such as 'America/New_York'") from None


def _require_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {moment!r}")


def _require_email(role: str, email: str) -> None:
    if not EMAIL.fullmatch(email or ""):
        raise ValueError(f"{role} email must be an address like name@example.org, got {email!r}")


@dataclass(frozen=True)
class WorkshopEvent:
    """One workshop as the calendar sees it; checked when built."""

    uid: str
    sequence: int
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    location: str
    url: str | None
    organizer_email: str
    organizer_name: str
    updated_at: datetime

    def __post_init__(self) -> None:
        if not self.uid.strip():
            raise ValueError("uid must not be empty")
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) or self.sequence < 0:
            raise ValueError(f"sequence must be a non-negative integer, got {self.sequence!r}")
        if not _text(self.title).strip():
            raise ValueError("title must not be empty")
        for name in ("starts_at", "ends_at", "updated_at"):
            _require_aware(name, getattr(self, name))
        if self.ends_at <= self.starts_at:
            raise ValueError(f"a workshop must end after its start ({self.starts_at} to {self.ends_at})")
        _zone(self.time_zone)
        _require_email("organizer", self.organizer_email)


def invitation(event: WorkshopEvent, attendee_email: str, attendee_name: str, rsvp: str | None = None) -> bytes:
    """A METHOD:REQUEST calendar inviting one attendee; ``rsvp`` (yes/no/maybe) sets the reply."""
    if rsvp not in PARTSTAT_BY_RSVP:
        raise ValueError(f"rsvp must be 'yes', 'no', 'maybe' or None, got {rsvp!r}")
    attendee = _attendee(attendee_email, attendee_name, PARTSTAT_BY_RSVP[rsvp], rsvp=True)
    return _calendar(event, "REQUEST", "CONFIRMED", attendee)


def cancellation(event: WorkshopEvent, attendee_email: str, attendee_name: str) -> bytes:
    """A METHOD:CANCEL calendar for the same UID; the caller passes the incremented SEQUENCE."""
    attendee = _attendee(attendee_email, attendee_name, "NEEDS-ACTION", rsvp=False)
    return _calendar(event, "CANCEL", "CANCELLED", attendee)


def filename(event: WorkshopEvent) -> str:
    """A safe attachment name from the title, e.g. ``referral-criteria.ics``; ``invite.ics`` if none."""
    ascii_title = unicodedata.normalize("NFKD", event.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    slug = slug[:FILENAME_LENGTH].rstrip("-")
    return f"{slug or 'invite'}.ics"


def _calendar(event: WorkshopEvent, method: str, status: str, attendee: vCalAddress) -> bytes:
    """The whole VCALENDAR: VTIMEZONE first, then the one VEVENT."""
    zone = _zone(event.time_zone)
    starts_at, ends_at = _event_times(event, zone)
    updated_at = event.updated_at.astimezone(timezone.utc)

    vevent = Event()
    vevent.add("uid", event.uid)
    vevent.add("sequence", event.sequence)
    vevent.add("dtstamp", updated_at)
    vevent.add("last-modified", updated_at)
    vevent.add("dtstart", starts_at)
    vevent.add("dtend", ends_at)
    vevent.add("status", status)
    vevent.add("transp", "OPAQUE")
    vevent.add("summary", _text(event.title))
    vevent.add("description", _text(event.description))
    vevent.add("location", _text(event.location))
    if event.url:
        vevent.add("url", event.url)
    vevent.add("organizer", _address(event.organizer_email, event.organizer_name))
    vevent.add("attendee", attendee)

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    calendar.add_component(_vtimezone(event, zone))
    calendar.add_component(vevent)
    return calendar.to_ical()


def _event_times(event: WorkshopEvent, zone: tzinfo) -> tuple[datetime, datetime]:
    """Start and end in the workshop's zone, or both in UTC when one falls in a repeated hour's second pass."""
    local = (event.starts_at.astimezone(zone), event.ends_at.astimezone(zone))
    if any(_is_second_pass(moment) for moment in local):
        return local[0].astimezone(timezone.utc), local[1].astimezone(timezone.utc)
    return local


def _is_second_pass(local: datetime) -> bool:
    """True for a wall time that occurs twice and means the later occurrence (no TZID spelling)."""
    return local.replace(fold=0).utcoffset() != local.utcoffset()


def _vtimezone(event: WorkshopEvent, zone: tzinfo) -> Timezone:
    """The zone's rules from the start of the workshop's year to the year after it ends."""
    first = date(event.starts_at.astimezone(zone).year, 1, 1)
    last = date(event.ends_at.astimezone(zone).year + 1, 1, 1)
    return Timezone.from_tzinfo(zone, tzid=event.time_zone, first_date=first, last_date=last)


def _attendee(email: str, name: str, partstat: str, rsvp: bool) -> vCalAddress:
    _require_email("attendee", email)
    address = _address(email, name)
    address.params["CUTYPE"] = "INDIVIDUAL"
    address.params["ROLE"] = "REQ-PARTICIPANT"
    address.params["PARTSTAT"] = partstat
    address.params["RSVP"] = "TRUE" if rsvp else "FALSE"
    return address


def _address(email: str, name: str) -> vCalAddress:
    """``mailto:`` address with the display name as CN (omitted when blank)."""
    address = vCalAddress(f"mailto:{email}")
    display_name = _display_name(name)
    if display_name:
        address.params["CN"] = display_name
    return address


def _display_name(name: str) -> str:
    """One line, no double quotes: parameter values carry neither portably (RFC 6868 is not universal)."""
    return " ".join(_text(name).replace('"', "'").split())


def _text(value: str) -> str:
    """Plain text with ``\\n`` line breaks and no other control characters."""
    return CONTROL_CHARACTERS.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
