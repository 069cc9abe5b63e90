"""Campaign pages: the list, the builder (audience, cadence with its next send times, send window,
frequency cap, holdout), the campaign page (schedule, funnel, occurrences, sends), the step editor
with a live preview and a test send, the outbox and the suppression list."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Mapping
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Redirect, Template

from campaigns import service, suppressions
from campaigns.cadence import (
    KIND_LABELS,
    KIND_SETTINGS,
    MONTH_NAMES,
    ORDINAL_NAMES,
    WEEKDAY_NAMES,
    CadenceError,
)
from campaigns.delivery import Batch, Message
from campaigns.rendering import MERGE_FIELDS, merge_values, sample_values
from campaigns.sending import SENT_STATES, audience_ids, cadence_of, window_of
from campaigns.tables import Campaign, CampaignStep, Occurrence, OutboxMessage, Send, Suppression
from crm.access import allow, current_user, signed_in
from crm.forms import ObjectId, request_actor, request_now
from crm.roles import Role
from crm.roster import escape_like
from crm.text import single_line
from crm.tables import Clinician, Segment

EDIT_ROLES = (Role.marketer, Role.manager)
TIME_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico",
)
FUNNEL = ("queued", "sent", "delivered", "opened", "clicked", "bounced", "dropped", "spam", "unsubscribed",
          "skipped", "failed", "review")
SEND_STATES = ("queued", "claimed", "sending") + SENT_STATES + ("skipped", "failed", "review")
PAGE = 100
Action = Annotated[str, PathParameter(max_length=20)]
PreviewKey = Annotated[str, PathParameter(max_length=40)]


# An email's HTML is shown in a sandboxed frame served with its own policy: emails carry inline
# styles (the app's policy forbids them), and nothing in an email may run script or load from us.
EMAIL_BODY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:; "
    "frame-ancestors 'self'; sandbox"
)
PREVIEW_SECONDS = 900


def email_body(html: str) -> Response:
    return Response(
        html, media_type="text/html",
        headers={"content-security-policy": EMAIL_BODY_POLICY, "x-frame-options": "SAMEORIGIN"},
    )


async def keep_preview(request: Request, html: str) -> str:
    """Keep a rendered preview briefly (in the shared store, so any web replica can serve it);
    returns the address its frame loads."""
    key = secrets.token_urlsafe(18)
    await request.app.stores.get("previews").set(key, html.encode("utf-8"), expires_in=PREVIEW_SECONDS)
    return f"/campaigns/preview-body/{key}"



def cadence_from_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The cadence fields that apply to the chosen kind (the form shows the fields of every kind)."""
    kind = str(form.get("cadence_kind") or "")
    data: dict[str, Any] = {"kind": kind}
    allowed = set(KIND_SETTINGS.get(kind, ()))
    if {"hour", "minute"} & allowed:
        data["time"] = str(form.get("cadence_time") or "")
    if kind == "quarterly" and str(form.get("cadence_day") or "").strip():
        allowed -= {"ordinal", "weekday"}
    elif kind == "quarterly":
        allowed -= {"day"}
    for name in sorted(allowed - {"hour", "minute"}):
        if name == "weekdays":
            data[name] = _all(form, "cadence_weekdays")
        else:
            data[name] = str(form.get(f"cadence_{name}") or "")
    return data


def _all(form: Any, name: str) -> list[str]:
    """Every value of a repeated field (checkboxes); none when it is absent."""
    if name not in form:
        return []
    return [str(v) for v in form.getall(name)] if hasattr(form, "getall") else [str(form[name])]


def campaign_from_form(form: Any) -> dict[str, Any]:
    return {
        "name": form.get("name", ""), "goal": form.get("goal", ""), "kind": form.get("kind", "recurring"),
        "segment": form.get("segment", ""), "time_zone": form.get("time_zone", ""),
        "cadence": cadence_from_form(form), "send_days": "".join(_all(form, "send_days")),
        "send_start_hour": form.get("send_start_hour", ""), "send_end_hour": form.get("send_end_hour", ""),
        "frequency_cap_count": form.get("frequency_cap_count", ""),
        "frequency_cap_days": form.get("frequency_cap_days", ""),
        "holdout_percent": form.get("holdout_percent", ""), "service_line": form.get("service_line", ""),
        "from_name": form.get("from_name", ""), "grace_hours": form.get("grace_hours", ""),
    }


