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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from piccolo.querystring import QueryString
from sendgrid.helpers.eventwebhook import EventWebhook

from campaigns import suppressions
from campaigns.tables import EmailEvent, Send
from crm import bulk
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
    "deferred": "deferred", "delivered": "delivered", "open": "opened", "click": "clicked",
    "bounce": "bounced", "dropped": "dropped", "spamreport": "spam", "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
EVENT_TIME_COLUMN = {"delivered": "delivered_at", "open": "opened_at", "click": "clicked_at"}
# Reasons SendGrid gives when it drops a message to an address it already suppresses.
DROP_SUPPRESSES = ("bounced address", "spam reporting address", "unsubscribed address", "invalid")


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
    if not timestamp.strip().isdigit() or len(timestamp) > 12:
        raise WebhookRefused(403, "the signature timestamp is not a Unix time")
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookRefused(403, f"the signature timestamp is more than {tolerance} seconds away from now (a replay?)")
    try:
        decoded = base64.b64decode(signature, validate=True)
        key.verify(decoded, timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused(403, "the signature does not match the body") from None


def parse(raw: bytes) -> list[dict[str, Any]]:
    """The events of a webhook body: a JSON array of objects."""
    try:
        events = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookRefused(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise WebhookRefused(400, f"the body is not JSON ({error.msg} at line {error.lineno})") from None
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


def _event_id(event: dict[str, Any]) -> str:
    value = event.get("sg_event_id")
    if isinstance(value, str) and value.strip():
        return value.strip()[:120]
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
    return f"sha256:{digest[:100]}"


def _send_id(event: dict[str, Any]) -> int | None:
    value = event.get("send_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.isdigit() and len(value) < 18:
        return int(value)
    return None


def _time(event: dict[str, Any], now: datetime) -> datetime:
    value = event.get("timestamp")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 32503680000:
        return datetime.fromtimestamp(value, timezone.utc)
    return now


def _kind(event: dict[str, Any]) -> str:
    """The event type, with soft bounces (``bounce`` of type ``blocked``) told apart."""
    kind = str(event.get("event") or "unknown")[:40]
    if kind == "bounce" and str(event.get("type") or "").lower() == "blocked":
        return "blocked"
    return kind


async def ingest(events: list[dict[str, Any]], *, now: datetime, soft_bounce_threshold: int) -> IngestReport:
    """Store new events and apply them, in one transaction; replays change nothing."""
    report = IngestReport(received=len(events))
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(_event_id(event), event)
    report.duplicates = len(events) - len(unique)
    async with atomic():
        wanted = sorted({sid for e in unique.values() if (sid := _send_id(e)) is not None})
        sends: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), 900):
            rows = await Send.select(Send.id, Send.clinician, Send.email).where(
                Send.id.is_in(wanted[start : start + 900])
            ).run()
            sends.update({row["id"]: row for row in rows})
        rows = []
        for event_id, event in unique.items():
            sid = _send_id(event)
            send = sends.get(sid) if sid is not None else None
            if send is None:
                report.unknown_sends += 1
            rows.append((
                event_id, send["id"] if send else None, send["clinician"] if send else None, _kind(event),
                suppressions.normalise(str(event.get("email") or ""))[:320], _time(event, now), now,
                str(event.get("reason") or event.get("response") or "")[:2000], json.dumps(event, default=str),
            ))
        new_ids = await _insert_events(rows)
        report.duplicates += len(rows) - len(new_ids)
        report.stored = len(new_ids)
        applied = [(unique[r[0]], r) for r in rows if r[0] in new_ids]
        for event, row in applied:
            report.by_type[row[3]] = report.by_type.get(row[3], 0) + 1
        await _move_sends(applied, now)
        report.suppressed = await _suppress(applied, now, soft_bounce_threshold)
    return report


async def _insert_events(rows: list[tuple]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the ids of the events that were new."""
    new: set[str] = set()
    engine = EmailEvent._meta.db
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        values = ", ".join("({}, {}, {}, {}, {}, {}, {}, {}, {})" for _ in chunk)
        result = await engine.run_querystring(
            QueryString(
                "INSERT INTO email_event (provider_event_id, send, clinician, event, email, occurred_at, "
                f"received_at, reason, payload) VALUES {values} "
                "ON CONFLICT (provider_event_id) DO NOTHING RETURNING provider_event_id",
                *[value for row in chunk for value in row],
            )
        )
        new.update(r["provider_event_id"] for r in result)
    return new


async def _move_sends(applied: list[tuple[dict[str, Any], tuple]], now: datetime) -> None:
    by_state: dict[str, list[int]] = {}
    first_times: dict[str, dict[int, datetime]] = {}
    for event, row in applied:
        send_id, kind, at = row[1], row[3], row[5]
        if send_id is None:
            continue
        state = EVENT_STATE.get(kind)
        if state:
            by_state.setdefault(state, []).append(send_id)
        column = EVENT_TIME_COLUMN.get(kind)
        if column:
            times = first_times.setdefault(column, {})
            times[send_id] = min(at, times.get(send_id, at))
        if kind == "blocked":
            by_state.setdefault("_soft", []).append(send_id)
    engine = Send._meta.db
    for state, ids in by_state.items():
        ids = sorted(set(ids))
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ", ".join("{}" for _ in chunk)
            if state == "_soft":
                sql = f"UPDATE send SET soft_bounces = soft_bounces + 1, updated_at = {{}} WHERE id IN ({marks})"
                await engine.run_querystring(QueryString(sql, now, *chunk))
                continue
            earlier = [s for s, rank in PROGRESS.items() if rank < PROGRESS[state]] + ["sending"]
            allowed = ", ".join(f"'{s}'" for s in earlier)
            sql = (
                f"UPDATE send SET state = {{}}, updated_at = {{}} WHERE id IN ({marks}) AND state IN ({allowed})"
            )
            await engine.run_querystring(QueryString(sql, state, now, *chunk))
    for column, times in first_times.items():
        await bulk.execute_many(
            Send,
            f"UPDATE send SET {column} = {{}} WHERE id = {{}} AND ({column} IS NULL OR {column} > {{}})",
            [(at, send_id, at) for send_id, at in times.items()],
        )


async def _suppress(applied: list[tuple[dict[str, Any], tuple]], now: datetime, threshold: int) -> int:
    added = 0
    soft: set[str] = set()
    for event, row in applied:
        kind, email = row[3], row[4]
        if not email:
            continue
        reason, scope = "", suppressions.ALL
        if kind == "bounce":
            reason = "hard_bounce"
        elif kind == "spamreport":
            reason = "spam_report"
        elif kind == "unsubscribe":
            reason = "unsubscribe"
        elif kind == "group_unsubscribe":
            group = event.get("asm_group_id")
            if isinstance(group, int) or (isinstance(group, str) and group.isdigit()):
                reason, scope = "group_unsubscribe", f"group:{int(group)}"
        elif kind == "group_resubscribe":
            group = event.get("asm_group_id")
            if isinstance(group, int) or (isinstance(group, str) and group.isdigit()):
                await suppressions.remove(email, f"group:{int(group)}")
        elif kind == "dropped" and any(p in row[7].lower() for p in DROP_SUPPRESSES):
            reason = "dropped"
        elif kind == "blocked":
            soft.add(email)
        if reason:
            added += await suppressions.add(
                email, reason=reason, scope=scope, source="webhook", detail=row[7], now=now
            )
    if soft:
        emails = sorted(soft)
        marks = ", ".join("{}" for _ in emails)
        counts = await EmailEvent._meta.db.run_querystring(
            QueryString(
                f"SELECT email, COUNT(*) AS n FROM email_event WHERE event = 'blocked' AND email IN ({marks}) GROUP BY email",
                *emails,
            )
        )
        for row in counts:
            if row["n"] >= threshold:
                added += await suppressions.add(
                    row["email"], reason="soft_bounces", source="webhook", now=now,
                    detail=f"{row['n']} soft bounces (threshold {threshold})",
                )
    return added
