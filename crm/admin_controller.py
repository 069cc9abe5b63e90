"""Administration: users and roles, and the audit trail."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from crm import users
from crm.access import allow
from crm.forms import ObjectId, OptionalId, request_actor
from crm.roles import Role
from crm.tables import AuditEvent
from crm.text import single_line

AUDIT_PAGE_SIZE = 100


class UserAdminController(Controller):
    path = "/admin/users"
    opt = allow(Role.admin)
    include_in_schema = False

    @get("/")
    async def index(self, after: FromQuery[str | None] = None, created: FromQuery[str | None] = None) -> Template:
        page = await users.list_users(after_email=single_line(after or "") or None, limit=users.PAGE_SIZE + 1)
        more = len(page) > users.PAGE_SIZE
        page = page[: users.PAGE_SIZE]
        return Template(
            template_name="crm/users.html",
            context={
                "users": page,
                "next_after": page[-1].email if more else None,
                "created": created is not None,
            },
        )

    @get("/new")
    async def new(self) -> Template:
        return self._form(None, {}, {})

    @post("/new")
    async def create(self, request: Request) -> Template | Redirect:
        form = await request.form()
        values = {k: str(form.get(k, "")) for k in ("email", "name", "role", "password")}
        try:
            await users.create_user(
                values["email"], role=values["role"], password=values["password"],
                name=values["name"], actor=request_actor(request),
            )
        except users.UserError as error:
            values.pop("password")
            return self._form(None, values, {error.field: error.message}, status=422)
        return Redirect("/admin/users?created=1", status_code=303)

    @get("/{user_id:int}")
    async def edit(self, user_id: ObjectId) -> Template:
        user = await users.get_user(user_id)
        if user is None:
            raise NotFoundException("No such user.")
        return self._form(user, {}, {})

    @post("/{user_id:int}")
    async def update(self, request: Request, user_id: ObjectId) -> Template | Redirect:
        user = await users.get_user(user_id)
        if user is None:
            raise NotFoundException("No such user.")
        form = await request.form()
        values = {
            "name": str(form.get("name", "")),
            "role": str(form.get("role", "")),
            "active": form.get("active") == "on",
        }
        try:
            await users.update_user(
                user_id, actor=request_actor(request),
                new_password=str(form.get("password", "")) or None, **values,
            )
        except users.UserError as error:
            return self._form(user, values, {error.field: error.message}, status=422)
        return Redirect("/admin/users", status_code=303)

    @staticmethod
    def _form(user, values: dict, errors: dict, status: int = 200) -> Template:
        return Template(
            template_name="crm/user_form.html",
            context={"user": user, "values": values, "errors": errors, "roles": list(Role)},
            status_code=status,
        )


class AuditController(Controller):
    path = "/admin/audit"
    opt = allow(Role.admin)
    include_in_schema = False

    @get("/")
    async def index(self, before: OptionalId = None) -> Template:
        """Newest first, paged by id (key-based: no OFFSET scans)."""
        query = AuditEvent.select().order_by(AuditEvent.id, ascending=False).limit(AUDIT_PAGE_SIZE + 1)
        if before is not None:
            query = query.where(AuditEvent.id < before)
        rows = await query.run()
        more = len(rows) > AUDIT_PAGE_SIZE
        rows = rows[:AUDIT_PAGE_SIZE]
        return Template(
            template_name="crm/audit.html",
            context={"events": rows, "next_before": rows[-1]["id"] if more else None},
        )