def form_values(campaign: Campaign | None) -> dict[str, Any]:
    """What the builder shows for an existing campaign (or the defaults of a new one)."""
    if campaign is None:
        return {
            "name": "", "goal": "", "kind": "recurring", "segment": "", "time_zone": "America/New_York",
            "cadence": {"kind": "monthly_weekday", "ordinal": 1, "weekday": 2, "time": "09:00"},
            "send_days": "12345", "send_start_hour": 8, "send_end_hour": 17, "frequency_cap_count": 2,
            "frequency_cap_days": 14, "holdout_percent": 0, "service_line": "", "from_name": "", "grace_hours": 24,
        }
    cadence = cadence_of(campaign).to_dict()
    if "hour" in cadence:
        cadence["time"] = f"{cadence.pop('hour'):02d}:{cadence.pop('minute', 0):02d}"
    return {
        "name": campaign.name, "goal": campaign.goal, "kind": campaign.kind, "segment": campaign.segment or "",
        "time_zone": campaign.time_zone, "cadence": cadence, "send_days": campaign.send_days,
        "send_start_hour": campaign.send_start_hour, "send_end_hour": campaign.send_end_hour,
        "frequency_cap_count": campaign.frequency_cap_count, "frequency_cap_days": campaign.frequency_cap_days,
        "holdout_percent": campaign.holdout_percent, "service_line": campaign.service_line,
        "from_name": campaign.from_name, "grace_hours": campaign.grace_hours,
    }


def _shown_values(data: dict[str, Any]) -> dict[str, Any]:
    """Submitted values, as the builder shows them again next to an error."""
    shown = dict(data)
    shown["cadence"] = {k: v for k, v in data["cadence"].items()}
    return shown


def local_times(times: list[datetime], time_zone: str) -> list[dict[str, Any]]:
    zone = ZoneInfo(time_zone)
    return [{"utc": t, "local": t.astimezone(zone).strftime("%a %d %b %Y, %H:%M %Z")} for t in times]


async def _segments() -> list[dict[str, Any]]:
    return await Segment.select(Segment.id, Segment.name).order_by(Segment.name).limit(500).run()


async def _get(campaign_id: int) -> Campaign:
    campaign = await service.get_campaign(campaign_id)
    if campaign is None:
        raise NotFoundException("No such campaign.")
    return campaign


def _may_edit(request: Request) -> bool:
    return current_user(request).role in ("marketer", "manager", "admin")


