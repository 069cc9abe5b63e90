"""The SendGrid Event Webhook: signature check on the raw body, then batch ingest.

Events are stored once (``provider_event_id`` is unique; an event without ``sg_event_id`` gets a
digest of its content), move their send forward (never backward: a late "delivered" does not undo
"opened"), and feed suppressions: hard bounces, spam reports and unsubscribes at once, soft bounces
(``blocked``) once an address reaches the configured threshold, group unsubscribes for that group
only. Unknown event types and events about unknown sends are stored without error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from campaigns import suppressions
from campaigns.tables import EmailEvent
from crm.db import atomic

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_EVENTS = 5000

# The state an event moves a send to, and how far along that is; a send only moves forward.
PROGRESS = {
    "sent": 1, "deferred": 2, "delivered": 3, "opened": 4, "clicked": 5,
    "bounced": 6, "dropped": 6, "spam": 7, "unsubscribed": 7,
}
EVENT_STATE = {
    "processed": "sent",
    "deferred": "deferred", "delivered": "delivered", "open": "opened", "click": "clicked",
    "bounce": "bounced", "dropped": "dropped", "spamreport": "spam", "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
EVENT_TIME_COLUMN = {"delivered": "delivered_at", "open": "opened_at", "click": "clicked_at"}
# Reasons SendGrid gives when it drops a message to an address it already suppresses, or to an
# address that is not one ("Invalid"; but "Invalid SMTPAPI header" is about the message, not the address).
DROP_SUPPRESSES = ("bounced address", "spam reporting address", "unsubscribed address")
DROP_INVALID = "invalid"
# Send ids are SERIAL (32-bit) columns: a larger id names no send (and PostgreSQL would refuse it).
MAX_SEND_ID = 2**31 - 1


class WebhookRefused(Exception):
    """The request is not a valid, signed batch of events; ``status`` is 400 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER, or a PEM block); ValueError if bad."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            key = load_pem_public_key(value.encode())
        else:
            key = EventWebhook().convert_public_key_to_ecdsa(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"the webhook public key is not a valid ECDSA public key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the webhook public key is not an elliptic-curve key")
    return key


