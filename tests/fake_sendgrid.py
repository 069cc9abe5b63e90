"""A fake SendGrid v3 API server for tests and benchmarks.

``FakeSendGrid`` serves ``POST /v3/mail/send``, ``POST /v3/mail/batch`` and
``POST /v3/user/scheduled_sends`` on 127.0.0.1 from a background thread. It checks mail/send
requests against SendGrid's rules (answering 400/401 in SendGrid's error shape), records every
accepted recipient as a ``Delivery`` and can be scripted to answer the next requests with an error,
a rate limit or silence::

    with FakeSendGrid() as fake:
        fake.respond(429, reset_in=2)
        ...  # point the client at fake.url with fake.api_key
        assert fake.duplicates() == {}

Rendering a delivery's subject and bodies is lazy, so recording a 1,000-recipient request costs one
JSON parse, the validation and one small object per recipient.
"""

from __future__ import annotations

import json
import math
from email.message import Message
import re
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Container
from urllib.parse import urlsplit

MAX_PERSONALIZATIONS = 1000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_SUBSTITUTION_BYTES = 10_000
RATE_LIMIT = 600
RECIPIENT_KINDS = ("to", "cc", "bcc")
MAIL_SEND = "/v3/mail/send"
SHUTDOWN_POLL = 0.01  # seconds between the serving thread's checks for stop()

EMAIL = re.compile(r"[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\".]+")

Reply = tuple[int, dict[str, str], bytes]


# ------------------------------------------------------------------------------------------------
# What the fake records


@dataclass(eq=False)
class Delivery:
    """One recipient of an accepted mail/send request; ``subject``, ``html`` and ``text`` are
    rendered (substitutions applied) on first use."""

    email: str
    name: str
    substitutions: dict[str, str]
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: list[str]
    batch_id: str
    message_id: str
    received_at: float
    subject_template: str
    contents: dict[str, str]

    @cached_property
    def subject(self) -> str:
        return render(self.subject_template, self.substitutions)

    @cached_property
    def html(self) -> str:
        return render(self.contents.get("text/html", ""), self.substitutions)

    @cached_property
    def text(self) -> str:
        return render(self.contents.get("text/plain", ""), self.substitutions)


@dataclass(eq=False)
class RecordedRequest:
    """One request as received, with the answer given (``status`` is None when the fake hung up)."""

    method: str
    path: str
    headers: Message
    raw: bytes
    received_at: float
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @cached_property
    def json(self) -> Any:
        return json.loads(self.raw)


def render(template: str, substitutions: dict[str, str]) -> str:
    """Replace each substitution key by its value in one pass, longest key first where keys overlap.

    Written independently of ``campaigns.delivery.apply_substitutions`` so the fake stays a check
    on it."""
    if not substitutions or not template:
        return template
    return _key_pattern(tuple(substitutions)).sub(lambda match: substitutions[match.group(0)], template)


@lru_cache(maxsize=256)
def _key_pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True)))


# ------------------------------------------------------------------------------------------------
# SendGrid's rules for mail/send


class _Errors(list):
    def add(self, message: str, field: str | None) -> None:
        self.append({"message": message, "field": field, "help": None})


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", list: "array", dict: "object", type(None): "null"}.get(type(value), "string")


def _check_strings(errors: _Errors, mapping: Any, field: str) -> None:
    """Headers, custom_args and substitutions are objects of string values."""
    if not isinstance(mapping, dict):
        errors.add(f"Invalid type. Expected: object, given: {_json_type(mapping)}.", field)
        return
    for key, value in mapping.items():
        if not isinstance(value, str):
            errors.add(f"Invalid type. Expected: string, given: {_json_type(value)}.", f"{field}.{key}")


def _valid_email(address: Any) -> bool:
    email = address.get("email") if isinstance(address, dict) else None
    return isinstance(email, str) and bool(EMAIL.fullmatch(email))


