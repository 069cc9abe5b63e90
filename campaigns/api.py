"""Campaigns, sends and suppressions in the JSON API (/api/v1), with the same rules and roles as
the pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import JSONBody, PathParameter, QueryParameter

from campaigns import service, suppressions
from campaigns.cadence import CadenceError
from campaigns.campaign_controller import SEND_STATES
from campaigns.sending import cadence_of
from campaigns.tables import Campaign, CampaignStep, Send, Suppression
from crm.access import allow, signed_in
from crm.forms import ObjectId, request_actor, request_now
from crm.roles import Role
from crm.roster import escape_like
from crm.text import single_line

EDIT = allow(Role.marketer, Role.manager)
Text = Annotated["str | None", QueryParameter(required=False)]
Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
After = Annotated[int, QueryParameter(ge=0, le=2**31 - 1)]
Action = Annotated[str, PathParameter(pattern="^(schedule|pause|resume|complete|archive)$")]



class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    """A campaign's settings. ``cadence`` is an object such as ``{"kind": "monthly_weekday",
    "ordinal": 1, "weekday": 2, "time": "09:00"}`` (kinds: monthly_weekday, monthly_day, weekly,
    quarterly, once, cron); ``send_days`` holds ISO weekdays ("12345" is Monday to Friday)."""

    name: str | None = None
    goal: str | None = None
    kind: str | None = None
    segment_id: int | None = None
    time_zone: str | None = None
    cadence: dict[str, Any] | None = None
    send_days: str | None = None
    send_start_hour: int | None = None
    send_end_hour: int | None = None
    frequency_cap_count: int | None = None
    frequency_cap_days: int | None = None
    holdout_percent: int | None = None
    service_line: str | None = None
    from_name: str | None = None
    grace_hours: int | None = None


class StepIn(msgspec.Struct, forbid_unknown_fields=True):
    """A step's email. On POST, ``subject`` and a body are needed; on PATCH, fields left out keep
    their value. ``text_body`` empty: derived from the HTML."""

    subject: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    offset_days: int | None = None


class SuppressionIn(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    detail: str = ""


@dataclass
class StepOut:
    id: int
    position: int
    offset_days: int
    subject: str
    html_body: str
    text_body: str


@dataclass
class CampaignOut:
    id: int
    name: str
    goal: str
    kind: str
    status: str
    segment_id: int | None
    time_zone: str
    cadence: dict[str, Any]
    cadence_description: str
    send_days: str
    send_start_hour: int
    send_end_hour: int
    frequency_cap_count: int
    frequency_cap_days: int
    holdout_percent: int
    service_line: str
    from_name: str
    grace_hours: int
    next_send_times: list[datetime]
    steps: list[StepOut]
    funnel: dict[str, int]


@dataclass
class SendOut:
    id: int
    clinician_id: int
    email: str
    state: str
    skip_reason: str
    due_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    last_error: str


@dataclass
class SendPage:
    items: list[SendOut]
    next_after: int | None


@dataclass
class SuppressionOut:
    id: int
    email: str
    scope: str
    reason: str
    source: str
    detail: str
    created_at: datetime


def _settings_of(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name, "goal": campaign.goal, "kind": campaign.kind,
        "segment": str(campaign.segment or ""), "time_zone": campaign.time_zone,
        "cadence": cadence_of(campaign).to_dict(), "send_days": campaign.send_days,
        "send_start_hour": campaign.send_start_hour, "send_end_hour": campaign.send_end_hour,
        "frequency_cap_count": campaign.frequency_cap_count, "frequency_cap_days": campaign.frequency_cap_days,
        "holdout_percent": campaign.holdout_percent, "service_line": campaign.service_line,
        "from_name": campaign.from_name, "grace_hours": campaign.grace_hours,
    }


def _merged(data: CampaignIn, base: dict[str, Any]) -> dict[str, Any]:
    values = dict(base)
    for name in data.__struct_fields__:
        value = getattr(data, name)
        if value is None:
            continue
        values["segment" if name == "segment_id" else name] = str(value) if name == "segment_id" else value
    return values


async def _out(campaign: Campaign, now: datetime) -> CampaignOut:
    steps = await service.steps_of(campaign.id)
    funnel = await service.funnel(campaign.id)
    cadence = cadence_of(campaign)
    return CampaignOut(
        id=campaign.id, name=campaign.name, goal=campaign.goal, kind=campaign.kind, status=campaign.status,
        segment_id=campaign.segment, time_zone=campaign.time_zone, cadence=cadence.to_dict(),
        cadence_description=cadence.describe(), send_days=campaign.send_days,
        send_start_hour=campaign.send_start_hour, send_end_hour=campaign.send_end_hour,
        frequency_cap_count=campaign.frequency_cap_count, frequency_cap_days=campaign.frequency_cap_days,
        holdout_percent=campaign.holdout_percent, service_line=campaign.service_line, from_name=campaign.from_name,
        grace_hours=campaign.grace_hours, next_send_times=service.upcoming(campaign, now),
        steps=[StepOut(s.id, s.position, s.offset_days, s.subject, s.html_body, s.text_body) for s in steps],
        funnel=funnel["states"],
    )


async def _campaign(campaign_id: int) -> Campaign:
    campaign = await service.get_campaign(campaign_id)
    if campaign is None:
        raise NotFoundException("No such campaign.")
    return campaign


def _refuse(error: service.CampaignError | CadenceError) -> ValidationException:
    return ValidationException(f"{error.field}: {error.message}")


class CampaignApi(Controller):
    path = "/api/v1"
    opt = signed_in()
    tags = ["campaigns"]

    @get("/campaigns", summary="Campaigns, newest change first")
    async def campaigns(self, request: Request, status: Text = None) -> list[CampaignOut]:
        query = Campaign.objects().order_by(Campaign.updated_at, ascending=False).limit(500)
        if status:
            if status not in service.STATUSES:
                raise ValidationException(f"status: use one of {', '.join(service.STATUSES)}")
            query = query.where(Campaign.status == status)
        now = request_now(request)
        return [await _out(c, now) for c in await query.run()]

    @post("/campaigns", summary="Create a draft campaign", opt=EDIT)
    async def create(self, request: Request, data: JSONBody[CampaignIn]) -> CampaignOut:
        values = _merged(data, {})
        try:
            campaign = await service.save_campaign(values, actor=request_actor(request), now=request_now(request))
        except (service.CampaignError, CadenceError) as error:
            raise _refuse(error) from None
        return await _out(campaign, request_now(request))

    @get("/campaigns/{campaign_id:int}", summary="One campaign with its steps, next send times and funnel")
    async def campaign(self, request: Request, campaign_id: ObjectId) -> CampaignOut:
        return await _out(await _campaign(campaign_id), request_now(request))

    @patch("/campaigns/{campaign_id:int}", summary="Change a campaign's settings (fields left out are kept)",
           opt=EDIT)
    async def update(self, request: Request, campaign_id: ObjectId, data: JSONBody[CampaignIn]) -> CampaignOut:
        campaign = await _campaign(campaign_id)
        try:
            campaign = await service.save_campaign(
                _merged(data, _settings_of(campaign)), actor=request_actor(request), now=request_now(request),
                campaign_id=campaign_id,
            )
        except (service.CampaignError, CadenceError) as error:
            raise _refuse(error) from None
        return await _out(campaign, request_now(request))

    @post("/campaigns/{campaign_id:int}/steps", summary="Write the email (adds a step to a sequence)", opt=EDIT)
    async def add_step(self, request: Request, campaign_id: ObjectId, data: JSONBody[StepIn]) -> CampaignOut:
        return await self._save_step(request, campaign_id, None, data)

    @patch("/campaigns/{campaign_id:int}/steps/{step_id:int}", summary="Change a step's email", opt=EDIT)
    async def update_step(
        self, request: Request, campaign_id: ObjectId, step_id: ObjectId, data: JSONBody[StepIn]
    ) -> CampaignOut:
        step = await CampaignStep.objects().where(CampaignStep.id == step_id, CampaignStep.campaign == campaign_id).first().run()
        if step is None:
            raise NotFoundException("No such step.")
        return await self._save_step(request, campaign_id, step_id, data, step)

    async def _save_step(
        self, request: Request, campaign_id: int, step_id: int | None, data: StepIn, step: CampaignStep | None = None
    ) -> CampaignOut:
        await _campaign(campaign_id)
        values = {"subject": "", "html_body": "", "text_body": "", "offset_days": 0}
        if step is not None:
            values = {"subject": step.subject, "html_body": step.html_body, "text_body": step.text_body,
                      "offset_days": step.offset_days}
        values.update({k: v for k, v in msgspec.structs.asdict(data).items() if v is not None})
        try:
            await service.save_step(
                campaign_id, values, actor=request_actor(request),
                config=request.app.state["mail"], now=request_now(request), step_id=step_id,
            )
        except service.CampaignError as error:
            raise _refuse(error) from None
        return await _out(await _campaign(campaign_id), request_now(request))

    @post("/campaigns/{campaign_id:int}/actions/{action:str}", status_code=200, opt=EDIT,
          summary="schedule, pause, resume, complete or archive")
    async def act(self, request: Request, campaign_id: ObjectId, action: Action) -> CampaignOut:
        await _campaign(campaign_id)
        try:
            campaign = await service.transition(
                campaign_id, action, actor=request_actor(request), now=request_now(request), config=request.app.state["mail"]
            )
        except service.CampaignError as error:
            raise _refuse(error) from None
        worker = request.app.state.get("worker")
        if worker is not None:
            worker.wake()
        return await _out(campaign, request_now(request))

    @get("/campaigns/{campaign_id:int}/sends", summary="A campaign's sends, a page at a time")
    async def sends(
        self, campaign_id: ObjectId,
        send_state: Annotated["str | None", QueryParameter(name="state", required=False)] = None,
        after: After = 0, limit: Limit = 100,
    ) -> SendPage:
        """Follow ``next_after`` with ``after``. ``state`` filters (queued, sent, delivered, opened,
        clicked, bounced, skipped, failed, review, …)."""
        await _campaign(campaign_id)
        query = Send.select(
            Send.id, Send.clinician, Send.email, Send.state, Send.skip_reason, Send.due_at, Send.sent_at,
            Send.delivered_at, Send.opened_at, Send.clicked_at, Send.last_error,
        ).where(Send.campaign == campaign_id, Send.id > after).order_by(Send.id).limit(limit + 1)
        if send_state:
            if send_state not in SEND_STATES:
                raise ValidationException(f"state: use one of {', '.join(SEND_STATES)}")
            query = query.where(Send.state == send_state)
        rows = await query.run()
        items = [
            SendOut(
                id=r["id"], clinician_id=r["clinician"], email=r["email"], state=r["state"], skip_reason=r["skip_reason"],
                due_at=r["due_at"], sent_at=r["sent_at"], delivered_at=r["delivered_at"], opened_at=r["opened_at"],
                clicked_at=r["clicked_at"], last_error=r["last_error"],
            )
            for r in rows[:limit]
        ]
        return SendPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


class SuppressionApi(Controller):
    path = "/api/v1/suppressions"
    opt = EDIT
    tags = ["suppressions"]

    @get("/", summary="Suppressed addresses, newest first")
    async def index(self, q: Text = None, after: After = 0, limit: Limit = 100) -> list[SuppressionOut]:
        query = Suppression.select().order_by(Suppression.id, ascending=False).limit(limit)
        if after:
            query = query.where(Suppression.id < after)
        if q:
            query = query.where(Suppression.email.like(f"%{escape_like(suppressions.normalise(single_line(q)))}%"))
        return [
            SuppressionOut(r["id"], r["email"], r["scope"], r["reason"], r["source"], r["detail"], r["created_at"])
            for r in await query.run()
        ]

    @post("/", summary="Suppress an address everywhere")
    async def add(self, request: Request, data: JSONBody[SuppressionIn]) -> SuppressionOut:
        try:
            row = await suppressions.add_by_hand(
                data.email, detail=data.detail, source="api", actor=request_actor(request), now=request_now(request)
            )
        except ValueError as error:
            raise ValidationException(f"email: {error}") from None
        return SuppressionOut(row.id, row.email, row.scope, row.reason, row.source, row.detail, row.created_at)

    @delete("/{suppression_id:int}", summary="Allow an address again")
    async def remove(self, request: Request, suppression_id: ObjectId) -> None:
        if not await suppressions.remove_by_hand(suppression_id, actor=request_actor(request)):
            raise NotFoundException("No such suppression.")