class CampaignController(Controller):
    path = "/campaigns"
    opt = signed_in()
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        status = request.query_params.get("status") or ""
        query = Campaign.objects().order_by(Campaign.updated_at, ascending=False).limit(500)
        if status in service.STATUSES:
            query = query.where(Campaign.status == status)
        else:
            query = query.where(Campaign.status != "archived")
        campaigns = await query.run()
        names = {row["id"]: row["name"] for row in await _segments()}
        now = request_now(request)
        rows = []
        for campaign in campaigns:
            upcoming = service.upcoming(campaign, now, count=1) if campaign.status in ("scheduled", "active") else []
            rows.append({"c": campaign, "segment_name": names.get(campaign.segment), "describe": cadence_of(campaign).describe(),
                         "next": local_times(upcoming, campaign.time_zone)[0] if upcoming else None})
        return Template(
            template_name="campaigns/campaigns.html",
            context={"rows": rows, "status": status, "statuses": service.STATUSES, "may_edit": _may_edit(request),
                     "kinds": service.KINDS},
        )

    @get("/new", opt=allow(*EDIT_ROLES))
    async def new(self) -> Template:
        return await self._builder(None, form_values(None))

    @post("/new", opt=allow(*EDIT_ROLES))
    async def create(self, request: Request) -> Template | Redirect:
        data = campaign_from_form(await request.form())
        try:
            campaign = await service.save_campaign(data, actor=request_actor(request), now=request_now(request))
        except (service.CampaignError, CadenceError) as error:
            return await self._builder(None, _shown_values(data), errors={error.field: error.message}, status=422)
        return Redirect(f"/campaigns/{campaign.id}/steps/new", status_code=303)

    @get("/preview", opt=allow(*EDIT_ROLES))
    async def preview(self, request: Request) -> Template:
        """The next 10 send times and the audience for the builder's current values (htmx)."""
        data = campaign_from_form(request.query_params)
        context: dict[str, Any] = {"error": None, "preview": None}
        try:
            checked = service.CampaignInput.from_mapping({**data, "name": data["name"] or "preview"})
            preview = await service.preview(checked, request_now(request))
            context.update(
                preview=preview, times=local_times(preview.next_times, checked.time_zone),
                describe=cadence_of(checked).describe(), window=checked.window(),
            )
        except (service.CampaignError, CadenceError) as error:
            context["error"] = error.message
            context["error_field"] = error.field
        return Template(template_name="campaigns/_preview.html", context=context)

    @get("/{campaign_id:int}")
    async def show(self, request: Request, campaign_id: ObjectId) -> Template:
        return await self._page(request, campaign_id)

    async def _page(self, request: Request, campaign_id: int, error: str | None = None, status: int = 200) -> Template:
        campaign = await _get(campaign_id)
        now = request_now(request)
        steps = await service.steps_of(campaign_id)
        occurrences = await Occurrence.objects().where(Occurrence.campaign == campaign_id).order_by(
            Occurrence.scheduled_for, ascending=False
        ).limit(24).run()
        segment = await Segment.objects().where(Segment.id == campaign.segment).first().run() if campaign.segment else None
        preview = await service.preview(campaign, now, salt=campaign.holdout_salt)
        return Template(
            template_name="campaigns/campaign.html",
            context={
                "c": campaign, "steps": steps, "occurrences": occurrences, "segment": segment,
                "describe": cadence_of(campaign).describe(), "window": window_of(campaign),
                "times": local_times(service.upcoming(campaign, now), campaign.time_zone),
                "funnel": await service.funnel(campaign_id), "funnel_order": FUNNEL, "preview": preview,
                "may_edit": _may_edit(request), "kinds": service.KINDS,
                "postal_address": request.app.state["mail"].postal_address,
                "weekday_names": WEEKDAY_NAMES, "error": error,
                "done": None if error else request.query_params.get("done"),
            },
            status_code=status,
        )

    @get("/{campaign_id:int}/edit", opt=allow(*EDIT_ROLES))
    async def edit(self, campaign_id: ObjectId) -> Template:
        campaign = await _get(campaign_id)
        return await self._builder(campaign, form_values(campaign))

    @post("/{campaign_id:int}/edit", opt=allow(*EDIT_ROLES))
    async def update(self, request: Request, campaign_id: ObjectId) -> Template | Redirect:
        campaign = await _get(campaign_id)
        data = campaign_from_form(await request.form())
        try:
            await service.save_campaign(data, actor=request_actor(request), now=request_now(request), campaign_id=campaign_id)
        except (service.CampaignError, CadenceError) as error:
            return await self._builder(campaign, _shown_values(data), errors={error.field: error.message}, status=422)
        return Redirect(f"/campaigns/{campaign_id}?done=saved", status_code=303)

    @post("/{campaign_id:int}/{action:str}", opt=allow(*EDIT_ROLES))
    async def act(self, request: Request, campaign_id: ObjectId, action: Action) -> Redirect | Template:
        """schedule, pause, resume, complete, archive."""
        await _get(campaign_id)
        if action not in ("schedule", "pause", "resume", "complete", "archive"):
            raise NotFoundException("No such action.")
        try:
            await service.transition(
                campaign_id, action, actor=request_actor(request), now=request_now(request), config=request.app.state["mail"]
            )
        except service.CampaignError as error:
            return await self._page(request, campaign_id, error=error.message, status=422)
        worker = request.app.state.get("worker")
        if worker is not None:
            worker.wake()
        return Redirect(f"/campaigns/{campaign_id}?done={action}", status_code=303)

    @post("/{campaign_id:int}/review", opt=allow(Role.manager))
    async def settle_review(self, request: Request, campaign_id: ObjectId) -> Redirect | Template:
        """A manager settles the sends in review once SendGrid's activity shows their fate."""
        await _get(campaign_id)
        decision = str((await request.form()).get("decision", ""))
        try:
            await service.settle_review(campaign_id, decision, actor=request_actor(request), now=request_now(request))
        except service.CampaignError as error:
            return await self._page(request, campaign_id, error=error.message, status=422)
        return Redirect(f"/campaigns/{campaign_id}?done=review", status_code=303)

    @get("/{campaign_id:int}/sends")
    async def sends(self, request: Request, campaign_id: ObjectId) -> Template:
        """Who gets what and when: every send of the campaign, by state."""
        campaign = await _get(campaign_id)
        state = request.query_params.get("state") or ""
        after = request.query_params.get("after") or ""
        query = Send.select(
            Send.id, Send.state, Send.skip_reason, Send.due_at, Send.sent_at, Send.email, Send.last_error,
            Send.clinician.id.as_alias("clinician_id"), Send.clinician.first_name.as_alias("first_name"),
            Send.clinician.last_name.as_alias("last_name"), Send.occurrence.scheduled_for.as_alias("occurrence_at"),
        ).where(Send.campaign == campaign_id).order_by(Send.id).limit(PAGE + 1)
        if state in SEND_STATES:
            query = query.where(Send.state == state)
        if re.fullmatch(r"[0-9]{1,10}", after):
            query = query.where(Send.id > int(after))
        rows = await query.run()
        return Template(
            template_name="campaigns/sends.html",
            context={"c": campaign, "rows": rows[:PAGE], "next": rows[PAGE - 1]["id"] if len(rows) > PAGE else None,
                     "state": state, "states": SEND_STATES},
        )

    # -- steps ------------------------------------------------------------------------------------

    @get("/{campaign_id:int}/steps/new", opt=allow(*EDIT_ROLES))
    async def new_step(self, request: Request, campaign_id: ObjectId) -> Template:
        campaign = await _get(campaign_id)
        steps = await service.steps_of(campaign_id)
        if campaign.kind != "sequence" and steps:
            return await self._step_form(request, campaign, steps[0], _step_values(steps[0]))
        defaults = {"subject": "", "html_body": DEFAULT_BODY, "text_body": "",
                    "offset_days": (steps[-1].offset_days + 7) if steps else 0}
        return await self._step_form(request, campaign, None, defaults)

    @post("/{campaign_id:int}/steps/new", opt=allow(*EDIT_ROLES))
    async def create_step(self, request: Request, campaign_id: ObjectId) -> Template | Redirect:
        return await self._save_step(request, campaign_id, None)

    @get("/{campaign_id:int}/steps/{step_id:int}", opt=allow(*EDIT_ROLES))
    async def edit_step(self, request: Request, campaign_id: ObjectId, step_id: ObjectId) -> Template:
        campaign = await _get(campaign_id)
        step = await _step(campaign_id, step_id)
        return await self._step_form(request, campaign, step, _step_values(step))

    @post("/{campaign_id:int}/steps/{step_id:int}", opt=allow(*EDIT_ROLES))
    async def update_step(self, request: Request, campaign_id: ObjectId, step_id: ObjectId) -> Template | Redirect:
        await _step(campaign_id, step_id)
        return await self._save_step(request, campaign_id, step_id)

    @post("/{campaign_id:int}/steps/preview", opt=allow(*EDIT_ROLES))
    async def preview_step(self, request: Request, campaign_id: ObjectId) -> Template:
        """The email as the chosen clinician (or a sample clinician) would receive it (htmx)."""
        campaign = await _get(campaign_id)
        form = await request.form()
        context = await _render_preview(request, campaign, form)
        return Template(template_name="campaigns/_step_preview.html", context=context)

    @get("/preview-body/{key:str}", opt=allow(*EDIT_ROLES))
    async def preview_body(self, request: Request, key: PreviewKey) -> Response:
        html = await request.app.stores.get("previews").get(key)
        if html is None:
            raise NotFoundException("This preview has expired; change the email to see it again.")
        return email_body(html.decode("utf-8"))

    @post("/{campaign_id:int}/steps/test-send", opt=allow(*EDIT_ROLES))
    async def test_send(self, request: Request, campaign_id: ObjectId) -> Template:
        """Send the email as previewed to the signed-in user, marked as a test."""
        campaign = await _get(campaign_id)
        form = await request.form()
        context = await _render_preview(request, campaign, form)
        if context.get("error"):
            return Template(template_name="campaigns/_step_preview.html", context=context)
        user = current_user(request)
        mail = request.app.state["mail"]
        backend = request.app.state["backend"]
        template, values = context["template"], context["values"]
        message = Message(
            to_email=user.email, to_name=user.name, subject=f"[Test] {template.subject_for(values)}",
            substitutions=template.substitutions(values), custom_args={"test": "1", "campaign_id": str(campaign.id)},
        )
        batch = Batch(
            from_email=mail.from_email, from_name=campaign.from_name or mail.from_name, html=template.html_skeleton,
            text=template.text_skeleton, messages=[message], categories=["test-send"], reply_to=mail.reply_to or None,
        )
        result = await backend.send(batch)
        context["test_result"] = (
            f"Test email sent to {user.email}." if result.status == "accepted"
            else f"The test email could not be sent: {result.error}"
        )
        return Template(template_name="campaigns/_step_preview.html", context=context)

    async def _save_step(self, request: Request, campaign_id: int, step_id: int | None) -> Template | Redirect:
        campaign = await _get(campaign_id)
        form = await request.form()
        values = {k: str(form.get(k, "")) for k in ("subject", "html_body", "text_body", "offset_days")}
        try:
            await service.save_step(
                campaign_id, values, actor=request_actor(request), config=request.app.state["mail"],
                now=request_now(request), step_id=step_id,
            )
        except service.CampaignError as error:
            step = await _step(campaign_id, step_id) if step_id else None
            return await self._step_form(request, campaign, step, values, errors={error.field: error.message},
                                         status=422)
        return Redirect(f"/campaigns/{campaign_id}?done=step", status_code=303)

    async def _step_form(self, request: Request, campaign: Campaign, step: CampaignStep | None,
                         values: dict[str, Any], errors: dict | None = None, status: int = 200) -> Template:
        sample = await _audience_sample(campaign)
        return Template(
            template_name="campaigns/step_form.html",
            context={"c": campaign, "step": step, "v": values, "errors": errors or {}, "fields": MERGE_FIELDS,
                     "sample": sample},
            status_code=status,
        )

    async def _builder(self, campaign: Campaign | None, values: dict[str, Any], errors: dict | None = None,
                       status: int = 200) -> Template:
        return Template(
            template_name="campaigns/campaign_form.html",
            context={
                "c": campaign, "v": values, "errors": errors or {}, "segments": await _segments(),
                "kinds": service.KINDS, "cadence_kinds": KIND_LABELS, "time_zones": TIME_ZONES,
                "weekday_names": WEEKDAY_NAMES, "month_names": MONTH_NAMES, "ordinals": ORDINAL_NAMES,
                "hours": range(0, 25),
            },
            status_code=status,
        )


