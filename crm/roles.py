"""The four roles of Liaison's users and what each may do.

Admins pass every role check: they run the system. The other roles are deliberately separate.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    liaison = "liaison"
    marketer = "marketer"
    manager = "manager"
    admin = "admin"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.liaison: "Outreach liaison",
    Role.marketer: "Marketer",
    Role.manager: "Manager",
    Role.admin: "Administrator",
}

ALL_ROLES: frozenset[Role] = frozenset(Role)


def parse_role(value: str) -> Role:
    """The Role named by ``value`` (case-insensitive); ValueError names the accepted ones."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        accepted = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role {value!r} (use one of: {accepted})") from None


def role_allows(role: str | Role, allowed: frozenset[Role]) -> bool:
    role = Role(role)
    return role is Role.admin or role in allowed
