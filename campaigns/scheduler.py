"""The worker: one scheduler (behind a lease) that fires campaign occurrences, and a dispatcher.

APScheduler is derived state: its jobs are rebuilt from the campaign table when the lease is taken
and whenever a campaign changes. Firing an occurrence is idempotent (occurrences are unique per
campaign and time), so a trigger that fires late, twice, or on a standby that just took over sends
nothing twice. Occurrences missed while no scheduler ran are materialized once if they are still
inside the campaign's grace period, and recorded as missed otherwise.

Any number of workers dispatch; only the lease holder fires triggers. The lease is a row renewed
every ``lease_seconds / 3``; a standby takes it once it has expired.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import secrets
from datetime import datetime, timedelta, timezone
from typing import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from piccolo.querystring import QueryString

from campaigns.cadence import fire_times_between
from campaigns.config import MailConfig
from campaigns.delivery import EmailBackend
from campaigns.sending import (
    RUNNING, Dispatcher, DispatchReport, cadence_of, enroll_sequence, materialize, recover,
)
from campaigns.tables import Campaign, Occurrence, SchedulerLease, Send
from crm.db import atomic

log = logging.getLogger(__name__)

LEASE_NAME = "campaign-scheduler"
MAX_RETRY_SECONDS = 10.0  # the longest wait between dispatch attempts while they keep failing


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def take_lease(holder: str, now: datetime, seconds: int, name: str = LEASE_NAME) -> bool:
    """Take or renew the lease; False while another holder's lease has not expired."""
    rows = await SchedulerLease._meta.db.run_querystring(
        QueryString(
            "INSERT INTO scheduler_lease (name, holder, acquired_at, expires_at) VALUES ({}, {}, {}, {}) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, "
            "acquired_at = CASE WHEN scheduler_lease.holder = excluded.holder "
            "THEN scheduler_lease.acquired_at ELSE excluded.acquired_at END "
            "WHERE scheduler_lease.holder = excluded.holder OR scheduler_lease.expires_at < excluded.acquired_at "
            "RETURNING holder",
            name, holder, now, now + timedelta(seconds=seconds),
        )
    )
    return bool(rows)


async def release_lease(holder: str, name: str = LEASE_NAME) -> None:
    await SchedulerLease.delete().where(SchedulerLease.name == name, SchedulerLease.holder == holder).run()


async def lease_holder(now: datetime, name: str = LEASE_NAME) -> str | None:
    row = await SchedulerLease.select(SchedulerLease.holder, SchedulerLease.expires_at).where(
        SchedulerLease.name == name
    ).first().run()
    return row["holder"] if row and row["expires_at"] > now else None


async def fire_due(campaign_id: int, now: datetime) -> dict[str, int]:
    """Fire every occurrence of the campaign that came due since the last one: inside the grace
    period it is materialized, beyond it recorded as missed. Safe to call at any time."""
    campaign = await Campaign.objects().where(Campaign.id == campaign_id).first().run()
    if campaign is None or campaign.status not in RUNNING:
        return {"fired": 0, "missed": 0}
    start = campaign.last_fired_at or campaign.starts_at or campaign.updated_at
    times = fire_times_between(cadence_of(campaign), campaign.time_zone, start, now)
    if campaign.ends_at is not None:
        times = [t for t in times if t <= campaign.ends_at]
    grace = timedelta(hours=campaign.grace_hours)
    fired = missed = 0
    for moment in times:
        if now - moment > grace:
            await _record_missed(campaign_id, moment, now, grace)
            missed += 1
        elif campaign.kind == "sequence":
            await enroll_sequence(campaign_id, now)
            fired += 1
        else:
            await materialize(campaign_id, moment, now)
            fired += 1
    if times:
        await Campaign.update({Campaign.last_fired_at: times[-1]}).where(Campaign.id == campaign_id).run()
    return {"fired": fired, "missed": missed}


