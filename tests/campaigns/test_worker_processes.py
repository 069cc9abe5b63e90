"""Real ``liaison worker`` processes on PostgreSQL, mailing the fake SendGrid server of this process.

They are killed (SIGKILL) in the middle of a batch and started again, stopped with SIGTERM, cut
off from the database, and the scheduler lease is watched moving to the survivor. What went out is
read from the fake server's own log: nobody is mailed twice, and every send is either sent
(delivered exactly once) or flagged for review (its batch's outcome unknown after a kill).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest
from piccolo.querystring import QueryString

from campaigns.scheduler import LEASE_NAME, lease_holder
from campaigns.sending import materialize, recover
from campaigns.tables import SchedulerLease, Send
from crm.tables import Clinician
from liaison import db as database
from liaison.settings import Settings
from tests.campaigns.conftest import add_clinicians, make_campaign
from tests.conftest import POSTGRES_URL
from tests.fake_sendgrid import MAIL_SEND, FakeSendGrid

pytestmark = pytest.mark.backend("postgres")

LIAISON = str(Path(sys.executable).with_name("liaison"))
ROSTER = 3000
LEASE_SECONDS = 30  # the Worker's default; `liaison worker` does not change it


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SlowSendGrid(FakeSendGrid):
    """The fake SendGrid, taking a while to answer (as the real one does for 1,000 recipients):
    ``latency`` seconds, at random, for each request to a path. It records a delivery after the
    delay even if the client is gone: a batch whose sender was killed mid-request may still have
    been accepted."""

    def __init__(self, latency: dict[str, tuple[float, float]]) -> None:
        super().__init__()
        self.latency = latency

    def handle(self, method, target, headers, raw):
        delay = self.latency.get(urlsplit(target).path)
        if delay:
            self._stopping.wait(random.uniform(*delay))
        return super().handle(method, target, headers, raw)


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        """The worker has started its loops (and handles SIGTERM)."""
        return "liaison worker" in self.output() and " running" in self.output()

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.alive(), f"the worker exited:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{self.output()[-3000:]}"
            await asyncio.sleep(0.05)


@dataclass
class Cluster:
    """The database (bound in this process too), the fake provider and the worker processes."""

    url: str
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    started: int = 0

    def start_worker(self) -> WorkerProcess:
        self.started += 1
        log = self.tmp / f"worker-{self.started}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [LIAISON, "worker"], env=self.env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, log)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def kill(self, worker: WorkerProcess) -> None:
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)

    def terminate(self, worker: WorkerProcess, timeout: float = 20) -> int:
        worker.process.send_signal(signal.SIGTERM)
        try:
            return worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            pytest.fail(f"the worker did not stop within {timeout} s of SIGTERM:\n{worker.output()[-3000:]}")

    def logs(self) -> str:
        return "\n".join(f"--- worker {n} (pid {w.pid}) ---\n{w.output()[-4000:]}" for n, w in enumerate(self.workers))


def pid_of(worker_id: str | None) -> int | None:
    """``liaison worker`` ids are ``host:pid:random``."""
    if not worker_id:
        return None
    try:
        return int(worker_id.split(":")[-2])
    except (IndexError, ValueError):
        return None


@pytest.fixture
async def cluster(fresh_database, tmp_path) -> AsyncIterator[Cluster]:
    """A fresh PostgreSQL database migrated by ``liaison db migrate``, bound in this process."""
    url = fresh_database.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(
        LIAISON_DATABASE_URL=url,
        LIAISON_VAR_DIR=str(tmp_path / "var"),
        LIAISON_SECRET_KEY="worker-process-test-" + "k" * 40,
        LIAISON_POSTAL_ADDRESS="Springfield Cancer Center, 100 Main Street, Springfield, IL 62701",
        LIAISON_FROM_EMAIL="outreach@cancer.test",
        LIAISON_BASE_URL="https://liaison.test",
        LIAISON_PASSWORD_HASH="cheapest",
        PYTHONUNBUFFERED="1",
    )
    migrated = subprocess.run([LIAISON, "db", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    previous = Clinician._meta.db
    # No pool in this process: every query connects anew, so cutting the database's connections
    # (test_workers_ride_out_a_database_outage) cannot break this side.
    database.activate(database.engine_for(Settings(database_url=url)))
    cluster = Cluster(url, env, tmp_path)
    try:
        yield cluster
    finally:
        for worker in cluster.workers:
            if worker.alive():
                worker.process.kill()
                worker.process.wait()
        database.activate(previous)


async def roster_with_a_materialized_occurrence(mail_config, size: int) -> int:
    """``size`` clinicians, and a running campaign whose occurrence (now) is materialized: one
    queued send per clinician, due now, in a send window that is always open."""
    await add_clinicians(size)
    now = utc_now()
    campaign = await make_campaign(
        mail_config, now, name=f"Process test {now.isoformat()}", time_zone="UTC",
        send_days="1234567", send_start_hour="0", send_end_hour="24",
        # Its cadence fires next year: the only occurrence is the one materialized here.
        cadence={"kind": "once", "date": date(now.year + 1, 1, 15).isoformat(), "time": "10:00"},
    )
    result = await materialize(campaign.id, now, now)
    assert result.queued == size
    return campaign.id


async def snapshot() -> list[dict]:
    """The sends by state and worker, read in one statement."""
    return await Send._meta.db.run_querystring(
        QueryString("SELECT state, claimed_by, COUNT(*) AS n FROM send GROUP BY state, claimed_by")
    )


def by_state(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + row["n"]
    return counts


def in_flight_pids(rows: list[dict], phase: str | None = None) -> set[int]:
    """The workers holding sends ``claimed`` or ``sending`` (or only in ``phase``)."""
    states = (phase,) if phase else ("claimed", "sending")
    return {pid_of(r["claimed_by"]) for r in rows if r["state"] in states}


# ------------------------------------------------------------------------------------------------


async def test_workers_killed_mid_batch_neither_lose_nor_repeat_a_send(cluster, mail_config):
    began = time.monotonic()
    # A batch id takes 0.2-0.6 s (its sends are ``claimed``), the batch 0.3-1.2 s (``sending``).
    fake = SlowSendGrid(latency={"/v3/mail/batch": (0.2, 0.6), MAIL_SEND: (0.3, 1.2)}).start()
    try:
        cluster.env.update(
            LIAISON_EMAIL_BACKEND="sendgrid", LIAISON_SENDGRID_HOST=fake.url, LIAISON_SENDGRID_API_KEY=fake.api_key,
        )
        campaign_id = await roster_with_a_materialized_occurrence(mail_config, ROSTER)
        cluster.start_worker()
        cluster.start_worker()

        # Stop a worker in the middle of a batch, at a random moment of the phase wanted, and start
        # another: SIGKILL while its sends are claimed (they go back to the queue) or being sent
        # (the outcome is unknown: review), and SIGTERM (the batch finishes first).
        signals = [(signal.SIGKILL, "claimed"), (signal.SIGTERM, "sending"), (signal.SIGKILL, "sending"),
                   (signal.SIGKILL, "claimed")]
        stopped: list[tuple[str, int, dict[str, int]]] = []
        recoveries = []
        deadline = time.monotonic() + 45
        waiting_since = time.monotonic()
        while signals and time.monotonic() < deadline:
            rows = await snapshot()
            alive = {w.pid: w for w in cluster.alive()}
            how, phase = signals[0]
            if time.monotonic() - waiting_since > 3:
                phase = None  # that phase did not come up: any moment of a batch will do
            busy = [alive[pid] for pid in in_flight_pids(rows, phase) if pid in alive]
            if busy:
                victim = random.choice(busy)
                await asyncio.sleep(random.uniform(0.0, 0.3))
                signals.pop(0)
                if how == signal.SIGKILL:
                    cluster.kill(victim)
                else:
                    await victim.wait_ready()
                    code = cluster.terminate(victim)
                    assert code == 0, victim.output()[-3000:]
                    left = {r["state"]: r["n"] for r in await snapshot()
                            if pid_of(r["claimed_by"]) == victim.pid and r["state"] in ("claimed", "sending")}
                    assert left == {}, f"SIGTERM left sends in flight: {left}\n{victim.output()[-3000:]}"
                stopped.append((how.name, victim.pid, by_state(await snapshot())))
                cluster.start_worker()
                waiting_since = time.monotonic()
                continue
            if by_state(rows).get("queued", 0) == 0 and in_flight_pids(rows):
                # Nothing left to claim, and only dead workers hold sends: what the lease holder
                # does once the claim timeout has passed (a short one, as the workers are idle).
                recoveries.append(await recover(utc_now(), timedelta(seconds=1)))
            elif not by_state(rows).get("queued", 0):
                break  # all done before the signals ran out
            await asyncio.sleep(0.05)

        # Before the last recovery every send is sent, in review, queued, or held by a worker
        # (a dead one's until the claim timeout).
        before = by_state(await snapshot())
        assert sum(before.values()) == ROSTER and set(before) <= {"sent", "review", "queued", "claimed", "sending"}

        # Recover what the last kill left behind; the surviving workers dispatch the rest.
        while time.monotonic() < deadline + 15:
            rows = await snapshot()
            counts = by_state(rows)
            if not counts.get("queued") and not in_flight_pids(rows):
                break
            alive = {w.pid for w in cluster.alive()}
            if not counts.get("queued") and not in_flight_pids(rows) & alive:
                recoveries.append(await recover(utc_now(), timedelta(seconds=1)))
            await asyncio.sleep(0.1)

        counts = by_state(await snapshot())
        sends = await Send.select(Send.id, Send.email, Send.state, Send.batch_id).where(
            Send.campaign == campaign_id
        ).run()
        deliveries = fake.deliveries
        delivered = fake.count_by_email()
        state_of = {s["id"]: s["state"] for s in sends}
        summary = (
            f"signals {stopped}; recoveries {recoveries}; before the last recovery {before}; final {counts}; "
            f"{len(deliveries)} deliveries\n"
            f"{cluster.logs()}"
        )

        assert len(stopped) >= 3, summary
        # Nobody mailed twice, and every delivery is a send that is sent or in review.
        assert fake.duplicates() == {}, summary
        assert all(state_of[int(d.custom_args["send_id"])] in ("sent", "review") for d in deliveries), summary
        # Every send is accounted for: sent or in review (what was requeued has been sent).
        assert sum(counts.values()) == len(sends) == ROSTER, summary
        assert set(counts) <= {"sent", "review"}, summary
        for send in sends:
            times = delivered.get(send["email"], 0)
            if send["state"] == "sent":
                assert times == 1, (send, summary)
            else:  # review: the batch may or may not have reached the provider
                assert times <= 1, (send, summary)
        # Review only comes from the killed batches (each at most 1,000 sends).
        kills = sum(1 for how, *_ in stopped if how == "SIGKILL")
        assert counts.get("review", 0) <= kills * 1000, summary
        # Stopped with SIGTERM, the workers exit cleanly and release the lease if they hold it
        # (a SIGKILLed holder's lease stays until its term ends).
        terminated = {pid for how, pid, _ in stopped if how == "SIGTERM"}
        for worker in cluster.alive():
            await worker.wait_ready()
            assert cluster.terminate(worker) == 0, worker.output()[-3000:]
            terminated.add(worker.pid)
        assert pid_of(await lease_holder(utc_now())) not in terminated, summary
        print(f"\nkill test: {summary.splitlines()[0]}; {time.monotonic() - began:.1f} s")
    finally:
        fake.stop()


async def test_the_scheduler_lease_moves_to_the_survivor_when_its_holder_is_killed(cluster):
    first, second = cluster.start_worker(), cluster.start_worker()
    by_pid = {first.pid: first, second.pid: second}

    async def holder_pid() -> int | None:
        return pid_of(await lease_holder(utc_now()))

    deadline = time.monotonic() + 30
    while (pid := await holder_pid()) not in by_pid:
        assert time.monotonic() < deadline, f"no worker took the lease\n{cluster.logs()}"
        await asyncio.sleep(0.1)
    holder = by_pid[pid]
    survivor = first if holder is second else second
    lease = await SchedulerLease.objects().where(SchedulerLease.name == LEASE_NAME).first().run()

    cluster.kill(holder)
    killed_at, killed_wall = time.monotonic(), utc_now()
    while await holder_pid() != survivor.pid:
        assert time.monotonic() - killed_at < 90, f"the survivor never took the lease\n{cluster.logs()}"
        await asyncio.sleep(0.1)
    takeover = time.monotonic() - killed_at
    last_renewal = lease.expires_at - timedelta(seconds=LEASE_SECONDS)
    since_renewal = (utc_now() - last_renewal).total_seconds()

    print(f"\nlease takeover: {takeover:.1f} s after the SIGKILL, {since_renewal:.1f} s after the last renewal")
    # At most the lease term plus one turn of the survivor's lease loop (30 s + 10 s).
    assert takeover <= 60 and since_renewal <= LEASE_SECONDS + LEASE_SECONDS / 3 + 2, cluster.logs()
    assert (utc_now() - killed_wall).total_seconds() < 60
    assert "took the scheduler lease" in survivor.output()
    assert cluster.terminate(survivor) == 0, survivor.output()[-3000:]
    assert await lease_holder(utc_now()) is None


async def test_workers_ride_out_a_database_outage(cluster, mail_config):
    """The database stops taking connections for a few seconds (a restart): the workers log,
    keep looping, and carry on afterwards."""
    fake = FakeSendGrid().start()
    try:
        cluster.env.update(
            LIAISON_EMAIL_BACKEND="sendgrid", LIAISON_SENDGRID_HOST=fake.url, LIAISON_SENDGRID_API_KEY=fake.api_key,
        )
        workers = [cluster.start_worker(), cluster.start_worker()]
        deadline = time.monotonic() + 30
        while pid_of(await lease_holder(utc_now())) is None or not all(w.ready() for w in workers):
            assert time.monotonic() < deadline, cluster.logs()
            await asyncio.sleep(0.1)

        name = urlsplit(cluster.url).path.lstrip("/")
        admin = await asyncpg.connect(dsn=POSTGRES_URL)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await asyncio.sleep(4)
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()

        assert all(w.alive() for w in workers), cluster.logs()
        campaign_id = await roster_with_a_materialized_occurrence(mail_config, 50)
        deadline = time.monotonic() + 30
        while by_state(await snapshot()) != {"sent": 50}:
            assert time.monotonic() < deadline, f"{by_state(await snapshot())}\n{cluster.logs()}"
            await asyncio.sleep(0.1)
        assert fake.duplicates() == {} and len(fake.deliveries) == 50
        # The lease is still held and renewed by a live worker.
        deadline = time.monotonic() + 2 * LEASE_SECONDS
        while pid_of(await lease_holder(utc_now())) not in {w.pid for w in workers}:
            assert time.monotonic() < deadline, cluster.logs()
            await asyncio.sleep(0.2)
        output = cluster.logs()
        assert "dispatch failed; retrying" in output or "scheduler turn failed" in output, output
        for worker in workers:
            assert cluster.terminate(worker) == 0, worker.output()[-3000:]
        assert campaign_id
    finally:
        fake.stop()


async def test_a_worker_started_while_the_database_is_down_waits_for_it(cluster):
    name = urlsplit(cluster.url).path.lstrip("/")
    admin = await asyncpg.connect(dsn=POSTGRES_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        worker = cluster.start_worker()
        await asyncio.sleep(3)
        assert worker.alive() and not worker.ready(), worker.output()
        assert "the database does not answer" in worker.output()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    deadline = time.monotonic() + 30
    while not worker.ready():
        assert time.monotonic() < deadline, worker.output()
        await asyncio.sleep(0.2)
    assert cluster.terminate(worker) == 0, worker.output()[-3000:]
