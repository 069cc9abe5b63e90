"""The roster of referring clinicians: filters evaluated in SQL, key-based pages, exports.

The same ``RosterFilter`` drives the clinician list, saved segments, exports and the JSON API, so
a segment is always the list a person saw when they saved it, evaluated afresh each time.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, AsyncIterator, Mapping

from piccolo.columns.combination import Where
from piccolo.query import OrderByRaw

from crm.errors import FieldError
from crm.referring_roles import ReferringRole
from crm.tables import Clinician, ClinicianTag, Practice, Taxonomy
from crm.text import single_line

PAGE_SIZE = 50
SORTS = {
    "name": (Clinician.last_name, True),
    "city": (Clinician.city, True),
    "updated": (Clinician.updated_at, False),
}
STATUSES = ("active", "inactive", "all")


class FilterError(FieldError):
    pass


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).split(",")
    return [single_line(str(item)) for item in items if single_line(str(item))]


@dataclass(frozen=True)
class RosterFilter:
    """What to show. Empty values mean "any"."""

    q: str = ""
    role: tuple[str, ...] = ()
    taxonomy: tuple[str, ...] = ()  # NUCC codes or code prefixes
    group: str = ""  # NUCC grouping, e.g. "Allopathic & Osteopathic Physicians"
    state: str = ""
    city: str = ""
    zip: str = ""  # a ZIP prefix
    owner: str = ""  # "me", "none" or a user id
    tier: str = ""
    tag: str = ""
    dnc: str = ""  # "yes" (do-not-contact only), "no" (contactable only) or ""
    status: str = "active"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, strict: bool = False) -> RosterFilter:
        """Build and check a filter. ``strict`` refuses unknown fields (saved segments, the API);
        pages ignore parameters that are not filters (paging, sorting)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if strict and unknown:
            raise FilterError(unknown[0], f"unknown filter field {unknown[0]!r} (known: {', '.join(sorted(names))})")

        def one(name: str) -> str:
            values = _list(data.get(name))
            return values[0] if values else ""

        roles = tuple(_list(data.get("role")))
        known_roles = {r.value for r in ReferringRole}
        for role in roles:
            if role not in known_roles:
                raise FilterError("role", f"unknown role {role!r} (use one of: {', '.join(sorted(known_roles))})")
        taxonomy = tuple(code.upper() for code in _list(data.get("taxonomy")))
        for code in taxonomy:
            if not re.fullmatch(r"[0-9A-Z]{1,10}", code):
                raise FilterError("taxonomy", f"{code!r} is not a taxonomy code or code prefix")
        state = one("state").upper()
        if state and not re.fullmatch(r"[A-Z]{2}", state):
            raise FilterError("state", f"{state!r} is not a two-letter state code")
        zip_prefix = one("zip")
        if zip_prefix and not re.fullmatch(r"\d{1,5}", zip_prefix):
            raise FilterError("zip", f"{zip_prefix!r} is not the start of a ZIP code (1 to 5 digits)")
        owner = one("owner").lower()
        if owner and owner not in ("me", "none") and not re.fullmatch(r"\d{1,9}", owner):
            raise FilterError("owner", f"{owner!r} is not 'me', 'none' or a user id")
        tier = one("tier").upper()
        if tier and tier not in ("A", "B", "C"):
            raise FilterError("tier", f"{tier!r} is not A, B or C")
        dnc = one("dnc").lower()
        if dnc not in ("", "yes", "no"):
            raise FilterError("dnc", f"{dnc!r} is not yes or no")
        status = one("status").lower() or "active"
        if status not in STATUSES:
            raise FilterError("status", f"{status!r} is not one of: {', '.join(STATUSES)}")
        return cls(
            q=one("q")[:100], role=roles, taxonomy=taxonomy, group=one("group")[:200], state=state,
            city=one("city")[:100], zip=zip_prefix, owner=owner, tier=tier, tag=one("tag").lower()[:50],
            dnc=dnc, status=status,
        )

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from "any", as saved in a segment."""
        default = RosterFilter()
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()
            if v != getattr(default, k)
        }

    def is_empty(self) -> bool:
        return not self.to_dict()

    def where(self, viewer_id: int | None) -> Where | None:
        """The SQL condition; ``viewer_id`` resolves ``owner=me``."""
        conditions = []
        if self.status == "active":
            conditions.append(Clinician.active == True)  # noqa: E712
        elif self.status == "inactive":
            conditions.append(Clinician.active == False)  # noqa: E712
        for token in self.q.replace(",", " ").split():
            like = escape_like(token)
            matches = (
                contains(Clinician.last_name, f"{like}%")
                | contains(Clinician.first_name, f"{like}%")
                | contains(Clinician.email, f"{like}%")
                | Clinician.practice.is_in(
                    Practice.select(Practice.id).where(contains(Practice.name, f"%{like}%"))
                )
            )
            if token.isdigit():
                matches = matches | Clinician.npi.like(f"{like}%")
            conditions.append(matches)
        if self.role:
            conditions.append(Clinician.role.is_in(list(self.role)))
        if self.taxonomy:
            exact = [code for code in self.taxonomy if len(code) == 10]
            prefixes = [code for code in self.taxonomy if len(code) < 10]
            options = []
            if exact:
                options.append(Clinician.taxonomy_code.is_in(exact))
            options += [Clinician.taxonomy_code.like(f"{prefix}%") for prefix in prefixes]
            conditions.append(_any(options))
        if self.group:
            conditions.append(
                Clinician.taxonomy_code.is_in(Taxonomy.select(Taxonomy.code).where(Taxonomy.grouping == self.group))
            )
        if self.state:
            conditions.append(Clinician.state == self.state)
        if self.city:
            conditions.append(contains(Clinician.city, escape_like(self.city)))
        if self.zip:
            conditions.append(Clinician.postal_code.like(f"{self.zip}%"))
        if self.owner == "none":
            conditions.append(Clinician.owner.is_null())
        elif self.owner == "me":
            conditions.append(Clinician.owner == (viewer_id or -1))
        elif self.owner:
            conditions.append(Clinician.owner == int(self.owner))
        if self.tier:
            conditions.append(Clinician.tier == self.tier)
        if self.tag:
            conditions.append(
                Clinician.id.is_in(ClinicianTag.select(ClinicianTag.clinician).where(ClinicianTag.tag == self.tag))
            )
        if self.dnc == "yes":
            conditions.append(Clinician.do_not_contact == True)  # noqa: E712
        elif self.dnc == "no":
            conditions.append(Clinician.do_not_contact == False)  # noqa: E712
        return _all(conditions)


def contains(column, pattern: str) -> Where:
    """Case-insensitive LIKE: ILIKE on PostgreSQL; SQLite's LIKE already ignores ASCII case."""
    if Clinician._meta.db.engine_type == "sqlite":
        return column.like(pattern)
    return column.ilike(pattern)


