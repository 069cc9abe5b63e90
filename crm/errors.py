"""The one shape of a refused value: which field, and a message a person can act on."""

from __future__ import annotations


class FieldError(ValueError):
    """A value was refused; ``field`` names the form field or filter, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
