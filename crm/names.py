"""Names as people write them, from registry values written in capitals."""

from __future__ import annotations

import re

_PARTS = re.compile(r"([ \-'’.])")


def display_case(value: str) -> str:
    """'O'DONNELL' → "O'Donnell", 'VAN HOUTEN-SAUTER' → 'Van Houten-Sauter', 'MCDONALD' →
    'McDonald'. Values that already mix cases are kept exactly as written."""
    if not value or not value.isupper():
        return value
    pieces = _PARTS.split(value.lower())
    result: list[str] = []
    for piece in pieces:
        after_apostrophe = len(result) >= 2 and result[-1] in ("'", "’")
        # O'Donnell and D'Angelo, but St. Mary's: after an apostrophe, capitals follow a
        # one-letter prefix only.
        if piece and piece[0].isalpha() and (not after_apostrophe or len(result[-2]) == 1):
            piece = piece[0].upper() + piece[1:]
            if piece.startswith("Mc") and len(piece) > 2:
                piece = "Mc" + piece[2].upper() + piece[3:]
        result.append(piece)
    return "".join(result)
