"""CSV files for people to open in spreadsheets, safe against formula injection.

A cell that starts with = + - @ (or a tab or carriage return) would run as a formula in Excel,
LibreOffice and Google Sheets; such cells get a leading apostrophe (the OWASP recommendation).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_chunk(rows: Iterable[Iterable[Any]], header: list[str] | None = None) -> str:
    """CSV text for ``rows``; with a ``header``, preceded by a UTF-8 byte-order mark (so that
    Excel reads accents right) and the header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header is not None:
        buffer.write("\ufeff")
        writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return buffer.getvalue()