def verify(
    raw: bytes, signature: str | None, timestamp: str | None, key: ec.EllipticCurvePublicKey, *, now: float,
    tolerance: int,
) -> None:
    """Check the ECDSA signature over timestamp + raw body, and the timestamp's age."""
    if not signature or not timestamp:
        raise WebhookRefused(403, f"the request is not signed (no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header)")
    if not (timestamp.isascii() and timestamp.strip().isdigit()) or len(timestamp) > 12:
        raise WebhookRefused(403, "the signature timestamp is not a Unix time")
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookRefused(403, f"the signature timestamp is more than {tolerance} seconds away from now (a replay?)")
    try:
        decoded = base64.b64decode(signature, validate=True)
        key.verify(decoded, timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused(403, "the signature does not match the body") from None


def _number(text: str) -> float | str:
    """A JSON number as a float, or kept as its text when it is not finite (1e999, NaN): it must
    survive being stored as JSON again."""
    value = float(text)
    return value if math.isfinite(value) else text


def parse(raw: bytes) -> list[dict[str, Any]]:
    """The events of a webhook body: a JSON array of objects."""
    try:
        events = json.loads(raw.decode("utf-8"), parse_float=_number, parse_constant=str)
    except UnicodeDecodeError:
        raise WebhookRefused(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise WebhookRefused(400, f"the body is not JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise WebhookRefused(400, "the body is not JSON we accept (nested too deeply)") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise WebhookRefused(400, "the body is not JSON we accept (a number is too long)") from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise WebhookRefused(400, "the body must be a JSON array of event objects")
    if len(events) > MAX_EVENTS:
        raise WebhookRefused(400, f"at most {MAX_EVENTS} events per request")
    return events


@dataclass
class IngestReport:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    unknown_sends: int = 0
    suppressed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def _text(value: Any, limit: int) -> str:
    """``value`` as text a database column takes: no NUL, no lone surrogates, at most ``limit``."""
    if not isinstance(value, str):
        return ""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit]


def _event_id(event: dict[str, Any]) -> str:
    value = _text(event.get("sg_event_id"), 1000).strip()
    if value:
        return value[:120]
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
    return f"sha256:{digest[:100]}"


def _send_id(event: dict[str, Any]) -> int | None:
    value = event.get("send_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 18:
        number = int(value)
        return number if 0 < number <= MAX_SEND_ID else None
    return None


def _time(event: dict[str, Any], now: datetime) -> datetime:
    value = event.get("timestamp")
    if isinstance(value, str) and value.isascii() and value.strip().isdigit() and len(value.strip()) < 12:
        value = int(value)  # older payloads send it as text
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 32503680000:
        return datetime.fromtimestamp(value, timezone.utc)
    return now


def _kind(event: dict[str, Any]) -> str:
    """The event type, with soft bounces (``bounce`` of type ``blocked``) told apart."""
    kind = _text(event.get("event"), 40).strip().lower() or "unknown"
    if kind == "bounce" and _text(event.get("type"), 40).strip().lower() == "blocked":
        return "blocked"
    return kind


class _Sql:
    """Statements on the open transaction's connection, bypassing the ORM's query building (which
    costs more than the database for a thousand events). SQL is written with ``{}`` marks."""

    def __init__(self) -> None:
        engine = EmailEvent._meta.db
        transaction = engine.current_transaction.get()
        if transaction is None:
            raise RuntimeError("ingest runs inside a transaction")
        self.postgres = engine.engine_type == "postgres"
        self.connection = transaction.connection

    def _sql(self, sql: str) -> str:
        count = sql.count("{}")
        marks = [f"${n}" for n in range(1, count + 1)] if self.postgres else ["?"] * count
        return sql.format(*marks)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        if self.postgres:
            return [tuple(row) for row in await self.connection.fetch(self._sql(sql), *args)]
        cursor = await self.connection.execute(self._sql(sql), args)
        try:
            rows = await cursor.fetchall()
        finally:
            await cursor.close()
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        if self.postgres:
            await self.connection.execute(self._sql(sql), *args)
        else:
            await self.connection.execute(self._sql(sql), args)

    async def execute_many(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            await self.connection.executemany(self._sql(sql), rows)

    def ids_in(self, column: str, ids: list[int]) -> tuple[str, list[Any]]:
        """``column IN (…)`` for ``ids``: one array parameter on PostgreSQL."""
        if self.postgres:
            return f"{column} = ANY({{}}::int[])", [list(ids)]
        return f"{column} IN ({', '.join('{}' for _ in ids)})", list(ids)


async def ingest(events: list[dict[str, Any]], *, now: datetime, soft_bounce_threshold: int) -> IngestReport:
    """Store new events and apply them, in one transaction; replays change nothing."""
    report = IngestReport(received=len(events))
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(_event_id(event), event)
    report.duplicates = len(events) - len(unique)
    async with atomic():
        sql = _Sql()
        wanted = sorted({sid for e in unique.values() if (sid := _send_id(e)) is not None})
        sends: dict[int, int] = {}  # send id → clinician id
        for start in range(0, len(wanted), 900):
            condition, args = sql.ids_in("id", wanted[start : start + 900])
            sends.update(await sql.fetch(f"SELECT id, clinician FROM send WHERE {condition}", *args))
        rows = []
        for event_id, event in unique.items():
            sid = _send_id(event)
            clinician = sends.get(sid) if sid is not None else None
            if clinician is None:
                sid = None
                report.unknown_sends += 1
            rows.append((
                event_id, sid, clinician, _kind(event),
                suppressions.normalise(_text(event.get("email"), 400))[:320], _time(event, now), now,
                _text(event.get("reason") or event.get("response"), 2000), json.dumps(event, default=str),
            ))
        new_ids = await _insert_events(sql, rows)
        report.duplicates += len(rows) - len(new_ids)
        report.stored = len(new_ids)
        applied = [(unique[r[0]], r) for r in rows if r[0] in new_ids]
        for event, row in applied:
            report.by_type[row[3]] = report.by_type.get(row[3], 0) + 1
        await _move_sends(sql, applied, now)
        report.suppressed = await _suppress(sql, applied, now, soft_bounce_threshold)
    return report


EVENT_COLUMNS = "provider_event_id, send, clinician, event, email, occurred_at, received_at, reason, payload"


async def _insert_events(sql: _Sql, rows: list[tuple]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the ids of the events that were new."""
    new: set[str] = set()
    if not rows:
        return new
    if sql.postgres:
        # One statement: each column as an array parameter.
        columns = [list(column) for column in zip(*rows)]
        result = await sql.fetch(
            f"INSERT INTO email_event ({EVENT_COLUMNS}) "
            "SELECT e, s, c, k, m, o, r, why, p::json FROM unnest({}::varchar[], {}::int[], {}::int[], "
            "{}::varchar[], {}::varchar[], {}::timestamptz[], {}::timestamptz[], {}::text[], {}::text[]) "
            "AS t(e, s, c, k, m, o, r, why, p) "
            "ON CONFLICT (provider_event_id) DO NOTHING RETURNING provider_event_id",
            *columns,
        )
        return {row[0] for row in result}
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        values = ", ".join("({}, {}, {}, {}, {}, {}, {}, {}, {})" for _ in chunk)
        result = await sql.fetch(
            f"INSERT INTO email_event ({EVENT_COLUMNS}) VALUES {values} "
            "ON CONFLICT (provider_event_id) DO NOTHING RETURNING provider_event_id",
            *[value for row in chunk for value in row],
        )
        new.update(row[0] for row in result)
    return new


async def _move_sends(sql: _Sql, applied: list[tuple[dict[str, Any], tuple]], now: datetime) -> None:
    furthest: dict[int, str] = {}  # send → the furthest state its new events reach
    first_times: dict[str, dict[int, datetime]] = {}
    soft: dict[int, int] = {}
    for event, row in sorted(applied, key=lambda pair: pair[1][5]):
        send_id, kind, at = row[1], row[3], row[5]
        if send_id is None:
            continue
        state = EVENT_STATE.get(kind)
        if state and (send_id not in furthest or PROGRESS[state] > PROGRESS[furthest[send_id]]):
            furthest[send_id] = state
        column = EVENT_TIME_COLUMN.get(kind)
        if column:
            times = first_times.setdefault(column, {})
            times[send_id] = min(at, times.get(send_id, at))
        if kind == "blocked":
            soft[send_id] = soft.get(send_id, 0) + 1
    if sql.postgres:
        await _move_sends_postgres(sql, furthest, first_times, soft, now)
    else:
        await _move_sends_sqlite(sql, furthest, first_times, soft, now)
    # A send in review (its batch's fate unknown after a crash) that the provider reports on did
    # go out: it counts as sent from now on.
    moved = sorted(furthest)
    for start in range(0, len(moved), 900):
        condition, args = sql.ids_in("id", moved[start : start + 900])
        await sql.execute(
            f"UPDATE send SET sent_at = {{}}, last_error = '' WHERE {condition} AND sent_at IS NULL "
            "AND state NOT IN ('review', 'sending', 'queued', 'claimed', 'skipped', 'failed')",
            now, *args,
        )


async def _move_sends_sqlite(
    sql: _Sql, furthest: dict[int, str], first_times: dict[str, dict[int, datetime]], soft: dict[int, int],
    now: datetime,
) -> None:
    # Each soft bounce counts, two in one batch too.
    await sql.execute_many(
        "UPDATE send SET soft_bounces = soft_bounces + {}, updated_at = {} WHERE id = {}",
        [(n, now, send_id) for send_id, n in sorted(soft.items())],
    )
    by_state: dict[str, list[int]] = {}
    for send_id, state in sorted(furthest.items()):
        by_state.setdefault(state, []).append(send_id)
    for state, ids in by_state.items():
        # Only forward: from the states before this one (a late "delivered" does not undo "opened").
        earlier = ", ".join(f"'{s}'" for s, rank in PROGRESS.items() if rank < PROGRESS[state])
        earlier = f"{earlier}, " if earlier else ""
        for start in range(0, len(ids), 900):
            condition, args = sql.ids_in("id", ids[start : start + 900])
            await sql.execute(
                f"UPDATE send SET state = {{}}, updated_at = {{}} WHERE {condition} "
                f"AND state IN ({earlier}'sending', 'review')",
                state, now, *args,
            )
    # The earliest time of each: a later event never moves delivered_at, opened_at or clicked_at.
    for column, times in first_times.items():
        await sql.execute_many(
            f"UPDATE send SET {column} = {{}} WHERE id = {{}} AND ({column} IS NULL OR {column} > {{}})",
            [(at, send_id, at) for send_id, at in sorted(times.items())],
        )


async def _move_sends_postgres(
    sql: _Sql, furthest: dict[int, str], first_times: dict[str, dict[int, datetime]], soft: dict[int, int],
    now: datetime,
) -> None:
    """The same moves as one statement: each send's row is written once."""
    ids = sorted(set(furthest) | set(soft) | {sid for times in first_times.values() for sid in times})
    if not ids:
        return
    current_rank = " ".join(f"WHEN '{state}' THEN {rank}" for state, rank in PROGRESS.items())
    moves = (
        f"t.state IS NOT NULL AND (CASE send.state WHEN 'sending' THEN 0 WHEN 'review' THEN 0 {current_rank} "
        "ELSE 1000 END) < t.rank"
    )
    delivered, opened, clicked = (first_times.get(c, {}) for c in ("delivered_at", "opened_at", "clicked_at"))
    await sql.execute(
        f"UPDATE send SET state = CASE WHEN {moves} THEN t.state ELSE send.state END, "
        f"updated_at = CASE WHEN ({moves}) OR t.soft > 0 THEN {{}} ELSE send.updated_at END, "
        "soft_bounces = send.soft_bounces + t.soft, "
        # LEAST ignores NULLs: the earliest time wins, a missing one changes nothing.
        "delivered_at = LEAST(send.delivered_at, t.delivered), opened_at = LEAST(send.opened_at, t.opened), "
        "clicked_at = LEAST(send.clicked_at, t.clicked) "
        "FROM unnest({}::int[], {}::varchar[], {}::int[], {}::int[], {}::timestamptz[], {}::timestamptz[], "
        "{}::timestamptz[]) AS t(id, state, rank, soft, delivered, opened, clicked) WHERE send.id = t.id",
        now, ids, [furthest.get(i) for i in ids], [PROGRESS[furthest[i]] if i in furthest else 0 for i in ids],
        [soft.get(i, 0) for i in ids], [delivered.get(i) for i in ids], [opened.get(i) for i in ids],
        [clicked.get(i) for i in ids],
    )


def _group(event: dict[str, Any]) -> str | None:
    """The scope of the event's unsubscribe group ("group:<id>"), or None without a valid id."""
    group = event.get("asm_group_id")
    if isinstance(group, str) and group.isascii() and group.strip().isdigit() and len(group) < 12:
        group = int(group)
    if isinstance(group, int) and not isinstance(group, bool) and 0 < group <= MAX_SEND_ID:
        return f"group:{group}"
    return None


# Soft bounces count toward the threshold within this window (a suppression removed by hand is not
# re-added by a block from long ago).
SOFT_BOUNCE_WINDOW = timedelta(days=30)
HARD_REASONS = {"bounce": "hard_bounce", "spamreport": "spam_report", "unsubscribe": "unsubscribe"}


async def _suppress(sql: _Sql, applied: list[tuple[dict[str, Any], tuple]], now: datetime, threshold: int) -> int:
    adds: dict[tuple[str, str], tuple[str, str]] = {}  # (email, scope) → (reason, detail): the first one
    groups: dict[tuple[str, str], tuple[str, str] | None] = {}  # the last group event wins (None: resubscribed)
    soft: set[str] = set()
    # In the order the events happened: a group unsubscribe then a resubscribe leaves none.
    for event, row in sorted(applied, key=lambda pair: pair[1][5]):
        kind, email, detail = row[3], row[4], row[7]
        if "@" not in email:
            continue
        if kind in HARD_REASONS:
            adds.setdefault((email, suppressions.ALL), (HARD_REASONS[kind], detail))
        elif kind == "dropped":
            why = detail.strip().lower()
            if why == DROP_INVALID or any(p in why for p in DROP_SUPPRESSES):
                adds.setdefault((email, suppressions.ALL), ("dropped", detail))
        elif kind in ("group_unsubscribe", "group_resubscribe"):
            if group := _group(event):
                groups[(email, group)] = ("group_unsubscribe", detail) if kind == "group_unsubscribe" else None
        elif kind == "blocked":
            soft.add(email)
    emails = sorted(soft)
    for start in range(0, len(emails), 900):
        chunk = emails[start : start + 900]
        marks = ", ".join("{}" for _ in chunk)
        counts = await sql.fetch(
            "SELECT email, COUNT(*) FROM email_event WHERE event = 'blocked' AND occurred_at >= {} "
            f"AND email IN ({marks}) GROUP BY email",
            now - SOFT_BOUNCE_WINDOW, *chunk,
        )
        for email, n in counts:
            if n >= threshold:
                adds.setdefault((email, suppressions.ALL), ("soft_bounces", f"{n} soft bounces (threshold {threshold})"))
    for (email, scope), action in groups.items():
        if action is None:
            await suppressions.remove(email, scope)
        else:
            adds[(email, scope)] = action
    entries = [(email, scope, reason, detail) for (email, scope), (reason, detail) in adds.items()]
    return await suppressions.add_many(entries, source="webhook", now=now)