DEFAULT_BODY = (
    "<p>Dear {{ salutation }},</p>\n"
    "<p>Patients you refer to {{ program_name }} for {{ service_line }} are seen within days.</p>\n"
    "<p>Questions? Reply to this email, or ask {{ owner_name }}.</p>\n"
)


def _step_values(step: CampaignStep) -> dict[str, Any]:
    return {"subject": step.subject, "html_body": step.html_body, "text_body": step.text_body,
            "offset_days": step.offset_days}


async def _step(campaign_id: int, step_id: int) -> CampaignStep:
    step = await CampaignStep.objects().where(CampaignStep.id == step_id, CampaignStep.campaign == campaign_id).first().run()
    if step is None:
        raise NotFoundException("No such step.")
    return step


async def _audience_sample(campaign: Campaign) -> list[dict[str, Any]]:
    ids = (await audience_ids(campaign))[:25]
    if not ids:
        return []
    return await Clinician.select(Clinician.id, Clinician.first_name, Clinician.last_name, Clinician.credential).where(
        Clinician.id.is_in(ids)
    ).order_by(Clinician.last_name).run()


async def _render_preview(request: Request, campaign: Campaign, form: Any) -> dict[str, Any]:
    mail = request.app.state["mail"]
    context: dict[str, Any] = {"error": None}
    try:
        *_, template = service.check_step({k: form.get(k, "") for k in ("subject", "html_body", "text_body")}, mail)
    except service.CampaignError as error:
        context["error"] = f"{error.field.replace('_', ' ')}: {error.message}"
        return context
    chosen = str(form.get("clinician") or "")
    npi = str(form.get("npi") or "").strip()
    condition = None
    if re.fullmatch(r"[0-9]{10}", npi):
        condition = Clinician.npi == npi
    elif re.fullmatch(r"[0-9]{1,9}", chosen):
        condition = Clinician.id == int(chosen)
    row = None
    if condition is not None:
        row = await Clinician.select(
            Clinician.first_name, Clinician.middle_name, Clinician.last_name, Clinician.credential,
            Clinician.practice.name.as_alias("practice_name"), Clinician.owner.name.as_alias("owner_name"),
            Clinician.owner.email.as_alias("owner_email"),
        ).where(condition).first().run()
        if row is None and npi:
            context["notice"] = f"No clinician has the NPI {npi}; showing a sample clinician."
    unsubscribe = mail.unsubscribe_url("preview")
    if row:
        values = merge_values(
            first_name=row["first_name"], middle_name=row["middle_name"], last_name=row["last_name"],
            credential=row["credential"], practice_name=row["practice_name"] or "", owner_name=row["owner_name"] or "",
            owner_email=row["owner_email"] or "", service_line=campaign.service_line, program_name=mail.program_name,
            campaign_name=campaign.name, unsubscribe_url=unsubscribe, reply_to=mail.reply_address,
        )
    else:
        values = sample_values(program_name=mail.program_name, campaign_name=campaign.name,
                               service_line=campaign.service_line, reply_to=mail.reply_address)
    rendered = template.render(values)
    context.update(template=template, values=values, rendered=rendered, c=campaign,
                   body_url=await keep_preview(request, rendered.html),
                   from_name=campaign.from_name or mail.from_name, from_email=mail.from_email)
    return context


