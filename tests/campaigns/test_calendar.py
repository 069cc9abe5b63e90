"""Workshop invitations as iCalendar (iTIP) bytes: parsed back with icalendar, checked field by field."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from campaigns.calendar import (
    ICS_CONTENT_TYPE,
    WorkshopEvent,
    cancellation,
    content_type,
    filename,
    invitation,
)

NEW_YORK = ZoneInfo("America/New_York")
PHOENIX = ZoneInfo("America/Phoenix")
UTC = timezone.utc

DESCRIPTION = (
    "Referral criteria for suspected lung cancer, step by step.\n"
    "Bring: recent imaging; the patient's pathology, if any.\n"
    "\n"
    "Questions? Écrivez-nous — we'll answer before the session."
)


def make_event(**changes) -> WorkshopEvent:
    event = WorkshopEvent(
        uid="workshop-12@liaison.example.org",
        sequence=2,
        title="Referral criteria: lung & thoracic",
        description=DESCRIPTION,
        starts_at=datetime(2027, 4, 6, 12, 0, tzinfo=NEW_YORK),
        ends_at=datetime(2027, 4, 6, 13, 30, tzinfo=NEW_YORK),
        time_zone="America/New_York",
        location="Cancer Center, Room 4B, 100 Main St., Springfield",
        url="https://liaison.example.org/rsvp/abc?x=1,2;y",
        organizer_email="outreach@liaison.example.org",
        organizer_name="Oncology Outreach",
        updated_at=datetime(2027, 3, 1, 9, 15, 30, tzinfo=NEW_YORK),
    )
    return replace(event, **changes)


def parse(ics: bytes) -> Calendar:
    return Calendar.from_ical(ics)


def only_event(calendar: Calendar):
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]


def instant(moment: datetime) -> datetime:
    """UTC, so that two datetimes sharing a tzinfo are not compared by wall clock alone."""
    assert moment.tzinfo is not None and moment.utcoffset() is not None
    return moment.astimezone(UTC)


def timezone_component(calendar: Calendar, tzid: str):
    matches = [tz for tz in calendar.walk("VTIMEZONE") if str(tz["TZID"]) == tzid]
    assert len(matches) == 1
    return matches[0]


# --- invitation -----------------------------------------------------------------------------------


def test_an_invitation_carries_the_itip_request_and_the_workshop():
    calendar = parse(invitation(make_event(), "dr.obrien@clinic.example.com", "Dr. O'Brien"))

    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["PRODID"]) == "-//Liaison//Workshops//EN"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["CALSCALE"]) == "GREGORIAN"
    vevent = only_event(calendar)
    assert str(vevent["UID"]) == "workshop-12@liaison.example.org"
    assert vevent.decoded("SEQUENCE") == 2
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["SUMMARY"]) == "Referral criteria: lung & thoracic"
    assert str(vevent["DESCRIPTION"]) == DESCRIPTION
    assert str(vevent["LOCATION"]) == "Cancer Center, Room 4B, 100 Main St., Springfield"
    assert str(vevent["URL"]) == "https://liaison.example.org/rsvp/abc?x=1,2;y"


def test_the_organizer_and_the_attendee_are_mailto_addresses_with_names():
    vevent = only_event(parse(invitation(make_event(), "dr.obrien@clinic.example.com", "Dr. O'Brien")))

    organizer = vevent["ORGANIZER"]
    assert str(organizer) == "mailto:outreach@liaison.example.org"
    assert organizer.params["CN"] == "Oncology Outreach"
    attendee = vevent["ATTENDEE"]
    assert not isinstance(attendee, list)  # exactly one attendee
    assert str(attendee) == "mailto:dr.obrien@clinic.example.com"
    assert attendee.params["CN"] == "Dr. O'Brien"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["RSVP"] == "TRUE"


@pytest.mark.parametrize("rsvp, partstat", [
    (None, "NEEDS-ACTION"), ("yes", "ACCEPTED"), ("no", "DECLINED"), ("maybe", "TENTATIVE"),
])
def test_a_known_rsvp_sets_the_attendee_participation_status(rsvp, partstat):
    vevent = only_event(parse(invitation(make_event(), "a@b.org", "A", rsvp=rsvp)))
    assert vevent["ATTENDEE"].params["PARTSTAT"] == partstat
    assert vevent["ATTENDEE"].params["RSVP"] == "TRUE"


def test_an_unknown_rsvp_is_refused():
    with pytest.raises(ValueError, match="rsvp"):
        invitation(make_event(), "a@b.org", "A", rsvp="attending")


@pytest.mark.parametrize("starts_at", [
    datetime(2027, 4, 6, 12, 0, tzinfo=NEW_YORK),
    datetime(2027, 4, 6, 16, 0, tzinfo=UTC),  # the same instant, given in another zone
], ids=["local", "utc"])
def test_start_and_end_are_the_given_instants_written_in_the_workshop_zone(starts_at):
    event = make_event(starts_at=starts_at, ends_at=starts_at + timedelta(minutes=90))
    vevent = only_event(parse(invitation(event, "a@b.org", "A")))

    for name, given in (("DTSTART", event.starts_at), ("DTEND", event.ends_at)):
        assert vevent[name].params["TZID"] == "America/New_York"
        assert instant(vevent.decoded(name)) == instant(given)
        assert vevent.decoded(name).utcoffset() == timedelta(hours=-4)
    assert instant(vevent.decoded("DTSTART")) == datetime(2027, 4, 6, 16, 0, tzinfo=UTC)


def test_the_stamp_and_last_modified_are_the_update_time_in_utc():
    ics = invitation(make_event(), "a@b.org", "A")
    vevent = only_event(parse(ics))

    for name in ("DTSTAMP", "LAST-MODIFIED"):
        assert vevent.decoded(name) == datetime(2027, 3, 1, 14, 15, 30, tzinfo=UTC)
        assert vevent.decoded(name).utcoffset() == timedelta(0)
        assert "TZID" not in vevent[name].params
    assert b"\r\nDTSTAMP:20270301T141530Z\r\n" in ics


def test_a_zone_with_daylight_saving_gets_a_vtimezone_with_standard_and_daylight_parts():
    ics = invitation(make_event(), "a@b.org", "A")
    vtimezone = timezone_component(parse(ics), "America/New_York")

    kinds = {part.name for part in vtimezone.subcomponents}
    assert kinds == {"STANDARD", "DAYLIGHT"}
    offsets = {(part.name, part.decoded("TZOFFSETTO")) for part in vtimezone.subcomponents}
    assert ("STANDARD", timedelta(hours=-5)) in offsets
    assert ("DAYLIGHT", timedelta(hours=-4)) in offsets
    # Defined before the event that refers to it, which strict clients expect.
    assert ics.index(b"BEGIN:VTIMEZONE") < ics.index(b"BEGIN:VEVENT")


def test_a_zone_without_daylight_saving_gets_a_standard_only_vtimezone():
    event = make_event(
        time_zone="America/Phoenix",
        starts_at=datetime(2027, 7, 14, 9, 0, tzinfo=PHOENIX),
        ends_at=datetime(2027, 7, 14, 11, 0, tzinfo=PHOENIX),
    )
    calendar = parse(invitation(event, "a@b.org", "A"))

    vtimezone = timezone_component(calendar, "America/Phoenix")
    assert {part.name for part in vtimezone.subcomponents} == {"STANDARD"}
    assert {part.decoded("TZOFFSETTO") for part in vtimezone.subcomponents} == {timedelta(hours=-7)}
    vevent = only_event(calendar)
    assert vevent["DTSTART"].params["TZID"] == "America/Phoenix"
    assert instant(vevent.decoded("DTSTART")) == datetime(2027, 7, 14, 16, 0, tzinfo=UTC)
    assert instant(vevent.decoded("DTEND")) == datetime(2027, 7, 14, 18, 0, tzinfo=UTC)


# --- daylight-saving changes ----------------------------------------------------------------------


@pytest.mark.parametrize("starts_at, ends_at", [
    # 01:30 EDT, the first pass through the repeated hour, until 02:30 EST: two hours long.
    (datetime(2027, 11, 7, 1, 30, tzinfo=NEW_YORK), datetime(2027, 11, 7, 2, 30, tzinfo=NEW_YORK)),
    # 01:30 EST, the second pass through the repeated hour (fold=1).
    (datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK), datetime(2027, 11, 7, 3, 0, tzinfo=NEW_YORK)),
    # 00:30 EDT until 01:30 EST: across the change, two hours long.
    (datetime(2027, 11, 7, 0, 30, tzinfo=NEW_YORK), datetime(2027, 11, 7, 6, 30, tzinfo=UTC)),
    # 01:30 EST until 03:30 EDT: across the spring change, one hour long.
    (datetime(2027, 3, 14, 6, 30, tzinfo=UTC), datetime(2027, 3, 14, 3, 30, tzinfo=NEW_YORK)),
], ids=["first-pass", "second-pass", "across-autumn", "across-spring"])
def test_a_workshop_at_a_daylight_saving_change_round_trips_to_the_same_instants(starts_at, ends_at):
    event = make_event(starts_at=starts_at, ends_at=ends_at)
    for ics in (invitation(event, "a@b.org", "A"), cancellation(event, "a@b.org", "A")):
        vevent = only_event(parse(ics))
        assert instant(vevent.decoded("DTSTART")) == instant(starts_at)
        assert instant(vevent.decoded("DTEND")) == instant(ends_at)


def test_the_first_pass_through_the_repeated_hour_keeps_the_zone():
    event = make_event(
        starts_at=datetime(2027, 11, 7, 1, 30, tzinfo=NEW_YORK),
        ends_at=datetime(2027, 11, 7, 1, 45, tzinfo=NEW_YORK),
    )
    vevent = only_event(parse(invitation(event, "a@b.org", "A")))
    assert vevent["DTSTART"].params["TZID"] == "America/New_York"
    assert vevent.decoded("DTSTART").utcoffset() == timedelta(hours=-4)


def test_the_second_pass_through_the_repeated_hour_is_written_in_utc():
    # A local time with TZID always means the first pass (RFC 5545, 3.3.5), so 01:30 EST can only
    # be spelled in UTC; the VTIMEZONE is still there for clients that display in the event's zone.
    event = make_event(
        starts_at=datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK),
        ends_at=datetime(2027, 11, 7, 3, 0, tzinfo=NEW_YORK),
    )
    ics = invitation(event, "a@b.org", "A")
    calendar = parse(ics)
    assert b"\r\nDTSTART:20271107T063000Z\r\n" in ics
    assert b"\r\nDTEND:20271107T080000Z\r\n" in ics
    timezone_component(calendar, "America/New_York")


# --- text, escaping and folding -------------------------------------------------------------------


def test_punctuation_accents_and_line_breaks_round_trip_exactly():
    event = make_event(
        title="Tumor board open day; breast, lung & GI — l'équipe de Montréal",
        description=DESCRIPTION + "\nBackslash \\ and colon: kept.",
        location="Hôpital Saint-Luc, 1051 rue Sanguinet; Montréal, QC",
        organizer_name="Siobhán Ní Bhriain, RN; Outreach",
    )
    ics = invitation(event, "obrien@clinic.example.com", "O'Brien, MD; Siobhán")
    vevent = only_event(parse(ics))

    assert str(vevent["SUMMARY"]) == event.title
    assert str(vevent["DESCRIPTION"]) == event.description
    assert str(vevent["LOCATION"]) == event.location
    assert vevent["ORGANIZER"].params["CN"] == "Siobhán Ní Bhriain, RN; Outreach"
    assert vevent["ATTENDEE"].params["CN"] == "O'Brien, MD; Siobhán"
    assert b"Tumor board open day\\; breast\\, lung" in ics  # escaped by icalendar, not by hand


def test_lines_are_folded_at_75_octets_and_end_with_crlf():
    event = make_event(
        title="Atelier « critères d'orientation » — " * 6,
        description="Éèêë àâ çñ ü ø — " * 40 + "\n" + "x" * 300,
    )
    ics = invitation(event, "siobhan.obrien@clinic.example.com", "Siobhán Ó Briain, MD; Oncologie " * 4)

    assert ics.endswith(b"\r\n")
    assert b"\n" not in ics.replace(b"\r\n", b"")
    assert b"\r" not in ics.replace(b"\r\n", b"")
    lines = ics[:-2].split(b"\r\n")
    assert all(len(line) <= 75 for line in lines), max(lines, key=len)
    assert sum(line.startswith(b" ") for line in lines) > 10  # long values were folded
    for line in lines:
        line.decode("utf-8")  # never folded inside a multi-byte character
    assert str(only_event(parse(ics))["DESCRIPTION"]) == event.description


def test_control_characters_are_dropped_and_names_stay_on_one_line():
    event = make_event(title="Open\x00 day\x0b", description="one\r\ntwo\rthree\x1f")
    ics = invitation(event, "a@b.org", "Dr.\nJane   Doe")
    vevent = only_event(parse(ics))

    assert str(vevent["SUMMARY"]) == "Open day"
    assert str(vevent["DESCRIPTION"]) == "one\ntwo\nthree"
    assert vevent["ATTENDEE"].params["CN"] == "Dr. Jane Doe"


# --- cancellation ---------------------------------------------------------------------------------


def test_a_cancellation_cancels_the_same_uid_with_the_given_sequence():
    event = make_event(sequence=3)
    calendar = parse(cancellation(event, "dr.obrien@clinic.example.com", "O'Brien, MD; Siobhán"))

    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(calendar["PRODID"]) == "-//Liaison//Workshops//EN"
    vevent = only_event(calendar)
    assert str(vevent["UID"]) == "workshop-12@liaison.example.org"
    assert vevent.decoded("SEQUENCE") == 3
    assert str(vevent["STATUS"]) == "CANCELLED"
    assert str(vevent["ORGANIZER"]) == "mailto:outreach@liaison.example.org"
    assert str(vevent["ATTENDEE"]) == "mailto:dr.obrien@clinic.example.com"
    assert vevent["ATTENDEE"].params["CN"] == "O'Brien, MD; Siobhán"
    assert instant(vevent.decoded("DTSTART")) == instant(event.starts_at)
    timezone_component(calendar, "America/New_York")


# --- refused input --------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"ends_at": datetime(2027, 4, 6, 12, 0, tzinfo=NEW_YORK)}, "end after its start"),
    ({"ends_at": datetime(2027, 4, 6, 11, 0, tzinfo=NEW_YORK)}, "end after its start"),
    ({"starts_at": datetime(2027, 4, 6, 12, 0)}, "starts_at .*time zone"),
    ({"ends_at": datetime(2027, 4, 6, 13, 0)}, "ends_at .*time zone"),
    ({"updated_at": datetime(2027, 3, 1, 9, 0)}, "updated_at .*time zone"),
    ({"time_zone": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
    ({"time_zone": "../../etc/passwd"}, "unknown time zone"),
    ({"time_zone": ""}, "unknown time zone"),
    ({"organizer_email": "outreach.liaison.example.org"}, "organizer email"),
    ({"uid": "  "}, "uid"),
    ({"sequence": -1}, "sequence"),
    ({"title": ""}, "title"),
])
def test_an_invalid_event_is_refused_with_a_clear_message(changes, message):
    with pytest.raises(ValueError, match=message):
        make_event(**changes)


@pytest.mark.parametrize("email", ["dr.obrien.clinic.example.com", "", "a @b.org", "@b.org", "a@"])
@pytest.mark.parametrize("build", [invitation, cancellation])
def test_an_attendee_email_that_is_not_an_address_is_refused(build, email):
    with pytest.raises(ValueError, match="attendee email"):
        build(make_event(), email, "Dr. O'Brien")


# --- delivery helpers -----------------------------------------------------------------------------


def test_the_content_type_names_the_method():
    assert ICS_CONTENT_TYPE == 'text/calendar; charset="utf-8"; method=REQUEST'
    assert content_type("REQUEST") == ICS_CONTENT_TYPE
    assert content_type("cancel") == 'text/calendar; charset="utf-8"; method=CANCEL'
    with pytest.raises(ValueError, match="method"):
        content_type("REQUEST; x=1")


@pytest.mark.parametrize("title, expected", [
    ("Referral criteria: lung & thoracic", "referral-criteria-lung-thoracic.ics"),
    ("Journée portes ouvertes — Comité des tumeurs", "journee-portes-ouvertes-comite-des-tumeurs.ics"),
    ("../../etc/passwd", "etc-passwd.ics"),
    ("—", "invite.ics"),
    ("x" * 200, "x" * 60 + ".ics"),
])
def test_the_filename_is_a_short_safe_slug_of_the_title(title, expected):
    assert filename(make_event(title=title)) == expected
