"""Synthetic data for ``benchmarks.campaigns``: a roster written in bulk, and SendGrid Event Webhook
batches for sends that went out.

The roster goes in with ``crm.bulk.upsert`` (COPY on PostgreSQL, executemany on SQLite) rather than
one Piccolo insert per 500 rows, so building 100,000 clinicians takes seconds; the campaign, its
segment and its step are made through the services, as the tests do.
"""

from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from crm import bulk
from crm.db import atomic
from crm.tables import Clinician, Practice

FIRST = [
    "James", "Mary", "Siobhán", "José", "Mei", "Aisha", "Robert", "Patricia", "Olusegun", "Linh", "Zoë",
    "Michael", "Jennifer", "Ana", "François", "Priya", "David", "Elizabeth", "Hyun-woo", "Fatima", "Søren",
    "William", "Barbara", "Carlos", "Ngozi", "Thomas", "Susan", "Dmitri", "Kateřina", "Ahmed",
]
MIDDLE = ["", "", "", "A", "J", "Marie", "Lee", "K", "Ann", "R"]
LAST = [
    "Smith", "O'Brien", "García", "Nguyen", "Johnson", "Williams", "Okafor", "Müller", "Kim", "Patel",
    "Brown", "Jones", "D'Angelo", "MacDonald", "van der Berg", "Rodríguez", "Chen", "Lee-Walker", "Ivanova",
    "Hernández", "Davis", "Miller", "Wilson", "Moore", "Taylor", "Anderson", "Thomas", "Jackson", "Ó Súilleabháin",
    "White",
]
CREDENTIALS = ["MD", "MD", "MD", "DO", "M.D., PhD", "NP", "PA-C", "FNP-BC", "MBBS", "RN", ""]
ROLES = ["primary_care", "primary_care", "surgeon", "specialist", "other"]
PRACTICE_WORDS = ["Riverside", "Valley", "Blue Ridge", "St. Mary's", "Tidewater", "Hanover", "Shenandoah",
                  "Piedmont", "Chesapeake", "Harbor", "Oak Hill", "Smith & Jones"]
PRACTICE_KINDS = ["Family Practice", "Internal Medicine", "Surgical Associates", "Women's Health",
                  "Pulmonary & Sleep", "Urology Group", "Primary Care", "Medical Group"]
CITIES = [("Richmond", "232"), ("Norfolk", "235"), ("Roanoke", "240"), ("Charlottesville", "229"),
          ("Fairfax", "220"), ("Lynchburg", "245")]
OTHER_STATES = ["MD", "NC", "WV", "TN", "DC"]
DOMAINS = ["gmail.com", "clinic-mail.org", "healthsystem.example", "practice.example.net", "outlook.com"]