def mail_send_errors(body: Any, batch_ids: Container[str]) -> list[dict]:
    """SendGrid's objections to a mail/send body (empty when it would be accepted)."""
    errors = _Errors()
    if not isinstance(body, dict):
        errors.add("The request body must be a JSON object.", None)
        return errors
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.add(
            "The personalizations field is required and must have at least one personalization.", "personalizations"
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.add(
            "You may not have more than 1000 personalizations per API request. "
            "You may need to deliver your message in multiple requests.",
            "personalizations",
        )
        return errors

    subject = body.get("subject")
    every_subject = True
    seen: set[str] = set()
    for i, personalization in enumerate(personalizations):
        if not isinstance(personalization, dict) or not personalization.get("to"):
            errors.add(
                "The to array is required for all personalization objects, "
                "and must have at least one email object with a valid email address.",
                f"personalizations.{i}.to",
            )
            if not isinstance(personalization, dict):
                continue
        for kind in RECIPIENT_KINDS:
            for j, recipient in enumerate(personalization.get(kind) or ()):
                if not _valid_email(recipient):
                    errors.add("Does not contain a valid address.", f"personalizations.{i}.{kind}.{j}.email")
                    continue
                email = recipient["email"]
                if email.lower() in seen:
                    errors.add(
                        "Each email address in the personalization block should be unique between to, cc, and "
                        f"bcc. We found the first duplicate instance of [{email}] in the "
                        f"personalizations.{i}.{kind} field.",
                        f"personalizations.{i}.{kind}",
                    )
                seen.add(email.lower())
        every_subject = every_subject and bool(personalization.get("subject"))
        for name in ("headers", "custom_args"):
            if name in personalization:
                _check_strings(errors, personalization[name], f"personalizations.{i}.{name}")
        substitutions = personalization.get("substitutions")
        if substitutions is not None:
            _check_strings(errors, substitutions, f"personalizations.{i}.substitutions")
            if isinstance(substitutions, dict) and sum(
                len(key.encode()) + len(str(value).encode()) for key, value in substitutions.items()
            ) > MAX_SUBSTITUTION_BYTES:
                errors.add(
                    "The substitutions of a personalization may not exceed 10000 bytes.",
                    f"personalizations.{i}.substitutions",
                )

    if not (isinstance(subject, str) and subject) and not (personalizations and every_subject):
        errors.add(
            "The subject is required. You can get around this requirement if you use a template with a subject "
            "defined or if every personalization has a subject defined.",
            "subject",
        )
    sender = body.get("from")
    if not isinstance(sender, dict):
        errors.add(
            "The from object must be provided for every email send. It is an object that requires the email "
            "parameter, but may also contain a name parameter.",
            "from",
        )
    elif not _valid_email(sender):
        errors.add("The from email does not contain a valid address.", "from.email")
    if "reply_to" in body and not _valid_email(body["reply_to"]):
        errors.add("The reply_to email does not contain a valid address.", "reply_to.email")
    _check_content(errors, body.get("content"))
    for name in ("headers", "custom_args"):
        if name in body:
            _check_strings(errors, body[name], name)
    _check_categories(errors, body.get("categories"))
    if "batch_id" in body and body["batch_id"] not in batch_ids:
        errors.add("The batch id is not valid.", "batch_id")
    return errors


def _check_content(errors: _Errors, content: Any) -> None:
    if not isinstance(content, list) or not content:
        errors.add(
            "Unless a valid template_id is provided, the content parameter is required. There must be at least "
            "one defined content block. We typically suggest both text/plain and text/html blocks are included, "
            "but only one block is required.",
            "content",
        )
        return
    types = []
    for k, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("value"), str) or not block["value"]:
            errors.add("The content value must be a string at least one character in length.", f"content.{k}.value")
        types.append(block.get("type") if isinstance(block, dict) else None)
    expected = [kind for kind in ("text/plain", "text/html") if kind in types]
    if types[: len(expected)] != expected:
        errors.add(
            "If present, text/plain and text/html may only be provided in this order: text/plain, text/html.",
            "content",
        )


