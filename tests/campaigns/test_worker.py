"""The worker in this process, on SQLite and PostgreSQL: the scheduler lease, the APScheduler jobs
built from the campaign table (with a simulated clock), the takeover by a standby, and the
dispatch loop from start() to stop()."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from campaigns import scheduler as scheduler_module
from campaigns import sending, service
from campaigns.cadence import CadenceTrigger, next_fire_times
from campaigns.delivery import Batch, BatchResult
from campaigns.outbox import OutboxBackend
from campaigns.scheduler import Worker, lease_holder, release_lease, take_lease
from campaigns.sending import Dispatcher, cadence_of, claim, materialize, recover
from campaigns.sendgrid_backend import SendGridBackend
from campaigns.tables import Campaign, Occurrence, OutboxMessage, SchedulerLease, Send
from tests.campaigns.conftest import ACTOR, START, SimClock, add_clinicians, make_campaign

MONTHLY = {"kind": "monthly_weekday", "ordinal": "first", "weekday": "monday", "time": "09:00"}


async def states(campaign_id: int | None = None) -> dict[str, int]:
    query = Send.select(Send.state)
    if campaign_id is not None:
        query = query.where(Send.campaign == campaign_id)
    counts: dict[str, int] = {}
    for row in await query.run():
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


async def eventually(condition, timeout: float = 15.0, interval: float = 0.05):
    """Await ``condition()`` until it is truthy; returns its value or fails after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"still not true after {timeout} s: {condition.__name__}")
        await asyncio.sleep(interval)


async def expected_next_runs(clock: SimClock) -> dict[int, object]:
    """What the scheduler should hold: each running campaign and the cadence's next fire time."""
    running = await Campaign.objects().where(Campaign.status.is_in(list(sending.RUNNING))).run()
    return {c.id: next_fire_times(cadence_of(c), c.time_zone, clock(), count=1)[0] for c in running}


def our_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("liaison-") and not t.done()]


# ------------------------------------------------------------------------------------------------
# The lease


async def test_the_lease_has_one_holder_until_it_expires_or_is_released(db):
    t0 = START

    assert await take_lease("worker-a", t0, 30)
    assert not await take_lease("worker-b", t0 + timedelta(seconds=5), 30)
    assert await lease_holder(t0 + timedelta(seconds=5)) == "worker-a"

    # A renews at t0+20: its lease now runs to t0+50, so B is still refused at t0+45.
    assert await take_lease("worker-a", t0 + timedelta(seconds=20), 30)
    assert not await take_lease("worker-b", t0 + timedelta(seconds=45), 30)
    row = await SchedulerLease.objects().first().run()
    assert (row.holder, row.acquired_at, row.expires_at) == ("worker-a", t0, t0 + timedelta(seconds=50))

    # A stops renewing: the lease is valid up to t0+50 exactly, B takes it just after.
    assert await lease_holder(t0 + timedelta(seconds=50)) is None
    assert not await take_lease("worker-b", t0 + timedelta(seconds=50), 30)
    later = t0 + timedelta(seconds=51)
    assert await take_lease("worker-b", later, 30)
    assert await lease_holder(later) == "worker-b"
    assert not await take_lease("worker-a", later + timedelta(seconds=1), 30)
    row = await SchedulerLease.objects().first().run()
    assert (row.holder, row.acquired_at) == ("worker-b", later)

    # Only the holder can release it; then anyone takes it at once.
    await release_lease("worker-a")
    assert await lease_holder(later) == "worker-b"
    await release_lease("worker-b")
    assert await lease_holder(later) is None
    assert await take_lease("worker-a", later, 30)
    assert await SchedulerLease.count().run() == 1


async def test_workers_racing_for_a_free_lease_get_exactly_one_holder(db):
    for round_ in range(3):
        now = START + timedelta(minutes=round_)
        won = await asyncio.gather(*(take_lease(f"worker-{n}", now, 30) for n in range(6)))
        assert sum(won) == 1
        assert await lease_holder(now) == f"worker-{won.index(True)}"
        await release_lease(f"worker-{won.index(True)}")


# ------------------------------------------------------------------------------------------------
# The scheduler behind the lease, on a simulated clock


