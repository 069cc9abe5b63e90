"""The JSON API of the crm app under /api/v1 (session or API token)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, Request, get

from crm.access import current_user, signed_in


@dataclass
class Me:
    id: int
    email: str
    name: str
    role: str


class MeController(Controller):
    path = "/api/v1/me"
    opt = signed_in()
    tags = ["account"]

    @get("/", summary="The signed-in user")
    async def me(self, request: Request) -> Me:
        user = current_user(request)
        return Me(id=user.id, email=user.email, name=user.name, role=user.role)
