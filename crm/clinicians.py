"""Creating and editing clinicians by hand, with the same rules as the importers.

Who may edit: managers and administrators edit anyone; a liaison edits the clinicians they own
(and owns the ones they create). Only managers assign owners, override the referring role, bulk
edit, or clear do-not-contact set by someone else.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from crm.errors import FieldError
from crm import audit
from crm.audit import Actor
from crm.clinician_import import RowRejected, address_key, postal_code, us_state
from crm.db import atomic
from crm.npi import NpiError, normalise_npi
from crm.referring_roles import ReferringRole
from crm.roles import Role
from crm.tables import Clinician, ClinicianTag, Taxonomy, User
from crm.text import single_line
from crm.users import EMAIL_PATTERN

TEXT_FIELDS = ("first_name", "middle_name", "last_name", "credential", "phone", "fax", "address_line1",
               "address_line2", "city", "consent_source")
LIMITS = {"first_name": 100, "middle_name": 100, "last_name": 100, "credential": 60, "phone": 30, "fax": 30,
          "address_line1": 200, "address_line2": 200, "city": 100, "consent_source": 100}
MANAGERS = ("manager", "admin")
BULK_ACTIONS = ("assign_owner", "add_tag", "set_tier")


class ClinicianError(FieldError):
    pass


def may_edit(user: User, clinician: dict[str, Any] | Clinician) -> bool:
    owner = clinician["owner"] if isinstance(clinician, dict) else clinician.owner
    return user.role in MANAGERS or (user.role == Role.liaison.value and owner == user.id)


def check_field(name: str, raw: str) -> tuple[Any, str | None]:
    """The stored value for one form field, and the problem with it (None when fine)."""
    value = single_line(raw or "")
    try:
        if name in TEXT_FIELDS:
            if len(value) > LIMITS[name]:
                return value, f"Use at most {LIMITS[name]} characters."
            return value, None
        if name == "npi":
            return (normalise_npi(value) if value else None), None
        if name == "email":
            email = value.lower()
            if email and (len(email) > 320 or not EMAIL_PATTERN.match(email)):
                return value, "Enter an email address such as name@example.org."
            return email or None, None
        if name == "state":
            return us_state(value, "state", strict=True), None
        if name == "postal_code":
            return postal_code(value, "postal_code"), None
        if name == "tier":
            tier = value.upper()
            if tier and tier not in ("A", "B", "C"):
                return value, "Tier is A, B or C."
            return tier or None, None
        if name == "taxonomy_code":
            code = value.upper()
            if code and not re.fullmatch(r"[0-9A-Z]{9}X", code):
                return value, "A taxonomy code has 10 characters and ends in X."
            return code or None, None
        if name == "role_override":
            if value and value not in ReferringRole._value2member_map_:
                return value, "Choose a referring role."
            return value or None, None
        if name == "tags":
            tags = sorted({t.strip().lower()[:50] for t in re.split(r"[;,]", value) if t.strip()})
            return tags, None
    except NpiError as error:
        return value, str(error)
    except RowRejected as error:
        return value, error.reason[0].upper() + error.reason[1:] + "."
    return value, None


async def _taxonomy_role(code: str | None) -> str:
    if not code:
        return ReferringRole.other.value
    row = await Taxonomy.select(Taxonomy.referring_role).where(Taxonomy.code == code).first().run()
    if row is None:
        raise ClinicianError("taxonomy_code", f"Unknown taxonomy code {code} (import the NUCC code set).")
    return row["referring_role"]


def _snapshot(c: Clinician) -> dict[str, Any]:
    return {
        "npi": c.npi, "first_name": c.first_name, "last_name": c.last_name, "email": c.email, "tier": c.tier,
        "owner": c.owner, "role": c.role, "role_override": c.role_override, "do_not_contact": c.do_not_contact,
        "taxonomy_code": c.taxonomy_code, "city": c.city, "state": c.state, "postal_code": c.postal_code,
    }


async def save_clinician(
    form: dict[str, str], *, user: User, actor: Actor, clinician_id: int | None = None
) -> Clinician:
    """Create (``clinician_id`` None) or update a clinician from form values; only the fields
    present change. ClinicianError names the first field that is wrong; fields a user may not
    change are ignored."""
    manager = user.role in MANAGERS
    values: dict[str, Any] = {}
    for name in (*TEXT_FIELDS, "npi", "email", "state", "postal_code", "tier", "taxonomy_code", "tags"):
        if name in form:
            value, problem = check_field(name, form[name])
            if problem:
                raise ClinicianError(name, problem)
            values[name] = value
    if "do_not_contact" in form:
        values["do_not_contact"] = str(form["do_not_contact"]).lower() in ("on", "true", "yes", "1")
    if manager and "role_override" in form:
        value, problem = check_field("role_override", form["role_override"])
        if problem:
            raise ClinicianError("role_override", problem)
        values["role_override"] = value
    if manager and "owner" in form:
        owner = single_line(form["owner"])
        if owner and not (owner.isdigit() and await User.exists().where(
                (User.id == int(owner)) & (User.active == True)).run()):  # noqa: E712
            raise ClinicianError("owner", "Choose an active user.")
        values["owner"] = int(owner) if owner else None
    tags = values.pop("tags", None)
    async with atomic():
        existing = None
        if clinician_id is not None:
            existing = await Clinician.objects().where(Clinician.id == clinician_id).first().run()
            if existing is None:
                raise ClinicianError("id", "No such clinician.")
            if not may_edit(user, existing):
                raise PermissionError("You may edit the clinicians you own; ask a manager for this one.")
            if existing.do_not_contact and values.get("do_not_contact") is False and not manager:
                raise ClinicianError("do_not_contact", "Only a manager can clear do-not-contact.")
        if not values.get("last_name", existing.last_name if existing else ""):
            raise ClinicianError("last_name", "A clinician needs a last name.")
        await _check_unique(values, clinician_id)
        derived = await _taxonomy_role(values.get("taxonomy_code", existing.taxonomy_code if existing else None))
        override = values.get("role_override", existing.role_override if existing else None)
        values["role"] = override or derived
        if "postal_code" in values or "address_line1" in values:
            line1 = values.get("address_line1", existing.address_line1 if existing else "")
            postal = values.get("postal_code", existing.postal_code if existing else "")
            values["address_key"] = address_key(line1, postal)
        values["updated_at"] = datetime.now(timezone.utc)
        if existing is None:
            if not manager:
                values["owner"] = user.id  # a liaison owns the clinicians they add
            clinician = Clinician(source="manual", **values)
            await clinician.save().run()
            before = None
        else:
            before = _snapshot(existing)
            for name, value in values.items():
                setattr(existing, name, value)
            await existing.save([getattr(Clinician, name) for name in values]).run()
            clinician = existing
        if tags is not None:
            await ClinicianTag.delete().where(ClinicianTag.clinician == clinician.id).run()
            if tags:
                await ClinicianTag.insert(*[ClinicianTag(clinician=clinician.id, tag=t) for t in tags]).run()
        await audit.record(
            "clinician.update" if before else "clinician.create", actor=actor, object_type="clinician",
            object_id=clinician.id, before=before, after={**_snapshot(clinician), "tags": tags},
        )
    return clinician


async def _check_unique(values: dict[str, Any], clinician_id: int | None) -> None:
    if values.get("npi"):
        query = Clinician.exists().where(Clinician.npi == values["npi"])
        if clinician_id is not None:
            query = query.where(Clinician.id != clinician_id)
        if await query.run():
            raise ClinicianError("npi", f"Another clinician has the NPI {values['npi']}.")
    if values.get("email"):
        query = Clinician.exists().where((Clinician.email == values["email"]) & (Clinician.active == True))  # noqa: E712
        if clinician_id is not None:
            query = query.where(Clinician.id != clinician_id)
        if await query.run():
            raise ClinicianError("email", f"Another active clinician has the email {values['email']}.")


async def bulk_update(where, *, action: str, value: str, actor: Actor, limit: int = 50_000) -> int:
    """Apply one change to every clinician matching ``where`` (a roster condition); returns how
    many. Actions: assign_owner (a user id, or '' for nobody), add_tag, set_tier (A, B, C or '')."""
    if action not in BULK_ACTIONS:
        raise ClinicianError("action", f"choose one of: {', '.join(BULK_ACTIONS)}")
    value = single_line(value or "")
    query = Clinician.select(Clinician.id).limit(limit + 1)
    if where is not None:
        query = query.where(where)
    async with atomic():
        ids = [row["id"] for row in await query.run()]
        if len(ids) > limit:
            raise ClinicianError("action", f"narrow the filters: at most {limit} clinicians at a time")
        if not ids:
            return 0
        now = datetime.now(timezone.utc)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            if action == "assign_owner":
                if value and not (value.isdigit() and await User.exists().where(
                        (User.id == int(value)) & (User.active == True)).run()):  # noqa: E712
                    raise ClinicianError("value", "Choose an active user.")
                await Clinician.update({Clinician.owner: int(value) if value else None, Clinician.updated_at: now}).where(
                    Clinician.id.is_in(chunk)).run()
            elif action == "set_tier":
                tier, problem = check_field("tier", value)
                if problem:
                    raise ClinicianError("value", problem)
                await Clinician.update({Clinician.tier: tier, Clinician.updated_at: now}).where(
                    Clinician.id.is_in(chunk)).run()
            else:
                tag = value.lower()[:50]
                if not tag:
                    raise ClinicianError("value", "Give the tag to add.")
                tagged = {row["clinician"] for row in await ClinicianTag.select(ClinicianTag.clinician).where(
                    ClinicianTag.clinician.is_in(chunk) & (ClinicianTag.tag == tag)).run()}
                fresh = [ClinicianTag(clinician=i, tag=tag) for i in chunk if i not in tagged]
                if fresh:
                    await ClinicianTag.insert(*fresh).run()
        await audit.record("clinician.bulk", actor=actor, object_type="clinician", object_id=f"{len(ids)} rows",
                           after={"action": action, "value": value, "count": len(ids)})
    return len(ids)
