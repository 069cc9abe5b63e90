"""Attendance imported from a sign-in sheet, on SQLite and PostgreSQL: matching by NPI then email,
the check-in and walk-in rules, rejected rows, refusals, idempotence, and the upload page."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from campaigns.attendance_import import import_attendance
from campaigns.tables import Rsvp, Workshop
from campaigns.workshop_controller import ATTENDANCE_MAX_BYTES
from campaigns.workshops import answer, cancel_workshop, check_in, save_workshop
from crm.audit import Actor
from crm.csv_input import InputRefused
from crm.npi import with_check_digit
from crm.tables import AuditEvent, Clinician
from tests.helpers import fetch_csrf

NOW = datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=45)  # the day after the workshop
ACTOR = Actor(user_id=None, label="test")
BOM = b"\xef\xbb\xbf"


def npi(n: int) -> str:
    return with_check_digit(str(200_000_000 + n * 7919))


async def make_workshop() -> Workshop:
    workshop, _ = await save_workshop(
        {"title": "Rapid-consult pathways", "date": "2027-04-14", "start_time": "17:30", "end_time": "19:00",
         "time_zone": "America/New_York", "venue": "Cancer Center, Room 2", "capacity": "2"},
        actor=ACTOR, now=NOW,
    )
    return workshop


async def clinician(n: int, *, with_npi: bool = True, active: bool = True, first: str = "Siobhán",
                    last: str = "Müller") -> int:
    row = Clinician(npi=npi(n) if with_npi else None, first_name=first, last_name=f"{last}-{n}",
                    email=f"doc{n}@clinic.test", active=active, state="IL")
    await row.save().run()
    return row.id


async def rsvp_of(workshop_id: int, clinician_id: int) -> Rsvp | None:
    return await Rsvp.objects().where(Rsvp.workshop == workshop_id, Rsvp.clinician == clinician_id).first().run()


def sheet(lines: list[str], *, delimiter: str = ",", encoding: str = "utf-8", bom: bytes = b"") -> bytes:
    return bom + "\r\n".join(delimiter.join(line.split("|")) for line in lines).encode(encoding) + b"\r\n"


async def roster() -> tuple[Workshop, list[int]]:
    """Clinician 0 answered Yes, 1 Maybe, 2 did not answer, 3 came and is checked in, 4 did not answer."""
    workshop = await make_workshop()
    ids = [await clinician(n) for n in range(5)]
    await answer(workshop.id, ids[0], "yes", now=NOW)
    await answer(workshop.id, ids[1], "maybe", now=NOW)
    await answer(workshop.id, ids[3], "yes", now=NOW)
    rsvp = await rsvp_of(workshop.id, ids[3])
    await check_in(workshop.id, rsvp.id, True, NOW, ACTOR)
    return workshop, ids


def happy_sheet() -> bytes:
    # A UTF-8 BOM in front of Windows-1252 text, semicolons, header spellings from a sign-in tool.
    return sheet([
        "npi|Name|E-mail|Attended",
        f"{npi(0)}|Siobhán Müller|doc0@clinic.test|yes",
        "|Zoë Ñúñez|DOC1@Clinic.Test|x",  # by email, any case
        f"{npi(2)}.0|François Çelik||",  # a spreadsheet's decimal, empty Attended means yes
        f"{npi(3)}|Åsa Øberg||TRUE",
        f"{npi(4)}|Björn Þór||no",  # did not come, did not answer: nothing to record
    ], delimiter=";", encoding="cp1252", bom=BOM)


async def test_a_sign_in_sheet_marks_attendance_and_adds_who_came_without_answering(db):
    workshop, ids = await roster()

    report = await import_attendance(workshop.id, happy_sheet(), actor=ACTOR, now=LATER, display_name="sheet.csv")

    assert (report.rows_read, report.marked, report.added, report.unchanged, report.rejected) == (5, 2, 1, 2, [])
    yes, maybe, walked_in, checked, absent = [await rsvp_of(workshop.id, c) for c in ids]
    assert (yes.answer, yes.attended, yes.checked_in_at, yes.source) == ("yes", True, LATER, "link")
    assert (maybe.answer, maybe.attended) == ("maybe", True)  # the answer is kept, as at check-in
    assert (walked_in.answer, walked_in.source, walked_in.attended, walked_in.checked_in_at) == (
        "yes", "import", True, LATER)
    assert checked.checked_in_at == NOW  # already checked in on the day: untouched
    assert absent is None
    summary = await AuditEvent.objects().output(load_json=True).get(
        AuditEvent.action == "workshop.attendance_import").run()
    assert summary.after["file"] == "sheet.csv" and summary.after["added"] == 1
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.walk_in").run() == 1


async def test_importing_the_same_sheet_again_changes_nothing(db):
    workshop, ids = await roster()
    await import_attendance(workshop.id, happy_sheet(), actor=ACTOR, now=LATER)
    before = await Rsvp.select().where(Rsvp.workshop == workshop.id).order_by(Rsvp.id).run()
    events = await AuditEvent.count().run()

    again = await import_attendance(workshop.id, happy_sheet(), actor=ACTOR, now=LATER + timedelta(hours=1))

    assert (again.marked, again.added, again.unmarked, again.unchanged, again.rejected) == (0, 0, 0, 5, [])
    assert await Rsvp.select().where(Rsvp.workshop == workshop.id).order_by(Rsvp.id).run() == before
    assert await AuditEvent.count().run() == events


async def test_a_no_undoes_an_attendance_recorded_earlier(db):
    workshop, ids = await roster()

    report = await import_attendance(workshop.id, sheet(["NPI,Attended", f"{npi(3)},0"]), actor=ACTOR, now=LATER)

    assert (report.unmarked, report.marked) == (1, 0)
    undone = await rsvp_of(workshop.id, ids[3])
    assert (undone.answer, undone.attended, undone.checked_in_at) == ("yes", False, None)


async def test_rejected_rows_are_reported_and_the_valid_rows_applied(db):
    workshop, ids = await roster()
    await clinician(7, active=False)  # deactivated: not matched
    no_npi = await clinician(8, with_npi=False)  # on the roster without an NPI: matched by email

    report = await import_attendance(workshop.id, sheet([
        "NPI,Email Address,Attended",
        f"{npi(0)},,yes",
        "1234567890,,yes",  # wrong check digit
        f"{npi(99)},,yes",  # valid but unknown
        ",,yes",
        ",nobody@clinic.test,yes",
        f"{npi(7)},doc7@clinic.test,yes",  # deactivated clinician
        f"{npi(2)},,maybe",
        f"{npi(0)},,no",  # the same clinician as row 2, the other way
        f"{npi(98)},doc8@clinic.test,yes",  # an NPI the roster lacks, the email of a clinician without one
        f"{npi(99)},doc1@clinic.test,yes",  # the email belongs to a clinician with another NPI
    ]), actor=ACTOR, now=LATER)

    rejected = [(e.row, e.column, e.reason.split(":")[0]) for e in report.rejected]
    assert rejected == [
        (3, "NPI", "invalid NPI"),
        (4, "NPI", f"unknown NPI {npi(99)}"),
        (5, "NPI", "no NPI or email"),
        (6, "Email Address", "unknown email nobody@clinic.test"),
        (7, "NPI", f"unknown NPI {npi(7)}"),
        (8, "Attended", "'maybe' is not yes or no (yes/no, true/false, 1/0 or x)"),
        (9, "Attended", "ambiguous"),
        (11, "NPI", f"unknown NPI {npi(99)}"),
    ]
    assert "wrong check digit" in report.rejected[0].reason
    assert (report.rows_read, report.marked, report.added) == (10, 1, 1)
    assert (await rsvp_of(workshop.id, ids[0])).attended is True
    assert (await rsvp_of(workshop.id, no_npi)).source == "import"
    assert await rsvp_of(workshop.id, ids[1]) is not None and not (await rsvp_of(workshop.id, ids[1])).attended


@pytest.mark.parametrize("content, message", [
    (sheet(["Name,Phone", "Siobhán Müller,555"]), "neither an NPI nor an Email column"),
    (b"", "the file is empty"),
    (b"  \r\n", "the file is empty"),
    (sheet(["NPI;Email"], delimiter=";"), "no rows"),
    (b"%PDF-1.7\n...", "PDF"),
    (b"PK\x03\x04\x14\x00", "Excel workbook"),
])
async def test_unusable_files_are_refused_as_a_whole(db, content, message):
    workshop, _ = await roster()
    before = await Rsvp.select().order_by(Rsvp.id).run()

    with pytest.raises(InputRefused, match=message):
        await import_attendance(workshop.id, content, actor=ACTOR, now=LATER)

    assert await Rsvp.select().order_by(Rsvp.id).run() == before


async def test_a_cancelled_workshop_takes_no_attendance(db):
    workshop, ids = await roster()
    await cancel_workshop(workshop.id, actor=ACTOR, now=NOW)

    with pytest.raises(InputRefused, match="cancelled"):
        await import_attendance(workshop.id, sheet(["NPI", npi(0), npi(2)]), actor=ACTOR, now=LATER)

    assert not (await rsvp_of(workshop.id, ids[0])).attended and await rsvp_of(workshop.id, ids[2]) is None
    assert await AuditEvent.count().where(AuditEvent.action == "workshop.attendance_import").run() == 0


# ------------------------------------------------------------------------------------------------
# The page


async def upload(client, workshop_id: int, content: bytes, name: str = "sheet.csv"):
    token = await fetch_csrf(client)
    return await client.post(f"/workshops/{workshop_id}/attendance", data={"_csrf_token": token},
                             files={"file": (name, content, "text/csv")})


async def test_a_marketer_uploads_a_sign_in_sheet_and_sees_the_result(db, client, signed_in):
    workshop, ids = await roster()
    await signed_in("marketer")

    page = await client.get(f"/workshops/{workshop.id}")
    assert f'href="/workshops/{workshop.id}/attendance"' in page.text
    form = await client.get(f"/workshops/{workshop.id}/attendance")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text and "5 MB" in form.text

    content = happy_sheet().rstrip(b"\r\n") + b"\r\n;;nobody@clinic.test;yes\r\n"
    result = await upload(client, workshop.id, content)

    assert result.status_code == 200
    assert '<dd id="marked">2</dd>' in result.text and '<dd id="added">1</dd>' in result.text
    assert '<dd id="unchanged">2</dd>' in result.text and '<dd id="rejected">1</dd>' in result.text
    assert "<td>7</td><td>E-mail</td><td>unknown email nobody@clinic.test" in result.text
    assert (await rsvp_of(workshop.id, ids[2])).source == "import"

    again = await upload(client, workshop.id, content)
    assert '<dd id="unchanged">5</dd>' in again.text and '<dd id="added">0</dd>' in again.text


async def test_the_page_explains_a_refusal_and_records_nothing(db, client, signed_in):
    workshop, ids = await roster()
    await signed_in("manager")

    wrong = await upload(client, workshop.id, sheet(["Name", "Siobhán"]))
    missing = await client.post(f"/workshops/{workshop.id}/attendance",
                                data={"_csrf_token": await fetch_csrf(client)},
                                files={"file": ("", b"", "text/csv")})
    await cancel_workshop(workshop.id, actor=ACTOR, now=NOW)
    cancelled = await upload(client, workshop.id, sheet(["NPI", npi(2)]))
    too_big = await upload(client, workshop.id, b"NPI\r\n" + b"x" * ATTENDANCE_MAX_BYTES)

    assert wrong.status_code == 422 and "neither an NPI nor an Email column" in wrong.text
    assert missing.status_code == 422 and "Choose a file" in missing.text
    assert cancelled.status_code == 422 and "cancelled" in cancelled.text
    assert too_big.status_code == 413
    assert await rsvp_of(workshop.id, ids[2]) is None


async def test_a_liaison_may_not_import_attendance(db, client, signed_in):
    workshop, ids = await roster()
    await signed_in("liaison")

    page = await client.get(f"/workshops/{workshop.id}")
    form = await client.get(f"/workshops/{workshop.id}/attendance")
    posted = await upload(client, workshop.id, sheet(["NPI", npi(2)]))

    assert f'href="/workshops/{workshop.id}/attendance"' not in page.text
    assert form.status_code == 403 and posted.status_code == 403
    assert await rsvp_of(workshop.id, ids[2]) is None