class OutboxController(Controller):
    """What the outbox backend stored instead of sending (the embedded default)."""

    path = "/outbox"
    opt = allow(*EDIT_ROLES)
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        to = single_line(request.query_params.get("to") or "").lower()[:320]
        query = OutboxMessage.select(
            OutboxMessage.id, OutboxMessage.to_email, OutboxMessage.subject, OutboxMessage.created_at,
            OutboxMessage.categories,
        ).order_by(OutboxMessage.id, ascending=False).limit(PAGE)
        if to:
            query = query.where(OutboxMessage.to_email == to)
        return Template(
            template_name="campaigns/outbox.html",
            context={"rows": await query.run(), "to": to, "backend": request.app.state["backend"].name},
        )

    @get("/{message_id:int}")
    async def show(self, message_id: ObjectId) -> Template:
        message = await OutboxMessage.objects().where(OutboxMessage.id == message_id).first().run()
        if message is None:
            raise NotFoundException("No such message.")
        headers = json.loads(message.headers) if isinstance(message.headers, str) else message.headers
        return Template(template_name="campaigns/outbox_message.html", context={"m": message, "headers": headers})

    @get("/{message_id:int}/body")
    async def body(self, message_id: ObjectId) -> Response:
        row = await OutboxMessage.select(OutboxMessage.html_body).where(OutboxMessage.id == message_id).first().run()
        if row is None:
            raise NotFoundException("No such message.")
        return email_body(row["html_body"])


