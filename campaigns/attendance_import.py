"""Attendance from a sign-in sheet: a CSV of the clinicians who came to a workshop.

The file has an NPI column, an Email column or both (any common spelling), and optionally an
Attended column (yes/no/true/false/1/0/x; empty means yes). Each row is matched to an active
clinician by NPI first, then by email. The rules are those of check-in and walk-ins
(``campaigns.workshops``): a clinician who answered is marked attended, answer kept; one who did not
is recorded as a Yes from ``import``, attended. A "no" undoes an attendance recorded earlier.

The valid rows are applied in one transaction (all or nothing); rejected rows are reported with
their row number, column and reason. Running the same file again changes nothing. A file that
cannot be used as a whole (empty, not CSV, no NPI or Email column) or a cancelled workshop is
refused with InputRefused, and nothing is written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from campaigns.tables import Rsvp
from campaigns.workshops import add_walk_in, get_workshop, lock_workshop, set_attended
from crm import audit
from crm.audit import Actor
from crm.csv_input import InputRefused, RowError, normalise_header, open_csv
from crm.db import atomic
from crm.npi import NpiError, normalise_npi
from crm.tables import Clinician

NPI_HEADERS = {"npi", "npi number", "npi no", "national provider identifier"}
EMAIL_HEADERS = {"email", "email address", "e mail", "e mail address"}
ATTENDED_HEADERS = {"attended", "attendance", "present"}
YES = {"", "yes", "y", "true", "1", "x"}
NO = {"no", "n", "false", "0"}
LOOKUP_CHUNK = 500


@dataclass
class AttendanceReport:
    source: str
    workshop_id: int
    rows_read: int = 0
    marked: int = 0  # answered before, now marked attended
    added: int = 0  # had not answered: recorded as a Yes from "import", attended
    unmarked: int = 0  # attendance recorded earlier, undone by a "no"
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)

    def reject(self, row: int, column: str, reason: str) -> None:
        self.rejected.append(RowError(row, column, reason))

    def summary_lines(self) -> list[str]:
        return [
            f"Attendance import from {self.source}",
            f"  rows read:        {self.rows_read}",
            f"  marked attended:  {self.marked}",
            f"  newly added:      {self.added}",
            f"  attendance undone: {self.unmarked}",
            f"  unchanged:        {self.unchanged}",
            f"  rejected:         {len(self.rejected)}",
        ]


@dataclass(frozen=True)
class _Row:
    row: int
    npi: str
    email: str
    attended: bool


def _column(header: list[str], names: set[str]) -> int | None:
    for index, name in enumerate(header):
        if normalise_header(name) in names:
            return index
    return None


def _read(path: Path, name: str, report: AttendanceReport) -> tuple[list[_Row], dict[str, str]]:
    """The rows worth matching (the others are rejected into ``report``) and the column names used."""
    csv_file = open_csv(path, display_name=name)
    try:
        npi_at = _column(csv_file.header, NPI_HEADERS)
        email_at = _column(csv_file.header, EMAIL_HEADERS)
        attended_at = _column(csv_file.header, ATTENDED_HEADERS)
        if npi_at is None and email_at is None:
            raise InputRefused(
                f"{name}: the file has neither an NPI nor an Email column "
                f"(its columns: {', '.join(c for c in csv_file.header if c)[:300]})"
            )
        columns = {
            "npi": csv_file.header[npi_at] if npi_at is not None else "NPI",
            "email": csv_file.header[email_at] if email_at is not None else "Email",
            "attended": csv_file.header[attended_at] if attended_at is not None else "Attended",
        }

        def cell(values: list[str], index: int | None) -> str:
            return values[index].strip() if index is not None and index < len(values) else ""

        rows: list[_Row] = []
        for number, values in csv_file.rows():
            report.rows_read += 1
            raw_attended = cell(values, attended_at).lower()
            if raw_attended not in YES | NO:
                report.reject(number, columns["attended"],
                              f"{raw_attended[:40]!r} is not yes or no (yes/no, true/false, 1/0 or x)")
                continue
            raw_npi, email = cell(values, npi_at), cell(values, email_at).lower()
            if not raw_npi and not email:
                report.reject(number, columns["npi"] if npi_at is not None else columns["email"],
                              "no NPI or email")
                continue
            npi = ""
            if raw_npi:
                try:
                    npi = normalise_npi(raw_npi)
                except NpiError as error:
                    report.reject(number, columns["npi"], f"invalid NPI: {error}")
                    continue
            rows.append(_Row(number, npi, email, raw_attended in YES))
        for error in csv_file.errors:
            report.rejected.append(error)
    finally:
        csv_file.close()
    if report.rows_read == 0 and not report.rejected:
        raise InputRefused(f"{name}: the file holds a header but no rows")
    return rows, columns


async def _active(column, values: set[str]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    ordered = sorted(values)
    for begin in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[begin : begin + LOOKUP_CHUNK]
        rows = await Clinician.select(Clinician.id, Clinician.npi, Clinician.email).where(
            column.is_in(chunk), Clinician.active == True  # noqa: E712
        ).run()
        for row in rows:
            key = row["npi"] if column is Clinician.npi else (row["email"] or "").strip().lower()
            found.setdefault(key, []).append(row)
    return found


async def _match(rows: list[_Row], columns: dict[str, str], report: AttendanceReport) -> list[tuple[_Row, int]]:
    """Each row with its clinician, NPI first then email; the others rejected into ``report``."""
    by_npi = await _active(Clinician.npi, {r.npi for r in rows if r.npi})
    by_email = await _active(Clinician.email, {r.email for r in rows if r.email})
    matched: list[tuple[_Row, int]] = []
    seen: dict[int, _Row] = {}
    for row in rows:
        clinician: int | None = None
        if row.npi and row.npi in by_npi:
            clinician = by_npi[row.npi][0]["id"]
        elif row.email:
            candidates = by_email.get(row.email, [])
            if row.npi:
                # The NPI is not on the roster: the email may name a clinician recorded without one.
                candidates = [c for c in candidates if not c["npi"]]
                if not candidates:
                    report.reject(row.row, columns["npi"], f"unknown NPI {row.npi}: no active clinician has it")
                    continue
            if not candidates:
                report.reject(row.row, columns["email"], f"unknown email {row.email}: no active clinician has it")
                continue
            if len(candidates) > 1:
                report.reject(row.row, columns["email"],
                              f"ambiguous: {len(candidates)} active clinicians have the email {row.email}")
                continue
            clinician = candidates[0]["id"]
        else:
            report.reject(row.row, columns["npi"], f"unknown NPI {row.npi}: no active clinician has it")
            continue
        earlier = seen.get(clinician)
        if earlier is not None:
            if earlier.attended != row.attended:
                report.reject(row.row, columns["attended"],
                              f"ambiguous: the same clinician is on row {earlier.row} with the other answer")
            else:
                report.unchanged += 1  # listed twice, the same way
            continue
        seen[clinician] = row
        matched.append((row, clinician))
    return matched


async def import_attendance(
    workshop_id: int, path_or_bytes: str | Path | bytes, *, actor: Actor, now: datetime,
    display_name: str | None = None,
) -> AttendanceReport:
    """Mark the attendance listed in a CSV file; see the module's docstring."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        with tempfile.TemporaryDirectory(prefix="liaison-attendance-") as folder:
            path = Path(folder) / "attendance.csv"
            path.write_bytes(bytes(path_or_bytes))
            return await import_attendance(workshop_id, path, actor=actor, now=now,
                                           display_name=display_name or "attendance.csv")
    path = Path(path_or_bytes)
    name = display_name or path.name
    workshop = await get_workshop(workshop_id)
    if workshop is None:
        raise InputRefused("no such workshop")
    if workshop.status == "cancelled":
        raise InputRefused("this workshop was cancelled: attendance cannot be recorded")
    report = AttendanceReport(source=name, workshop_id=workshop_id)
    rows, columns = _read(path, name, report)
    matched = await _match(rows, columns, report)
    report.rejected.sort(key=lambda error: error.row)
    async with atomic():
        workshop = await lock_workshop(workshop_id)
        if workshop is None:
            raise InputRefused("no such workshop")
        if workshop.status == "cancelled":
            raise InputRefused("this workshop was cancelled: attendance cannot be recorded")
        clinician_ids = [clinician for _, clinician in matched]
        existing: dict[int, Rsvp] = {}
        for begin in range(0, len(clinician_ids), LOOKUP_CHUNK):
            chunk = clinician_ids[begin : begin + LOOKUP_CHUNK]
            for rsvp in await Rsvp.objects().where(Rsvp.workshop == workshop_id, Rsvp.clinician.is_in(chunk)).run():
                existing[rsvp.clinician] = rsvp
        for row, clinician in matched:
            rsvp = existing.get(clinician)
            if rsvp is None and row.attended:
                existing[clinician] = await add_walk_in(workshop_id, clinician, now=now, actor=actor, source="import")
                report.added += 1
            elif rsvp is None or not await set_attended(rsvp, row.attended, now=now, actor=actor, source="import"):
                report.unchanged += 1
            elif row.attended:
                report.marked += 1
            else:
                report.unmarked += 1
        if report.marked or report.added or report.unmarked:
            await audit.record(
                "workshop.attendance_import", actor=actor, object_type="workshop", object_id=workshop_id,
                after={"file": name, "rows": report.rows_read, "marked": report.marked, "added": report.added,
                       "unmarked": report.unmarked, "unchanged": report.unchanged,
                       "rejected": len(report.rejected)},
            )
    return report
