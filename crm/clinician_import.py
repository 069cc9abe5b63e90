"""Importing referring clinicians and practices from an NPPES bulk file or a plain CSV.

The whole import runs in one write transaction: a file refused half-way (bad encoding, say) leaves
nothing behind, and ``--dry-run`` runs everything and rolls back. Rows are read as a stream and
written in batches, so memory stays flat whatever the file size.

Matching, so that re-importing never duplicates: by NPI first, then by email among active
clinicians. A row whose email already belongs to a clinician with a different NPI is not merged: it
goes to the review list (``ImportReview``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from piccolo.columns.combination import WhereRaw

from crm import bulk
from crm.csv_input import CsvFile, InputRefused, normalise_header, open_csv
from crm.db import atomic
from crm.import_report import DryRun, ImportReport
from crm.names import display_case
from crm.npi import NpiError, normalise_npi
from crm.tables import Clinician, ClinicianTag, ImportReview, Practice, Taxonomy, User
from crm.text import single_line
from crm.users import EMAIL_PATTERN

BATCH = 500
TAXONOMY_SLOTS = 15
MASKED = {"<UNAVAIL>"}
TIERS = {"A", "B", "C"}
YES = {"y", "yes", "true", "1", "x"}
NO = {"n", "no", "false", "0", ""}

# ------------------------------------------------------------------------------------------------
# What a row turns into


@dataclass(slots=True)
class PracticeRef:
    """A practice named in a plain CSV row (matched by name and ZIP, created when missing)."""

    name: str
    fields: dict[str, Any]


@dataclass(slots=True)
class ClinicianRow:
    row: int
    npi: str | None
    email: str | None
    fields: dict[str, Any]
    practice: PracticeRef | None = None
    tags: list[str] | None = None


@dataclass(slots=True)
class OrganizationRow:
    row: int
    npi: str
    fields: dict[str, Any]


@dataclass(slots=True)
class DeactivationRow:
    row: int
    npi: str
    on: date | None


@dataclass(frozen=True)
class Filters:
    """NPPES filters: practice-location states, and primary taxonomy codes or code prefixes.

    The taxonomy filter chooses clinicians; organisations are practices, kept by state alone, so
    that the clinicians chosen can be linked to the practice at their location."""

    states: frozenset[str] = frozenset()
    taxonomy_prefixes: tuple[str, ...] = ()

    def keeps(self, state: str, taxonomy_code: str, organization: bool = False) -> bool:
        if self.states and state not in self.states:
            return False
        if self.taxonomy_prefixes and not organization and not taxonomy_code.startswith(self.taxonomy_prefixes):
            return False
        return True


class RowRejected(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


# ------------------------------------------------------------------------------------------------
# Small value rules shared by both formats


def check_lengths(table, fields: dict[str, Any], label: Callable[[str], str]) -> None:
    """Refuse a row whose text is longer than its column holds (PostgreSQL would refuse the
    whole import; SQLite would store it whole)."""
    for name, value in fields.items():
        limit = getattr(getattr(table, name, None), "length", None)
        if isinstance(value, str) and limit and len(value) > limit:
            raise RowRejected(label(name), f"the value is {len(value)} characters long; at most {limit} fit")


def clean(value: str) -> str:
    value = single_line(value)
    return "" if value in MASKED else value


def postal_code(value: str, column: str) -> str:
    digits = re.sub(r"[\s-]", "", value)
    if not digits:
        return ""
    if re.fullmatch(r"\d{9}", digits):
        return f"{digits[:5]}-{digits[5:]}"
    if re.fullmatch(r"\d{5}", digits):
        return digits
    if re.fullmatch(r"\d{3,4}", digits):
        raise RowRejected(column, f"ZIP {value!r} has {len(digits)} digits (a spreadsheet may have dropped leading zeros)")
    if re.fullmatch(r"\d{5}\.0+", value.strip()):
        return value.strip()[:5]
    raise RowRejected(column, f"ZIP {value!r} is not a 5- or 9-digit ZIP code")


def address_key(line1: str, postal: str) -> str:
    """A practice-location key: the street line without punctuation, and the 5-digit ZIP."""
    street = " ".join(re.sub(r"[^0-9a-z]+", " ", line1.lower()).split())
    return f"{street}|{postal[:5]}" if street and postal else ""


def us_state(value: str, column: str, strict: bool) -> str:
    value = value.strip().upper()
    if not value:
        return ""
    if re.fullmatch(r"[A-Z]{2}", value):
        return value
    if strict:
        raise RowRejected(column, f"state {value!r} is not a two-letter code")
    return ""  # NPPES foreign addresses carry region names here


def nppes_date(value: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.strptime(value, "%m/%d/%Y").date()
    except ValueError:
        return None


def normalise_email(value: str, column: str) -> str | None:
    email = value.strip().lower()
    if not email:
        return None
    if len(email) > 320 or not EMAIL_PATTERN.match(email):
        raise RowRejected(column, f"{value.strip()!r} is not an email address")
    return email


# ------------------------------------------------------------------------------------------------
# NPPES bulk format


NPPES_MARKERS = ("NPI", "Entity Type Code", "Healthcare Provider Taxonomy Code_1")


def is_nppes(header: list[str]) -> bool:
    """An NPPES header, even a damaged one (the parser then names the missing column): a file
    that looks like NPPES must never be read as a plain CSV."""
    return (
        any(marker in header for marker in NPPES_MARKERS[1:])
        or len(header) >= 300
        or any(name.startswith("Healthcare Provider Taxonomy Code") for name in header)
    )


class NppesParser:
    """Turns NPPES rows into clinicians (entity type 1), organisations (2) and deactivations.

    Columns are found by name, so the 329-column (older) and 330-column headers both work."""

    def __init__(self, header: list[str], filters: Filters, taxonomy: dict[str, str]) -> None:
        index = {name: position for position, name in enumerate(header)}
        self.width = len(header)

        def col(name: str) -> int:
            if name not in index:
                raise InputRefused(f"the NPPES header lacks the column {name!r}")
            return index[name]

        self.npi = col("NPI")
        self.entity = col("Entity Type Code")
        self.org_name = col("Provider Organization Name (Legal Business Name)")
        self.last = col("Provider Last Name (Legal Name)")
        self.first = col("Provider First Name")
        self.middle = col("Provider Middle Name")
        self.suffix = col("Provider Name Suffix Text")
        self.credential = col("Provider Credential Text")
        self.line1 = col("Provider First Line Business Practice Location Address")
        self.line2 = col("Provider Second Line Business Practice Location Address")
        self.city = col("Provider Business Practice Location Address City Name")
        self.state = col("Provider Business Practice Location Address State Name")
        self.postal = col("Provider Business Practice Location Address Postal Code")
        self.phone = col("Provider Business Practice Location Address Telephone Number")
        self.fax = col("Provider Business Practice Location Address Fax Number")
        self.deactivated = col("NPI Deactivation Date")
        self.reactivated = col("NPI Reactivation Date")
        self.slots = [
            (col(f"Healthcare Provider Taxonomy Code_{n}"), col(f"Healthcare Provider Primary Taxonomy Switch_{n}"))
            for n in range(1, TAXONOMY_SLOTS + 1)
        ]
        self.filters = filters
        self.taxonomy = taxonomy

    def primary_taxonomy(self, values: list[str]) -> str:
        """The code in the slot whose switch is Y (often not slot 1); failing that, the only or
        the first code given."""
        codes = []
        for code_at, switch_at in self.slots:
            code = values[code_at].strip().upper()
            if not code:
                continue
            if values[switch_at].strip().upper() == "Y":
                return code
            codes.append(code)
        return codes[0] if codes else ""

    def parse(self, row: int, values: list[str]) -> ClinicianRow | OrganizationRow | DeactivationRow | None:
        """None when the filters leave the row out."""
        if len(values) != self.width:
            raise RowRejected("", f"the row has {len(values)} of {self.width} columns (truncated or malformed)")
        try:
            npi = normalise_npi(values[self.npi])
        except NpiError as error:
            raise RowRejected("NPI", str(error)) from None
        entity = values[self.entity].strip()
        deactivated_on = nppes_date(values[self.deactivated])
        reactivated_on = nppes_date(values[self.reactivated])
        if not entity and deactivated_on:
            # Deactivated NPIs carry only the NPI and the date; the filters cannot apply.
            return DeactivationRow(row, npi, deactivated_on)
        state = us_state(values[self.state], "Provider Business Practice Location Address State Name", strict=False)
        taxonomy_code = self.primary_taxonomy(values)
        if not self.filters.keeps(state, taxonomy_code, organization=entity == "2"):
            return None
        if entity not in ("1", "2"):
            raise RowRejected("Entity Type Code", f"entity type {entity!r} is neither 1 nor 2")
        if taxonomy_code and taxonomy_code not in self.taxonomy:
            raise RowRejected(
                "Healthcare Provider Taxonomy Code", f"unknown taxonomy code {taxonomy_code}"
            )
        postal = postal_code(values[self.postal], "Provider Business Practice Location Address Postal Code")
        line1 = clean(values[self.line1])
        active = deactivated_on is None or (reactivated_on is not None and reactivated_on >= deactivated_on)
        place = {
            "address_line1": line1.title(),
            "address_line2": clean(values[self.line2]).title(),
            "city": clean(values[self.city]).title(),
            "state": state,
            "postal_code": postal,
            "address_key": address_key(line1, postal),
            "phone": clean(values[self.phone]),
            "fax": clean(values[self.fax]),
            "taxonomy_code": taxonomy_code or None,
            "active": active,
        }
        if entity == "2":
            name = clean(values[self.org_name])
            if not name:
                raise RowRejected("Provider Organization Name (Legal Business Name)", "organisation without a name")
            fields = {"name": display_case(name), **place}
            check_lengths(Practice, fields, self.label)
            return OrganizationRow(row, npi, fields)
        last = clean(values[self.last])
        if not last:
            raise RowRejected("Provider Last Name (Legal Name)", "individual without a last name")
        fields = {
            "first_name": display_case(clean(values[self.first])),
            "middle_name": display_case(clean(values[self.middle])),
            "last_name": display_case(last),
            "name_suffix": clean(values[self.suffix]),
            "credential": clean(values[self.credential]),
            "role": self.taxonomy.get(taxonomy_code, "other"),
            "deactivated_on": None if active else deactivated_on,
            **place,
        }
        check_lengths(Clinician, fields, self.label)
        return ClinicianRow(row, npi, None, fields)

    LABELS = {
        "name": "Provider Organization Name (Legal Business Name)", "first_name": "Provider First Name",
        "middle_name": "Provider Middle Name", "last_name": "Provider Last Name (Legal Name)",
        "name_suffix": "Provider Name Suffix Text", "credential": "Provider Credential Text",
        "address_line1": "Provider First Line Business Practice Location Address",
        "address_line2": "Provider Second Line Business Practice Location Address",
        "city": "Provider Business Practice Location Address City Name",
        "phone": "Provider Business Practice Location Address Telephone Number",
        "fax": "Provider Business Practice Location Address Fax Number",
    }

    def label(self, name: str) -> str:
        return self.LABELS.get(name, name)


# ------------------------------------------------------------------------------------------------
# Plain CSV (exports from other CRMs, spreadsheets kept by liaisons)


ALIASES: dict[str, tuple[str, ...]] = {
    "npi": ("npi", "npi number", "national provider identifier", "provider npi", "individual npi"),
    "first_name": ("first name", "firstname", "first", "given name", "provider first name"),
    "middle_name": ("middle name", "middle", "middle initial", "mi"),
    "last_name": ("last name", "lastname", "last", "surname", "family name", "provider last name"),
    "name_suffix": ("suffix", "name suffix"),
    "credential": ("credential", "credentials", "degree", "provider credential text"),
    "email": ("email", "email address", "e mail", "e mail address", "work email", "emailaddress"),
    "phone": ("phone", "phone number", "telephone", "office phone", "work phone", "tel"),
    "fax": ("fax", "fax number", "office fax"),
    "practice": ("practice", "practice name", "organization", "organisation", "organization name", "clinic", "group", "company"),
    "address_line1": ("address", "address 1", "address line 1", "address1", "street", "street address"),
    "address_line2": ("address 2", "address line 2", "address2", "suite"),
    "city": ("city", "town"),
    "state": ("state", "st", "state code", "province"),
    "postal_code": ("zip", "zip code", "zipcode", "postal code", "postcode", "zip5"),
    "taxonomy_code": ("taxonomy", "taxonomy code", "primary taxonomy", "primary taxonomy code", "specialty code"),
    "tier": ("tier",),
    "tags": ("tags", "tag"),
    "owner": ("owner", "owner email", "liaison", "liaison email", "assigned liaison"),
    "do_not_contact": ("do not contact", "dnc", "do not email", "donotcontact"),
    "consent_source": ("consent source", "consent"),
}
LOOKUP = {alias: field_name for field_name, aliases in ALIASES.items() for alias in aliases}


class PlainCsvParser:
    """Columns matched by name, case-insensitively and through common aliases."""

    def __init__(self, header: list[str], taxonomy: dict[str, str], owners: dict[str, int], name: str) -> None:
        self.columns: dict[str, tuple[int, str]] = {}
        self.ignored: list[str] = []
        for position, label in enumerate(header):
            field_name = LOOKUP.get(normalise_header(label))
            if field_name and field_name not in self.columns:
                self.columns[field_name] = (position, label)
            elif label.strip():
                self.ignored.append(label.strip())
        if "npi" not in self.columns and "email" not in self.columns:
            expected = "NPI, First Name, Last Name, Email, Practice, Address, City, State, ZIP, Taxonomy"
            found = ", ".join(label for label in header[:8] if label) or "nothing"
            raise InputRefused(
                f"{name}: no recognisable clinician columns (found {found}; expected some of "
                f"{expected}, with NPI or Email to match on)"
            )
        self.taxonomy = taxonomy
        self.owners = owners

    def label(self, field_name: str) -> str:
        found = self.columns.get(field_name)
        return found[1] if found else field_name

    def _get(self, values: list[str], field_name: str) -> tuple[str, str] | None:
        found = self.columns.get(field_name)
        if found is None:
            return None
        position, label = found
        return (values[position] if position < len(values) else ""), label

    def parse(self, row: int, values: list[str]) -> ClinicianRow:
        if len(values) < len(self.columns) and len(values) <= max(p for p, _ in self.columns.values()):
            raise RowRejected("", f"the row has {len(values)} values, fewer than the header's columns (truncated?)")
        fields: dict[str, Any] = {}
        npi = None
        if (cell := self._get(values, "npi")) and cell[0].strip():
            try:
                npi = normalise_npi(cell[0])
            except NpiError as error:
                raise RowRejected(cell[1], str(error)) from None
        email = None
        if cell := self._get(values, "email"):
            email = normalise_email(cell[0], cell[1])
        if npi is None and email is None:
            raise RowRejected("NPI", "the row has neither an NPI nor an email to match on")
        for name in ("first_name", "middle_name", "last_name", "name_suffix", "credential", "phone", "fax",
                     "address_line1", "address_line2", "city", "consent_source"):
            if cell := self._get(values, name):
                fields[name] = clean(cell[0])
        if cell := self._get(values, "state"):
            fields["state"] = us_state(cell[0], cell[1], strict=True)
        if cell := self._get(values, "postal_code"):
            fields["postal_code"] = postal_code(cell[0], cell[1])
        if "address_line1" in fields or "postal_code" in fields:
            fields["address_key"] = address_key(fields.get("address_line1", ""), fields.get("postal_code", ""))
        if cell := self._get(values, "taxonomy_code"):
            code = cell[0].strip().upper() or None
            if code and code not in self.taxonomy:
                hint = "" if self.taxonomy else " (no taxonomy is loaded: run `liaison import taxonomy` first)"
                raise RowRejected(cell[1], f"unknown taxonomy code {code}{hint}")
            fields["taxonomy_code"] = code
            fields["role"] = self.taxonomy[code] if code else None
        if cell := self._get(values, "tier"):
            tier = cell[0].strip().upper() or None
            if tier and tier not in TIERS:
                raise RowRejected(cell[1], f"tier {cell[0].strip()!r} is not A, B or C")
            fields["tier"] = tier
        if (cell := self._get(values, "do_not_contact")) is not None:
            flag = cell[0].strip().lower()
            if flag not in YES | NO:
                raise RowRejected(cell[1], f"{cell[0].strip()!r} is not yes or no")
            fields["do_not_contact"] = flag in YES
        if cell := self._get(values, "owner"):
            owner = None
            if cell[0].strip():
                owner = self.owners.get(cell[0].strip().lower())
                if owner is None:
                    raise RowRejected(cell[1], f"{cell[0].strip()!r} is not the email of an active user")
            fields["owner"] = owner
        if npi is None and not fields.get("last_name"):
            raise RowRejected("Last Name", "a clinician without an NPI needs a last name")
        check_lengths(Clinician, fields, self.label)
        practice = None
        if cell := self._get(values, "practice"):
            fields["practice"] = None
            if clean(cell[0]):
                place_keys = ("address_line1", "address_line2", "city", "state", "postal_code", "address_key", "phone", "fax")
                if len(clean(cell[0])) > 300:
                    raise RowRejected(cell[1], "the practice name is longer than 300 characters")
                practice = PracticeRef(clean(cell[0]), {k: fields[k] for k in place_keys if k in fields})
        tags = None
        if (cell := self._get(values, "tags")) and cell[0].strip():
            tags = sorted({t.strip().lower()[:50] for t in re.split(r"[;,|]", cell[0]) if t.strip()})
        return ClinicianRow(row, npi, email, fields, practice, tags)


# ------------------------------------------------------------------------------------------------
# Writing


# Columns whose empty CSV cell keeps the stored value (text), or whose None does (nullable).
TEXT_COLUMNS = frozenset({
    "first_name", "middle_name", "last_name", "name_suffix", "credential", "phone", "fax",
    "address_line1", "address_line2", "city", "state", "postal_code", "address_key", "consent_source",
})
META_COLUMNS = ("source", "import_run", "created_at", "updated_at")


def _update_expression(column: str, keep_blanks: bool) -> str:
    incoming, stored = f'excluded."{column}"', f'"clinician"."{column}"'
    if column == "practice":
        return f"COALESCE({incoming}, {stored})"  # a link made by a person stays
    if column == "role":
        # ``role`` is the effective role: a manager's override outlives every import.
        kept = f'WHEN excluded."taxonomy_code" IS NULL THEN {stored} ' if keep_blanks else ""
        return f'CASE WHEN "clinician"."role_override" IS NOT NULL THEN "clinician"."role_override" {kept}ELSE {incoming} END'
    if column in ("source", "import_run", "updated_at") or not keep_blanks:
        return incoming
    if column in ("source", "import_run", "updated_at") or not keep_blanks:
        return incoming
    if column in TEXT_COLUMNS:
        return f"COALESCE(NULLIF({incoming}, ''), {stored})"
    if column == "do_not_contact":
        # An import can mark a clinician do-not-contact, never clear it: that takes a person.
        return f"({incoming} OR {stored})"
    return f"COALESCE({incoming}, {stored})"


class Writer:
    """Applies parsed rows in batches, matching existing clinicians by NPI, then email.

    NPPES rows replace the registry's fields; plain CSV rows change only what their cells say
    (an empty cell keeps the stored value)."""

    def __init__(self, report: ImportReport, run: str, source_kind: str) -> None:
        self.report = report
        self.run = run
        self.source_kind = source_kind
        self.keep_blanks = source_kind != "nppes"
        self.now = datetime.now(timezone.utc)
        # Practice location → practice id, for linking NPPES individuals as they are written.
        self.practice_at: dict[str, int] = {}
        self.looked_up: set[str] = set()

    # Organisations (NPPES entity type 2) --------------------------------------------------------
    async def organizations(self, rows: list[OrganizationRow]) -> None:
        npis = [r.npi for r in rows]
        existing = {
            p["organization_npi"]: p["import_run"]
            for p in await Practice.select(Practice.organization_npi, Practice.import_run)
            .where(Practice.organization_npi.is_in(npis)).run()
        }
        fresh: dict[str, OrganizationRow] = {}
        for r in rows:
            if r.npi in fresh or existing.get(r.npi) == self.run:
                self.report.reject(r.row, "NPI", f"NPI {r.npi} appears more than once in this file")
                continue
            fresh[r.npi] = r
        if not fresh:
            return
        fields = list(next(iter(fresh.values())).fields)
        columns = ["organization_npi", *fields, *META_COLUMNS]
        meta = (self.source_kind, self.run, self.now, self.now)
        await bulk.upsert(
            Practice, columns,
            [(r.npi, *(r.fields[f] for f in fields), *meta) for r in fresh.values()],
            conflict="organization_npi",
            update={c: f'excluded."{c}"' for c in columns if c not in ("organization_npi", "created_at")},
        )
        updated = sum(1 for npi in fresh if npi in existing)
        self.report.practices_updated += updated
        self.report.practices_created += len(fresh) - updated
        for p in await Practice.select(Practice.id, Practice.address_key).where(
                Practice.organization_npi.is_in(list(fresh))).run():
            self._remember_practice(p["address_key"], p["id"])

    def _remember_practice(self, key: str, practice_id: int) -> None:
        if key and (key not in self.practice_at or practice_id < self.practice_at[key]):
            self.practice_at[key] = practice_id

    async def _link_by_location(self, rows: list[ClinicianRow]) -> None:
        """NPPES individuals take the practice at their practice location, when it is known."""
        keys = {r.fields["address_key"] for r in rows if r.fields.get("address_key")} - self.looked_up
        if keys:
            for p in await Practice.select(Practice.id, Practice.address_key).where(
                    Practice.address_key.is_in(sorted(keys))).run():
                self._remember_practice(p["address_key"], p["id"])
            self.looked_up |= keys
        for r in rows:
            r.fields["practice"] = self.practice_at.get(r.fields.get("address_key", ""))

    # Deactivations ----------------------------------------------------------------------------
    async def deactivations(self, rows: list[DeactivationRow]) -> None:
        npis = [r.npi for r in rows]
        active = {c["npi"] for c in await Clinician.select(Clinician.npi).where(
            Clinician.npi.is_in(npis) & (Clinician.active == True)).run()}  # noqa: E712
        await bulk.update_where(
            Clinician, ["active", "deactivated_on", "updated_at"], "npi",
            [(False, r.on, self.now, r.npi) for r in rows if r.npi in active],
        )
        await bulk.update_where(
            Practice, ["active", "updated_at"], "organization_npi", [(False, self.now, r.npi) for r in rows]
        )
        self.report.deactivated += len(active)

    # Clinicians ---------------------------------------------------------------------------------
    async def clinicians(self, rows: list[ClinicianRow]) -> None:
        npis = [r.npi for r in rows if r.npi]
        emails = [r.email for r in rows if r.email]
        fields = (Clinician.id, Clinician.npi, Clinician.email, Clinician.import_run, Clinician.active)
        by_npi = {c["npi"]: c for c in await Clinician.select(*fields).where(Clinician.npi.is_in(npis)).run()} if npis else {}
        by_email = (
            {c["email"]: c for c in await Clinician.select(*fields).where(
                Clinician.email.is_in(emails) & (Clinician.active == True)  # noqa: E712
            ).run()}
            if emails else {}
        )
        taken = await self._emails_taken_by_others(rows, by_npi)
        upserts: list[ClinicianRow] = []
        email_matches: list[tuple[int, ClinicianRow]] = []
        seen_npis: set[str] = set()
        seen_emails: dict[str, str | None] = {}
        for r in rows:
            by_this_npi = by_npi.get(r.npi) if r.npi else None
            by_this_email = by_email.get(r.email) if r.email else None
            if r.npi and (r.npi in seen_npis or (by_this_npi and by_this_npi["import_run"] == self.run)):
                self.report.reject(r.row, "NPI", f"NPI {r.npi} appears more than once in this file")
                continue
            if r.email and (
                (r.email in seen_emails and seen_emails[r.email] != r.npi)
                or (r.npi is None and by_this_email and by_this_email["import_run"] == self.run)
            ):
                self.report.reject(r.row, "Email", f"{r.email} appears more than once in this file")
                continue
            if by_this_email and (
                (by_this_npi and by_this_email["id"] != by_this_npi["id"])
                or (r.npi and by_this_email["npi"] not in (None, r.npi))
            ):
                await self._review(r, f"the email {r.email} belongs to the clinician with NPI {by_this_email['npi']}")
                continue
            if by_this_npi and by_this_npi["id"] in taken:
                await self._review(r, f"the NPI is active again, but its email {taken[by_this_npi['id']]} now "
                                      "belongs to another active clinician")
                continue
            if by_this_npi is None and by_this_email is None and not r.fields.get("last_name"):
                self.report.reject(r.row, "Last Name", "a new clinician needs a last name")
                continue
            if r.npi:
                seen_npis.add(r.npi)
            if r.email:
                seen_emails[r.email] = r.npi
            if by_this_npi is None and by_this_email is not None:
                email_matches.append((by_this_email["id"], r))
            else:
                upserts.append(r)
                if by_this_npi:
                    self.report.updated += 1
                else:
                    self.report.created += 1
        # Practices are resolved for the rows that will be written, not for those sent to review.
        if self.source_kind == "nppes":
            await self._link_by_location(upserts)
        else:
            await self._practices_for(upserts + [r for _, r in email_matches])
        await self._upsert(upserts)
        for clinician_id, r in email_matches:
            values = {k: v for k, v in self._row(r).items() if v not in (None, "") and k != "created_at"}
            if not values.get("do_not_contact"):
                values.pop("do_not_contact", None)
            await Clinician.update({getattr(Clinician, k): v for k, v in values.items()}).where(
                Clinician.id == clinician_id
            ).run()
            await self._tag(clinician_id, r.tags)
            self.report.updated += 1

    async def _emails_taken_by_others(self, rows: list[ClinicianRow], by_npi: dict) -> dict[int, str]:
        """Inactive clinicians this batch makes active again whose stored email another active
        clinician now has (id → email): writing them would break the uniqueness of emails."""
        waking = [by_npi[r.npi]["id"] for r in rows
                  if r.npi in by_npi and not by_npi[r.npi]["active"] and r.fields.get("active", True)]
        if not waking:
            return {}
        sleepers = {c["id"]: c["email"] for c in await Clinician.select(Clinician.id, Clinician.email).where(
            Clinician.id.is_in(waking) & Clinician.email.is_not_null()).run()}
        if not sleepers:
            return {}
        awake = {c["email"]: c["id"] for c in await Clinician.select(Clinician.id, Clinician.email).where(
            Clinician.email.is_in(list(set(sleepers.values()))) & (Clinician.active == True)).run()}  # noqa: E712
        return {cid: email for cid, email in sleepers.items() if awake.get(email, cid) != cid}

    def _row(self, r: ClinicianRow) -> dict[str, Any]:
        values = dict(r.fields)
        values["npi"] = r.npi
        if self.keep_blanks:
            values["email"] = r.email
        if "practice" in values and not self.source_kind == "nppes":
            values["practice"] = r.practice if isinstance(r.practice, int) else None
        values.update(source=self.source_kind, import_run=self.run, created_at=self.now, updated_at=self.now)
        return values

    async def _upsert(self, rows: list[ClinicianRow]) -> None:
        if not rows:
            return
        prepared = [self._row(r) for r in rows]
        columns = list(prepared[0])
        defaults = {"role": "other", "do_not_contact": False}
        values = [tuple(row.get(c) if row.get(c) is not None or c not in defaults else defaults[c] for c in columns)
                  for row in prepared]
        with_npi = [v for v, r in zip(values, rows) if r.npi]
        without_npi = [v for v, r in zip(values, rows) if not r.npi]
        update = {c: _update_expression(c, self.keep_blanks) for c in columns if c not in ("npi", "created_at")}
        await bulk.upsert(Clinician, columns, with_npi, conflict="npi", update=update)
        await bulk.upsert(Clinician, columns, without_npi)
        tagged = [r for r in rows if r.tags]
        if tagged:
            ids = await self._ids(tagged)
            for r in tagged:
                await self._tag(ids[r.npi or r.email], r.tags)

    async def _ids(self, rows: list[ClinicianRow]) -> dict[str, int]:
        npis = [r.npi for r in rows if r.npi]
        emails = [r.email for r in rows if not r.npi and r.email]
        found: dict[str, int] = {}
        if npis:
            found.update({c["npi"]: c["id"] for c in await Clinician.select(Clinician.id, Clinician.npi).where(
                Clinician.npi.is_in(npis)).run()})
        if emails:
            found.update({c["email"]: c["id"] for c in await Clinician.select(Clinician.id, Clinician.email).where(
                Clinician.email.is_in(emails) & (Clinician.active == True)).run()})  # noqa: E712
        return found

    async def _tag(self, clinician_id: int, tags: list[str] | None) -> None:
        if not tags:
            return
        existing = {t["tag"] for t in await ClinicianTag.select(ClinicianTag.tag).where(
            ClinicianTag.clinician == clinician_id).run()}
        new = [ClinicianTag(clinician=clinician_id, tag=tag) for tag in tags if tag not in existing]
        if new:
            await ClinicianTag.insert(*new).run()

    async def _practices_for(self, rows: list[ClinicianRow]) -> None:
        """Resolve practice names from a plain CSV to ids, creating the missing ones."""
        named = [r for r in rows if isinstance(r.practice, PracticeRef)]
        if not named:
            return
        # Same name (whatever its case) and same 5-digit ZIP; a row or practice without a ZIP
        # matches the name alone. A same-named practice elsewhere is another practice.
        names = sorted({r.practice.name.lower() for r in named})
        places: dict[str, list[tuple[str, int]]] = {}
        marks = ", ".join(["{}"] * len(names))
        for p in await Practice.select(Practice.id, Practice.name, Practice.postal_code).where(
                WhereRaw(f"lower(name) IN ({marks})", *names)).order_by(Practice.id).run():
            places.setdefault(p["name"].lower(), []).append((p["postal_code"][:5], p["id"]))
        for r in named:
            ref = r.practice
            zip5 = ref.fields.get("postal_code", "")[:5]
            candidates = places.get(ref.name.lower(), [])
            practice_id = next((pid for z, pid in candidates if z == zip5), None) or next(
                (pid for z, pid in candidates if not z or not zip5), None)
            if practice_id is None:
                practice = Practice(name=ref.name, source=self.source_kind, import_run=self.run, **ref.fields)
                await practice.save().run()
                practice_id = practice.id
                places.setdefault(ref.name.lower(), []).append((zip5, practice_id))
                self.report.practices_created += 1
            r.practice = practice_id  # type: ignore[assignment]

    async def _review(self, r: ClinicianRow, reason: str) -> None:
        data = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in r.fields.items()
                if not isinstance(v, PracticeRef)}
        data.update(npi=r.npi, email=r.email)
        self.report.sent_to_review += 1
        if await ImportReview.exists().where(  # the same conflict from a re-import is already waiting
                (ImportReview.resolved == False) & (ImportReview.reason == reason)  # noqa: E712
                & (ImportReview.source == self.report.source)).run():
            return
        await ImportReview.insert(
            ImportReview(kind="clinician_email_conflict", source=self.report.source, row_number=r.row,
                         reason=reason, data=data)
        ).run()

    async def link_practices(self) -> None:
        """Link this run's clinicians still unlinked (their organisation came later in the file)
        to the practice at their practice location."""
        # UPDATE … FROM is set-based on both PostgreSQL and SQLite (3.33+): one join, not a
        # subquery per clinician. PostgreSQL plans that join well only with fresh statistics.
        if Clinician._meta.db.engine_type == "postgres":
            await Clinician.raw("ANALYZE clinician, practice").run()
        await Clinician.raw(
            "UPDATE clinician SET practice = places.practice_id "
            "FROM (SELECT address_key, MIN(id) AS practice_id FROM practice "
            "      WHERE address_key <> '' GROUP BY address_key) AS places "
            "WHERE clinician.address_key = places.address_key "
            "AND clinician.import_run = {} AND clinician.practice IS NULL",
            self.run,
        ).run()


def _group_by(items: Iterable, key: Callable) -> dict:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


# ------------------------------------------------------------------------------------------------
# The import


async def import_clinicians(
    path: str | Path,
    *,
    filters: Filters = Filters(),
    dry_run: bool = False,
    display_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import an NPPES bulk file or a plain CSV of clinicians. InputRefused when the file as a whole
    cannot be used (nothing is written then); row problems are in the report."""
    source = open_csv(path, display_name=display_name)
    try:
        return await _import(source, filters, dry_run, progress)
    finally:
        source.close()