async def test_the_holder_builds_one_job_per_running_campaign_and_rebuilds_on_change(db, mail_config):
    await add_clinicians(3)
    weekly = await make_campaign(mail_config, START, name="Weekly")
    monthly = await make_campaign(mail_config, START, name="Monthly", time_zone="America/Chicago", cadence=MONTHLY)
    await make_campaign(mail_config, START, name="Draft", schedule=False)
    clock = SimClock(START + timedelta(minutes=1))
    worker = Worker(mail_config, OutboxBackend(), worker_id="holder", clock=clock)
    rebuilds = 0
    rebuild = worker.rebuild

    async def counting_rebuild() -> None:
        nonlocal rebuilds
        rebuilds += 1
        await rebuild()

    worker.rebuild = counting_rebuild
    try:
        await worker.tick()

        assert worker.holds_lease and await lease_holder(clock()) == "holder"
        runs = worker.next_run_times()
        assert runs == await expected_next_runs(clock) and set(runs) == {weekly.id, monthly.id}
        # Weekly on Tuesdays at 10:00 New York time; the first Monday of April at 09:00 in Chicago.
        assert runs[weekly.id].isoformat() == "2027-03-09T15:00:00+00:00"
        assert runs[monthly.id].isoformat() == "2027-04-05T14:00:00+00:00"
        jobs = worker.scheduler.get_jobs()
        assert len(jobs) == 2 and all(isinstance(job.trigger, CadenceTrigger) for job in jobs)

        # Nothing changed: the jobs are kept as they are.
        clock.advance(seconds=10)
        await worker.tick()
        assert rebuilds == 1 and worker.next_run_times() == runs

        # A pause takes the campaign off the scheduler.
        await service.transition(weekly.id, "pause", actor=ACTOR, now=clock(), config=mail_config)
        clock.advance(seconds=10)
        await worker.tick()
        assert rebuilds == 2 and set(worker.next_run_times()) == {monthly.id}

        # A new campaign and a resumed one are scheduled.
        extra = await make_campaign(mail_config, clock(), name="Extra", cadence={"kind": "weekly", "weekdays": [4],
                                                                                  "time": "08:30"})
        await service.transition(weekly.id, "resume", actor=ACTOR, now=clock(), config=mail_config)
        clock.advance(seconds=10)
        await worker.tick()
        assert rebuilds == 3
        assert worker.next_run_times() == await expected_next_runs(clock)
        assert set(worker.next_run_times()) == {weekly.id, monthly.id, extra.id}

        # Completing a campaign removes its job.
        await service.transition(monthly.id, "complete", actor=ACTOR, now=clock(), config=mail_config)
        clock.advance(seconds=10)
        await worker.tick()
        assert set(worker.next_run_times()) == {weekly.id, extra.id}
    finally:
        await worker.stop()
    assert worker.scheduler is None and await lease_holder(clock()) is None


async def test_a_tick_fires_the_occurrences_that_came_due_while_no_scheduler_ran(db, mail_config):
    await add_clinicians(4)
    # Scheduled on Tuesday 2 March at 09:59 New York time: the 10:00 occurrence is due next.
    campaign = await make_campaign(mail_config, START - timedelta(minutes=1), grace_hours="24")
    clock = SimClock(START + timedelta(hours=2))
    worker = Worker(mail_config, OutboxBackend(), worker_id="holder", clock=clock)
    try:
        await worker.tick()
        await worker.tick()

        occurrences = await Occurrence.select(Occurrence.scheduled_for, Occurrence.status).run()
        assert occurrences == [{"scheduled_for": START, "status": "materialized"}]
        assert await states(campaign.id) == {"queued": 4}
        assert worker._wake.is_set()  # the dispatcher is told at once
    finally:
        await worker.stop()


