"""Benchmark: one campaign occurrence to N clinicians, end to end (targets for 100,000 recipients:
materialize + dispatch under 2 minutes on each backend, dispatch at 2,000 emails/s or more, webhook
ingest at 5,000 events/s or more).

    .venv/bin/python -m benchmarks.campaigns --backend sqlite|postgres|both [--recipients 100000] \
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--profile]

For each backend, in a child process on a fresh database (a file under var/bench/, or a scratch
PostgreSQL database that is dropped afterwards): migrate, write a roster (N clinicians in the
segment's state, N/10 elsewhere, half of the audience with an email from an earlier campaign ten
days ago), create the segment, campaign and step through the services, then time

1. ``materialize`` of one occurrence (enrollment and one send per clinician);
2. dispatch: ``Dispatcher.run_once(now, limit=1000)`` in a loop, as the worker does, through the
   real ``SendGridBackend`` (the official client) to the fake SendGrid server running in its own
   thread of the same process; the fake's log must hold N deliveries and no duplicate;
3. webhook ingest: batches of 1,000 realistic events (processed, delivered, deferred, open, click,
   bounce, blocked, dropped, spam reports, unsubscribes, replays) through ``campaigns.events.ingest``,
   and as many again through ``POST /webhooks/sendgrid/events`` with an ECDSA-signed body.

``--profile`` writes a cProfile of each phase to var/bench/campaigns-<backend>-<phase>.prof and
prints the top functions to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import platform
import pstats
import secrets
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORK = ROOT / "var" / "bench"
# A Tuesday, 15:00 UTC = 10:00 in New York: inside the default send window.
START = datetime(2027, 3, 2, 15, 0, tzinfo=timezone.utc)
SEGMENT_STATE = "VA"
SUBJECT = "{{ first_name }}, referral pathways for {{ practice_name }}"
HTML = """<p>Dear {{ salutation }},</p>
<p>Thank you for the patients you and your colleagues at {{ practice_name }} have trusted to our
{{ service_line }} team this year. We have opened two new clinics and now see new referrals within
five working days, most within 48 hours.</p>
<ul>
  <li><strong>Same-week consults</strong> for suspected lung, breast and colorectal cancers.</li>
  <li><strong>A direct line</strong> to the nurse navigator: 555-0100, Monday to Friday.</li>
  <li><strong>Tumor board</strong> every Thursday at 7:30; referring clinicians are welcome.</li>
