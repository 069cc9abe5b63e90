"""Text from people and files, made safe to store: no control characters, no broken Unicode.

PostgreSQL refuses NUL characters outright, and control characters or lone surrogates (bytes that
were not UTF-8, decoded with surrogateescape) are never meant as data.
"""

from __future__ import annotations

import re

_UNWANTED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def plain_text(value: str) -> str:
    """``value`` without NUL, other control characters (tab and line breaks stay) and lone
    surrogates."""
    return _UNWANTED.sub("", value)


def single_line(value: str) -> str:
    """Plain text on one line with runs of whitespace collapsed."""
    return " ".join(plain_text(value).split())