async def test_a_job_fired_by_apscheduler_materializes_the_occurrence(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    clock = SimClock(START + timedelta(minutes=1))
    worker = Worker(mail_config, OutboxBackend(), worker_id="holder", clock=clock)
    try:
        await worker.tick()
        next_run = worker.next_run_times()[campaign.id]
        # The simulated week passes; APScheduler (on the real clock) is told to run the job now.
        clock.now = next_run + timedelta(seconds=1)
        worker.scheduler.modify_job(f"campaign-{campaign.id}", next_run_time=scheduler_module.utc_now())
        worker.scheduler.wakeup()

        async def fired():
            return await Occurrence.select(Occurrence.scheduled_for).where(Occurrence.campaign == campaign.id).run()

        assert await eventually(fired) == [{"scheduled_for": next_run}]
        assert await states(campaign.id) == {"queued": 2}
    finally:
        await worker.stop()


async def test_a_standby_does_not_schedule_and_takes_over_once_the_lease_expires(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    clock = SimClock(START + timedelta(minutes=1))
    holder = Worker(mail_config, OutboxBackend(), worker_id="holder", clock=clock)
    standby = Worker(mail_config, OutboxBackend(), worker_id="standby", clock=clock)
    assert (holder.lease_seconds, holder.tick_seconds) == (30, 10)  # the defaults
    takeovers = []
    try:
        # The standby ticks at every phase offset from the holder's last renewal.
        for offset in (0.0, 0.5, 3.3, 9.99):
            await holder.tick()
            clock.advance(seconds=offset)
            await standby.tick()
            assert holder.holds_lease and holder.next_run_times().keys() == {campaign.id}
            assert not standby.holds_lease and standby.scheduler is None and standby.next_run_times() == {}

            # The holder dies right after renewing (it stops ticking, and releases nothing).
            died = clock() - timedelta(seconds=offset)
            while not standby.holds_lease:
                clock.advance(seconds=standby.tick_seconds)
                await standby.tick()
                assert clock() - died <= timedelta(seconds=120), "the standby never took over"
            takeover = (clock() - died).total_seconds()
            takeovers.append(takeover)
            assert takeover <= standby.lease_seconds + standby.tick_seconds and takeover <= 60
            assert await lease_holder(clock()) == "standby"
            assert standby.next_run_times() == await expected_next_runs(clock)

            # The old holder comes back: it has lost the lease and stops its scheduler.
            await holder.tick()
            assert not holder.holds_lease and holder.scheduler is None and holder.next_run_times() == {}

            # Hand the lease back for the next round.
            await standby.stop()
            clock.advance(seconds=1)
    finally:
        await holder.stop()
        await standby.stop()
    assert max(takeovers) <= 40


async def test_a_scheduler_turn_that_fails_is_retried(db, mail_config, monkeypatch):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START - timedelta(minutes=1))
    clock = SimClock(START + timedelta(minutes=5))
    worker = Worker(mail_config, OutboxBackend(), worker_id="holder", clock=clock, lease_seconds=3)
    real_fire_due = scheduler_module.fire_due
    failures = []

    async def flaky_fire_due(campaign_id, now):
        if not failures:
            failures.append(now)
            raise ConnectionResetError("the database went away")
        return await real_fire_due(campaign_id, now)

    monkeypatch.setattr(scheduler_module, "fire_due", flaky_fire_due)
    try:
        await worker.tick()  # firing fails (logged); the next turn must try again
        assert failures and await Occurrence.count().run() == 0
        clock.advance(seconds=1)
        await worker.tick()
        assert await states(campaign.id) == {"queued": 2}
    finally:
        await worker.stop()


# ------------------------------------------------------------------------------------------------
# The dispatch loop


async def test_the_started_worker_fires_and_delivers_through_sendgrid_then_stops_cleanly(
    db, mail_config, fake_sendgrid
):
    await add_clinicians(1200)
    campaign = await make_campaign(mail_config, START - timedelta(minutes=1))
    clock = SimClock(START + timedelta(minutes=1))
    worker = Worker(mail_config, SendGridBackend(fake_sendgrid.api_key, host=fake_sendgrid.url), clock=clock)

    await worker.start()
    try:
        async def all_sent():
            return await states(campaign.id) == {"sent": 1200}

        await eventually(all_sent, timeout=60)
        assert worker.holds_lease and await lease_holder(clock()) == worker.worker_id
    finally:
        await worker.stop()

    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 1200
    assert our_tasks() == [] and worker._tasks == [] and worker.scheduler is None
    assert not worker.holds_lease and await lease_holder(clock()) is None


async def test_the_dispatch_loop_delivers_sends_queued_while_it_runs(db, mail_config):
    await add_clinicians(5)
    campaign = await make_campaign(mail_config, START)
    clock = SimClock(START)
    worker = Worker(mail_config, OutboxBackend(clock=clock), clock=clock, schedule=False, poll_seconds=0.05)

    await worker.start()
    try:
        await asyncio.sleep(0.2)  # idle: nothing is due
        assert await OutboxMessage.count().run() == 0
        await materialize(campaign.id, START, START)
        worker.wake()

        async def delivered():
            return await states(campaign.id) == {"sent": 5}

        await eventually(delivered)
        assert await OutboxMessage.count().run() == 5
        assert worker.scheduler is None and await lease_holder(clock()) is None  # schedule=False
    finally:
        await worker.stop()
    assert our_tasks() == []


async def test_the_dispatch_loop_keeps_going_after_database_errors(db, mail_config, monkeypatch):
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    errors = []

    async def flaky_claim(worker_id, now, limit=1000):
        if len(errors) < 3:
            errors.append(now)
            raise ConnectionRefusedError("the database is restarting")
        return await claim(worker_id, now, limit)

    monkeypatch.setattr(sending, "claim", flaky_claim)
    clock = SimClock(START)
    worker = Worker(mail_config, OutboxBackend(clock=clock), clock=clock, schedule=False, poll_seconds=0.05)
    await worker.start()
    try:
        async def delivered():
            return await states(campaign.id) == {"sent": 3}

        await eventually(delivered)
        assert len(errors) == 3
    finally:
        await worker.stop()


class SlowBackend:
    """The outbox, answering each batch after a delay (a slow provider)."""

    name = "slow"

    def __init__(self, delay: float, clock) -> None:
        self.delay = delay
        self.outbox = OutboxBackend(clock=clock)
        self.started = asyncio.Event()
        self.batches = 0

    async def new_batch_id(self) -> str:
        return await self.outbox.new_batch_id()

    async def send(self, batch: Batch) -> BatchResult:
        self.started.set()
        await asyncio.sleep(self.delay)
        self.batches += 1
        return await self.outbox.send(batch)


async def test_stop_lets_the_batch_in_flight_finish(db, mail_config):
    """A stop (SIGTERM at a deploy) while a batch is with the provider: the batch's outcome is
    recorded, not left ``sending`` to be flagged for review later."""
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    clock = SimClock(START)
    backend = SlowBackend(0.5, clock)
    worker = Worker(mail_config, backend, clock=clock, schedule=False)

    await worker.start()
    await asyncio.wait_for(backend.started.wait(), 10)
    await worker.stop()

    assert await states(campaign.id) == {"sent": 3} and backend.batches == 1
    assert our_tasks() == []


async def test_stop_does_not_wait_for_ever_on_a_hung_provider(db, mail_config):
    await add_clinicians(2)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    clock = SimClock(START)
    backend = SlowBackend(3600, clock)
    worker = Worker(mail_config, backend, clock=clock, schedule=False)
    worker.stop_grace_seconds = 0.3

    await worker.start()
    await asyncio.wait_for(backend.started.wait(), 10)
    started = asyncio.get_running_loop().time()
    await worker.stop()

    assert asyncio.get_running_loop().time() - started < 5
    assert our_tasks() == []
    # Handed to the provider and interrupted: the claim timeout flags it for review.
    assert await states(campaign.id) == {"sending": 2}
    assert await recover(START + timedelta(hours=1), timedelta(minutes=10)) == {"requeued": 0, "review": 2}


class StallingBackend(OutboxBackend):
    """The outbox, stalling before its batch (a worker paused, or stuck on a slow provider)."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()

    async def new_batch_id(self) -> str:
        self.stalled.set()
        await self.resume.wait()
        return await super().new_batch_id()


async def test_a_worker_stalled_past_the_claim_timeout_does_not_send_the_batch_again(db, mail_config):
    await add_clinicians(3)
    campaign = await make_campaign(mail_config, START)
    await materialize(campaign.id, START, START)
    stalling = StallingBackend()
    stalled = asyncio.create_task(Dispatcher(mail_config, stalling, "stalled-worker").run_once(START))
    await asyncio.wait_for(stalling.stalled.wait(), 10)

    # The lease holder's recovery after the claim timeout, then another worker sends them.
    later = START + timedelta(seconds=mail_config.claim_timeout_seconds + 60)
    assert await recover(later, timedelta(seconds=mail_config.claim_timeout_seconds)) == {"requeued": 3, "review": 0}
    assert (await Dispatcher(mail_config, OutboxBackend(), "other-worker").run_once(later)).sent == 3
    stalling.resume.set()
    await stalled

    emails = [row["to_email"] for row in await OutboxMessage.select(OutboxMessage.to_email).run()]
    assert sorted(emails) == sorted(set(emails)) and len(emails) == 3
    assert await states(campaign.id) == {"sent": 3}