def escape_like(value: str) -> str:
    # Piccolo's LIKE has no ESCAPE clause: a typed % is dropped; a typed _ stays a one-character
    # wildcard, which still matches the underscore of first_last@example.org.
    return value.replace("\\", "").replace("%", "").strip()


def _any(conditions: list):
    result = conditions[0]
    for condition in conditions[1:]:
        result = result | condition
    return result


def _all(conditions: list):
    if not conditions:
        return None
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


# ------------------------------------------------------------------------------------------------
# Pages


LIST_COLUMNS = (
    Clinician.id, Clinician.npi, Clinician.first_name, Clinician.last_name, Clinician.credential,
    Clinician.role, Clinician.taxonomy_code, Clinician.city, Clinician.state, Clinician.postal_code,
    Clinician.email, Clinician.tier, Clinician.do_not_contact, Clinician.active, Clinician.updated_at,
    Clinician.practice, Clinician.practice._.name.as_alias("practice_name"),
    Clinician.owner, Clinician.owner._.name.as_alias("owner_name"),
    Clinician.owner._.email.as_alias("owner_email"),
)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    sort: str
    specialties: dict[str, str] = field(default_factory=dict)


def encode_cursor(value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(row_id, int) or not 0 < row_id < 2**31:
            raise ValueError
        if sort == "updated":
            value = datetime.fromisoformat(value)
        elif not isinstance(value, str) or value != single_line(value):
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise FilterError("after", "the page link is damaged; start again from the first page") from None
    return value, row_id


async def page(
    roster_filter: RosterFilter,
    *,
    viewer_id: int | None,
    sort: str = "name",
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of clinicians, ordered by ``sort`` then id, starting after the ``after`` cursor."""
    if sort not in SORTS:
        raise FilterError("sort", f"{sort!r} is not one of: {', '.join(SORTS)}")
    column, ascending = SORTS[sort]
    query = Clinician.select(*LIST_COLUMNS).limit(limit + 1)
    if (roster_filter.q or roster_filter.zip or roster_filter.city) and Clinician._meta.db.engine_type == "sqlite":
        # LIKE filters (text search, ZIP prefix, city) match anywhere in the table and use no
        # index: one pass and a sort of the matches beats
        # walking the sort column's index and visiting rows in its order (4x on 100,000
        # clinicians); the unary + tells SQLite's planner not to use that index. Other filters
        # are left to the planner and the statistics each import refreshes.
        raw = OrderByRaw(f'+"clinician"."{column._meta.db_column_name}"')
        query = query.order_by(raw, ascending=ascending)
    else:
        query = query.order_by(column, ascending=ascending)
    query = query.order_by(Clinician.id, ascending=ascending)
    condition = roster_filter.where(viewer_id)
    if after:
        value, row_id = decode_cursor(after, sort)
        if ascending:
            keyset = (column > value) | ((column == value) & (Clinician.id > row_id))
        else:
            keyset = (column < value) | ((column == value) & (Clinician.id < row_id))
        condition = keyset if condition is None else condition & keyset
    if condition is not None:
        query = query.where(condition)
    rows = await query.run()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(last[column._meta.name], last["id"])
    return Page(rows=rows, next_cursor=next_cursor, sort=sort, specialties=await specialty_names(rows))


async def specialty_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    codes = sorted({row["taxonomy_code"] for row in rows if row.get("taxonomy_code")})
    if not codes:
        return {}
    found = await Taxonomy.select(Taxonomy.code, Taxonomy.display_name).where(Taxonomy.code.is_in(codes)).run()
    return {t["code"]: t["display_name"] for t in found}


async def count(roster_filter: RosterFilter, *, viewer_id: int | None) -> int:
    query = Clinician.count()
    condition = roster_filter.where(viewer_id)
    if condition is not None:
        query = query.where(condition)
    return await query.run()


async def all_rows(roster_filter: RosterFilter, *, viewer_id: int | None, batch: int = 1000) -> AsyncIterator[dict]:
    """Every matching clinician, fetched a page at a time (for exports)."""
    cursor = None
    while True:
        result = await page(roster_filter, viewer_id=viewer_id, after=cursor, limit=batch)
        for row in result.rows:
            yield {**row, "specialty": result.specialties.get(row.get("taxonomy_code") or "", "")}
        if result.next_cursor is None:
            return
        cursor = result.next_cursor
