"""The pipeline that sends: enroll → materialize → claim → re-check → render → deliver → record.

Every step is safe to repeat. An occurrence is unique per campaign and scheduled time, a send per
(campaign, step, occurrence, clinician); dispatchers claim due sends atomically (PostgreSQL
``FOR UPDATE SKIP LOCKED``, SQLite an IMMEDIATE transaction with ``UPDATE … RETURNING``), record
the batch id before calling the provider, and a batch whose outcome is unknown after a crash is
flagged for review instead of being sent again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from piccolo.querystring import QueryString

from campaigns import suppressions
from campaigns.cadence import Cadence, SendWindow, parse_cadence
from campaigns.config import MailConfig
from campaigns.delivery import MAX_BATCH, Batch, EmailBackend, Message
from campaigns.rendering import CompiledTemplate, compile_template, merge_values
from campaigns.tables import Campaign, CampaignStep, Enrollment, Occurrence, Send
from campaigns.tokens import make_token
from crm import bulk, segments
from crm.db import atomic
from crm.tables import Clinician, Segment

log = logging.getLogger(__name__)

RUNNING = ("scheduled", "active")
SPACING = timedelta(hours=1)
# States that count toward the frequency cap: the email left Liaison.
SENT_STATES = ("sent", "delivered", "opened", "clicked", "bounced", "dropped", "deferred", "spam", "unsubscribed")
UNSUBSCRIBE_PURPOSE = "unsubscribe"


def holdout_arm(campaign: Campaign, clinician_id: int) -> str:
    """``holdout`` for a stable, random share of clinicians (the campaign's holdout percentage)."""
    percent = campaign.holdout_percent or 0
    if percent <= 0:
        return "treatment"
    digest = hashlib.sha256(f"{campaign.holdout_salt}:{clinician_id}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:8], "big") % 10_000 < percent * 100 else "treatment"


def _one_of(column: str, ids: Iterable[int]) -> tuple[str, list[Any]]:
    """SQL saying that ``column`` is one of ``ids``, with one parameter however many ids there are
    (an array on PostgreSQL, a JSON array read by ``json_each`` on SQLite): no statement per 900
    ids, no planning of thousands of placeholders. Returns the fragment (with ``{}`` for the
    parameter) and the parameter list."""
    values = [int(i) for i in ids]
    if Send._meta.db.engine_type == "postgres":
        return f"{column} = ANY({{}})", [values]
    return f"{column} IN (SELECT value FROM json_each({{}}))", [json.dumps(values)]


def cadence_of(campaign: Campaign) -> Cadence:
    """The campaign's cadence (stored as JSON text on SQLite and PostgreSQL alike)."""
    data = campaign.cadence
    if isinstance(data, str):
        data = json.loads(data or "{}")
    return parse_cadence(data)


def window_of(campaign: Campaign) -> SendWindow:
    return SendWindow.parse(campaign.send_days, campaign.send_start_hour, campaign.send_end_hour)


async def audience_ids(campaign: Campaign) -> list[int]:
    """The clinicians who match the campaign's segment now (an empty list without a segment)."""
    if campaign.segment is None:
        return []
    segment = await Segment.objects().where(Segment.id == campaign.segment).first().run()
    if segment is None:
        return []
    condition = segments.segment_filter(segment.filters).where(viewer_id=None)
    query = Clinician.select(Clinician.id)
    if condition is not None:
        query = query.where(condition)
    return [row["id"] for row in await query.run()]


async def enroll(campaign: Campaign, clinician_ids: Iterable[int], now: datetime) -> int:
    """Enroll clinicians not yet in the campaign, each in the treatment or the holdout arm; returns
    how many were new. Run inside a transaction."""
    ids = list(clinician_ids)
    known: set[int] = set()
    if ids:
        among, args = _one_of("clinician", ids)
        rows = await Enrollment._meta.db.run_querystring(
            QueryString(f"SELECT clinician FROM enrollment WHERE campaign = {{}} AND {among}", campaign.id, *args)
        )
        known.update(row["clinician"] for row in rows)
    new = [(campaign.id, cid, holdout_arm(campaign, cid), now) for cid in ids if cid not in known]
    await bulk.upsert(
        Enrollment, ["campaign", "clinician", "arm", "enrolled_at"], new, conflict=("campaign", "clinician")
    )
    return len(new)


@dataclass
class MaterializeResult:
    occurrence_id: int | None
    created: bool
    audience: int = 0
    queued: int = 0
    skipped: int = 0
    holdout: int = 0


async def materialize(campaign_id: int, scheduled_for: datetime, now: datetime) -> MaterializeResult:
    """Turn one occurrence of a one-off or recurring campaign into sends: one per eligible clinician
    of the treatment arm who matches the segment now. Repeating it changes nothing."""
    async with atomic():
        campaign = await Campaign.objects().where(Campaign.id == campaign_id).first().run()
        if campaign is None:
            return MaterializeResult(None, False)
        existing = await Occurrence.select(Occurrence.id).where(
            Occurrence.campaign == campaign_id, Occurrence.scheduled_for == scheduled_for
        ).first().run()
        if existing:
            return MaterializeResult(existing["id"], False)
        occurrence = Occurrence(campaign=campaign_id, scheduled_for=scheduled_for, fired_at=now)
        await occurrence.save().run()
        audience = await audience_ids(campaign)
        await enroll(campaign, audience, now)
        step = await CampaignStep.objects().where(CampaignStep.campaign == campaign_id).order_by(
            CampaignStep.position
        ).first().run()
        due = window_of(campaign).next_open(max(scheduled_for, now), campaign.time_zone)
        counts = await _insert_sends(campaign, step, occurrence.id, audience, due, now)
        occurrence.audience = len(audience)
        occurrence.queued, occurrence.skipped, occurrence.holdout = counts
        occurrence.status = "materialized" if audience else "empty"
        await occurrence.save().run()
        if campaign.status == "scheduled":
            await Campaign.update({Campaign.status: "active"}).where(Campaign.id == campaign_id).run()
        return MaterializeResult(occurrence.id, True, len(audience), *counts)


async def _insert_sends(
    campaign: Campaign, step: CampaignStep | None, occurrence_id: int, audience: list[int], due: datetime,
    now: datetime,
) -> tuple[int, int, int]:
    """Insert the sends of an occurrence with one statement (the audience as one array parameter);
    returns (queued, skipped, holdout)."""
    if step is None or not audience:
        return 0, 0, 0
    prefix = f"c{campaign.id}:s{step.id}:o{occurrence_id}:"
    among, args = _one_of("c.id", audience)
    rows = await Send._meta.db.run_querystring(
        QueryString(
            "INSERT INTO send (key, campaign, step, occurrence, clinician, email, state, skip_reason, "
            "due_at, created_at, updated_at) "
            "SELECT {} || CAST(c.id AS VARCHAR(20)), {}, {}, {}, c.id, COALESCE(c.email, ''), "
            "CASE WHEN c.email IS NULL OR c.email = '' OR NOT c.active OR c.do_not_contact "
            "  OR EXISTS (SELECT 1 FROM suppression x WHERE x.email = c.email AND x.scope = 'all') "
            "  THEN 'skipped' ELSE 'queued' END, "
            "CASE WHEN c.email IS NULL OR c.email = '' THEN 'no_email' WHEN NOT c.active THEN 'inactive' "
            "  WHEN c.do_not_contact THEN 'do_not_contact' "
            "  WHEN EXISTS (SELECT 1 FROM suppression x WHERE x.email = c.email AND x.scope = 'all') "
            "  THEN 'suppressed' ELSE '' END, {}, {}, {} "
            "FROM clinician c JOIN enrollment e ON e.clinician = c.id AND e.campaign = {} "
            f"WHERE e.arm = 'treatment' AND {among} "
            "ON CONFLICT (key) DO NOTHING RETURNING state",
            prefix, campaign.id, step.id, occurrence_id, due, now, now, campaign.id, *args,
        )
    )
    queued = sum(1 for row in rows if row["state"] == "queued")
    skipped = len(rows) - queued
    holdout = 0
    if campaign.holdout_percent:
        among, args = _one_of("clinician", audience)
        counted = await Enrollment._meta.db.run_querystring(
            QueryString(
                f"SELECT COUNT(*) AS n FROM enrollment WHERE campaign = {{}} AND arm = 'holdout' AND {among}",
                campaign.id, *args,
            )
        )
        holdout = counted[0]["n"]
    return queued, skipped, holdout


async def enroll_sequence(campaign_id: int, now: datetime) -> int:
    """For a sequence: enroll new matching clinicians and queue each step whose offset from the
    clinician's enrollment has come; returns the number of sends queued."""
    async with atomic():
        campaign = await Campaign.objects().where(Campaign.id == campaign_id).first().run()
        if campaign is None or campaign.status not in RUNNING:
            return 0
        await enroll(campaign, await audience_ids(campaign), now)
        steps = await CampaignStep.objects().where(CampaignStep.campaign == campaign_id).order_by(
            CampaignStep.position
        ).run()
        window = window_of(campaign)
        queued = 0
        for step in steps:
            threshold = now - timedelta(days=step.offset_days)
            rows = await Enrollment.select(
                Enrollment.clinician, Enrollment.enrolled_at, Enrollment.clinician.email.as_alias("email")
            ).where(
                Enrollment.campaign == campaign_id, Enrollment.arm == "treatment", Enrollment.enrolled_at <= threshold,
                Enrollment.clinician.not_in(
                    Send.select(Send.clinician).where(Send.campaign == campaign_id, Send.step == step.id)
                ),
            ).run()
            values = [
                (
                    f"c{campaign_id}:s{step.id}:seq:{row['clinician']}", campaign_id, step.id, row["clinician"],
                    row["email"] or "", "queued", window.next_open(max(row["enrolled_at"] + timedelta(days=step.offset_days), now),
                                               campaign.time_zone), now, now,
                )
                for row in rows
            ]
            await bulk.upsert(
                Send, ["key", "campaign", "step", "clinician", "email", "state", "due_at", "created_at", "updated_at"],
                values, conflict="key",
            )
            queued += len(values)
        if queued and campaign.status == "scheduled":
            await Campaign.update({Campaign.status: "active"}).where(Campaign.id == campaign_id).run()
        return queued


# ------------------------------------------------------------------------------------------------
# Dispatch


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    review: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


async def claim(worker_id: str, now: datetime, limit: int = MAX_BATCH) -> list[int]:
    """Atomically move up to ``limit`` due sends of running campaigns to ``claimed`` by this worker."""
    engine = Send._meta.db
    states = ", ".join(f"'{state}'" for state in RUNNING)
    running = f"SELECT c.id FROM campaign c WHERE c.status IN ({states})"
    if engine.engine_type == "postgres":
        # Each ARRAY(…) is computed once (an init plan): the running campaigns, then the due sends,
        # locked; the UPDATE finds those through the primary key. A join or ``IN (…)`` here gets
        # planned per row (a lookup of the campaign for each queued send) or as a scan of the
        # whole table.
        where = (
            "id = ANY(ARRAY(SELECT s.id FROM send s WHERE s.state = 'queued' AND s.due_at <= {} "
            f"AND s.campaign = ANY(ARRAY({running})) ORDER BY s.due_at, s.id LIMIT {{}} "
            "FOR UPDATE OF s SKIP LOCKED))"
        )
    else:
        where = (
            "id IN (SELECT s.id FROM send s WHERE s.state = 'queued' AND s.due_at <= {} "
            f"AND s.campaign IN ({running}) ORDER BY s.due_at, s.id LIMIT {{}})"
        )
    async with atomic():
        rows = await engine.run_querystring(
            QueryString(
                "UPDATE send SET state = 'claimed', claimed_by = {}, claimed_at = {}, updated_at = {} "
                f"WHERE {where} RETURNING id",
                worker_id, now, now, now, limit,
            )
        )
    return sorted(row["id"] for row in rows)


async def _load(ids: list[int]) -> list[dict[str, Any]]:
    """The claimed sends with what the re-check and the merge fields need (one statement)."""
    among, args = _one_of("s.id", ids)
    rows = await Send._meta.db.run_querystring(
        QueryString(
            "SELECT s.id, s.campaign, s.step, s.state, s.email AS send_email, c.id AS clinician_id, c.email, "
            "c.first_name, "
            "c.middle_name, c.last_name, c.credential, c.active, c.do_not_contact, p.name AS practice_name, "
            "u.name AS owner_name, u.email AS owner_email "
            "FROM send s LEFT JOIN clinician c ON c.id = s.clinician LEFT JOIN practice p ON p.id = c.practice "
            f"LEFT JOIN liaison_user u ON u.id = c.owner WHERE {among} ORDER BY s.id",
            *args,
        )
    )
    return [dict(row) for row in rows]


async def _recent_counts(clinician_ids: list[int], since: datetime) -> dict[int, int]:
    """Emails sent to each clinician since ``since``, by every campaign (for the frequency cap)."""
    if not clinician_ids:
        return {}
    among, args = _one_of("clinician", clinician_ids)
    rows = await Send._meta.db.run_querystring(
        QueryString(
            f"SELECT clinician, COUNT(*) AS n FROM send WHERE sent_at >= {{}} AND {among} GROUP BY clinician",
            since, *args,
        )
    )
    return {row["clinician"]: row["n"] for row in rows}


class Dispatcher:
    """Claims due sends, re-checks them, renders and hands them to the backend in batches."""

    def __init__(self, config: MailConfig, backend: EmailBackend, worker_id: str) -> None:
        self.config = config
        self.backend = backend
        self.worker_id = worker_id
        self._templates: dict[tuple[int, Any], CompiledTemplate] = {}

    async def run_once(self, now: datetime, limit: int = MAX_BATCH) -> DispatchReport:
        report = DispatchReport()
        ids = await claim(self.worker_id, now, limit)
        report.claimed = len(ids)
        if not ids:
            return report
        rows = await _load(ids)
        campaigns = {
            c.id: c for c in await Campaign.objects().where(Campaign.id.is_in(sorted({r["campaign"] for r in rows}))).run()
        }
        steps = {
            s.id: s for s in await CampaignStep.objects().where(CampaignStep.id.is_in(sorted({r["step"] for r in rows if r["step"]}))).run()
        } if any(r["step"] for r in rows) else {}
        ready = await self._recheck(rows, campaigns, now, report)
        groups: dict[int, list[dict[str, Any]]] = {}
        for row in ready:
            groups.setdefault(row["step"], []).append(row)
        for step_id, members in groups.items():
            step = steps.get(step_id)
            campaign = campaigns[members[0]["campaign"]]
            if step is None:
                await self._finish_skipped([m["id"] for m in members], "no_step", now)
                report.skip("no_step", len(members))
                continue
            await self._deliver(campaign, step, members, now, report)
        return report

    async def _recheck(
        self, rows: list[dict[str, Any]], campaigns: dict[int, Campaign], now: datetime, report: DispatchReport
    ) -> list[dict[str, Any]]:
        """Suppression, consent, do-not-contact, the frequency cap and the send window, checked
        again now; sends that may not go out are skipped (or put back for the next window)."""
        blocked = await suppressions.suppressed(r["email"] or "" for r in rows)
        recent: dict[int, int] = {}
        for campaign in campaigns.values():
            ids = sorted({r["clinician_id"] for r in rows if r["campaign"] == campaign.id})
            since = now - timedelta(days=campaign.frequency_cap_days)
            for cid, n in (await _recent_counts(ids, since)).items():
                recent[cid] = max(recent.get(cid, 0), n)
        # The window of each campaign, and whether it is open now: worked out once per call.
        windows: dict[int, tuple[SendWindow, bool]] = {}
        ready, skipped, later = [], {}, {}
        seen_emails: set[str] = set()
        for row in rows:
            campaign = campaigns[row["campaign"]]
            email = suppressions.normalise(row["email"] or "")
            reason = ""
            if not email:
                reason = "no_email"
            elif not row["active"]:
                reason = "inactive"
            elif row["do_not_contact"]:
                reason = "do_not_contact"
            elif email in blocked:
                reason = "suppressed"
            elif recent.get(row["clinician_id"], 0) >= campaign.frequency_cap_count:
                reason = "frequency_cap"
            if reason:
                skipped.setdefault(reason, []).append(row["id"])
                continue
            if campaign.id not in windows:
                window = window_of(campaign)
                windows[campaign.id] = (window, window.contains(now, campaign.time_zone))
            window, is_open = windows[campaign.id]
            if not is_open:
                later.setdefault(window.next_open(now, campaign.time_zone), []).append(row["id"])
                continue
            if email in seen_emails:
                # Two emails for one address in one round (two steps came due together): the
                # second waits an hour rather than arriving in the same minute.
                later.setdefault(window.next_open(now + SPACING, campaign.time_zone), []).append(row["id"])
                continue
            seen_emails.add(email)
            recent[row["clinician_id"]] = recent.get(row["clinician_id"], 0) + 1
            row["email"] = email
            ready.append(row)
        # The address the email goes to now (the clinician's may have changed since the send was made).
        changed = [(row["email"], row["id"]) for row in ready if row["send_email"] != row["email"]]
        if changed:
            async with atomic():
                await bulk.execute_many(Send, "UPDATE send SET email = {} WHERE id = {}", changed)
        for reason, ids in skipped.items():
            await self._finish_skipped(ids, reason, now)
            report.skip(reason, len(ids))
        for due, ids in later.items():
            await Send.update({Send.state: "queued", Send.due_at: due, Send.claimed_by: "", Send.updated_at: now}).where(
                Send.id.is_in(ids), Send.state == "claimed"
            ).run()
            report.deferred += len(ids)
        return ready

    async def _finish_skipped(self, ids: list[int], reason: str, now: datetime) -> None:
        await Send.update({Send.state: "skipped", Send.skip_reason: reason, Send.updated_at: now}).where(
            Send.id.is_in(ids), Send.state == "claimed"
        ).run()

    def _template(self, step: CampaignStep) -> CompiledTemplate:
        key = (step.id, step.updated_at)
        template = self._templates.get(key)
        if template is None:
            template = compile_template(
                step.subject, step.html_body, step.text_body,
                postal_address=self.config.footer_address, program_name=self.config.program_name,
            )
            self._templates[key] = template
        return template

    def message_for(self, campaign: Campaign, template: CompiledTemplate, row: dict[str, Any]) -> Message:
        token = make_token(self.config.secret_key, UNSUBSCRIBE_PURPOSE, row["id"])
        unsubscribe = self.config.unsubscribe_url(token)
        values = merge_values(
            first_name=row["first_name"] or "", middle_name=row["middle_name"] or "",
            last_name=row["last_name"] or "", credential=row["credential"] or "",
            practice_name=row["practice_name"] or "", owner_name=row["owner_name"] or "",
            owner_email=row["owner_email"] or "", service_line=campaign.service_line,
            program_name=self.config.program_name, campaign_name=campaign.name,
            unsubscribe_url=unsubscribe, reply_to=self.config.reply_address,
        )
        name = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        return Message(
            to_email=row["email"], to_name=name, subject=template.subject_for(values),
            substitutions=template.substitutions(values),
            headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            custom_args={"send_id": str(row["id"]), "campaign_id": str(campaign.id)},
            send_id=row["id"],
        )

    async def _deliver(
        self, campaign: Campaign, step: CampaignStep, rows: list[dict[str, Any]], now: datetime, report: DispatchReport
    ) -> None:
        try:
            template = self._template(step)
        except Exception as error:  # a template saved before a rule changed: never send it broken
            await self._fail([r["id"] for r in rows], f"the template cannot be rendered: {error}", now)
            report.failed += len(rows)
            report.errors.append(str(error))
            return
        messages = [self.message_for(campaign, template, row) for row in rows]
        html, text = template.html_skeleton, template.text_skeleton
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            ids = [m.send_id for m in chunk]
            batch_id = await self.backend.new_batch_id()
            # Recorded before the call: after a crash, these sends are known to be in doubt. Only
            # sends this worker still holds go out: a worker that stalled past the claim timeout
            # finds its sends handed to another and must not send them too.
            among, args = _one_of("id", ids)
            kept = await Send._meta.db.run_querystring(
                QueryString(
                    f"UPDATE send SET state = 'sending', batch_id = {{}}, updated_at = {{}} "
                    f"WHERE {among} AND state = 'claimed' AND claimed_by = {{}} RETURNING id",
                    batch_id, now, *args, self.worker_id,
                )
            )
            held = {row["id"] for row in kept}
            if len(held) < len(chunk):
                log.warning("%d sends of campaign %s were taken over by another worker; not sending them",
                            len(chunk) - len(held), campaign.id)
                chunk = [m for m in chunk if m.send_id in held]
                if not chunk:
                    continue
            batch = Batch(
                from_email=self.config.from_email, from_name=campaign.from_name or self.config.from_name,
                html=html, text=text, messages=chunk, categories=[f"campaign-{campaign.id}"],
                reply_to=self.config.reply_to or None, batch_id=batch_id,
            )
            result = await self.backend.send(batch)
            if result.status == "accepted":
                await Send._meta.db.run_querystring(
                    QueryString(
                        "UPDATE send SET sent_at = COALESCE(sent_at, {}), provider_message_id = {}, "
                        "attempts = attempts + {}, updated_at = {}, "
                        "state = CASE WHEN state = 'sending' THEN 'sent' ELSE state END WHERE batch_id = {}",
                        now, result.message_id, result.attempts, now, batch_id,
                    )
                )
                report.sent += len(chunk)
            elif result.status == "unknown":
                await Send.update(
                    {Send.state: "review", Send.last_error: result.error[:2000], Send.updated_at: now,
                     Send.attempts: Send.attempts + result.attempts}
                ).where(Send.batch_id == batch_id, Send.state == "sending").run()
                report.review += len(chunk)
                report.errors.append(result.error)
                log.warning("batch %s of campaign %s is in doubt: %s", batch_id, campaign.id, result.error)
            else:
                await self._fail(ids, result.error, now, attempts=result.attempts)
                report.failed += len(chunk)
                report.errors.append(result.error)
                log.warning("batch %s of campaign %s failed: %s", batch_id, campaign.id, result.error)

    async def _fail(self, ids: list[int], error: str, now: datetime, attempts: int = 0) -> None:
        await Send._meta.db.run_querystring(
            QueryString(
                "UPDATE send SET state = 'failed', last_error = {}, attempts = attempts + {}, updated_at = {} "
                "WHERE state IN ('claimed', 'sending') AND id IN (" + ", ".join("{}" for _ in ids) + ")",
                error[:2000], attempts, now, *ids,
            )
        )


async def recover(now: datetime, claim_timeout: timedelta) -> dict[str, int]:
    """After a crash: sends claimed but never handed to the provider go back to the queue; sends
    whose batch may have reached the provider are flagged for review, never resent blindly."""
    stale = now - claim_timeout
    requeued = await Send.update(
        {Send.state: "queued", Send.claimed_by: "", Send.updated_at: now}
    ).where(Send.state == "claimed", Send.claimed_at < stale).returning(Send.id).run()
    review = await Send.update(
        {Send.state: "review", Send.last_error: "the outcome of its batch is unknown after an interruption; "
         "check the provider's activity before sending again", Send.updated_at: now}
    ).where(Send.state == "sending", Send.claimed_at < stale).returning(Send.id).run()
    return {"requeued": len(requeued), "review": len(review)}