def _check_categories(errors: _Errors, categories: Any) -> None:
    if categories is None:
        return
    if not isinstance(categories, list):
        errors.add("Invalid type. Expected: array.", "categories")
        return
    if len(categories) > MAX_CATEGORIES:
        errors.add("You may not have more than 10 categories per request.", "categories")
    for k, category in enumerate(categories):
        if not isinstance(category, str) or len(category) > MAX_CATEGORY_LENGTH:
            errors.add("A category must be a string of at most 255 characters.", f"categories.{k}")


def deliveries_of(body: dict, message_id: str, received_at: float) -> list[Delivery]:
    """One ``Delivery`` per recipient (to, cc and bcc) of a valid mail/send body."""
    contents = {block["type"]: block["value"] for block in body["content"]}
    subject = body.get("subject") or ""
    top_headers = body.get("headers") or {}
    top_args = body.get("custom_args") or {}
    categories = body.get("categories") or []
    batch_id = body.get("batch_id", "")
    deliveries = []
    for personalization in body["personalizations"]:
        substitutions = personalization.get("substitutions") or {}
        headers = {**top_headers, **personalization.get("headers", {})}
        custom_args = {**top_args, **personalization.get("custom_args", {})}
        for kind in RECIPIENT_KINDS:
            for recipient in personalization.get(kind) or ():
                deliveries.append(
                    Delivery(
                        recipient["email"], recipient.get("name", ""), substitutions, headers, custom_args,
                        categories, batch_id, message_id, received_at,
                        personalization.get("subject") or subject, contents,
                    )
                )
    return deliveries


# ------------------------------------------------------------------------------------------------
# The server


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _error_reply(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    return _json_reply(status, {"errors": [{"message": message, "field": field, "help": None}]}, headers)


@dataclass
class _Scripted:
    """A canned answer for the next request to one path."""

    status: int
    message: str | None = None
    field: str | None = None
    reset_in: float | None = None
    hang: float | None = None

    def reply(self) -> Reply:
        headers = {}
        if self.status == HTTPStatus.TOO_MANY_REQUESTS:
            headers = {"X-RateLimit-Limit": str(RATE_LIMIT), "X-RateLimit-Remaining": "0"}
            if self.reset_in is not None:
                headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + self.reset_in))
        if self.status < 300:
            return self.status, {**headers, "X-Message-Id": secrets.token_urlsafe(16)}, b""
        return _error_reply(self.status, self.message or HTTPStatus(self.status).phrase.lower(), self.field, headers)


