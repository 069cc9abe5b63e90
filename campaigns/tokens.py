"""Signed opaque tokens for the public pages (unsubscribe, RSVP): no login, no guessable ids.

A token carries an object id and an HMAC-SHA256 tag keyed by the secret key and the token's
purpose, so an unsubscribe token cannot be used as an RSVP token, and a changed byte is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

TAG_BYTES = 16
# One spelling per token: URL-safe base64 without padding, nothing else.
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")
FROM_URLSAFE = str.maketrans("-_", "+/")


class TokenError(ValueError):
    """The token is malformed or its signature does not match."""


def _key(secret_key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"liaison:{purpose}:{secret_key}".encode()).digest()


def _tag(secret_key: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret_key, purpose), payload, hashlib.sha256).digest()[:TAG_BYTES]


def make_token(secret_key: str, purpose: str, *ids: int) -> str:
    """A URL-safe token for ``ids`` (non-negative integers) and ``purpose``."""
    payload = b"".join(i.to_bytes(8, "big") for i in ids)
    raw = payload + _tag(secret_key, purpose, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(secret_key: str, purpose: str, token: str, count: int = 1) -> tuple[int, ...]:
    """The ids inside ``token``; TokenError when it was not made by ``make_token`` for ``purpose``."""
    expected = 8 * count + TAG_BYTES
    if not token or len(token) > 200 or not TOKEN_CHARACTERS.fullmatch(token):
        raise TokenError("the link is not a valid link")
    try:
        raw = base64.b64decode(token.translate(FROM_URLSAFE) + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("the link is not a valid link") from None
    if len(raw) != expected or base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        # (the second check: unused low bits of the last character make other spellings)
        raise TokenError("the link is not a valid link")
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret_key, purpose, payload)):
        raise TokenError("the link was altered or is not from us")
    return tuple(int.from_bytes(payload[i : i + 8], "big") for i in range(0, len(payload), 8))