async def _record_missed(campaign_id: int, moment: datetime, now: datetime, grace: timedelta) -> None:
    hours = int(grace.total_seconds() // 3600)
    async with atomic():
        await Occurrence._meta.db.run_querystring(
            QueryString(
                "INSERT INTO occurrence (campaign, scheduled_for, fired_at, status, note) VALUES "
                "({}, {}, {}, 'missed', {}) ON CONFLICT (campaign, scheduled_for) DO NOTHING",
                campaign_id, moment, now,
                f"not sent: no scheduler was running at that time and the {hours}-hour grace period had passed",
            )
        )
    log.warning("campaign %s: occurrence %s missed (beyond the grace period)", campaign_id, moment.isoformat())


async def complete_finished(now: datetime) -> list[int]:
    """Campaigns whose cadence has no time left (a one-off after its date, a recurring campaign
    past its end) and nothing left to send become completed."""
    done = []
    for campaign in await Campaign.objects().where(Campaign.status.is_in(list(RUNNING))).run():
        if campaign.ends_at is None or campaign.ends_at > now:
            upcoming = fire_times_between(cadence_of(campaign), campaign.time_zone, now, now + timedelta(days=3660), limit=1)
            if upcoming:
                continue
        if not await Occurrence.exists().where(Occurrence.campaign == campaign.id).run():
            continue
        if await Send.exists().where(Send.campaign == campaign.id, Send.state.is_in(["queued", "claimed", "sending"])).run():
            continue
        async with atomic():
            await Campaign.update(
                {Campaign.status: "completed", Campaign.updated_at: now, Campaign.version: Campaign.version + 1}
            ).where(Campaign.id == campaign.id, Campaign.status.is_in(list(RUNNING))).run()
        done.append(campaign.id)
        log.info("campaign %s completed: its cadence has no time left and every email went out", campaign.id)
    return done


async def campaigns_signature() -> tuple:
    """Changes whenever a campaign is created, edited or changes state."""
    rows = await Campaign._meta.db.run_querystring(
        QueryString("SELECT COUNT(*) AS n, MAX(updated_at) AS changed, SUM(version) AS versions FROM campaign")
    )
    row = rows[0] if rows else {}
    return (row.get("n"), str(row.get("changed")), row.get("versions"))


class Worker:
    """Runs the lease, the scheduler (while holding the lease) and the dispatch loop.

    Every time it reads comes from ``clock``: the lease, the occurrences fired and the first run
    time of each APScheduler job (APScheduler itself then waits on the real clock)."""

    def __init__(
        self, config: MailConfig, backend: EmailBackend, *, worker_id: str | None = None,
        clock: Callable[[], datetime] = utc_now, lease_seconds: int = 30, poll_seconds: float = 1.0,
        schedule: bool = True,
    ) -> None:
        self.config = config
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self.lease_seconds = lease_seconds
        # The lease is renewed three times per term, so one missed turn does not lose it.
        self.tick_seconds = max(1.0, lease_seconds / 3)
        self.poll_seconds = poll_seconds
        # On stop, how long the batch in flight may take to finish before it is interrupted.
        self.stop_grace_seconds = 30.0
        self.schedule = schedule
        self.dispatcher = Dispatcher(config, backend, self.worker_id)
        self.scheduler: AsyncIOScheduler | None = None
        self.holds_lease = False
        self._signature: tuple | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._unfired: set[int] = set()  # campaigns whose firing failed: retried on the next turn
        self.last_dispatch: DispatchReport | None = None

    async def start(self) -> None:
        self._stopping = False
        self._tasks.append(asyncio.create_task(self._dispatch_loop(), name="liaison-dispatch"))
        if self.schedule:
            self._tasks.append(asyncio.create_task(self._lease_loop(), name="liaison-lease"))

    async def stop(self) -> None:
        """Stop the lease loop, let the dispatch loop finish the batch in flight (up to
        ``stop_grace_seconds``: interrupted, a batch handed to the provider could only be flagged
        for review), then shut the scheduler down and release the lease."""
        self._stopping = True
        self._wake.set()
        dispatching = [t for t in self._tasks if t.get_name() == "liaison-dispatch" and not t.done()]
        for task in self._tasks:
            if task not in dispatching:
                task.cancel()
        if dispatching:
            _, late = await asyncio.wait(dispatching, timeout=self.stop_grace_seconds)
            for task in late:
                log.warning("the batch in flight did not finish within %g s; interrupting it", self.stop_grace_seconds)
                task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self._stop_scheduler()
        if self.holds_lease:
            try:
                await release_lease(self.worker_id)
            except Exception:  # the database may be gone at shutdown; the lease then expires
                log.warning("could not release the scheduler lease", exc_info=True)
            self.holds_lease = False

    def wake(self) -> None:
        """Dispatch now (a campaign changed or sends were queued)."""
        self._wake.set()

    # -- the scheduler, behind the lease ---------------------------------------------------------

    async def tick(self) -> None:
        """One turn of the lease loop: take or renew the lease, start, refresh or stop the
        scheduler, and requeue or flag sends left behind by a crashed worker."""
        now = self.clock()
        held = await take_lease(self.worker_id, now, self.lease_seconds)
        if held and not self.holds_lease:
            log.info("worker %s took the scheduler lease", self.worker_id)
        if not held and self.holds_lease:
            log.warning("worker %s lost the scheduler lease", self.worker_id)
            self._stop_scheduler()
        self.holds_lease = held
        if held:
            signature = await campaigns_signature()
            if self.scheduler is None or signature != self._signature:
                await self.rebuild()
                self._signature = signature
            else:
                for campaign_id in sorted(self._unfired):
                    await self._fire(campaign_id)
            await recover(now, timedelta(seconds=self.config.claim_timeout_seconds))
            await complete_finished(now)

    async def rebuild(self) -> None:
        """Replace every job by the triggers of the running campaigns, then fire what came due."""
        if self.scheduler is None:
            self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=timezone.utc)
            self.scheduler.start()
        self.scheduler.remove_all_jobs()
        running = await Campaign.objects().where(Campaign.status.is_in(list(RUNNING))).run()
        self._unfired.clear()
        now = self.clock()
        for campaign in running:
            try:
                trigger = cadence_of(campaign).trigger(campaign.time_zone)
                # APScheduler would compute the first run from its own clock: use the worker's.
                first_run = trigger.get_next_fire_time(None, now)
            except Exception:
                log.exception("campaign %s has a cadence that cannot be scheduled", campaign.id)
                continue
            self.scheduler.add_job(
                self._fire, trigger=trigger, args=[campaign.id], id=f"campaign-{campaign.id}",
                name=campaign.name, coalesce=True, max_instances=1, misfire_grace_time=None,
                replace_existing=True, next_run_time=first_run,
            )
        for campaign in running:
            await self._fire(campaign.id)

    def next_run_times(self) -> dict[int, datetime | None]:
        if self.scheduler is None:
            return {}
        return {int(job.id.split("-")[1]): job.next_run_time for job in self.scheduler.get_jobs()}

    async def _fire(self, campaign_id: int) -> None:
        try:
            result = await fire_due(campaign_id, self.clock())
        except Exception:
            log.exception("campaign %s: firing its occurrence failed; the next turn retries", campaign_id)
            self._unfired.add(campaign_id)
            return
        self._unfired.discard(campaign_id)
        if result["fired"]:
            self.wake()

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            self._signature = None
            self._unfired.clear()

    async def _lease_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self.tick()
                if failures:
                    log.info("scheduler turns work again after %d failure(s)", failures)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                _log_failure("scheduler turn failed; retrying", failures, error)
                self._stop_scheduler()
                self.holds_lease = False
            await asyncio.sleep(self.tick_seconds)

    # -- dispatch ---------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            wait = self.poll_seconds
            try:
                report = await self.dispatcher.run_once(self.clock())
                self.last_dispatch = report
                if failures:
                    log.info("dispatch works again after %d failure(s)", failures)
                failures = 0
                if report.claimed:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The database or the provider is away: retry, backing off up to MAX_RETRY_SECONDS.
                failures += 1
                _log_failure("dispatch failed; retrying", failures, error)
                wait = min(MAX_RETRY_SECONDS, self.poll_seconds * 2 ** (failures - 1))
            self._wake.clear()
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass


def _log_failure(message: str, failures: int, error: Exception) -> None:
    """The first failure in a row with its traceback, the next ones on one line (an outage of
    the database must not bury the log in identical tracebacks)."""
    if failures == 1:
        log.exception(message)
    else:
        log.error("%s (%d failures in a row): %s: %s", message, failures, type(error).__name__, error)
