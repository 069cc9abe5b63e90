"""The SendGrid email backend: one v3 mail/send request per batch, through the official client.

The client (python_http_client over urllib) is synchronous, so every call runs in a worker thread.
Rate limits (429) wait until SendGrid's ``X-RateLimit-Reset``; server errors (5xx), timeouts and
connection failures back off exponentially with full jitter; other refusals are permanent and are
not retried. The API key never reaches an error message or a log line.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import random
import re
import time
from functools import partial
from typing import Any, Awaitable, Callable

import sendgrid
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError

from campaigns.delivery import MAX_BATCH, Batch, BatchResult, Message

logger = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_RATE_LIMIT_WAIT = 60.0
REFUSAL_DETAILS_SHOWN = 3


class SendGridError(Exception):
    """SendGrid refused a request (``permanent``) or kept failing until the attempts ran out."""

    def __init__(self, message: str, *, permanent: bool, attempts: int) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.attempts = attempts


class UnansweredError(SendGridError):
    """The request went out and no answer came back: SendGrid may have accepted it."""


class SendGridBackend:
    """``EmailBackend`` for the SendGrid v3 API."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
        max_attempts: int = 5,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        asm_group_id: int | None = None,
    ) -> None:
        if not api_key:  # the client would fall back to $SENDGRID_API_KEY
            raise ValueError("a SendGrid API key is required")
        if timeout <= 0 or max_attempts < 1:
            raise ValueError("timeout must be positive and max_attempts at least 1")
        self._api = sendgrid.SendGridAPIClient(api_key=api_key, host=host).client
        # The client adds this to a header dict that all requests share (and copy) on the first
        # request with a body; setting it now keeps concurrent first requests from racing on it.
        self._api.request_headers["Content-Type"] = "application/json"
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.asm_group_id = asm_group_id
        self._sleep = sleep
        self._clock = clock

    async def new_batch_id(self) -> str:
        """A new SendGrid batch id (POST /v3/mail/batch); raises ``SendGridError`` on failure."""
        response, _ = await self._request(partial(self._api.mail.batch.post, timeout=self.timeout))
        return response.to_dict["batch_id"]

    async def send(self, batch: Batch) -> BatchResult:
        """Send the batch as one request, retrying transient failures up to ``max_attempts``."""
        if not batch.messages:
            raise ValueError("the batch has no messages")
        if len(batch.messages) > MAX_BATCH:
            raise ValueError(f"the batch has {len(batch.messages)} messages; SendGrid takes at most {MAX_BATCH}")
        body = self._request_body(batch)
        try:
            response, attempts = await self._request(
                partial(self._api.mail.send.post, request_body=body, timeout=self.timeout), resend_unanswered=False
            )
        except UnansweredError as error:
            return BatchResult("unknown", error=str(error), attempts=error.attempts)
        except SendGridError as error:
            return BatchResult("failed", error=str(error), permanent=error.permanent, attempts=error.attempts)
        return BatchResult("accepted", message_id=response.headers.get("X-Message-Id", ""), attempts=attempts)

    def _request_body(self, batch: Batch) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": _address(batch.from_email, batch.from_name),
            "personalizations": [_personalization(message) for message in batch.messages],
            "content": [
                {"type": kind, "value": value}
                for kind, value in (("text/plain", batch.text), ("text/html", batch.html))
                if value
            ],
        }
        if batch.reply_to:
            body["reply_to"] = {"email": batch.reply_to}
        if batch.categories:
            body["categories"] = list(batch.categories)
        if batch.batch_id:
            body["batch_id"] = batch.batch_id
        if self.asm_group_id is not None:
            body["asm"] = {"group_id": self.asm_group_id}
        return body

    async def _request(self, call: Callable[[], Response], resend_unanswered: bool = True) -> tuple[Response, int]:
        """Make the call in a worker thread until it succeeds; returns the response and the number
        of attempts, or raises ``SendGridError``. Unless ``resend_unanswered``, a request that went
        out and timed out waiting for the answer raises ``UnansweredError`` instead of being
        repeated: SendGrid may have accepted it, and mail must never go out twice."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await asyncio.to_thread(call), attempt
            except HTTPError as error:
                if not _is_transient(error.status_code):
                    raise SendGridError(_refusal(error), permanent=True, attempts=attempt) from None
                problem = f"SendGrid answered {error.status_code}"
                if error.status_code == 429:
                    delay = self._rate_limit_wait(error.headers, attempt)
                else:
                    delay = self._backoff(attempt)
            except (OSError, http.client.HTTPException) as error:
                # urllib raises TimeoutError while waiting for the answer, URLError(TimeoutError) on connect.
                unanswered = isinstance(error, (TimeoutError, http.client.RemoteDisconnected))
                if unanswered and not resend_unanswered:
                    raise UnansweredError(
                        "SendGrid did not answer (" + (
                            f"no answer within {self.timeout:g} s" if isinstance(error, TimeoutError)
                            else "the connection closed before the answer"
                        ) + "); it may have accepted the batch, so it is not sent again",
                        permanent=False, attempts=attempt,
                    ) from None
                if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
                    problem = f"SendGrid timed out (no answer within {self.timeout:g} s)"
                else:
                    cause = getattr(error, "reason", None) or error
                    problem = f"the connection to SendGrid failed ({str(cause) or type(cause).__name__})"
                delay = self._backoff(attempt)
            if attempt < self.max_attempts:
                logger.warning(
                    "%s (attempt %d of %d); retrying in %.2f s", problem, attempt, self.max_attempts, delay
                )
                await self._sleep(delay)
        attempts = f"{self.max_attempts} attempt{'s' if self.max_attempts > 1 else ''}"
        raise SendGridError(f"{problem} after {attempts}", permanent=False, attempts=self.max_attempts)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and the capped exponential delay."""
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))

    def _rate_limit_wait(self, headers: Any, attempt: int) -> float:
        """Seconds until ``X-RateLimit-Reset`` (capped); backoff when the header is absent or past."""
        try:
            wait = float(headers.get("X-RateLimit-Reset")) - self._clock()
        except (AttributeError, TypeError, ValueError):
            return self._backoff(attempt)
        return min(wait, MAX_RATE_LIMIT_WAIT) if wait > 0 else self._backoff(attempt)


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _personalization(message: Message) -> dict[str, Any]:
    personalization: dict[str, Any] = {
        "to": [_address(message.to_email, message.to_name)],
        "subject": message.subject,
    }
    if message.substitutions:
        personalization["substitutions"] = message.substitutions
    if message.headers:
        personalization["headers"] = message.headers
    if message.custom_args:
        personalization["custom_args"] = message.custom_args
    return personalization


def _is_transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _refusal(error: HTTPError) -> str:
    """SendGrid's objections as one line: ``field: message`` for the first few, then a count."""
    try:
        problems = json.loads(error.body)["errors"]
        details = [f"{p['field']}: {p['message']}" if p.get("field") else str(p["message"]) for p in problems]
    except (TypeError, ValueError, KeyError):
        details = []
    if not details:
        return f"SendGrid refused the request: HTTP {error.status_code}"
    shown = "; ".join(details[:REFUSAL_DETAILS_SHOWN])
    hidden = len(details) - REFUSAL_DETAILS_SHOWN
    return f"SendGrid refused the request: {shown}" + (f" (and {hidden} more)" if hidden > 0 else "")


class _RedactBearerToken(logging.Filter):
    """python_http_client logs the request headers, Authorization included, at DEBUG level."""

    TOKEN = re.compile(r"Bearer [^'\"\s,}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bearer " in message:
            record.msg, record.args = self.TOKEN.sub("Bearer [redacted]", message), ()
        return True


logging.getLogger("python_http_client.client").addFilter(_RedactBearerToken())
