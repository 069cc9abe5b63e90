"""Campaigns as marketers build them: settings, steps, previews, and state changes.

States: draft → scheduled (approved, waiting for its first occurrence) → active → completed;
paused from scheduled or active and resumed without losing queued sends; archived from any state
but active. Every change bumps ``version`` so that the scheduler rebuilds its triggers.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from piccolo.querystring import QueryString

from campaigns.cadence import (
    CadenceError,
    SendWindow,
    check_fires,
    check_time_zone,
    fire_times_between,
    next_fire_times,
    parse_cadence,
)
from campaigns.config import MailConfig
from campaigns.rendering import CompiledTemplate, TemplateError, compile_template
from campaigns.sending import audience_ids, cadence_of, holdout_arm
from campaigns.tables import Campaign, CampaignStep, Enrollment, Occurrence, Send, Suppression
from crm import audit
from crm.audit import Actor
from crm.db import atomic, lock_row
from crm.errors import FieldError
from crm.tables import Clinician, Segment
from crm.text import plain_text, single_line

KINDS = {"one_off": "One-off", "recurring": "Recurring cadence", "sequence": "Sequence of steps"}
STATUSES = ("draft", "scheduled", "active", "paused", "completed", "archived")
EDITABLE = ("draft", "paused", "scheduled")
MAX_STEPS = 12
MAX_HTML = 200_000
MAX_TEXT = 100_000


class CampaignError(FieldError):
    pass


def _int(data: Mapping[str, Any], name: str, default: int, low: int, high: int, label: str) -> int:
    raw = data.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    text = str(raw).strip()
    if not re.fullmatch(r"-?[0-9]{1,6}", text):
        raise CampaignError(name, f"{label} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise CampaignError(name, f"{label} must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class CampaignInput:
    """A checked campaign definition (everything but its steps)."""

    name: str
    goal: str
    kind: str
    segment: int | None
    time_zone: str
    cadence: dict[str, Any]
    send_days: str
    send_start_hour: int
    send_end_hour: int
    frequency_cap_count: int
    frequency_cap_days: int
    holdout_percent: int
    service_line: str
    from_name: str
    grace_hours: int

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CampaignInput:
        name = single_line(str(data.get("name") or ""))
        if not 1 <= len(name) <= 200:
            raise CampaignError("name", "give the campaign a name of 1 to 200 characters")
        kind = str(data.get("kind") or "recurring")
        if kind not in KINDS:
            raise CampaignError("kind", f"the kind must be one of: {', '.join(KINDS)}")
        segment_raw = str(data.get("segment") or "").strip()
        if segment_raw and not re.fullmatch(r"[0-9]{1,9}", segment_raw):
            raise CampaignError("segment", "choose a segment from the list")
        time_zone = str(data.get("time_zone") or "America/New_York").strip()
        try:
            check_time_zone(time_zone)
        except CadenceError as error:
            raise CampaignError("time_zone", error.message) from None
        cadence_data = data.get("cadence")
        if not isinstance(cadence_data, Mapping):
            raise CampaignError("cadence", "the cadence is missing")
        try:
            cadence = parse_cadence(cadence_data)
        except CadenceError as error:
            raise CampaignError(error.field, error.message) from None
        if kind == "one_off" and cadence.kind != "once":
            raise CampaignError("cadence.kind", "a one-off campaign is sent once: choose a date and time")
        start = _int(data, "send_start_hour", 8, 0, 23, "The send window's first hour")
        end = _int(data, "send_end_hour", 17, 1, 24, "The send window's last hour")
        raw_days = data.get("send_days")
        raw_days = "12345" if raw_days is None else re.sub(r"[\s,]", "", str(raw_days))
        if not re.fullmatch(r"[1-7]{0,7}", raw_days):
            raise CampaignError("send_days", "the send days are ISO weekdays: digits 1 (Monday) to 7 (Sunday)")
        days = "".join(sorted(set(raw_days)))
        try:
            SendWindow.parse(days, start, end)
        except CadenceError as error:
            raise CampaignError(error.field, error.message) from None
        limits = {"goal": 2000, "service_line": 60, "from_name": 200}
        for field_name, limit in limits.items():
            if len(str(data.get(field_name) or "").strip()) > limit:
                raise CampaignError(field_name, f"{field_name.replace('_', ' ')} is longer than {limit} characters")
        return cls(
            name=name,
            goal=plain_text(str(data.get("goal") or "")).strip()[:2000],
            kind=kind,
            segment=int(segment_raw) if segment_raw else None,
            time_zone=time_zone,
            cadence=cadence.to_dict(),
            send_days=days,
            send_start_hour=start,
            send_end_hour=end,
            frequency_cap_count=_int(data, "frequency_cap_count", 2, 1, 50, "The frequency cap"),
            frequency_cap_days=_int(data, "frequency_cap_days", 14, 1, 365, "The frequency cap's period in days"),
            holdout_percent=_int(data, "holdout_percent", 0, 0, 50, "The holdout percentage"),
            service_line=single_line(str(data.get("service_line") or ""))[:60],
            from_name=single_line(str(data.get("from_name") or ""))[:200],
            grace_hours=_int(data, "grace_hours", 24, 0, 168, "The grace period in hours"),
        )

    def window(self) -> SendWindow:
        return SendWindow.parse(self.send_days, self.send_start_hour, self.send_end_hour)


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name, "kind": campaign.kind, "segment": campaign.segment, "time_zone": campaign.time_zone,
        "cadence": campaign.cadence, "send_days": campaign.send_days, "status": campaign.status,
        "send_hours": [campaign.send_start_hour, campaign.send_end_hour],
        "frequency_cap": [campaign.frequency_cap_count, campaign.frequency_cap_days],
        "holdout_percent": campaign.holdout_percent,
    }


async def get_campaign(campaign_id: int) -> Campaign | None:
    return await Campaign.objects().where(Campaign.id == campaign_id).first().run()


async def lock_campaign(campaign_id: int) -> Campaign | None:
    """The campaign, locked until the transaction ends, so that concurrent changes queue instead
    of overwriting each other (SQLite's IMMEDIATE transaction already serialises writers)."""
    await lock_row(Campaign, campaign_id)
    return await get_campaign(campaign_id)


async def save_campaign(
    data: Mapping[str, Any], *, actor: Actor, now: datetime, campaign_id: int | None = None
) -> Campaign:
    """Create a draft, or change a campaign that is a draft, paused or scheduled."""
    checked = CampaignInput.from_mapping(data)
    async with atomic():
        if Campaign._meta.db.engine_type == "postgres":
            # Two creations with one name queue here instead of one failing on the unique index.
            await Campaign._meta.db.run_querystring(
                QueryString("SELECT pg_advisory_xact_lock(hashtext('campaign-names'))")
            )
        if checked.segment is not None and not await Segment.exists().where(Segment.id == checked.segment).run():
            raise CampaignError("segment", "that segment does not exist")
        clash = Campaign.exists().where(Campaign.name == checked.name)
        if campaign_id is not None:
            clash = clash.where(Campaign.id != campaign_id)
        if await clash.run():
            raise CampaignError("name", f"a campaign called {checked.name!r} already exists")
        values = {k: getattr(checked, k) for k in checked.__dataclass_fields__}
        if campaign_id is None:
            campaign = Campaign(**values, status="draft", holdout_salt=secrets.token_hex(8), created_by=actor.user_id,
                                created_at=now, updated_at=now)
            await campaign.save().run()
            before = None
        else:
            campaign = await lock_campaign(campaign_id)
            if campaign is None:
                raise CampaignError("id", "no such campaign")
            if campaign.status not in EDITABLE:
                raise CampaignError("status", f"this campaign is {campaign.status}: pause it before changing it")
            if campaign.holdout_percent != checked.holdout_percent and await _has_enrollments(campaign.id):
                raise CampaignError("holdout_percent", "the holdout cannot change once clinicians are enrolled")
            before = _snapshot(campaign)
            for key, value in values.items():
                setattr(campaign, key, value)
            campaign.updated_at, campaign.version = now, campaign.version + 1
            await campaign.save().run()
        await audit.record(
            "campaign.update" if before else "campaign.create", actor=actor, object_type="campaign",
            object_id=campaign.id, before=before, after=_snapshot(campaign),
        )
    return campaign


async def _has_enrollments(campaign_id: int) -> bool:
    return await Enrollment.exists().where(Enrollment.campaign == campaign_id).run()


async def steps_of(campaign_id: int) -> list[CampaignStep]:
    return await CampaignStep.objects().where(CampaignStep.campaign == campaign_id).order_by(CampaignStep.position).run()


def check_step(data: Mapping[str, Any], config: MailConfig) -> tuple[str, str, str, int, CompiledTemplate]:
    """A step's email, checked and compiled: (subject, html, text, offset in days, template).
    Control characters are dropped; sizes and merge fields are checked."""
    subject = single_line(str(data.get("subject") or ""))
    html_body = plain_text(str(data.get("html_body") or ""))
    text_body = plain_text(str(data.get("text_body") or ""))
    if not subject:
        raise CampaignError("subject", "write a subject")
    if len(subject) > 300:
        raise CampaignError("subject", "the subject is longer than 300 characters")
    if not html_body.strip() and not text_body.strip():
        raise CampaignError("html_body", "write the email's body")
    if len(html_body) > MAX_HTML:
        raise CampaignError("html_body", f"the HTML body is too long (at most {MAX_HTML:,} characters)")
    if len(text_body) > MAX_TEXT:
        raise CampaignError("text_body", f"the plain-text body is too long (at most {MAX_TEXT:,} characters)")
    offset = _int(data, "offset_days", 0, 0, 365, "The step's offset in days")
    try:
        template = compile_template(subject, html_body, text_body, postal_address=config.footer_address,
                                    program_name=config.program_name)
    except TemplateError as error:
        raise CampaignError(error.field, error.message) from None
    return subject, html_body, text_body, offset, template


async def save_step(
    campaign_id: int, data: Mapping[str, Any], *, actor: Actor, config: MailConfig, now: datetime,
    step_id: int | None = None,
) -> CampaignStep:
    """Add or change a step; the template is compiled (and refused with its line) before saving."""
    subject, html_body, text_body, offset, _ = check_step(data, config)
    async with atomic():
        campaign = await lock_campaign(campaign_id)
        if campaign is None:
            raise CampaignError("id", "no such campaign")
        if campaign.status not in EDITABLE:
            raise CampaignError("status", f"this campaign is {campaign.status}: pause it before changing it")
        existing = await steps_of(campaign_id)
        if step_id is None:
            if campaign.kind != "sequence" and existing:
                step = existing[0]
            else:
                if len(existing) >= MAX_STEPS:
                    raise CampaignError("position", f"a sequence has at most {MAX_STEPS} steps")
                step = CampaignStep(campaign=campaign_id, position=len(existing) + 1)
        else:
            step = next((s for s in existing if s.id == step_id), None)
            if step is None:
                raise CampaignError("id", "no such step in this campaign")
        before = {"subject": step.subject, "offset_days": step.offset_days} if step.id else None
        step.subject, step.html_body, step.text_body = subject, html_body, text_body
        step.offset_days = offset if campaign.kind == "sequence" else 0
        step.updated_at = now
        await step.save().run()
        await Campaign.update({Campaign.updated_at: now, Campaign.version: Campaign.version + 1}).where(
            Campaign.id == campaign_id
        ).run()
        await audit.record(
            "campaign.step", actor=actor, object_type="campaign", object_id=campaign_id, before=before,
            after={"step": step.id, "subject": subject, "offset_days": step.offset_days},
        )
    return step


@dataclass(frozen=True)
class Preview:
    next_times: list[datetime]
    audience: int
    holdout: int
    problems: list[str]
    mailable: int = 0


async def preview(checked: CampaignInput | Campaign, now: datetime, salt: str = "") -> Preview:
    """The next 10 send times (inside the window) and the audience, before anything is scheduled."""
    problems: list[str] = []
    cadence = cadence_of(checked)
    window = SendWindow.parse(checked.send_days, checked.send_start_hour, checked.send_end_hour)
    times = next_fire_times(cadence, checked.time_zone, now, count=10, window=window)
    if not times:
        problems.append("this cadence has no future send time")
    audience = holdout = mailable = 0
    if checked.segment is None:
        problems.append("choose a segment: the campaign has no audience")
    elif not await Segment.exists().where(Segment.id == checked.segment).run():
        problems.append("that segment does not exist")
    else:
        probe = Campaign(segment=checked.segment, holdout_percent=checked.holdout_percent, holdout_salt=salt)
        ids = await audience_ids(probe)
        audience = len(ids)
        treated = [cid for cid in ids if holdout_arm(probe, cid) == "treatment"]
        holdout = audience - len(treated)
        mailable = await _mailable(treated)
        if not audience:
            problems.append("the segment matches nobody today")
        elif not mailable:
            problems.append("nobody in the audience can be mailed today (no email address, do-not-contact, "
                            "or suppressed)")
    return Preview(times, audience, holdout, problems, mailable if checked.segment is not None else 0)


async def _mailable(clinician_ids: list[int]) -> int:
    """How many of these clinicians have an address that may be mailed now."""
    total = 0
    for start in range(0, len(clinician_ids), 900):
        total += await Clinician.count().where(
            Clinician.id.is_in(clinician_ids[start : start + 900]), Clinician.email.is_not_null(),
            Clinician.email != "", Clinician.do_not_contact == False,  # noqa: E712
            Clinician.email.not_in(Suppression.select(Suppression.email).where(Suppression.scope == "all")),
        ).run()
    return total


async def transition(
    campaign_id: int, action: str, *, actor: Actor, now: datetime, config: MailConfig
) -> Campaign:
    """schedule, pause, resume, complete or archive; CampaignError says why not."""
    async with atomic():
        campaign = await lock_campaign(campaign_id)
        if campaign is None:
            raise CampaignError("id", "no such campaign")
        status = campaign.status
        if action == "schedule":
            if status != "draft":
                raise CampaignError("status", f"only a draft can be scheduled (this one is {status})")
            await _check_ready(campaign, now, config)
            new = "scheduled"
            campaign.starts_at, campaign.last_fired_at = now, None
        elif action == "pause":
            if status not in ("scheduled", "active"):
                raise CampaignError("status", f"a {status} campaign cannot be paused")
            new, campaign.paused_at = "paused", now
        elif action == "resume":
            if status != "paused":
                raise CampaignError("status", "only a paused campaign can be resumed")
            await _check_ready(campaign, now, config)
            started = await Occurrence.exists().where(Occurrence.campaign == campaign_id).run()
            await _record_paused_occurrences(campaign, now)
            new, campaign.paused_at, campaign.last_fired_at = ("active" if started else "scheduled"), None, now
        elif action == "complete":
            if status not in ("scheduled", "active", "paused"):
                raise CampaignError("status", f"a {status} campaign cannot be completed")
            new = "completed"
            await Send.update({Send.state: "skipped", Send.skip_reason: "campaign_completed", Send.updated_at: now}).where(
                Send.campaign == campaign_id, Send.state == "queued"
            ).run()
        elif action == "archive":
            if status in ("scheduled", "active"):
                raise CampaignError("status", "pause or complete the campaign before archiving it")
            if status == "archived":
                raise CampaignError("status", "the campaign is already archived")
            new = "archived"
        else:
            raise CampaignError("action", f"unknown action {action!r}")
        before = status
        campaign.status, campaign.updated_at, campaign.version = new, now, campaign.version + 1
        await campaign.save().run()
        await audit.record(
            f"campaign.{action}", actor=actor, object_type="campaign", object_id=campaign_id,
            before={"status": before}, after={"status": new},
        )
    return campaign


async def _record_paused_occurrences(campaign: Campaign, now: datetime) -> None:
    """Occurrences that came due while the campaign was paused are recorded, not sent late."""
    since = campaign.last_fired_at or campaign.starts_at or campaign.paused_at or now
    for moment in fire_times_between(cadence_of(campaign), campaign.time_zone, since, now, limit=500):
        await Occurrence._meta.db.run_querystring(
            QueryString(
                "INSERT INTO occurrence (campaign, scheduled_for, fired_at, status, note) VALUES "
                "({}, {}, {}, 'paused', 'not sent: the campaign was paused') "
                "ON CONFLICT (campaign, scheduled_for) DO NOTHING",
                campaign.id, moment, now,
            )
        )


async def _check_ready(campaign: Campaign, now: datetime, config: MailConfig) -> None:
    if campaign.segment is None:
        raise CampaignError("segment", "choose the segment to mail before scheduling")
    steps = await steps_of(campaign.id)
    if not steps:
        raise CampaignError("subject", "write the email before scheduling")
    if config.backend != "outbox" and not config.postal_address.strip():
        raise CampaignError(
            "postal_address", "set the program's postal address (LIAISON_POSTAL_ADDRESS) before sending real email"
        )
    window = SendWindow.parse(campaign.send_days, campaign.send_start_hour, campaign.send_end_hour)
    try:
        check_fires(cadence_of(campaign), campaign.time_zone, now, window)
    except CadenceError as error:
        raise CampaignError(error.field, error.message) from None


async def settle_review(campaign_id: int, decision: str, *, actor: Actor, now: datetime) -> int:
    """Sends in review (their batch's fate unknown after a crash) after a person checked the
    provider's activity: ``sent`` (they went out) or ``resend`` (they did not: queue them again)."""
    if decision not in ("sent", "resend"):
        raise CampaignError("decision", "choose sent or resend")
    async with atomic():
        values = (
            {Send.state: "sent", Send.sent_at: now, Send.updated_at: now} if decision == "sent"
            else {Send.state: "queued", Send.due_at: now, Send.batch_id: "", Send.claimed_by: "", Send.updated_at: now}
        )
        rows = await Send.update(values).where(Send.campaign == campaign_id, Send.state == "review").returning(Send.id).run()
        await audit.record(
            f"campaign.review_{decision}", actor=actor, object_type="campaign", object_id=campaign_id,
            before={"review": len(rows)}, after={"state": "sent" if decision == "sent" else "queued"},
        )
    return len(rows)


async def funnel(campaign_id: int) -> dict[str, Any]:
    """Sends by state and skip reason, for the campaign page."""
    counts = await Send._meta.db.run_querystring(
        QueryString(
            "SELECT state, skip_reason, COUNT(*) AS n FROM send WHERE campaign = {} GROUP BY state, skip_reason",
            campaign_id,
        )
    )
    states: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in counts:
        states[row["state"]] = states.get(row["state"], 0) + row["n"]
        if row["state"] == "skipped":
            reasons[row["skip_reason"] or "unknown"] = row["n"]
    return {"states": states, "skip_reasons": reasons, "total": sum(states.values())}


def upcoming(campaign: Campaign, now: datetime, count: int = 10) -> list[datetime]:
    if campaign.status not in ("draft", "scheduled", "active", "paused"):
        return []
    window = SendWindow.parse(campaign.send_days, campaign.send_start_hour, campaign.send_end_hour)
    return next_fire_times(cadence_of(campaign), campaign.time_zone, now, count=count, window=window)