</ul>
<p>{{ owner_name }} looks after {{ practice_name }} and will gladly visit; write to
<a href="mailto:{{ owner_email }}">{{ owner_email }}</a>.</p>
<p>With thanks,<br>{{ program_name }}</p>
"""

TARGET_TOTAL_S = 120.0
TARGET_EMAILS_S = 2000.0
TARGET_EVENTS_S = 5000.0


# ------------------------------------------------------------------------------------------------
# The child: one backend, one fresh database


class Breakdown:
    """Where a dispatch round's time goes: wraps the pipeline's steps (module functions looked up
    at call time, the backend's methods and the message builder) and adds up their wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _add(self, label: str, started: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

    def wrap_async(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self._add(label, started)

        setattr(owner, name, timed)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(label, started)

        setattr(owner, name, timed)

    def dispatch(self, dispatcher: Any) -> None:
        from campaigns import sending

        self.wrap_async(sending, "claim", "claim")
        self.wrap_async(sending, "_load", "load")
        self.wrap_async(dispatcher, "_recheck", "recheck")
        self.wrap_async(dispatcher, "_deliver", "deliver")
        self.wrap(dispatcher, "message_for", "render")
        self.wrap_async(dispatcher.backend, "new_batch_id", "sendgrid")
        self.wrap_async(dispatcher.backend, "send", "sendgrid")

    def summary(self, total: float) -> dict[str, float]:
        s = self.seconds
        deliver = s.get("deliver", 0.0)
        parts = {
            "claim": s.get("claim", 0.0), "load": s.get("load", 0.0), "recheck": s.get("recheck", 0.0),
            "render": s.get("render", 0.0), "sendgrid": s.get("sendgrid", 0.0),
            "record": deliver - s.get("render", 0.0) - s.get("sendgrid", 0.0),
        }
        parts["other"] = total - sum(parts.values())
        return parts


class Phases:
    """Wall-clock timing of named phases, with an optional cProfile of each."""

    def __init__(self, backend: str, profile: bool) -> None:
        self.backend = backend
        self.profile = profile
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        profiler = cProfile.Profile() if self.profile else None
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            if profiler:
                profiler.disable()
                path = WORK / f"campaigns-{self.backend}-{name}.prof"
                profiler.dump_stats(str(path))
                print(f"\n=== {self.backend} {name}: {self.seconds[name]:.2f} s ({path.name}) ===", file=sys.stderr)
                stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime")
                stats.print_stats(22)


async def prepare(url: str, recipients: int) -> dict[str, Any]:
    """Migrate the empty database at ``url``, write the roster and the history, and create the
    campaign through the services; returns the settings, engine, mail config and campaign."""
    import liaison  # noqa: F401  (points Piccolo at liaison.piccolo_conf)
    from campaigns.config import MailConfig
    from campaigns.tables import CampaignStep
    from crm.tables import Clinician
    from liaison import db
    from liaison.settings import Settings
    from tests.campaigns.conftest import make_campaign

    from benchmarks.campaign_data import add_history, build_roster

    settings = Settings(database_url=url, var_dir=WORK / "var", password_hash_profile="cheapest",
                        secret_key=secrets.token_urlsafe(48), run_worker=False)
    await db.check_connection(settings, create=True)
    engine = db.activate(db.engine_for(settings))
    await db.open_pool(engine, settings)
    config = MailConfig(
        base_url="https://liaison.example.org", secret_key=settings.secret_key, from_email="outreach@cancer.example",
        from_name="Riverside Cancer Institute", reply_to="outreach@cancer.example",
        program_name="Riverside Cancer Institute", postal_address="100 Main Street\nRichmond, VA 23219",
    )
    context = {"settings": settings, "engine": engine, "config": config}
    await db.migrate()
    await build_roster(recipients, recipients // 10, state=SEGMENT_STATE, now=START - timedelta(days=60))
    earlier = await make_campaign(config, START - timedelta(days=40), name="February update",
                                  state=SEGMENT_STATE, schedule=False)
    earlier_step = await CampaignStep.objects().where(CampaignStep.campaign == earlier.id).first().run()
    audience = [(r["id"], r["email"]) for r in await Clinician.select(Clinician.id, Clinician.email).where(
        Clinician.state == SEGMENT_STATE).order_by(Clinician.id).run()]
    await add_history(earlier.id, earlier_step.id, audience[::2], START - timedelta(days=10))
    context["campaign"] = await make_campaign(
        config, START - timedelta(minutes=1), name="March referral update", state=SEGMENT_STATE,
        subject=SUBJECT, html_body=HTML, service_line="thoracic oncology",
    )
    await engine.run_ddl("ANALYZE")  # as autovacuum (PostgreSQL) or `PRAGMA optimize` would
    return context


async def run_child(backend: str, url: str, recipients: int, batches: int, batch_size: int, profile: bool,
                    http: bool) -> dict[str, Any]:
    import logging

    from campaigns import events
    from campaigns.sending import Dispatcher, materialize
    from campaigns.sendgrid_backend import SendGridBackend
    from campaigns.tables import Send
    from liaison import db
    from tests.fake_sendgrid import FakeSendGrid

    from benchmarks.campaign_data import day_after, webhook_batches

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    timer = Phases(backend, profile)
    result: dict[str, Any] = {"backend": backend, "recipients": recipients}
    setup_started = time.perf_counter()
    context = await prepare(url, recipients)
    result["setup_s"] = time.perf_counter() - setup_started
    settings, engine, config, campaign = (context[k] for k in ("settings", "engine", "config", "campaign"))
    try:
        # 1. Materialize one occurrence.
        with timer("materialize"):
            materialized = await materialize(campaign.id, START, START)
        result["audience"] = materialized.audience
        result["queued"] = materialized.queued

        # 2. Dispatch through SendGrid (the fake, in a thread of this process).
        fake = FakeSendGrid().start()
        try:
            dispatcher = Dispatcher(config, SendGridBackend(fake.api_key, host=fake.url), "bench-worker")
            breakdown = Breakdown()
            breakdown.dispatch(dispatcher)
            sent = rounds = 0
            with timer("dispatch"):
                while (report := await dispatcher.run_once(START, limit=1000)).claimed:
                    sent += report.sent
                    rounds += 1
                    if report.failed or report.review or report.skipped or report.deferred:
                        raise SystemExit(f"dispatch round {rounds}: {report}")
            result["dispatch_parts"] = breakdown.summary(timer.seconds["dispatch"])
            deliveries = fake.deliveries
            result["sent"] = sent
            result["rounds"] = rounds
            result["deliveries"] = len(deliveries)
            result["duplicates"] = len(fake.duplicates())
            result["distinct_send_ids"] = len({d.custom_args.get("send_id") for d in deliveries})
            result["mail_requests"] = len([r for r in fake.requests if r.path == "/v3/mail/send"])
        finally:
            fake.stop()
        rows = await Send.select(Send.state).where(Send.campaign == campaign.id).run()
        result["sent_in_db"] = sum(1 for r in rows if r["state"] == "sent")

        # 3. Webhook ingest.
        sends = await Send.select(Send.id, Send.campaign, Send.email, Send.provider_message_id, Send.sent_at).where(
            Send.campaign == campaign.id
        ).order_by(Send.id).run()
        half = len(sends) // 2
        direct = webhook_batches(sends[:half], batches=batches, size=batch_size, seed=11)
        received_at = day_after(START)
        stored = duplicates = unknown = suppressed = 0
        with timer("ingest"):
            for batch in direct:
                report = await events.ingest(batch, now=received_at, soft_bounce_threshold=3)
                stored += report.stored
                duplicates += report.duplicates
                unknown += report.unknown_sends
                suppressed += report.suppressed
        result["events"] = sum(len(b) for b in direct)
        result["events_stored"] = stored
        result["events_duplicate"] = duplicates
        result["events_unknown"] = unknown
        result["suppressed"] = suppressed
        if http:
            over_http = webhook_batches(sends[half:], batches=batches, size=batch_size, seed=12)
            result["http_events"], result["http_stored"] = await post_webhooks(
                settings, engine, over_http, timer,
            )
    finally:
        await db.close_pool(engine)
    result["seconds"] = timer.seconds
    return result


async def post_webhooks(settings, engine, batches: list[list[dict]], timer: Phases) -> tuple[int, int]:
    """POST each batch to the app's webhook endpoint with a valid ECDSA signature."""
    import dataclasses

    import httpx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from campaigns import events
    from liaison.app import create_app

    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )).decode()
    app = create_app(dataclasses.replace(settings, sendgrid_webhook_public_key=public), engine=engine)
    bodies = []
    for batch in batches:
        raw = json.dumps(batch).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(private.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
        bodies.append((raw, {events.SIGNATURE_HEADER: signature, events.TIMESTAMP_HEADER: stamp,
                             "Content-Type": "application/json"}))
    stored = 0
    transport = httpx.ASGITransport(app=app, client=("167.89.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://liaison.test") as client:
        with timer("webhook_http"):
            for raw, headers in bodies:
                response = await client.post("/webhooks/sendgrid/events", content=raw, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"webhook answered {response.status_code}: {response.text[:300]}")
                stored += response.json()["stored"]
    return sum(len(b) for b in batches), stored


# ------------------------------------------------------------------------------------------------
# The parent: databases, child processes, the table


def fresh_postgres(base: str) -> tuple[str, str]:
    from benchmarks.import_nppes import fresh_postgres as create

    return create(base)


def drop_postgres(base: str, name: str) -> None:
    from benchmarks.import_nppes import drop_postgres as drop

    drop(base, name)


def postgres_version(base: str) -> str:
    import asyncpg

    async def version() -> str:
        connection = await asyncpg.connect(base)
        try:
            return await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()

    try:
        return asyncio.run(version()).split()[0]
    except Exception as error:  # noqa: BLE001
        return f"unavailable ({type(error).__name__})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    cleanup = None
    if backend == "sqlite":
        database = WORK / f"campaigns-{args.recipients}-{secrets.token_hex(3)}.sqlite3"
        url = f"sqlite:///{database}"
    else:
        url, cleanup = fresh_postgres(args.postgres)
    command = [sys.executable, "-m", "benchmarks.campaigns", "--child", backend, url, "--recipients",
               str(args.recipients), "--batches", str(args.batches), "--batch-size", str(args.batch_size)]
    command += ["--profile"] if args.profile else []
    command += ["--no-http"] if args.no_http else []
    try:
        out = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout
    finally:
        if backend == "sqlite":
            if not args.keep:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
        elif cleanup:
            drop_postgres(args.postgres, cleanup)
    return json.loads(out.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    header = (f"{'backend':<10} {'recipients':>10} {'materialize s':>13} {'dispatch s':>10} {'emails/s':>9} "
              f"{'mat+disp s':>10} {'delivered':>9} {'dups':>5} {'ingest ev/s':>11} {'HTTP ev/s':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        s = r["seconds"]
        total = s["materialize"] + s["dispatch"]
        rate = r["sent"] / s["dispatch"]
        ingest = r["events"] / s["ingest"]
        http = f"{r['http_events'] / s['webhook_http']:>10.0f}" if "webhook_http" in s else f"{'-':>10}"
        print(f"{r['backend']:<10} {r['recipients']:>10,} {s['materialize']:>13.2f} {s['dispatch']:>10.2f} "
              f"{rate:>9.0f} {total:>10.2f} {r['deliveries']:>9,} {r['duplicates']:>5} {ingest:>11.0f} {http}")
    print()
    for r in results:
        s = r["seconds"]
        total = s["materialize"] + s["dispatch"]
        rate = r["sent"] / s["dispatch"]
        ingest = r["events"] / s["ingest"]
        checks = [
            f"total {verdict(total < TARGET_TOTAL_S)} (<{TARGET_TOTAL_S:.0f} s)",
            f"dispatch {verdict(rate >= TARGET_EMAILS_S)} (>={TARGET_EMAILS_S:.0f}/s)",
            f"ingest {verdict(ingest >= TARGET_EVENTS_S)} (>={TARGET_EVENTS_S:.0f}/s)",
            f"deliveries {verdict(r['deliveries'] == r['recipients'] == r['distinct_send_ids'] == r['sent_in_db'])}",
            f"duplicates {verdict(r['duplicates'] == 0)}",
        ]
        print(f"{r['backend']}: " + ", ".join(checks))
        print(f"  {r['mail_requests']} mail/send requests in {r['rounds']} dispatch rounds; "
              f"{r['events']:,} events in {args.batches} batches: {r['events_stored']:,} stored, "
              f"{r['events_duplicate']} replays ignored, {r['events_unknown']} about unknown sends, "
              f"{r['suppressed']} suppressions; setup {r['setup_s']:.1f} s")
        parts = r["dispatch_parts"]
        print("  dispatch seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in parts.items()))
    print("\n(claim: the UPDATE … RETURNING; load: the sends with clinician, practice and owner; recheck: "
          "suppressions, frequency cap, window; render: merge values, subject, substitutions, unsubscribe "
          "token; sendgrid: batch id + mail/send through the client to the fake, JSON both ways, the fake's "
          "validation in the same process; record: the 'sending' and 'sent' updates)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=50, help="webhook batches (default 50)")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per webhook batch (default 1000)")
    parser.add_argument("--postgres", default=os.environ.get("LIAISON_TEST_POSTGRES_URL")
                        or "postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--profile", action="store_true", help="cProfile each phase (slower)")
    parser.add_argument("--no-http", action="store_true", help="skip the signed HTTP webhook pass")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.child:
        backend, url = args.child
        result = asyncio.run(run_child(backend, url, args.recipients, args.batches, args.batch_size,
                                       args.profile, not args.no_http))
        print(json.dumps(result))
        return

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), load average {os.getloadavg()[0]:.2f}, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL "
          f"{postgres_version(args.postgres) if 'postgres' in backends else '(not run)'}")
    print(f"campaign: {args.recipients:,} recipients (segment state={SEGMENT_STATE}, "
          f"{args.recipients // 10:,} clinicians outside it), dispatch limit 1000 per run_once, "
          f"webhook {args.batches} x {args.batch_size} events"
          + ("" if args.no_http else " direct + the same again over signed HTTP"))
    results = []
    for backend in backends:
        started = time.perf_counter()
        print(f"running {backend} …", file=sys.stderr, flush=True)
        results.append(run_backend(backend, args))
        print(f"{backend} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print_table(results, args)


if __name__ == "__main__":
    main()