class SuppressionController(Controller):
    path = "/suppressions"
    opt = allow(*EDIT_ROLES)
    include_in_schema = False

    @get("/")
    async def index(self, request: Request) -> Template:
        return await self._page(request)

    @post("/")
    async def add(self, request: Request) -> Template | Redirect:
        form = await request.form()
        try:
            await suppressions.add_by_hand(
                str(form.get("email", "")), detail=str(form.get("detail", "")), source="manual",
                actor=request_actor(request), now=request_now(request),
            )
        except ValueError as error:
            return await self._page(request, error=f"{str(error)[:1].upper()}{str(error)[1:]}.", status=422)
        return Redirect("/suppressions?done=added", status_code=303)

    @post("/{suppression_id:int}/remove")
    async def remove(self, request: Request, suppression_id: ObjectId) -> Redirect:
        if not await suppressions.remove_by_hand(suppression_id, actor=request_actor(request)):
            raise NotFoundException("No such suppression.")
        return Redirect("/suppressions?done=removed", status_code=303)

    async def _page(self, request: Request, error: str | None = None, status: int = 200) -> Template:
        q = single_line(request.query_params.get("q") or "").lower()[:320]
        query = Suppression.select(
            Suppression.id, Suppression.email, Suppression.scope, Suppression.reason, Suppression.source,
            Suppression.detail, Suppression.created_at,
        ).order_by(Suppression.id, ascending=False).limit(PAGE)
        if q:
            query = query.where(Suppression.email.like(f"%{escape_like(q)}%"))
        return Template(
            template_name="campaigns/suppressions.html",
            context={"rows": await query.run(), "q": q, "reasons": suppressions.REASONS, "error": error,
                     "done": request.query_params.get("done")},
            status_code=status,
        )
