"""National Provider Identifiers: the check digit, and values mangled by spreadsheets."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d{10}")
_SPREADSHEET_DECIMAL = re.compile(r"(\d{10})\.0+")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE][+-]?\d+$")


class NpiError(ValueError):
    pass


def check_digit_ok(npi: str) -> bool:
    """Luhn mod 10 over the prefix 80840 followed by the first nine digits (CMS NPI standard)."""
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    # Double every second digit from the right of the 14-digit payload (the check digit is absent).
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10 == int(npi[9])


def normalise_npi(raw: str) -> str:
    """A valid 10-digit NPI from ``raw``, or NpiError saying what is wrong with it."""
    value = (raw or "").strip()
    if not value:
        raise NpiError("NPI is empty")
    if match := _SPREADSHEET_DECIMAL.fullmatch(value):
        value = match.group(1)
    if _SCIENTIFIC.match(value):
        raise NpiError(
            f"NPI {value!r} was rounded by a spreadsheet into scientific notation; "
            "export the column as text"
        )
    if not _DIGITS.fullmatch(value):
        raise NpiError(f"NPI {value!r} is not 10 digits")
    if not check_digit_ok(value):
        raise NpiError(f"NPI {value} has a wrong check digit")
    return value


def with_check_digit(first_nine: str) -> str:
    """The NPI made of these nine digits and the check digit that makes it valid."""
    for digit in "0123456789":
        if check_digit_ok(first_nine + digit):
            return first_nine + digit
    raise AssertionError("unreachable: one check digit always fits")