def _ascii(value: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


async def build_roster(
    clinicians: int, outside: int, *, state: str, now: datetime, seed: int = 7
) -> dict[str, Any]:
    """``clinicians`` active, mailable clinicians in ``state`` (the benchmark's segment) and
    ``outside`` more in other states; a practice per 20 clinicians and 25 liaisons as owners."""
    rng = random.Random(seed)
    from crm import passwords, users
    from crm.audit import Actor

    passwords.use_profile("cheapest")
    owners = []
    for n in range(25):
        user = await users.create_user(
            f"liaison{n}@cancer.example", role="liaison", password="benchmark-password",
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", actor=Actor.cli(),
        )
        owners.append(user.id)
    total = clinicians + outside
    practices = max(10, total // 20)
    practice_rows = []
    for n in range(practices):
        city, zip3 = rng.choice(CITIES)
        practice_rows.append((
            f"{rng.choice(PRACTICE_WORDS)} {rng.choice(PRACTICE_KINDS)} {n}", f"{n + 100} Main Street", city,
            state if n % 10 else rng.choice(OTHER_STATES), f"{zip3}{n % 100:02d}", "import", now, now,
        ))
    async with atomic():
        await bulk.upsert(
            Practice, ["name", "address_line1", "city", "state", "postal_code", "source", "created_at",
                       "updated_at"], practice_rows,
        )
    practice_ids = [r["id"] for r in await Practice.select(Practice.id).order_by(Practice.id).run()]
    rows = []
    for n in range(total):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, zip3 = rng.choice(CITIES)
        in_segment = n < clinicians
        rows.append((
            f"{1_000_000_000 + n}", first, rng.choice(MIDDLE), last, rng.choice(CREDENTIALS), rng.choice(ROLES),
            practice_ids[n % len(practice_ids)], f"{rng.randint(1, 9999)} {rng.choice(PRACTICE_WORDS)} Road",
            city, state if in_segment else rng.choice(OTHER_STATES), f"{zip3}{rng.randint(0, 99):02d}",
            f"{_ascii(first)}.{_ascii(last)}.{n}@{rng.choice(DOMAINS)}",
            rng.choice(owners) if rng.random() < 0.7 else None, True, False, "nppes", now, now,
        ))
    columns = ["npi", "first_name", "middle_name", "last_name", "credential", "role", "practice",
               "address_line1", "city", "state", "postal_code", "email", "owner", "active", "do_not_contact",
               "source", "created_at", "updated_at"]
    for start in range(0, len(rows), 20_000):
        async with atomic():
            await bulk.upsert(Clinician, columns, rows[start : start + 20_000])
    return {"owners": len(owners), "practices": practices, "clinicians": total}


async def add_history(campaign_id: int, step_id: int, recipients: list[tuple[int, str]], sent_at: datetime,
                      seed: int = 5) -> int:
    """One email from an earlier campaign for each (clinician id, email) of ``recipients``, in the
    states its events left it in (mostly delivered or opened; some clicked, bounced, deferred), so
    the frequency-cap query has rows to count (one each, under the default cap of two) and the
    send table's statistics look like a table in use."""
    from campaigns.tables import Send

    rng = random.Random(seed)
    states = ["delivered"] * 50 + ["opened"] * 30 + ["clicked"] * 10 + ["bounced"] * 3 + ["sent"] * 5 + ["deferred"] * 2
    rows = []
    for cid, email in recipients:
        state = rng.choice(states)
        delivered = sent_at + timedelta(seconds=rng.randint(1, 60)) if state not in ("sent", "bounced", "deferred") else None
        rows.append((f"c{campaign_id}:s{step_id}:hist:{cid}", campaign_id, step_id, cid, email, state, sent_at,
                     sent_at, delivered, sent_at, sent_at))
    for start in range(0, len(rows), 20_000):
        async with atomic():
            await bulk.upsert(
                Send, ["key", "campaign", "step", "clinician", "email", "state", "due_at", "sent_at", "delivered_at",
                       "created_at", "updated_at"], rows[start : start + 20_000],
            )
    return len(rows)


# ------------------------------------------------------------------------------------------------
# SendGrid Event Webhook batches

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Outlook 16.0.17126; Microsoft Outlook 16.0.17126",
]
LINKS = ["https://cancer.example.org/refer", "https://cancer.example.org/clinics/thoracic",
         "https://cancer.example.org/events/tumor-board"]


def _sg_event_id(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(22))


def webhook_batches(
    sends: list[dict[str, Any]], *, batches: int, size: int, seed: int = 11, asm_group_id: int = 4242
) -> list[list[dict[str, Any]]]:
    """``batches`` lists of ``size`` events as SendGrid posts them, for ``sends`` (rows with id,
    campaign, email, provider_message_id, sent_at), in time order: every email is processed then
    delivered (or deferred first, bounced, blocked or dropped); some are opened, some clicked, a few
    reported as spam or unsubscribed. About 0.5% are redelivered copies (SendGrid delivers at
    least once) and 0.3% are about mail sent by other systems (no ``send_id``)."""
    rng = random.Random(seed)
    wanted = batches * size
    events: list[tuple[float, dict[str, Any]]] = []
    sends = list(sends)
    rng.shuffle(sends)
    for send in sends:
        if len(events) >= wanted * 1.02:
            break
        base = (send["sent_at"] or datetime.now(timezone.utc)).timestamp() + rng.uniform(0, 600)
        common = {
            "email": send["email"], "send_id": str(send["id"]), "campaign_id": str(send["campaign"]),
            "category": [f"campaign-{send['campaign']}"],
            "sg_message_id": f"{send['provider_message_id']}.filterdrecv-{rng.randint(1, 99)}-{rng.randint(1000, 9999)}.0",
            "smtp-id": f"<{send['provider_message_id']}@ismtpd0001p1iad2.sendgrid.net>",
        }

        def add(kind: str, at: float, **extra: Any) -> None:
            events.append((at, {**common, "event": kind, "timestamp": int(at), "sg_event_id": _sg_event_id(rng),
                                **extra}))

        add("processed", base)
        roll = rng.random()
        if roll < 0.02:
            add("bounce", base + 3, type="bounce", status="5.1.1", bounce_classification="Invalid Address",
                reason="550 5.1.1 The email account that you tried to reach does not exist.")
            continue
        if roll < 0.03:
            add("bounce", base + 3, type="blocked", status="4.7.1", bounce_classification="Reputation",
                reason="421 4.7.1 Temporarily rate limited due to IP reputation")
            continue
        if roll < 0.035:
            add("dropped", base + 1, reason="Bounced Address", status="5.0.0")
            continue
        delivered = base + rng.uniform(1, 30)
        if roll < 0.07:
            add("deferred", base + 2, response="451 4.7.650 The mail server has been temporarily rate limited",
                attempt="1")
            delivered += rng.uniform(300, 3600)
        add("delivered", delivered, response="250 2.0.0 OK", ip="149.72.1.1", tls=1)
        if rng.random() < 0.45:
            opened = delivered + rng.expovariate(1 / 7200)
            add("open", opened, useragent=rng.choice(USER_AGENTS), ip="203.0.113.9", sg_machine_open=False)
            if rng.random() < 0.3:
                add("click", opened + rng.uniform(5, 600), url=rng.choice(LINKS), url_offset={"index": 0, "type": "html"},
                    useragent=rng.choice(USER_AGENTS), ip="203.0.113.9")
        extra = rng.random()
        if extra < 0.002:
            add("spamreport", delivered + rng.uniform(60, 86_400))
        elif extra < 0.006:
            add("unsubscribe", delivered + rng.uniform(60, 86_400))
        elif extra < 0.009:
            add("group_unsubscribe", delivered + rng.uniform(60, 86_400), asm_group_id=asm_group_id,
                useragent=rng.choice(USER_AGENTS), ip="203.0.113.9")
    events.sort(key=lambda pair: pair[0])
    stream = [event for _, event in events]
    # Redelivered copies and events about mail sent elsewhere.
    for position in rng.sample(range(len(stream)), len(stream) // 200):
        stream.insert(position + 1, dict(stream[position]))
    for position in rng.sample(range(len(stream)), len(stream) * 3 // 1000):
        stream.insert(position, {
            "email": f"someone{position}@elsewhere.example", "event": "delivered", "timestamp": stream[position]["timestamp"],
            "sg_event_id": _sg_event_id(rng), "sg_message_id": secrets.token_urlsafe(16), "response": "250 OK",
        })
    stream = stream[:wanted]
    return [stream[start : start + size] for start in range(0, len(stream), size)]


def day_after(moment: datetime) -> datetime:
    return moment + timedelta(days=1)