async def _import(source: CsvFile, filters: Filters, dry_run: bool, progress) -> ImportReport:
    report = ImportReport(kind="Clinician", source=source.name, dry_run=dry_run)
    taxonomy = {t["code"]: t["referring_role"] for t in await Taxonomy.select(Taxonomy.code, Taxonomy.referring_role).run()}
    if is_nppes(source.header):
        if not taxonomy:
            raise InputRefused("no taxonomy codes are loaded: run `liaison import taxonomy NUCC_FILE` first")
        parser: NppesParser | PlainCsvParser = NppesParser(source.header, filters, taxonomy)
        report.file_format = f"NPPES, {len(source.header)} columns"
        kind = "nppes"
    else:
        if filters.states or filters.taxonomy_prefixes:
            raise InputRefused("--state and --taxonomy apply to NPPES files only")
        owners = {u["email"]: u["id"] for u in await User.select(User.id, User.email).where(User.active == True).run()}  # noqa: E712
        parser = PlainCsvParser(source.header, taxonomy, owners, source.name)
        report.file_format = f"CSV ({_delimiter_name(source.delimiter)}, {source.encoding})"
        report.ignored_columns = parser.ignored
        kind = "csv"
    writer = Writer(report, run=secrets.token_hex(8), source_kind=kind)
    try:
        async with atomic():
            if Clinician._meta.db.engine_type == "postgres":
                # One import at a time (SQLite's IMMEDIATE transaction already does this): two at
                # once would each create the practices the other cannot see yet.
                await Clinician.raw("SELECT pg_advisory_xact_lock(hashtext('liaison-import'))").run()
                # The lookups are prepared statements; a generic plan made while the table was
                # small (a sequential scan) would be reused as it grows: quadratic time.
                await Clinician.raw("SET LOCAL plan_cache_mode = force_custom_plan").run()
            clinicians: list[ClinicianRow] = []
            organizations: list[OrganizationRow] = []
            deactivations: list[DeactivationRow] = []
            for row_number, values in source.rows():
                report.rows_read += 1
                try:
                    parsed = parser.parse(row_number, values)
                except RowRejected as error:
                    report.reject(row_number, error.column, error.reason)
                    continue
                if parsed is None:
                    report.filtered_out += 1
                elif isinstance(parsed, ClinicianRow):
                    clinicians.append(parsed)
                elif isinstance(parsed, OrganizationRow):
                    organizations.append(parsed)
                else:
                    deactivations.append(parsed)
                    report.deactivations_read += 1
                if len(clinicians) + len(organizations) + len(deactivations) >= BATCH:
                    await _flush(writer, clinicians, organizations, deactivations)
                    if progress:
                        progress(source.bytes_read())
            await _flush(writer, clinicians, organizations, deactivations)
            await writer.link_practices()
            # Fresh statistics, so that the roster's queries are planned for the new size.
            await Clinician.raw("ANALYZE").run()
            report.rejected.extend(source.errors)
            if report.rows_read == 0:
                raise InputRefused(f"{source.name}: the file has a header but no rows")
            if progress:
                progress(source.size)
            if dry_run:
                raise DryRun()
    except DryRun:
        pass
    report.rejected.sort(key=lambda e: e.row)
    return report


async def _flush(writer: Writer, clinicians: list, organizations: list, deactivations: list) -> None:
    # Organisations first, so that clinicians in the same batch can link to them.
    if organizations:
        await writer.organizations(organizations)
    if clinicians:
        await writer.clinicians(clinicians)
    if deactivations:
        await writer.deactivations(deactivations)
    clinicians.clear()
    organizations.clear()
    deactivations.clear()


def _delimiter_name(delimiter: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]