class FakeSendGrid:
    """A fake SendGrid API on 127.0.0.1 (a free port), started with ``start()`` or ``with``."""

    def __init__(self, api_key: str = "SG.fake-sendgrid-key") -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._requests: list[RecordedRequest] = []
        self._batches: dict[str, str] = {}
        self._scripted: dict[str, deque[_Scripted]] = defaultdict(deque)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> FakeSendGrid:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL,), name="fake-sendgrid", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging answers are cut short."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # Scripting

    def respond(
        self,
        status: int,
        *,
        message: str | None = None,
        field: str | None = None,
        reset_in: float | None = None,
        path: str = MAIL_SEND,
    ) -> None:
        """Answer the next unscripted request to ``path`` with ``status`` (SendGrid's error body for
        4xx/5xx; for 429 the rate-limit headers, with ``X-RateLimit-Reset`` when ``reset_in`` is
        given). Nothing is delivered."""
        self._script(path, _Scripted(status, message, field, reset_in))

    def hang(self, seconds: float, *, path: str = MAIL_SEND) -> None:
        """Read the next request to ``path``, say nothing for ``seconds``, then drop the connection."""
        self._script(path, _Scripted(0, hang=seconds))

    def _script(self, path: str, scripted: _Scripted) -> None:
        with self._lock:
            self._scripted[path].append(scripted)

    # The log

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, accepted or not."""
        with self._lock:
            return list(self._requests)

    @property
    def batches(self) -> dict[str, str]:
        """Batch ids created through /v3/mail/batch and their state: created, cancel or pause."""
        with self._lock:
            return dict(self._batches)

    def recipients(self) -> list[str]:
        return [delivery.email for delivery in self.deliveries]

    def count_by_email(self) -> Counter[str]:
        """Deliveries per address, lower-cased (SendGrid compares addresses without case)."""
        return Counter(delivery.email.lower() for delivery in self.deliveries)

    def duplicates(self) -> dict[str, int]:
        return {email: count for email, count in self.count_by_email().items() if count > 1}

    def clear(self) -> None:
        """Forget the deliveries and requests (not the batches or scripted answers)."""
        with self._lock:
            self._deliveries.clear()
            self._requests.clear()

    # Answering

    def handle(self, method: str, target: str, headers: Message, raw: bytes) -> Reply | None:
        """The answer to one request, or None to hang up without one."""
        request = RecordedRequest(method, urlsplit(target).path, headers, raw, time.time())
        with self._lock:
            self._requests.append(request)
            queue = self._scripted.get(request.path)
            scripted = queue.popleft() if queue else None
        if scripted and scripted.hang is not None:
            self._stopping.wait(scripted.hang)
            return None
        reply = scripted.reply() if scripted else self._route(request)
        request.status, request.response_headers = reply[0], reply[1]
        return reply

    def _route(self, request: RecordedRequest) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error_reply(
                HTTPStatus.UNAUTHORIZED, "The provided authorization grant is invalid, expired, or revoked"
            )
        routes = {
            ("POST", MAIL_SEND): self._send_mail,
            ("POST", "/v3/mail/batch"): self._create_batch,
            ("POST", "/v3/user/scheduled_sends"): self._schedule_batch,
        }
        route = routes.get((request.method, request.path))
        if route is None:
            return _error_reply(HTTPStatus.NOT_FOUND, "resource not found")
        try:
            body = json.loads(request.raw) if request.raw else None
        except ValueError:
            return _error_reply(HTTPStatus.BAD_REQUEST, "The request body is not valid JSON.")
        return route(body, request.received_at)

    def _send_mail(self, body: Any, received_at: float) -> Reply:
        errors = mail_send_errors(body, self._batches)
        if errors:
            return _json_reply(HTTPStatus.BAD_REQUEST, {"errors": errors})
        message_id = secrets.token_urlsafe(16)
        deliveries = deliveries_of(body, message_id, received_at)
        with self._lock:
            self._deliveries.extend(deliveries)
        return HTTPStatus.ACCEPTED, {"X-Message-Id": message_id}, b""

    def _create_batch(self, body: Any, received_at: float) -> Reply:
        batch_id = secrets.token_urlsafe(24)
        with self._lock:
            self._batches[batch_id] = "created"
        return _json_reply(HTTPStatus.CREATED, {"batch_id": batch_id})

    def _schedule_batch(self, body: Any, received_at: float) -> Reply:
        if not isinstance(body, dict) or body.get("batch_id") not in self._batches:
            return _error_reply(HTTPStatus.BAD_REQUEST, "The batch id is not valid.", "batch_id")
        if body.get("status") not in ("cancel", "pause"):
            return _error_reply(HTTPStatus.BAD_REQUEST, "The status must be cancel or pause.", "status")
        with self._lock:
            self._batches[body["batch_id"]] = body["status"]
        return _json_reply(HTTPStatus.CREATED, {"batch_id": body["batch_id"], "status": body["status"]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSendGrid


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.fake.handle(self.command, self.path, self.headers, raw)
        if reply is None:
            self.close_connection = True
            return
        status, headers, body = reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's own log is ``FakeSendGrid.requests``."""
